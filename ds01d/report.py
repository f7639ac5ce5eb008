"""Usage reports from the event log (``ds01 report``): pure, from events to figures.

- GPU-hours: device-hours held (a whole GPU or a MIG instance held for an hour is 1).
- gpueq-hours: GPU-equivalent-hours (a 3g.20gb instance held for an hour is 3/7).
- idle GPU-hours reclaimed: for each idle stop, the device-hours the container had sat idle
  before ds01 stopped it (what a lab gets back by reclaiming).
- untracked GPU-hours: device-hours of GPU processes nobody was allocated, by their user.
- queue waits: from a want being asked for to its container being created.
Intervals still open at the end of the window count up to it; everything is clipped to it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from ds01d.units import iso, parse_when

FIGURES = ("gpu_hours", "gpueq_hours", "idle_reclaimed_gpu_hours", "untracked_gpu_hours")


def _t(ev: Mapping[str, Any]) -> float:
    return parse_when(str(ev["timestamp"])).timestamp()


def _overlap(start: float, end: float, lo: float, hi: float) -> float:
    return max(0.0, min(end, hi) - max(start, lo))


def _held(events: list[dict[str, Any]], until: float
          ) -> Iterable[tuple[str, float, float, int, float]]:
    """(user, start, end, devices, gpueq) for every allocation, open ones ending at ``until``."""
    open_: dict[tuple[str, str], tuple[float, int, float]] = {}
    for ev in events:
        d = ev.get("details") or {}
        key = (str(ev.get("user")), str(d.get("container")))
        if ev["event_type"] == "gpu.allocate":
            open_[key] = (_t(ev), len(d.get("devices") or []), float(d.get("gpu_equivalents", 0)))
        elif ev["event_type"] == "gpu.release" and key in open_:
            start, n, eq = open_.pop(key)
            yield key[0], start, _t(ev), n, eq
    for (user, _), (start, n, eq) in open_.items():
        yield user, start, until, n, eq


def _untracked(events: list[dict[str, Any]], until: float) -> Iterable[tuple[str, float, float]]:
    open_: dict[tuple[object, object], tuple[str, float]] = {}
    for ev in events:
        d = ev.get("details") or {}
        key = (d.get("pid"), d.get("device"))
        if ev["event_type"] == "gpu.untracked":
            open_[key] = (str(ev.get("user")), _t(ev))
        elif ev["event_type"] == "gpu.untracked_end" and key in open_:
            user, start = open_.pop(key)
            yield user, start, _t(ev)
    for user, start in open_.values():
        yield user, start, until


def report(events: list[dict[str, Any]], *, since: datetime, until: datetime,
           group_of: Callable[[str], str | None]) -> dict[str, Any]:
    """The ``ds01 report --json`` shape (see docs/operations.md)."""
    lo, hi = since.timestamp(), until.timestamp()
    events = sorted((e for e in events if _t(e) <= hi), key=_t)
    users: dict[str, dict[str, float]] = {}

    def add(user: str, figure: str, hours: float) -> None:
        users.setdefault(user, dict.fromkeys(FIGURES, 0.0))[figure] += hours

    for user, start, end, n, eq in _held(events, hi):
        span = _overlap(start, end, lo, hi) / 3600
        add(user, "gpu_hours", span * n)
        add(user, "gpueq_hours", span * eq)
    for user, start, end in _untracked(events, hi):
        add(user, "untracked_gpu_hours", _overlap(start, end, lo, hi) / 3600)
    for ev in events:
        d = ev.get("details") or {}
        if ev["event_type"] == "lifecycle.idle_stop" and lo <= _t(ev) and d.get("idle_for_s"):
            add(str(ev.get("user")), "idle_reclaimed_gpu_hours",
                float(d["idle_for_s"]) * len(d.get("devices") or []) / 3600)
    waits = sorted(float(e["details"]["waited_s"]) for e in events
                   if e["event_type"] == "container.create" and lo <= _t(e)
                   and (e.get("details") or {}).get("waited_s") is not None)
    return _shape(users, waits, since, until, group_of)


def _shape(users: dict[str, dict[str, float]], waits: list[float], since: datetime,
           until: datetime, group_of: Callable[[str], str | None]) -> dict[str, Any]:
    groups: dict[str, dict[str, float]] = {}
    out_users = {}
    for user, figures in sorted(users.items()):
        group = group_of(user) or "(none)"
        out_users[user] = {"group": group, **{k: round(v, 4) for k, v in figures.items()}}
        total = groups.setdefault(group, dict.fromkeys(FIGURES, 0.0))
        for k, v in figures.items():
            total[k] += v
    p95 = waits[min(len(waits) - 1, round(0.95 * (len(waits) - 1)))] if waits else None
    return {"since": iso(since), "until": iso(until),
            "users": out_users,
            "groups": {g: {k: round(v, 4) for k, v in f.items()}
                       for g, f in sorted(groups.items())},
            "queue_wait_seconds": {"median": statistics.median(waits) if waits else None,
                                   "p95": p95}}


def markdown(body: Mapping[str, Any]) -> str:
    """A short summary for people (the daily report's .md)."""
    lines = [f"# ds01 usage {body['since']} .. {body['until']}", "",
             "| group | GPU-hours | gpueq-hours | idle reclaimed | untracked |",
             "|---|---|---|---|---|"]
    for g, f in body["groups"].items():
        lines.append(f"| {g} | {f['gpu_hours']:.2f} | {f['gpueq_hours']:.2f} | "
                     f"{f['idle_reclaimed_gpu_hours']:.2f} | {f['untracked_gpu_hours']:.2f} |")
    lines += ["", "| user | group | GPU-hours | gpueq-hours | idle reclaimed | untracked |",
              "|---|---|---|---|---|---|"]
    for u, f in body["users"].items():
        lines.append(f"| {u} | {f['group']} | {f['gpu_hours']:.2f} | {f['gpueq_hours']:.2f} | "
                     f"{f['idle_reclaimed_gpu_hours']:.2f} | {f['untracked_gpu_hours']:.2f} |")
    q = body["queue_wait_seconds"]
    if q["median"] is not None:
        lines += ["", f"Queue waits: median {q['median']:.0f} s, p95 {q['p95']:.0f} s."]
    return "\n".join(lines) + "\n"


def svg(body: Mapping[str, Any]) -> str:
    """A bar chart of GPU-hours by group."""
    groups = list(body["groups"].items())
    top = max((f["gpu_hours"] for _, f in groups), default=0.0) or 1.0
    bars = []
    for i, (g, f) in enumerate(groups):
        w = 300 * f["gpu_hours"] / top
        y = 30 + 28 * i
        bars.append(f'<text x="5" y="{y + 14}" font-size="12">{g}</text>'
                    f'<rect x="110" y="{y}" width="{w:.1f}" height="20" fill="#4878a8"/>'
                    f'<text x="{115 + w:.1f}" y="{y + 14}" font-size="12">'
                    f'{f["gpu_hours"]:.1f} h</text>')
    height = 40 + 28 * len(groups)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="480" height="{height}">'
            f'<text x="5" y="18" font-size="14">GPU-hours by group, {body["since"][:10]} to '
            f'{body["until"][:10]}</text>{"".join(bars)}</svg>\n')
