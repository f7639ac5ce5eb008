"""``ds01 limits [USER] [--json]``: effective limits and where each value came from.

Answered from the limits snapshot when it is current (see ``ds01d/snapshot.py``), else by
loading the configuration, which also refreshes the snapshot where this caller may write it.
"""

from __future__ import annotations

from ds01d.cli.common import admin, caller, now, paths
from ds01d.errors import InvalidInput, UsageError
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
    """The limits as a table: keys sorted within each part (whatever the user's group)."""
    sources = body["sources"]
    rows = [(k, show_value(v, k).strip('"'), sources.get(k, "-"))
            for k, v in sorted(body["limits"].items())]
    for part in ("aggregate", "policies"):
        rows += [(f"{part}.{k}", show_value(v, k).strip('"'), sources.get(f"{part}.{k}", "-"))
                 for k, v in sorted(body[part].items())]
    width = max(len(r[0]) for r in rows)
    lines = [f"user {body['user']}  group {body['group'] or '(none)'}  "
             f"priority {body.get('priority', 0)}"]
    lines += [f"note: {n}" for n in body.get("notes", [])]
    if body.get("reason"):
        lines.append(f"override reason: {body['reason']}")
    lines.append(f"{'KEY':<{width}}  {'VALUE':<10}  FROM")
    lines += [f"{k:<{width}}  {v:<10}  {src}" for k, v, src in rows]
    lines.append("null = unlimited; sizes in bytes as K/M/G/T (1024); keys ending _h in hours, "
                 "other durations with their unit (10m: minutes)")
    return "\n".join(lines)


def known(p: Paths, user: str) -> bool:
    """Whether ``user`` is named in the configuration or (on a real root) known to NSS."""
    if not p.is_simulated():
        from ds01d.adapters.nss import account

        if account(user) is not None:
            return True
    from ds01d import snapshot

    listed = snapshot.listed(p.top, p.under("etc/ds01"), user)
    if listed is not None:
        return listed
    from ds01d.cli.common import load
    from ds01d.config.effective import is_listed

    return is_listed(load(p), user)


def _whose(args: argparse.Namespace, p: Paths) -> str:
    """The user whose limits are shown: the caller's own, or (root, a simulated root) any."""
    from ds01d.names import is_user_name, printable

    if args.user is None:
        return caller(args, p)
    if not is_user_name(args.user):
        raise UsageError(f"{printable(args.user, 80)!r} is not a user name")
    if not admin(args, p) and args.user != caller(args, p):
        raise InvalidInput("you can see only your own limits (ds01 limits); an admin sees "
                           "anyone's")
    return str(args.user)


def run(args: argparse.Namespace) -> int:
    p = paths(args)
    user = _whose(args, p)
    body = effective_of(p, user, now(p))
    unknown = args.user is not None and not known(p, user)
    note = f"{user} is not a known user: these are the limits it would get"
    if args.json:
        import json
        import sys

        if unknown:
            print(f"ds01: {note}", file=sys.stderr)
        print(json.dumps(body, indent=2, sort_keys=True))
        return 0
    if unknown:
        print(note)
    print(as_table(body))
    return 0
