"""``ds01 report [--since 24h] [--json] [--output DIR]``: usage from the event log."""

from __future__ import annotations

import argparse
import json
import os
from datetime import timedelta

from ds01d.cli.common import caller, load, now, nss_for, paths
from ds01d.errors import InvalidInput


def run(args: argparse.Namespace) -> int:
    from ds01d.config.effective import choose_group
    from ds01d.report import markdown, report, svg
    from ds01d.runtime.events import EventLog
    from ds01d.units import parse_duration_s

    p = paths(args)
    try:
        span = timedelta(seconds=parse_duration_s(args.since))
    except ValueError as e:
        raise InvalidInput(f"--since: {e}") from None
    until = now(p)
    config, nss = load(p), nss_for(p)
    body = report(EventLog(p.events).read(), since=until - span, until=until,
                  group_of=lambda u: choose_group(config, u, nss)[0])
    if os.geteuid() != 0 and not p.is_simulated():
        me = caller(args, p)
        body["users"] = {u: f for u, f in body["users"].items() if u == me}
        body["groups"] = {}
    if args.output:
        from pathlib import Path

        folder = Path(args.output) if os.path.isabs(args.output) else p.root / args.output
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"report-{body['until'][:10]}-{args.since}"
        stem.with_suffix(".json").write_text(json.dumps(body, indent=2) + "\n")
        stem.with_suffix(".md").write_text(markdown(body))
        stem.with_suffix(".svg").write_text(svg(body))
        print(f"wrote {stem}.json, .md and .svg")
        return 0
    print(json.dumps(body, indent=2) if args.json else markdown(body), end="")
    return 0
