"""``ds01 limits [USER] [--json]``: effective limits and where each value came from.

Answered from the limits snapshot when it is current (see ``ds01d/snapshot.py``), else by
loading the configuration, which also refreshes the snapshot where this caller may write it.
"""

from __future__ import annotations

from ds01d.cli.common import caller, now, paths
from ds01d.paths import Paths
from ds01d.units import iso, show_value

TYPE_CHECKING = False  # see cli/common.py
if TYPE_CHECKING:
    import argparse
    from datetime import datetime
    from typing import Any

def effective_of(p: Paths, user: str, when: datetime) -> dict[str, Any]:
    """``user``'s limits as ``limits --json`` prints them (also used by ``ds01 want``)."""
    from ds01d import snapshot

    body = snapshot.lookup(p.top, p.under("etc/ds01"), user, iso(when))
    if body is not None:
        return body
    from ds01d.cli.common import load, nss_for
    from ds01d.config.effective import effective_json, resolve, snapshot_body

    seen = snapshot.fingerprint(snapshot.config_files(p.under("etc/ds01")))  # before loading
    config, nss = load(p), nss_for(p)
    snapshot.write(p.top, snapshot_body(config, fingerprint=seen, now=when, nss=nss))
    return effective_json(resolve(config, user, now=when, nss=nss))


def as_table(body: dict[str, Any]) -> str:
    sources = body["sources"]
    rows = [(k, show_value(v, k).strip('"'), sources.get(k, "-"))
            for k, v in body["limits"].items()]
    for part in ("aggregate", "policies"):
        rows += [(f"{part}.{k}", show_value(v, k).strip('"'), sources.get(f"{part}.{k}", "-"))
                 for k, v in body[part].items()]
    width = max(len(r[0]) for r in rows)
    lines = [f"user {body['user']}  group {body['group'] or '(none)'}  "
             f"priority {body.get('priority', 0)}"]
    lines += [f"note: {n}" for n in body.get("notes", [])]
    if body.get("reason"):
        lines.append(f"override reason: {body['reason']}")
    lines.append(f"{'KEY':<{width}}  {'VALUE':<10}  FROM")
    lines += [f"{k:<{width}}  {v:<10}  {src}" for k, v, src in rows]
    lines.append("null = unlimited; sizes in bytes as K/M/G/T (1024); durations in hours")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    p = paths(args)
    user = args.user or caller(args, p)
    body = effective_of(p, user, now(p))
    if args.json:
        import json

        print(json.dumps(body, indent=2))
    else:
        print(as_table(body))
    return 0
