"""``ds01 status``, ``ds01 events`` and ``ds01 plan``: read what ds01d wrote or would do."""

from __future__ import annotations

import os

from ds01d.cli.common import caller, now, paths
from ds01d.errors import InvalidInput
from ds01d.paths import Paths

TYPE_CHECKING = False  # see cli/common.py
if TYPE_CHECKING:
    import argparse
    from datetime import datetime
    from typing import Any


def _may_see_all(p: Paths) -> bool:
    return os.geteuid() == 0 or p.is_simulated()


def _when(iso: str | None) -> str:
    """``2026-01-05T09:00:00Z`` -> ``2026-01-05 09:00:00`` (UTC)."""
    if not iso:
        return "-"
    return iso.replace("T", " ").rstrip("Z")


def status_rows(p: Paths, user: str | None, name: str | None) -> list[dict[str, Any]]:
    from ds01d.statusfiles import read_statuses

    rows = read_statuses(p.under("var/lib/ds01/status"), user)
    return [r for r in rows if name is None or r.get("name") == name]


def _idle_h(idle_since: object, now: datetime) -> float | None:
    from ds01d.units import parse_when

    try:
        return (now - parse_when(str(idle_since))).total_seconds() / 3600
    except ValueError:
        return None


def _table(rows: list[dict[str, Any]], now: datetime) -> str:
    from ds01d.names import printable

    head = ("USER", "NAME", "PHASE", "DEVICES", "GPUEQ", "QUEUE", "SINCE", "REASON")
    lines: list[tuple[str, ...]] = [head]
    for r in rows:
        devices = ",".join(d[:12] for d in r.get("devices") or []) or "-"
        queue = str(r["queue_position"]) if r.get("queue_position") else "-"
        reason = str(r.get("reason") or "")
        idle = _idle_h(r["idle_since"], now) if r.get("idle_since") else None
        if idle is not None:
            reason += f" (idle {idle:.1f}h)"
        elif r.get("busy"):
            reason += f" (busy: {r['busy']})"
        if r.get("stops_at"):
            verb = "removed" if r.get("phase") == "Stopped" else "stops"
            reason += f"; {verb} at {_when(r['stops_at'])}"
        lines.append((str(r.get("user")), str(r.get("name")), str(r.get("phase")), devices,
                      f"{r.get('gpu_equivalents', 0):.2f}", queue, _when(r.get("since")),
                      reason))
    lines = [tuple(printable(c, 300) for c in row) for row in lines]
    widths = [max(len(row[i]) for row in lines) for i in range(len(head) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  "
                     + row[-1] for row in lines)


def _get_in(rows: list[dict[str, Any]]) -> str:
    """How to get into a running container (shown under the table)."""
    from ds01d.names import printable

    running = [printable(str(r.get("name")), 63) for r in rows if r.get("phase") == "Running"]
    name = running[0] if running else "NAME"
    return (f"get in: ds01 shell {name}  |  docker exec -it {name} bash  |  VS Code: Dev "
            "Containers: Attach to Running Container (docs/users.md)")


def run_status(args: argparse.Namespace) -> int:
    p = paths(args)
    if args.all and not _may_see_all(p):
        raise InvalidInput("--all is for root (or a simulated root)")
    user = None if args.all else caller(args, p)
    rows = status_rows(p, user, args.name)
    if args.name and not rows:
        raise InvalidInput(f"no status for {args.name!r} yet: ds01d writes it on its next pass "
                           "(is ds01d running?)")
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
    elif rows:
        print(_table(rows, now(p)))
        print(_get_in(rows))
    else:
        print("no wanted containers (ds01 want container NAME ...)")
    return 0


def run_events(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from ds01d.names import printable
    from ds01d.units import iso, parse_duration_s, parse_when

    p = paths(args)
    me = caller(args, p)
    if args.user and args.user != me and not _may_see_all(p):
        raise InvalidInput("you can see only your own events")
    want_user = args.user or (None if _may_see_all(p) else me)
    evs = _events(p, want_user)
    if args.since:
        last = max((str(e.get("timestamp", "")) for e in evs), default="")
        if last:
            try:
                cut = iso(parse_when(last) - timedelta(seconds=parse_duration_s(args.since)))
            except ValueError as err:
                raise InvalidInput(f"--since: {err}") from None
            evs = [e for e in evs if str(e.get("timestamp", "")) >= cut]
    for e in evs:
        if args.json:
            import json

            print(json.dumps(e, sort_keys=True))
        else:
            raw = e.get("details")
            details = " ".join(f"{k}={v}" for k, v in sorted(raw.items())) \
                if isinstance(raw, dict) else ""
            print(printable(f"{e.get('timestamp')}  {e.get('event_type'):<26} "
                            f"{e.get('user') or '-':<10} {details}", 2000))
    return 0


def _events(p: Paths, user: str | None) -> list[dict[str, Any]]:
    """Root reads the event log; a user reads the copy ds01d keeps in their own folder."""
    if _may_see_all(p):
        from ds01d.runtime.events import EventLog

        evs = EventLog(p.events).read()
        return evs if user is None else [e for e in evs if e.get("user") == user]
    from ds01d.statusfiles import read_user_events

    return read_user_events(p.under("var/lib/ds01/status"), str(user))


def run_plan(args: argparse.Namespace) -> int:
    from ds01d.core.plan import Plan
    from ds01d.daemon import Daemon

    p = paths(args)
    if not p.is_simulated():
        raise InvalidInput("ds01 plan works on a simulated root in this version "
                           "(ds01 --root DIR sim init)")
    d = Daemon(p, simulate=True)
    with d.machine() as (adapters, now, host):
        result = d.plan_once(adapters, now, host)
    if result.plan is None:
        raise InvalidInput("the configuration is invalid: see ds01 check-config")
    plan: Plan = result.plan
    waits = _mig_waits(plan)
    if args.json:
        import json

        print(json.dumps([{"action": type(a).__name__, "key": a.key} for a in plan.actions]
                         + [{"action": "MigLayout", "key": k, "waits": w} for k, w in waits],
                         indent=2))
    elif not plan.actions and not waits:
        print("nothing to do: the machine matches the desired state")
    else:
        for a in plan.actions:
            print(f"{type(a).__name__:<20} {a.key}")
        for key, why in waits:
            print(f"{'MigLayout':<20} {key} waits: {why} (ds01 mig plan)")
    return 0


def _mig_waits(plan: Any) -> list[tuple[str, str]]:
    """GPUs whose MIG layout differs but gets no step this pass, and why."""
    out = []
    for c in plan.mig.changes:
        if c.problem is not None:
            out.append((f"mig/{c.gpu.index}", c.problem))
        elif plan.mig.blocked(c):
            out.append((f"mig/{c.gpu.index}", "its instances that go are in use"))
    return out

