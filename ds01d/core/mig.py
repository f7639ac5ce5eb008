"""The MIG layout, applied: per GPU, what to destroy and create (and the MIG mode to set) to
reach ``mig-layout.yaml``, who holds what goes away, and when it is applied. Pure.

The profile table and the placements come from the GPU itself (:class:`MigProfile`, read
through NVML); nothing here knows a GPU model. A GPU whose layout must change is *drained*:
the devices that go away are handed to no one from the first pass that sees the change, their
holders are warned with the deadline (``drain_deadline_h`` after that pass), and the change is
applied as soon as nothing uses them, or at the deadline, when their containers are stopped and
removed (reason ``mig-relayout``): their wants stay, and are queued again for the new layout.
Instances that stay in the new layout are kept, with their containers. GPUs whose layout stays
are never touched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from itertools import combinations

from ds01d.config.model import DesiredConfig, GpuLayout
from ds01d.core.actions import (
    Action,
    CreateMigInstance,
    DestroyMigInstance,
    MigEvent,
    SetMigMode,
    Warn,
)
from ds01d.core.model import (
    LABEL_RECREATED,
    Container,
    Device,
    Gpu,
    MigInstance,
    MigProfile,
    Observed,
    devices_of,
)
from ds01d.units import iso

RELAYOUT = "mig-relayout"
"""The reason a container is stopped and removed for a layout change (its want stays, and is
queued again: its devices are gone, so it is made again wherever it is served)."""


@dataclass(frozen=True)
class Placed:
    """An instance to create: its profile and where (first memory slice, memory slices)."""

    profile: MigProfile
    start: int
    size: int


@dataclass(frozen=True)
class GpuChange:
    """What one GPU needs to reach its layout, or why it cannot."""

    gpu: Gpu
    layout: GpuLayout
    since: datetime
    """The first pass that saw this GPU's layout differ."""
    mode: bool | None = None
    """MIG mode to set (``None``: as it is)."""
    destroy: tuple[MigInstance, ...] = ()
    create: tuple[Placed, ...] = ()
    problem: str | None = None
    """Why the layout cannot be applied on this GPU (then nothing is done, nothing drained)."""

    @property
    def deadline(self) -> datetime | None:
        hours = self.layout.drain_deadline_h
        return None if hours is None else self.since + timedelta(hours=hours)

    @cached_property
    def going(self) -> frozenset[str]:
        """Devices that go away: every one on the GPU when its MIG mode flips, else the
        destroyed instances."""
        if self.problem is not None:
            return frozenset()
        if self.mode is not None and self.mode != self.gpu.mig_enabled:
            whole = () if self.gpu.mig_enabled else (self.gpu.uuid,)
            return frozenset(whole) | {i.uuid for i in self.gpu.instances if i.device}
        return frozenset(i.uuid for i in self.destroy if i.device)

    @property
    def future(self) -> Counter[str]:
        """Profile -> instances the GPU will have (``""``: the whole GPU, MIG off)."""
        if not self.layout.mig_enabled:
            return Counter({"": 1})
        return Counter(self.layout.devices)


def layout_for(config: DesiredConfig, gpu: Gpu) -> GpuLayout | None:
    return None if config.mig_layout is None else config.mig_layout.for_gpu(gpu.index)


def drifted(gpu: Gpu, layout: GpuLayout) -> bool:
    """Whether the GPU's MIG mode or instances differ from ``layout``."""
    if gpu.mig_enabled != layout.mig_enabled:
        return True
    if gpu.mig_pending is not None and gpu.mig_pending != layout.mig_enabled:
        return True
    if not layout.mig_enabled:
        return False
    have = Counter(i.profile for i in gpu.instances if i.device)
    return have != Counter(layout.devices) or any(not i.device for i in gpu.instances)


def describe(layout: GpuLayout) -> str:
    """``MIG 3g.20gb x2`` or ``whole (MIG off)``."""
    if not layout.mig_enabled:
        return "whole (MIG off)"
    return "MIG " + ", ".join(f"{p} x{n}" for p, n in sorted(layout.devices.items()))


def _bits(start: int, size: int) -> int:
    return ((1 << size) - 1) << start


