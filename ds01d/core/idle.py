"""When did each container go idle, and which signal kept a busy one busy.

A sample is *busy* when any of these is at or above the owner's threshold: CPU
(``cpu_idle_threshold``); a whole GPU it holds (NVML utilisation, ``gpu_idle_threshold``); a
MIG instance it holds (DCGM's engine activity; NVML reports none for MIG instances); network
traffic received and sent (``network_idle_threshold``). Without a DCGM reading for an
instance, a compute process on it counts as activity (an idle notebook holding a CUDA context
then never looks idle: ``ds01 status`` says so). With NVML unreadable, a container holding
devices counts as busy: an unknown signal never causes a stop.

The idle time of a container counts from the first idle sample; lifecycle acts on it only once
it has lasted the owner's ``idle_detection_window``. Rebuilt empty after a restart without a
fresh carried state, which can only delay a stop, never cause one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ds01d.config.model import Effective, IdlePolicy
from ds01d.core.model import Container, Observed
from ds01d.units import format_rate

DEFAULT_POLICY = IdlePolicy(gpu_idle_threshold=5, cpu_idle_threshold=2,
                            network_idle_threshold=1024, idle_detection_window=1 / 6)
MIG_UNKNOWN = "MIG activity unknown: counting processes"


@dataclass(frozen=True)
class Signals:
    """The device readings of one pass, shared by every container."""

    util: Mapping[str, float | None]
    """Whole GPU uuid -> NVML utilisation (percent)."""
    mig_activity: Mapping[str, float] | None
    """MIG instance uuid -> DCGM activity (percent); ``None``: none read."""
    mig_profile: Mapping[str, str]
    mig_busy: frozenset[str]
    """MIG instances with a compute process."""
    nvml_down: bool

    @classmethod
    def of(cls, observed: Observed) -> Signals:
        mig = {i.uuid: i.profile for g in observed.gpus for i in g.instances}
        busy = frozenset(p.device_uuid for p in observed.processes
                         if p.device_uuid in mig and p.used_memory_mib > 0)
        return cls({g.uuid: g.utilization for g in observed.gpus if not g.mig_enabled},
                   observed.mig_activity, mig, busy, "nvml" in observed.adapter_errors)


def _device_signal(d: str, policy: IdlePolicy, s: Signals) -> str | None:
    at = f">= {policy.gpu_idle_threshold:g}%"
    if d in s.util:
        return f"GPU {at} (NVML)" if (s.util[d] or 0.0) >= policy.gpu_idle_threshold else None
    if d not in s.mig_profile:
        return None
    active = None if s.mig_activity is None else s.mig_activity.get(d)
    if active is not None:
        return f"MIG {s.mig_profile[d]} {at} (DCGM)" if active >= policy.gpu_idle_threshold \
            else None
    return f"a process on MIG {s.mig_profile[d]} ({MIG_UNKNOWN})" if d in s.mig_busy else None


def busy_signal(c: Container, policy: IdlePolicy, s: Signals) -> str | None:
    """What keeps ``c`` busy at this sample, in words that change only when the signal does
    (status files are rewritten only on change); ``None``: it is idle."""
    if c.cpu_percent >= policy.cpu_idle_threshold:
        return f"CPU >= {policy.cpu_idle_threshold:g}%"
    if c.devices and s.nvml_down:
        return "GPU unknown: NVML unreadable"
    for d in c.devices:
        found = _device_signal(d, policy, s)
        if found is not None:
            return found
    rate = c.net_bytes_per_s
    if rate is not None and rate >= policy.network_idle_threshold:
        return f"network >= {format_rate(policy.network_idle_threshold)}"
    return None


def busy_signals(observed: Observed, effective: Mapping[str, Effective]) -> dict[str, str]:
    """Running container id -> what keeps it busy (idle ones are left out)."""
    s = Signals.of(observed)
    out: dict[str, str] = {}
    for c in observed.containers:
        if c.state != "running":
            continue
        eff = effective.get(c.owner or "")
        found = busy_signal(c, eff.policies if eff is not None else DEFAULT_POLICY, s)
        if found is not None:
            out[c.id] = found
    return out


def track_idle(previous: Mapping[str, datetime], observed: Observed,
               effective: Mapping[str, Effective], now: datetime, *,
               busy: Mapping[str, str] | None = None) -> dict[str, datetime]:
    """Container id -> idle since, for running containers idle at this sample (``busy``: the
    pass's :func:`busy_signals`, when already known)."""
    if busy is None:
        busy = busy_signals(observed, effective)
    out: dict[str, datetime] = {}
    for c in observed.containers:
        if c.state == "restarting" and c.id in previous:
            out[c.id] = previous[c.id]  # Docker restarting it: as idle as it was
        elif c.state == "running" and c.id not in busy:
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
