"""When did each container go idle? The daemon's only memory, rebuilt empty after a restart
(which can only delay a stop, never cause one).

A sample is *active* when any of: CPU at or above the owner's ``cpu_idle_threshold``; a whole
GPU it holds at or above ``gpu_idle_threshold`` utilisation; a compute process on one of its
MIG instances (NVML reports no utilisation for MIG instances, so a process using instance
memory is the GPU signal there).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ds01d.config.model import Effective, IdlePolicy
from ds01d.core.model import Container, Observed

DEFAULT_POLICY = IdlePolicy(gpu_idle_threshold=5, cpu_idle_threshold=2,
                            network_idle_threshold=1024, idle_detection_window=10)


def is_active(c: Container, policy: IdlePolicy, *, util: Mapping[str, float | None],
              mig_busy: frozenset[str]) -> bool:
    """``util``: whole GPU -> utilisation; ``mig_busy``: MIG instances with a process."""
    if c.cpu_percent >= policy.cpu_idle_threshold:
        return True
    if any((util.get(d) or 0.0) >= policy.gpu_idle_threshold for d in c.devices if d in util):
        return True
    return any(d in mig_busy for d in c.devices)


def track_idle(previous: Mapping[str, datetime], observed: Observed,
               effective: Mapping[str, Effective], now: datetime) -> dict[str, datetime]:
    """Container id -> idle since, for running containers idle at this sample."""
    out: dict[str, datetime] = {}
    util = {g.uuid: g.utilization for g in observed.gpus if not g.mig_enabled}
    mig = {i.uuid for g in observed.gpus for i in g.instances}
    mig_busy = frozenset(p.device_uuid for p in observed.processes
                         if p.device_uuid in mig and p.used_memory_mib > 0)
    for c in observed.containers:
        if c.state == "restarting" and c.id in previous:
            out[c.id] = previous[c.id]  # Docker restarting it: as idle as it was
            continue
        if c.state != "running":
            continue
        eff = effective.get(c.owner or "")
        policy = eff.policies if eff is not None else DEFAULT_POLICY
        if not is_active(c, policy, util=util, mig_busy=mig_busy):
            out[c.id] = previous.get(c.id, now)
    return out


def track_started(previous: Mapping[str, datetime], observed: Observed
                  ) -> dict[str, datetime]:
    """Container id -> when ds01d counts it started: kept from the last pass while it is
    active (Docker restarting it moves its ``StartedAt``, not this); Docker's ``StartedAt``
    for one seen active without a record (ds01d restarted, its memory lost)."""
    out: dict[str, datetime] = {}
    for c in observed.containers:
        if not c.active:
            continue
        known = previous.get(c.id)
        out[c.id] = known if known is not None else (c.started_at or c.created_at)
    return out
