"""``ds01 gpus``: what this host has, what is free, how long the queue is, and your room.

Read from ``var/lib/ds01/gpus.json`` (ds01d writes it every pass that changes it; everyone
may read it, and it names nobody). Root also sees who holds each device, from the status
files. Standard library only, imported lazily: a command users type (start-up is measured).
"""

from __future__ import annotations

from ds01d.cli.common import admin, caller, now, paths
from ds01d.errors import InvalidInput
from ds01d.paths import Paths

TYPE_CHECKING = False  # see cli/common.py
if TYPE_CHECKING:
    import argparse
    from typing import Any

GPUS = "var/lib/ds01/gpus.json"
WHOLE = "gpu"


def read_gpus(p: Paths) -> dict[str, Any] | None:
    """What ds01d last wrote about the host's devices; ``None`` when there is nothing yet."""
    from ds01d.jsonfast import loads
    from ds01d.statusfiles import read_small

    raw = read_small(p.under(GPUS), 4 << 20)
    try:
        body = loads(raw) if raw is not None else None
    except ValueError:
        return None
    return body if isinstance(body, dict) and isinstance(body.get("profiles"), dict) else None


def host_offer(p: Paths) -> tuple[list[str], int] | None:
    """The MIG profiles this host has or a layout change under way makes, and its count of
    whole GPUs (``None``: unknown, or ``mig-layout.yaml`` changed since ds01d last said)."""
    from ds01d.snapshot import layout_stamp

    body = read_gpus(p)
    if body is None or body.get("unreadable") or \
            body.get("layout") != layout_stamp(p.under("etc/ds01")):
        return None  # unknown, or the MIG layout changed since: ds01d judges
    profiles = body["profiles"]
    whole = profiles.get(WHOLE, {})
    return (sorted(k for k, row in profiles.items() if k != WHOLE
                   and (row.get("total") or row.get("coming"))),
            int(whole.get("total", 0)) + int(whole.get("coming", 0)))


def holders(p: Paths) -> dict[str, str]:
    """Device uuid -> ``user/container`` from every status file (root reads them all)."""
    from ds01d.statusfiles import read_statuses

    out = {}
    for s in read_statuses(p.under("var/lib/ds01/status")):
        if s.get("phase") == "Running":
            for d in s.get("devices") or []:
                out[str(d)] = f"{s.get('user')}/{s.get('name')}"
    return out


def room(p: Paths, user: str, body: dict[str, Any]) -> dict[str, Any]:
    """``user``'s limits against what they hold now: how much more they may ask for, which of
    this host's profiles fit, and how many containers they may still want."""
    from ds01d.cli.limits import effective_of
    from ds01d.config.values import quota_caps
    from ds01d.statusfiles import read_statuses

    eff = effective_of(p, user, now(p))
    limits = eff["limits"]
    mine = read_statuses(p.under("var/lib/ds01/status"), user)
    running = [s for s in mine if s.get("phase") == "Running"]
    used = sum(float(s.get("gpu_equivalents") or 0) for s in running)
    caps = quota_caps(limits["max_gpu_equivalents"], eff["aggregate"].get("gpu_limit"))
    quota = min((cap for _, cap in caps), default=None)  # the queue's and ds01 want's caps
    left = None if quota is None else max(0.0, quota - used)
    fits = []
    for name, row in body["profiles"].items():
        whole = name == WHOLE
        if whole and not limits["allow_full_gpu"]:
            continue
        if left is None or row["gpu_equivalents"] <= left + 1e-9:
            fits.append(name)
    wanted = [s for s in mine if s.get("phase") != "Failed"]
    return {"user": user, "gpu_equivalents_in_use": round(used, 4),
            "max_gpu_equivalents": limits["max_gpu_equivalents"], "gpu_equivalents_cap": quota,
            "room": None if left is None else round(left, 4), "fits": fits,
            "holding": sorted(str(s.get("name")) for s in running if s.get("devices")),
            "containers": len(wanted), "max_containers_per_user":
                limits["max_containers_per_user"], "allow_full_gpu": limits["allow_full_gpu"]}


def _when(iso: object) -> str:
    return "-" if not iso else str(iso).replace("T", " ")[:16] + " UTC"


