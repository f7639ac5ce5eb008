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


def is_active(c: Container, observed: Observed, policy: IdlePolicy) -> bool:
    if c.cpu_percent >= policy.cpu_idle_threshold:
        return True
    util = {g.uuid: g.utilization for g in observed.gpus if not g.mig_enabled}
    if any((util.get(d) or 0.0) >= policy.gpu_idle_threshold for d in c.devices if d in util):
        return True
    mig = {i.uuid for g in observed.gpus for i in g.instances}
    return any(p.device_uuid in mig and p.device_uuid in c.devices and p.used_memory_mib > 0
               for p in observed.processes)


def track_idle(previous: Mapping[str, datetime], observed: Observed,
               effective: Mapping[str, Effective], now: datetime) -> dict[str, datetime]:
    """Container id -> idle since, for running containers idle at this sample."""
    out: dict[str, datetime] = {}
    for c in observed.containers:
        if c.state != "running":
            continue
        eff = effective.get(c.owner or "")
        policy = eff.policies if eff is not None else DEFAULT_POLICY
        if not is_active(c, observed, policy):
            out[c.id] = previous.get(c.id, now)
    return out
