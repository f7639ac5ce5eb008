"""``ds01 limits [USER] [--json]``: effective limits and where each value came from."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from ds01d.cli.common import caller, load, now, nss_for, paths
from ds01d.config.effective import resolve
from ds01d.config.loader import show_value
from ds01d.config.model import Effective


def as_json(eff: Effective) -> dict[str, object]:
    """The ``limits --json`` shape of DESIGN.md: bytes, hours, ``null`` = unlimited."""
    return {"user": eff.user, "group": eff.group, "limits": asdict(eff.limits),
            "aggregate": asdict(eff.aggregate), "policies": asdict(eff.policies),
            "sources": dict(eff.sources)}


def as_table(eff: Effective) -> str:
    rows = [(k, show_value(v, k).strip('"'), eff.sources.get(k, ""))
            for k, v in asdict(eff.limits).items()]
    for part, prefix in ((eff.aggregate, "aggregate."), (eff.policies, "policies.")):
        rows += [(prefix + k, show_value(v, k).strip('"'), eff.sources.get(prefix + k, "-"))
                 for k, v in asdict(part).items()]
    width = max(len(r[0]) for r in rows)
    head = f"user {eff.user}  group {eff.group or '(none)'}  priority {eff.priority}"
    lines = [head] + ([f"override reason: {eff.reason}"] if eff.reason else [])
    lines.append(f"{'KEY':<{width}}  {'VALUE':<10}  FROM")
    lines += [f"{k:<{width}}  {v:<10}  {src or '-'}" for k, v, src in rows]
    lines.append("null = unlimited; sizes in bytes as K/M/G/T (1024); durations in hours")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    p = paths(args)
    user = args.user or caller(args, p)
    eff = resolve(load(p), user, now=now(p), nss=nss_for(p))
    if args.json:
        print(json.dumps(as_json(eff), indent=2))
    else:
        for w in eff.warnings:
            print(f"note: {w}")
        print(as_table(eff))
    return 0