def _state(d: dict[str, Any], owners: dict[str, str] | None) -> str:
    state = str(d.get("state"))
    if owners is not None and d.get("uuid") in owners:
        return f"{state}: {owners[d['uuid']]}"
    if state == "busy":
        return "busy: a process outside ds01 containers"
    if state == "held":
        return "held for its owner after a stop"
    return state


def table(body: dict[str, Any], owners: dict[str, str] | None) -> str:
    from ds01d.names import printable
    from ds01d.units import quantity

    rows: list[tuple[str, ...]] = [("GPU", "DEVICE", "PROFILE", "GPUEQ", "STATE", "FREE BY")]
    for g in body.get("gpus") or []:
        for d in g.get("devices") or []:
            profile = d.get("profile") or "whole GPU"
            rows.append((str(g.get("index")), str(d.get("uuid"))[:20], str(profile),
                         f"{float(d.get('gpu_equivalents') or 0):.2f}", _state(d, owners),
                         _when(d.get("free_at"))))
    cells = [c for r in rows for c in r]
    if max(map(len, cells)) > 120 or not "".join(cells).isprintable():
        rows = [tuple(printable(c, 120) for c in r) for r in rows]  # rare: only then, cell by cell
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if body.get("unreadable"):
        lines.append("(ds01d cannot read the GPUs right now: this is what it saw last)")
    lines.append("")
    lines.append("profiles on this host (free of total, wants queued):")
    for name, row in body["profiles"].items():
        shown = "whole GPU" if name == WHOLE else name
        soon = f", {row['coming']} coming (a MIG layout change)" if row.get("coming") else ""
        lines.append(f"  {shown:<10} {row['free']} of {row['total']} free, {row['queued']} "
                     f"queued{soon} ({quantity(row['gpu_equivalents'], 'GPU-equivalent')} each)")
    lines.append("FREE BY: when an in-use device is freed at the latest (its holder's idle or "
                 "runtime stop, if it stays idle), or a held one is released")
    return "\n".join(lines)


def room_lines(r: dict[str, Any], body: dict[str, Any]) -> list[str]:
    from ds01d.units import quantity

    quota = r["gpu_equivalents_cap"]
    held = f" ({', '.join(r['holding'])})" if r["holding"] else ""
    cap = "unlimited GPU-equivalents" if quota is None else quantity(quota, "GPU-equivalent")
    lines = [f"you ({r['user']}): {r['gpu_equivalents_in_use']:g} of {cap} in use{held}"]
    cap = r["max_containers_per_user"]
    lines.append(f"  containers wanted: {r['containers']} of {'no limit' if cap is None else cap}")
    fits = [f for f in r["fits"] if f in body["profiles"]]
    if fits:
        free = [f for f in fits if body["profiles"][f]["free"]]
        ask = free[0] if free else fits[0]
        flag = "--gpus 1" if ask == WHOLE else f"--mig {ask}"
        names = ", ".join("whole GPU" if f == WHOLE else f for f in fits)
        lines.append(f"  you may ask for one of: {names}")
        lines.append(f"  e.g. ds01 want container NAME {flag}"
                     + ("" if free else "  (none free now: it would queue)"))
    else:
        lines.append("  nothing more fits your quota now: drop a container first "
                     "(ds01 drop container NAME)")
    if not r["allow_full_gpu"] and WHOLE in body["profiles"]:
        lines.append("  whole GPUs are not for your group (allow_full_gpu): ask for a MIG "
                     "instance")
    return lines


def run_gpus(args: argparse.Namespace) -> int:
    p = paths(args)
    body = read_gpus(p)
    if body is None:
        raise InvalidInput(f"nothing to show yet: ds01d writes {p.under(GPUS)} on its next pass "
                           "(is ds01d running?)")
    everyone = admin(args, p)
    owners = holders(p) if everyone else None
    mine = None if everyone else room(p, caller(args, p), body)
    if args.json:
        import json

        out = dict(body)
        if owners is not None:
            out["holders"] = owners
        if mine is not None:
            out["you"] = mine
        print(json.dumps(out, indent=2))
        return 0
    print(table(body, owners))
    if mine is not None:
        print()
        print("\n".join(room_lines(mine, body)))
    return 0
