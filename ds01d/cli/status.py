"""``ds01 status``, ``ds01 events`` and ``ds01 plan``: read what ds01d wrote or would do."""

from __future__ import annotations

import os

from ds01d.cli.common import admin, caller, now, paths
from ds01d.errors import InvalidInput
from ds01d.paths import STATE_FILE, Paths

TYPE_CHECKING = False  # see cli/common.py
if TYPE_CHECKING:
    import argparse
    from datetime import datetime
    from typing import Any


def _when(iso: str | None) -> str:
    """``2026-01-05T09:00:00Z`` -> ``2026-01-05 09:00 UTC``."""
    if not iso:
        return "-"
    return iso.replace("T", " ")[:16] + " UTC"


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


def _reason(r: dict[str, Any], now: datetime, again: str | None) -> str:
    """What a row's REASON says: why, for how long idle, when it stops, how to go on."""
    reason = str(r.get("reason") or "")
    idle = _idle_h(r["idle_since"], now) if r.get("idle_since") else None
    if idle is not None:
        reason += f" (idle {idle:.1f}h)"
    elif r.get("busy"):
        reason += f" (busy: {r['busy']})"
    if r.get("stops_at"):
        verb = "removed" if r.get("phase") == "Stopped" else "stops"
        reason += f"; {verb} at {_when(r['stops_at'])}"
    if r.get("phase") == "Stopped":
        command = again or f"ds01 want container {r.get('name')} with the same options"
        reason += f"; start it again: {command}"
    return reason


def _table(rows: list[dict[str, Any]], now: datetime,
           again: dict[str, str] | None = None) -> str:
    from ds01d.names import printable

    head = ("USER", "NAME", "PHASE", "DEVICES", "GPUEQ", "QUEUE", "SINCE", "REASON")
    lines: list[tuple[str, ...]] = [head]
    for r in rows:
        devices = ",".join(d[:12] for d in r.get("devices") or []) or "-"
        queue = str(r["queue_position"]) if r.get("queue_position") else "-"
        lines.append((str(r.get("user")), str(r.get("name")), str(r.get("phase")), devices,
                      f"{r.get('gpu_equivalents', 0):.2f}", queue, _when(r.get("since")),
                      _reason(r, now, (again or {}).get(str(r.get("name"))))))
    lines = [tuple(printable(c, 400) for c in row) for row in lines]
    widths = [max(len(row[i]) for row in lines) for i in range(len(head) - 1)]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  "
                      + row[-1] for row in lines)
    return table + "\nSINCE: when it entered its phase. Times are UTC."