def place(names: list[str], table: Mapping[str, MigProfile], taken: int,
          after: int = -1) -> list[Placed] | None:
    """Placements for ``names`` (largest first) on memory slices not in ``taken``; ``None``
    when they do not fit. Instances of one profile take placements in increasing order, so
    each layout is tried once."""
    if not names:
        return []
    profile = table[names[0]]
    same_next = len(names) > 1 and names[1] == names[0]
    for start, size in profile.placements:
        bits = _bits(start, size)
        if start <= after or taken & bits:
            continue
        rest = place(names[1:], table, taken | bits, start if same_next else -1)
        if rest is not None:
            return [Placed(profile, start, size), *rest]
    return None


def _ordered(counts: Mapping[str, int], table: Mapping[str, MigProfile]) -> list[str]:
    names = [p for p, n in counts.items() for _ in range(n)]
    return sorted(names, key=lambda p: (-table[p].memory_mib, -table[p].slices, p))


def _keepable(gpu: Gpu, layout: GpuLayout) -> list[MigInstance]:
    return [i for i in gpu.instances
            if i.device and i.placement is not None and i.profile in layout.devices]


def _subsets(candidates: list[MigInstance], busy: frozenset[str]) -> Iterator[
        tuple[MigInstance, ...]]:
    """Sets of instances to keep, best first: most in use, then most, then lowest ids."""
    every = [s for n in range(len(candidates), -1, -1) for s in combinations(candidates, n)]
    every.sort(key=lambda s: (-sum(i.uuid in busy for i in s), -len(s),
                              [i.gpu_instance_id for i in s]))
    yield from every


def fit(gpu: Gpu, layout: GpuLayout, busy: frozenset[str]
        ) -> tuple[tuple[MigInstance, ...], tuple[Placed, ...]] | None:
    """What to destroy and create so that the GPU's instances become ``layout``, keeping as
    many of its instances (those in use first) as a valid placement allows."""
    table = {p.name: p for p in gpu.profiles}
    for keep in _subsets(_keepable(gpu, layout), busy):
        counts = Counter(i.profile for i in keep)
        if any(n > layout.devices[p] for p, n in counts.items()):
            continue
        taken = 0
        for i in keep:
            assert i.placement is not None
            bits = _bits(*i.placement)
            if taken & bits:
                break
            taken |= bits
        else:
            rest = Counter(layout.devices) - counts
            placed = place(_ordered(rest, table), table, taken)
            if placed is not None:
                kept = {i.gpu_instance_id for i in keep}
                gone = tuple(i for i in gpu.instances if i.gpu_instance_id not in kept)
                return gone, tuple(placed)
    return None


def problem(gpu: Gpu, layout: GpuLayout) -> str | None:
    """Why ``layout`` can never be applied to this GPU, in the admin's words; ``None``: it can."""
    if not layout.mig_enabled:
        return None
    name = f"GPU {gpu.index} ({gpu.model})"
    if not gpu.profiles:
        return f"{name} reports no MIG profiles (it has no MIG, or NVML could not read them)"
    table = {p.name: p for p in gpu.profiles}
    for profile, n in sorted(layout.devices.items()):
        if profile not in table:
            have = ", ".join(p.name for p in gpu.profiles)
            return f"{name} has no MIG profile {profile} (it has: {have})"
        if n > table[profile].instances:
            return f"{name} holds at most {table[profile].instances} {profile}; {n} asked"
    if place(_ordered(layout.devices, table), table, 0) is None:
        return (f"{describe(layout)} does not fit {name}: no placement of these instances "
                "keeps their memory slices apart")
    return None


def gpu_change(gpu: Gpu, layout: GpuLayout, *, since: datetime,
               busy: frozenset[str]) -> GpuChange:
    """The steps from the GPU as it is to ``layout`` (which it differs from)."""
    why = problem(gpu, layout)
    if why is not None:
        return GpuChange(gpu, layout, since, problem=why)
    pending = gpu.mig_enabled if gpu.mig_pending is None else gpu.mig_pending
    mode = layout.mig_enabled if layout.mig_enabled != gpu.mig_enabled or \
        pending != layout.mig_enabled else None
    if not layout.mig_enabled:
        return GpuChange(gpu, layout, since, mode, destroy=gpu.instances)
    if not gpu.mig_enabled:
        table = {p.name: p for p in gpu.profiles}
        placed = place(_ordered(layout.devices, table), table, 0) or []
        return GpuChange(gpu, layout, since, mode, gpu.instances, tuple(placed))
    fitted = fit(gpu, layout, busy)
    assert fitted is not None  # keeping nothing is the empty GPU, where it fits (problem())
    return GpuChange(gpu, layout, since, mode, *fitted)


