"""What ``ds01 gpus`` shows everyone (``var/lib/ds01/gpus.json``, world-readable): each GPU and
MIG instance, free or in use, the profiles this host offers and the queue per profile, as they
are once this pass is done. It names nobody: who holds what is for root, from the status
files.

Pure, and stable while nothing changes (no "now" in it), so ds01d rewrites the file only
when something did.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ds01d.core.actions import CreateContainer, RemoveContainer, StartContainer, StopContainer
from ds01d.core.devices import holding, untracked_devices
from ds01d.core.model import Desired, Device, Observed, devices_of
from ds01d.core.plan import Plan
from ds01d.core.wants import superseded
from ds01d.units import iso

VERSION = 1
WHOLE = "gpu"
"""The key of whole GPUs (MIG off) among the profiles."""
FREE, IN_USE, HELD, BUSY = "free", "in use", "held", "busy"
"""A device's state: nobody has it; a container has it; a stopped container keeps it for its
owner for a while (``gpu_hold_after_stop_h``); a process outside ds01's containers uses it."""


def profile_of(d: Device) -> str:
    return d.profile or WHOLE


def device_states(plan: Plan, observed: Observed, desired: Desired,
                  devices: tuple[Device, ...]) -> dict[str, tuple[str, str | None]]:
    """Device uuid -> (state, when it is free again, if known), after this pass's actions."""
    gone = frozenset(x.container_id for x in plan.actions
                     if isinstance(x, StopContainer | RemoveContainer))
    hold = holding(observed, devices, desired.effective,
                   releasing=gone | superseded(desired, observed))
    taken = {d for x in plan.actions if isinstance(x, CreateContainer | StartContainer)
             for d in (x.spec.devices if isinstance(x, CreateContainer) else x.devices)}
    stops = {d: s.stops_at for s in plan.statuses if s.phase == "Running" for d in s.devices}
    untracked = untracked_devices(observed)
    by_id = {c.id: c for c in observed.containers}
    out: dict[str, tuple[str, str | None]] = {}
    for d in devices:
        holder = hold.by_device.get(d.uuid)
        c = by_id.get(holder or "")
        end = stops.get(d.uuid)
        if d.uuid in untracked:
            out[d.uuid] = (BUSY, None)
        elif d.uuid in taken or (c is not None and c.active):
            out[d.uuid] = (IN_USE, None if end is None else iso(end))
        elif c is not None:
            out[d.uuid] = (HELD, _hold_ends(c.owner, c.finished_at, desired))
        else:
            out[d.uuid] = (FREE, None)
    return out


def _hold_ends(owner: str | None, finished: Any, desired: Desired) -> str | None:
    from datetime import timedelta

    eff = desired.effective.get(owner or "")
    hours = None if eff is None else eff.limits.gpu_hold_after_stop_h
    return None if hours is None or finished is None else iso(finished + timedelta(hours=hours))


def queued(plan: Plan, desired: Desired) -> dict[str, int]:
    """Profile (or ``gpu``) -> wants waiting in the queue for one."""
    if not any(s.queue_position for s in plan.statuses):
        return {}
    asked = {(w.user, w.name): w for w in desired.wants}
    out: dict[str, int] = {}
    for s in plan.statuses:
        w = asked.get((s.user, s.name))
        if s.phase == "Pending" and s.queue_position and w is not None and w.device_count:
            key = w.mig or WHOLE
            out[key] = out.get(key, 0) + 1
    return out


def summary(plan: Plan, observed: Observed, desired: Desired) -> dict[str, Any]:
    """The ``gpus.json`` body."""
    devices = devices_of(observed.gpus)
    states = device_states(plan, observed, desired, devices)
    per_gpu: dict[int, list[dict[str, Any]]] = {}
    for d in devices:
        per_gpu.setdefault(d.gpu_index, []).append(_device(d, states))
    gpus = [{"index": g.index, "model": g.model, "memory_mib": g.memory_mib,
             "mig": g.mig_enabled, "devices": per_gpu.get(g.index, [])} for g in observed.gpus]
    return {"version": VERSION, "gpus": gpus,
            "profiles": profiles(devices, states, queued(plan, desired), coming(plan)),
            "unreadable": sorted(k for k in observed.adapter_errors if k.startswith("nvml"))}


Shown = tuple[object, dict[str, Any]]
"""A ``gpus.json`` body with the plan of the wants it was made with (``Plan.kept.wants``)."""


def kept_summary(plan: Plan, observed: Observed, desired: Desired, last: Shown | None, *,
                 check: bool = False) -> Shown:
    """:func:`summary`, or the ``last`` one when this plan kept the very plan of the wants
    that one was made with: its basis holds all the body reads (the containers, devices,
    processes, holders, statuses, wants and limits), and a kept plan takes and frees no
    device. ``check``: made again, and must come out the same."""
    wants = plan.kept.wants if plan.kept is not None else None
    if last is not None and wants is not None and last[0] is wants:
        if check and summary(plan, observed, desired) != last[1]:
            raise AssertionError("kept gpus.json body differs from a fresh one")
        return last
    return wants, summary(plan, observed, desired)


def _device(d: Device, states: dict[str, tuple[str, str | None]]) -> dict[str, Any]:
    state, free_at = states[d.uuid]
    return {"uuid": d.uuid, "profile": d.profile, "gpu_instance_id": d.gpu_instance_id,
            "gpu_equivalents": round(d.gpu_equivalents, 4), "state": state, "free_at": free_at}


def coming(plan: Plan) -> dict[str, int]:
    """Profile (or ``gpu``) -> devices a MIG layout change under way will make."""
    out: dict[str, int] = {}
    for change in plan.mig.changes:
        if change.problem is not None:
            continue
        gpu = change.gpu
        staying: dict[str, int] = {}
        if not gpu.mig_enabled and gpu.uuid not in change.going:
            staying[""] = 1
        for i in gpu.instances:
            if i.uuid not in change.going:
                staying[i.profile] = staying.get(i.profile, 0) + 1
        for profile, n in change.future.items():
            if n > staying.get(profile, 0):
                key = profile or WHOLE
                out[key] = out.get(key, 0) + n - staying.get(profile, 0)
    return out


def profiles(devices: Iterable[Device], states: dict[str, tuple[str, str | None]],
             waiting: dict[str, int], made: dict[str, int] | None = None
             ) -> dict[str, dict[str, Any]]:
    """Profile -> how many this host has, how many are free, how many wants wait, and how
    many a MIG layout change under way makes (``coming``)."""
    from ds01d.units import mig_gpu_equivalents

    out: dict[str, dict[str, Any]] = {}

    def row(key: str, gpueq: float) -> dict[str, Any]:
        return out.setdefault(key, {"total": 0, "free": 0, "queued": 0, "coming": 0,
                                    "gpu_equivalents": round(gpueq, 4)})

    for d in devices:
        r = row(profile_of(d), d.gpu_equivalents)
        r["total"] += 1
        r["free"] += states[d.uuid][0] == FREE
    for key, n in (made or {}).items():
        row(key, 1.0 if key == WHOLE else mig_gpu_equivalents(key))["coming"] = n
    for key, n in waiting.items():
        if key in out:
            out[key]["queued"] = n
    return dict(sorted(out.items()))
