"""Who holds which device, and which free device a want gets (deterministic, best fit)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from ds01d.config.model import Effective
from ds01d.core.model import Container, Device, Observed


@dataclass(frozen=True)
class Holding:
    """Devices held at the start of a pass, and by whom."""

    by_device: Mapping[str, str]
    """Device uuid -> holder: a container id, or ``untracked:<pid>``."""
    by_user: Mapping[str, tuple[str, ...]]
    """User -> device uuids held by their ds01 containers."""


def holds_devices(c: Container, eff: Effective | None, now: datetime) -> bool:
    """A container holds its devices while active, and after a stop for the owner's
    ``gpu_hold_after_stop_h``."""
    if c.active:
        return True
    if not c.managed or eff is None or c.finished_at is None:
        return False
    hold = eff.limits.gpu_hold_after_stop_h
    return hold is None or c.finished_at + timedelta(hours=hold) > now


def holding(observed: Observed, devices: Iterable[Device],
            effective: Mapping[str, Effective], *, releasing: frozenset[str]) -> Holding:
    """Who holds what; containers in ``releasing`` (being stopped this pass) hold nothing."""
    all_uuids = [d.uuid for d in devices]
    by_device: dict[str, str] = {}
    by_user: dict[str, list[str]] = {}
    for c in observed.containers:
        if not c.devices and not c.all_gpus:
            continue  # most containers hold no device: nothing more to look at
        if c.id in releasing or not holds_devices(c, effective.get(c.owner or ""), observed.now):
            continue
        held = all_uuids if c.all_gpus and not c.managed else list(c.devices)
        for uuid in held:
            by_device.setdefault(uuid, c.id)
        if c.managed and c.owner:
            by_user.setdefault(c.owner, []).extend(c.devices)
    for u in untracked_devices(observed):
        by_device.setdefault(u, f"untracked:{u}")
    return Holding(by_device, {u: tuple(d) for u, d in by_user.items()})


def untracked_devices(observed: Observed) -> set[str]:
    """Devices with a GPU process nobody was allocated on them."""
    return {p.device_uuid for p in observed.processes if not tracked(p.pid, p.device_uuid,
                                                                       observed)}


def container_of(pid: int, observed: Observed) -> Container | None:
    owner = observed.owners.get(pid)
    if owner is None or owner.container_id is None:
        return None
    return next((c for c in observed.containers if c.id.startswith(owner.container_id)
                 or owner.container_id.startswith(c.id)), None)


def user_of_process(pid: int, observed: Observed) -> str | None:
    """Whose a GPU process is: its ds01 container's owner, else the host user running it."""
    c = container_of(pid, observed)
    if c is not None and c.owner:
        return c.owner
    owner = observed.owners.get(pid)
    return owner.user if owner else None


def tracked(pid: int, device: str, observed: Observed) -> bool:
    """A GPU process is tracked when it runs in a ds01 container allocated that device."""
    c = container_of(pid, observed)
    return c is not None and c.managed and device in c.devices


def choose(free: list[Device], *, profile: str | None, count: int) -> tuple[Device, ...] | None:
    """The devices a want gets, or ``None`` when too few are free.

    MIG: an instance of ``profile`` on the GPU left with the fewest free devices afterwards
    (best fit keeps other GPUs whole), then the lowest GPU index and GPU-instance id.
    Full GPUs: the ``count`` lowest-indexed free ones.
    """
    if profile is not None:
        left = {d.gpu_index: 0 for d in free}
        for d in free:
            left[d.gpu_index] += 1
        fits = sorted((d for d in free if d.profile == profile),
                      key=lambda d: (left[d.gpu_index], d.gpu_index, d.gpu_instance_id, d.uuid))
        return (fits[0],) if fits else None
    whole = sorted((d for d in free if d.profile is None), key=lambda d: d.gpu_index)
    return tuple(whole[:count]) if len(whole) >= count else None
