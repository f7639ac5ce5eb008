"""Who holds which device, and which free device a want gets (deterministic, best fit).

Every container's devices are what Docker and the NVIDIA runtime will really give it
(:class:`DeviceTable`): UUIDs, GPU indices (``--gpus device=0``), MIG indices (``0:1``), a
count (``--gpus 2``: the first two GPUs), ``all``; a GPU in MIG mode gives all its instances.
When two containers claim one device, the one that claimed it first holds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ds01d.config.model import Effective
from ds01d.core.model import Container, Device, Gpu, Observed, devices_of


@dataclass(frozen=True)
class DeviceTable:
    """The host's GPUs as device references resolve against them (built once per pass)."""

    gpus: tuple[Gpu, ...]
    allocatable: frozenset[str]

    @classmethod
    def of(cls, gpus: tuple[Gpu, ...]) -> DeviceTable:
        return cls(gpus, frozenset(d.uuid for d in devices_of(gpus)))

    def _gpu(self, g: Gpu) -> list[str]:
        return [i.uuid for i in g.instances] if g.mig_enabled else [g.uuid]

    def ref(self, ref: str) -> list[str]:
        """The devices one reference names (an unknown one is kept as written)."""
        text = ref.strip()
        if text == "all":
            return [u for g in self.gpus for u in self._gpu(g)]
        gpu, _, mig = text.partition(":")
        found = next((g for g in self.gpus if g.uuid == text
                      or (gpu.isdigit() and g.index == int(gpu))), None)
        if found is None:
            return [text]
        if mig.isdigit():
            return [found.instances[int(mig)].uuid] if int(mig) < len(found.instances) else []
        return self._gpu(found)

    def resolve(self, c: Container) -> Container:
        """``c`` with the devices it can use; unchanged where they are already plain."""
        if not c.gpu_count and not c.all_gpus and all(d in self.allocatable for d in c.devices):
            return c
        if not self.gpus:
            return c  # NVML unreadable: indices cannot be resolved (device work waits)
        if c.all_gpus or c.gpu_count < 0:
            refs = ["all"]
        else:
            by_index = sorted(self.gpus, key=lambda g: g.index)[:max(c.gpu_count, 0)]
            refs = [*c.devices, *(g.uuid for g in by_index)]
        out = list(dict.fromkeys(u for r in refs for u in self.ref(r)))
        return replace(c, devices=tuple(out))


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


def claimed_at(c: Container) -> datetime:
    """When ``c`` claimed its devices: its last start (or its creation)."""
    return c.started_at or c.created_at


def holding(observed: Observed, devices: Iterable[Device],
            effective: Mapping[str, Effective], *, releasing: frozenset[str]) -> Holding:
    """Who holds what: the first to claim a device holds it; containers in ``releasing``
    (being stopped this pass) hold nothing; a device with a GPU process nobody was allocated
    is held too."""
    all_uuids = [d.uuid for d in devices]
    holders = [c for c in observed.containers  # most hold no device: nothing to look at
               if (c.devices or c.all_gpus) and c.id not in releasing
               and holds_devices(c, effective.get(c.owner or ""), observed.now)]
    by_device, shared = _claims(holders, all_uuids)
    if shared:  # two claim one device: the first to claim it holds it
        by_device, _ = _claims(sorted(holders, key=lambda c: (claimed_at(c), c.id)), all_uuids)
    by_user: dict[str, list[str]] = {}
    for c in holders:
        if c.managed and c.owner:
            by_user.setdefault(c.owner, []).extend(d for d in c.devices if by_device[d] == c.id)
    for u in untracked_devices(observed):
        by_device.setdefault(u, f"untracked:{u}")
    return Holding(by_device, {u: tuple(d) for u, d in by_user.items()})


def _claims(holders: Iterable[Container], all_uuids: list[str]) -> tuple[dict[str, str], bool]:
    """Device -> the first holder in ``holders`` claiming it; whether any was claimed twice."""
    by_device: dict[str, str] = {}
    shared = False
    for c in holders:
        for uuid in all_uuids if c.all_gpus and not c.managed else c.devices:
            if by_device.setdefault(uuid, c.id) != c.id:  # every device claimed, shared or not
                shared = True
    return by_device, shared


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