def in_use(observed: Observed) -> frozenset[str]:
    """Devices an active container holds or a GPU process runs on."""
    held = {d for c in observed.containers if c.active for d in c.devices}
    return frozenset(held | {p.device_uuid for p in observed.processes})


@dataclass(frozen=True)
class MigPlan:
    """Every GPU whose layout differs from ``mig-layout.yaml``, with its steps or problem."""

    changes: tuple[GpuChange, ...] = ()
    busy: frozenset[str] = frozenset()
    """Devices in use at the start of the pass."""
    devices: frozenset[str] = frozenset()
    """Every device there is now (a container's other devices no longer exist)."""

    @cached_property
    def going(self) -> frozenset[str]:
        """Devices that go away: handed to no one from now on."""
        return frozenset().union(*(c.going for c in self.changes))

    @property
    def drain_since(self) -> dict[str, datetime]:
        """What ds01d remembers for the next pass: GPU uuid -> when its drain began."""
        return {c.gpu.uuid: c.since for c in self.changes}

    def holders(self, change: GpuChange, containers: tuple[Container, ...]
                ) -> list[Container]:
        return [c for c in containers if c.active and set(c.devices) & change.going]

    def blocked(self, change: GpuChange) -> bool:
        """Whether something still uses what goes away on this GPU."""
        return bool(change.going & self.busy)

    def due(self, change: GpuChange, now: datetime) -> str:
        """When the GPU's new layout comes, in words."""
        deadline = change.deadline
        if not self.blocked(change) or (deadline is not None and deadline <= now):
            return "due now"
        if deadline is None:
            return "due when what uses it stops"
        return f"due {deadline:%Y-%m-%d %H:%M} UTC"

    def provider(self, profile: str | None) -> GpuChange | None:
        """The first GPU whose new layout brings ``profile`` (``None``: a whole GPU)."""
        key = profile or ""
        return next((c for c in self.changes if c.problem is None and c.future[key]), None)


def plan_mig(config: DesiredConfig, observed: Observed) -> MigPlan:
    """Every GPU that must change, from the first pass that saw it (``observed.drain_since``)."""
    busy = in_use(observed)
    changes = []
    for gpu in observed.gpus:
        layout = layout_for(config, gpu)
        if layout is None or not drifted(gpu, layout):
            continue
        since = observed.drain_since.get(gpu.uuid, observed.now)
        changes.append(gpu_change(gpu, layout, since=since, busy=busy))
    return MigPlan(tuple(changes), busy, frozenset(d.uuid for d in devices_of(observed.gpus)))


def stale(c: Container, mig: MigPlan) -> tuple[str, ...]:
    """The container's devices a layout change destroyed, or is destroying."""
    return tuple(d for d in c.devices if d not in mig.devices or d in mig.going)


def steps(change: GpuChange) -> list[Action]:
    """The NVML steps of one GPU, in order: destroy, set the mode, create."""
    gpu = change.gpu
    out: list[Action] = [DestroyMigInstance(gpu.index, gpu.uuid, i.gpu_instance_id, i.uuid,
                                            i.profile) for i in change.destroy]
    if change.mode is not None:
        out.append(SetMigMode(gpu.index, gpu.uuid, change.mode))
    out += [CreateMigInstance(gpu.index, gpu.uuid, p.profile.name, p.profile.id, p.start, p.size)
            for p in change.create]
    return out


def mig_actions(mig: MigPlan, observed: Observed) -> tuple[list[Action], set[str]]:
    """The NVML steps of every GPU nothing uses any more, and the reports of the others (with
    the keys of the reports whose condition holds now)."""
    actions: list[Action] = []
    keys: set[str] = set()
    for change in mig.changes:
        event = _report(change, mig, observed)
        if event is not None:
            actions.append(event)
            keys.add(event.report_key)
        if change.problem is None and not mig.blocked(change):
            actions += steps(change)
    return actions, keys