def _want_folder(p: Paths, user: str) -> int | None:
    """The caller's own want folder, opened without following a link (``None``: none)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(p.under("var/lib/ds01/wants", user), flags)
    except OSError:
        return None


def unread(p: Paths, user: str, rows: list[dict[str, Any]], name: str | None
           ) -> list[dict[str, Any]]:
    """Wants of the caller that ds01d has not answered yet: Pending, waiting for ds01d."""
    fd = _want_folder(p, user)
    if fd is None:
        return []
    try:
        files = sorted(n for n in os.listdir(fd)[:1024] if n.endswith(".yaml")
                       and not n.startswith("."))
        seen = {str(r.get("name")) for r in rows}
        wants = [f.removesuffix(".yaml") for f in files]
        wants = [w for w in wants if w not in seen and (name is None or w == name)]
        reason = f"waiting for ds01d to read it {_liveness(p)}" if wants else ""
        out = []
        for want in wants:
            asked = want_values(p, user, want).get("requested_at")
            out.append({"user": user, "name": want, "phase": "Pending", "reason": reason,
                        "devices": [], "gpu_equivalents": 0.0, "queue_position": None,
                        "since": asked if isinstance(asked, str) else None, "idle_since": None,
                        "stops_at": None, "container": None, "spec": None})
        return out
    finally:
        os.close(fd)


QUIET_S = 300
"""ds01d marks its carried state at least once a resync period (10 s by default): a mark older
than this says it is not passing."""


def _liveness(p: Paths) -> str:
    """Whether ds01d seems to run, from when it last marked its carried state (its time is
    real time, also on a simulated root; anyone may stat the file, not read it)."""
    import time

    try:
        age = time.time() - os.stat(p.under("var/lib/ds01", STATE_FILE)).st_mtime
    except FileNotFoundError:
        return "(ds01d has not run here yet: is it started? systemctl status ds01d)"
    except OSError:
        age = 0.0  # cannot tell: say nothing worse
    if age <= QUIET_S:
        return "(within seconds while ds01d runs)"
    return (f"(ds01d has not passed for {age / 60:.0f} min: is it running? systemctl status "
            "ds01d)")


_AGAIN_FLAGS = (("image", "--image"), ("gpus", "--gpus"), ("mig", "--mig"), ("cpus", "--cpus"),
                ("memory", "--memory"), ("shm", "--shm"))


def want_values(p: Paths, user: str, name: str) -> dict[str, object]:
    """The values of the caller's want file as ``ds01 want`` writes it (one ``key: JSON
    value`` a line); lines in any other form are left out."""
    from ds01d import jsonfast as json
    from ds01d.statusfiles import read_small

    raw = read_small(p.under("var/lib/ds01/wants", user, f"{name}.yaml"), 64 << 10)
    values: dict[str, object] = {}
    for line in (raw or b"").decode("utf-8", errors="replace").splitlines():
        key, sep, value = line.partition(": ")
        if sep and not key.startswith("#"):
            try:
                values[key] = json.loads(value)
            except ValueError:
                continue
    return values


def again_command(p: Paths, user: str, name: str) -> str | None:
    """``ds01 want container NAME ...`` with the options of the caller's want file; ``None``
    when it cannot say."""
    values = want_values(p, user, name)
    if values.get("name") != name or "container" in values:
        return None  # not as ds01 want writes it, or settings a command line cannot repeat
    words = [f"ds01 want container {name}"]
    words += [f"{flag} {values[key]}" for key, flag in _AGAIN_FLAGS if key in values]
    return " ".join(words)


def notices(p: Paths, user: str, when: datetime, hours: float = 24, most: int = 5) -> list[str]:
    """The notices ds01d gave ``user`` in the last ``hours``, newest last."""
    from ds01d.dt import timedelta
    from ds01d.statusfiles import recent_notices
    from ds01d.units import iso

    found = recent_notices(p.under("var/lib/ds01/status"), user,
                           iso(when - timedelta(hours=hours)))
    return [f"  {_when(str(e.get('timestamp')))}  {e['details'].get('message')}"
            for e in found[-most:]]


def _get_in(rows: list[dict[str, Any]]) -> str:
    """How to get into a running container (shown under the table)."""
    from ds01d.names import printable

    running = [printable(str(r.get("name")), 63) for r in rows if r.get("phase") == "Running"]
    name = running[0] if running else "NAME"
    return (f"get in: ds01 shell {name}  |  docker exec -it {name} bash  |  VS Code: Dev "
            "Containers: Attach to Running Container (docs/users.md)")


def run_status(args: argparse.Namespace) -> int:
    p = paths(args)
    if args.all and not admin(args, p):
        raise InvalidInput("--all is for root (or a simulated root)")
    user = None if args.all else caller(args, p)
    rows = status_rows(p, user, args.name)
    if user is not None:
        rows += unread(p, user, rows, args.name)
    if args.name and not rows:
        raise InvalidInput(f"you have no wanted container named {args.name!r} (ds01 status "
                           "lists yours)")
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    when = now(p)
    if rows:
        again = {} if user is None else {
            str(r["name"]): a for r in rows if r.get("phase") == "Stopped"
            and (a := again_command(p, user, str(r["name"]))) is not None}
        print(_table(rows, when, again))
        print(_get_in(rows))
    else:
        print("no wanted containers: ds01 gpus shows what you can ask for, and ds01 want "
              "container NAME asks for one")
    told = [] if user is None else notices(p, user, when)
    if told:
        from ds01d.names import printable

        print("\nyour notices in the last 24 hours:")
        print("\n".join(printable(line, 600) for line in told))
    return 0


def run_events(args: argparse.Namespace) -> int:
    from ds01d.dt import timedelta
    from ds01d.names import printable
    from ds01d.units import iso, parse_duration_s

    p = paths(args)
    me = caller(args, p)
    everyone = admin(args, p)
    if args.user and args.user != me and not everyone:
        raise InvalidInput("you can see only your own events")
    want_user = args.user or (None if everyone else me)
    evs = _events(p, want_user, everyone=everyone)
    if args.since:
        try:
            cut = iso(now(p) - timedelta(seconds=parse_duration_s(args.since)))
        except ValueError as err:
            raise InvalidInput(f"--since: {err}") from None
        evs = [e for e in evs if str(e.get("timestamp", "")) >= cut]
    for e in evs:
        if args.json:
            import json

            print(json.dumps(e, sort_keys=True))
        else:
            raw = e.get("details")
            details = " ".join(f"{k}={_plain(v)}" for k, v in sorted(raw.items())
                               if v is not None) if isinstance(raw, dict) else ""
            print(printable(f"{e.get('timestamp')}  {e.get('event_type'):<26} "
                            f"{e.get('user') or '-':<10} {details}", 2000))
    return 0


def _plain(value: object) -> str:
    """An event detail as people read it: yes/no, ``{key=value, ...}`` (unset keys left
    out), lists joined with commas, ``none`` for an empty one."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        inner = ", ".join(f"{k}={_plain(v)}" for k, v in sorted(value.items()) if v is not None)
        return f"{{{inner}}}" if inner else "none"
    if isinstance(value, list | tuple):
        return ",".join(_plain(v) for v in value) or "none"
    return str(value)