def _report(change: GpuChange, mig: MigPlan, observed: Observed) -> MigEvent | None:
    gpu = change.gpu
    base = {"gpu": str(gpu.index), "uuid": gpu.uuid, "layout": describe(change.layout)}
    if change.problem is not None:
        return MigEvent(gpu.index, "mig.layout_invalid", change.problem,
                        f"mig.layout_invalid:{gpu.uuid}:{change.problem}",
                        {**base, "error": change.problem})
    deadline = change.deadline
    when = "no deadline" if deadline is None else f"{deadline:%Y-%m-%d %H:%M} UTC"
    holders = sorted(f"{c.owner or '-'}/{c.want_name or c.name}"
                     for c in mig.holders(change, observed.containers))
    processes = sorted(p.pid for p in observed.processes if p.device_uuid in change.going)
    if deadline is not None and observed.now >= deadline and processes and not holders:
        return MigEvent(gpu.index, "mig.blocked", f"GPU {gpu.index}'s new layout waits for "
                        f"processes outside ds01 containers: {processes}",
                        f"mig.blocked:{gpu.uuid}:{processes}",
                        {**base, "pids": [str(p) for p in processes]})
    if not mig.blocked(change):
        return MigEvent(gpu.index, "mig.apply", f"GPU {gpu.index}'s MIG layout changes to "
                        f"{describe(change.layout)}: nothing uses what goes, applied now",
                        f"mig.apply:{gpu.uuid}:{iso(change.since)}", base)
    return MigEvent(gpu.index, "mig.drain", f"GPU {gpu.index}'s MIG layout changes to "
                    f"{describe(change.layout)} (deadline: {when}); in use by: "
                    f"{', '.join(holders) or 'processes ' + str(processes)}",
                    f"mig.drain:{gpu.uuid}:{iso(change.since)}",
                    {**base, "deadline": None if deadline is None else iso(deadline),
                     "holders": holders, "pids": [str(p) for p in processes]})


def recreated_notice(c: Container, devices: Mapping[str, Device]) -> Warn | None:
    """Tell the owner of a running container made again on new devices (its old ones were
    destroyed by a layout change) what it runs on now; once while it lives."""
    old = c.labels.get(LABEL_RECREATED)
    if not old or c.state != "running":
        return None
    now = ", ".join(f"{u} ({_what(devices[u])})" if u in devices else u for u in c.devices)
    name = c.want_name or c.name
    what = "MIG instance" if old.startswith("MIG-") else "GPU"
    return Warn(c.owner, name, "mig.recreated", f"your {what} was re-created as {now}: {old} "
                f"went with a MIG layout change; {name} runs on the new one",
                f"mig.recreated:{c.id}")


def _what(d: Device) -> str:
    return f"{d.profile or 'whole GPU'} on GPU {d.gpu_index}"


def holder_deadline(change: GpuChange, c: Container) -> datetime | None:
    """When a holder of what goes is stopped: the change's deadline; for a container started
    after the drain began (on an instance that was not to go then), the full notice from its
    start."""
    deadline, hours = change.deadline, change.layout.drain_deadline_h
    started = c.started_at or c.created_at
    if deadline is None or hours is None or started <= change.since:
        return deadline
    return max(deadline, started + timedelta(hours=hours))


def drain_warning(c: Container, change: GpuChange) -> Warn:
    """Tell a holder of a device that goes away when its container will be stopped."""
    name = c.want_name or c.name
    deadline = holder_deadline(change, c)
    layout = f"GPU {change.gpu.index}'s MIG layout changes to {describe(change.layout)}"
    key = f"mig.drain_warning:{c.id}:{'none' if deadline is None else iso(deadline)}"
    if deadline is None:
        message = (f"{layout}: it waits until {name} stops (there is no deadline); stop it "
                   f"when you can (ds01 drop container {name})")
    else:
        message = (f"{layout}: {name} will be stopped and removed at {deadline:%Y-%m-%d %H:%M} "
                   f"UTC unless it stops before (your workspace is kept), then made again on "
                   f"the new layout ({RELAYOUT})")
    return Warn(c.owner, name, "mig.drain_warning", message, key, managed=c.managed)


def drain_note(change: GpuChange, c: Container) -> str:
    """A holder's status reason while its GPU drains (its ``stops_at`` says when it stops)."""
    when = "" if holder_deadline(change, c) is not None else " when this container stops"
    return f"running; GPU {change.gpu.index}'s MIG layout changes{when} ({RELAYOUT})"