def _events(p: Paths, user: str | None, *, everyone: bool) -> list[dict[str, Any]]:
    """Root reads the event log; a user (or ``--as`` one) reads the copy ds01d keeps in their
    own folder."""
    if everyone:
        from ds01d.runtime.events import EventLog

        evs = EventLog(p.events).read()
        return evs if user is None else [e for e in evs if e.get("user") == user]
    from ds01d.statusfiles import read_user_events

    return read_user_events(p.under("var/lib/ds01/status"), str(user))


def run_plan(args: argparse.Namespace) -> int:
    """What the next pass of ds01d would do, on a simulated root or (for root) the real host:
    the same observation and planning as ds01d, through the real adapters, writing nothing."""
    from ds01d.core.plan import Plan
    from ds01d.daemon import Daemon
    from ds01d.runtime.executor import safe_actions

    p = paths(args)
    simulated = p.is_simulated()
    if not simulated and os.geteuid() != 0:
        raise InvalidInput("ds01 plan reads every user's wants and the machine: run it as root "
                           "(sudo ds01 plan)")
    d = Daemon(p, simulate=simulated, read_only=True)
    with d.machine() as (adapters, when, host):
        result = d.plan_once(adapters, when, host)
    if result.plan is None:
        raise InvalidInput("the configuration is invalid: see ds01 check-config")
    plan: Plan = result.plan
    down = result.observed.adapter_errors
    shown = safe_actions(plan, down)
    waits = _mig_waits(plan)
    if args.json:
        import json

        print(json.dumps([{"action": type(a).__name__, "key": a.key, "detail": _detail(a)}
                          for a in shown]
                         + [{"action": "MigLayout", "key": k, "waits": w} for k, w in waits],
                         indent=2))
        return 0
    for name, why in sorted(down.items()):
        print(f"could not read {name}: {why}; what depends on it is left out, as ds01d would")
    if not shown and not waits:
        print("nothing to do: the machine matches the desired state" if not down
              else "nothing ds01d could do with what it can read")
    for a in shown:
        detail = _detail(a)
        print(f"{type(a).__name__:<20} {a.key}" + (f"  ({detail})" if detail else ""))
    for key, why in waits:
        print(f"{'MigLayout':<20} {key} waits: {why} (ds01 mig plan)")
    waiting = {k for k, _ in waits}
    for line in _mig_drift(plan, skip=waiting):
        print(line)
    return 0


def _detail(a: Any) -> str:
    """A few words on an action: devices, reason, message."""
    from ds01d.core import actions as x

    if isinstance(a, x.CreateContainer):
        return f"devices {','.join(a.spec.devices) or 'none'}"
    if isinstance(a, x.StopContainer | x.RemoveContainer):
        return str(a.reason)
    if isinstance(a, x.Warn | x.Alert | x.MigEvent):
        return str(a.message)
    if isinstance(a, x.FlagUntracked):
        return f"pid {a.pid} of {a.user or 'unknown'} on GPU {a.gpu_index}"
    return ""


def _mig_waits(plan: Any) -> list[tuple[str, str]]:
    """GPUs whose MIG layout differs but gets no step this pass, and why."""
    out = []
    for c in plan.mig.changes:
        if c.problem is not None:
            out.append((f"mig/{c.gpu.index}", c.problem))
        elif plan.mig.blocked(c):
            out.append((f"mig/{c.gpu.index}", "its instances that go are in use"))
    return out


def _mig_drift(plan: Any, *, skip: set[str]) -> list[str]:
    """GPUs whose MIG layout differs from mig-layout.yaml: what is there, what is wanted
    (those in ``skip`` are said already: they wait)."""
    from ds01d.cli.mig import have
    from ds01d.core.mig import describe

    out = []
    for c in plan.mig.changes:
        if f"mig/{c.gpu.index}" in skip:
            continue
        out.append(f"MIG layout drift: GPU {c.gpu.index} has {have(c)}; mig-layout.yaml "
                   f"wants {describe(c.layout)}")
    return out
