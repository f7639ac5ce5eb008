"""Frozen values for what ds01 observes on the machine, and for what it wants."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ds01d.config.model import DesiredConfig, Effective
from ds01d.config.want import Want

LABEL_MANAGED = "ds01.managed"
LABEL_USER = "ds01.user"
LABEL_NAME = "ds01.name"
LABEL_GROUP = "ds01.group"
LABEL_DEVICES = "ds01.devices"
LABEL_GPUEQ = "ds01.gpu_equivalents"
LABEL_REQUESTED = "ds01.requested_at"
LABEL_TYPE = "ds01.type"
"""How a container was made (devcontainer, compose, docker, api): set by the Docker socket."""
LABEL_SPEC = "ds01.spec"
LABEL_WORKSPACE = "ds01.workspace"
"""The real path bind-mounted at ``/workspace`` (checked again before every start)."""
LABEL_RECREATED = "ds01.recreated_from"
"""On a container made again because its devices were destroyed by a MIG layout change: the
old device UUIDs (its owner is told once it runs)."""
RESERVED_LABELS = (LABEL_MANAGED, LABEL_USER, LABEL_NAME, LABEL_GROUP, LABEL_DEVICES,
                   LABEL_GPUEQ, LABEL_REQUESTED, LABEL_TYPE, LABEL_SPEC, LABEL_WORKSPACE,
                   LABEL_RECREATED)
"""Every label ds01 reads: a container made through the socket has each one set by ds01
(an image's own ``ds01.*`` labels would otherwise be inherited)."""


@dataclass(frozen=True)
class SliceState:
    """A systemd slice and the properties ds01 manages on it (``None`` = infinity)."""

    name: str
    properties: Mapping[str, int | None]


@dataclass(frozen=True)
class MigProfile:
    """A GPU instance profile as the GPU reports it (NVML profile info and placements)."""

    name: str
    """``3g.20gb``, as the driver names it."""
    id: int
    """NVML's profile id: what creating an instance of it takes."""
    slices: int
    """Compute slices (of 7)."""
    instances: int
    """How many instances of it the GPU can hold."""
    memory_mib: int
    placements: tuple[tuple[int, int], ...]
    """Where an instance may go: (first memory slice, memory slices), in the driver's order."""


@dataclass(frozen=True)
class MigInstance:
    """A GPU instance; with a compute instance (``uuid`` set) it is a MIG device."""

    uuid: str
    profile: str
    gpu_instance_id: int
    placement: tuple[int, int] | None = None
    """(first memory slice, memory slices); ``None`` where the driver did not say."""

    @property
    def device(self) -> bool:
        """A MIG device (a compute instance in it), not a bare GPU instance."""
        return bool(self.uuid)


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    model: str
    memory_mib: int
    mig_enabled: bool
    instances: tuple[MigInstance, ...] = ()
    utilization: float | None = None
    """Percent; ``None`` where NVML does not report it (MIG mode)."""
    mig_pending: bool | None = None
    """The MIG mode after the next GPU reset, where it differs from ``mig_enabled``."""
    profiles: tuple[MigProfile, ...] = ()
    """The MIG profiles this GPU offers (empty: no MIG, or not readable)."""


@dataclass(frozen=True)
class MigReading:
    """One MIG instance's activity as DCGM reports it."""

    gpu_index: int | None
    gpu_uuid: str | None
    gpu_instance_id: int
    percent: float
    """Percent of the time its engines were active (0-100)."""


@dataclass(frozen=True)
class Device:
    """What can be allocated: a whole GPU (MIG off) or one MIG instance."""

    uuid: str
    gpu_index: int
    profile: str | None
    gpu_equivalents: float
    gpu_instance_id: int = 0


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    device_uuid: str
    used_memory_mib: int


@dataclass(frozen=True)
class ProcOwner:
    """Who a PID belongs to: a container (by id) or a host user (by uid)."""

    pid: int
    container_id: str | None
    uid: int | None
    user: str | None


@dataclass(frozen=True)
class Container:
    """A Docker container as observed; devices read back from DeviceRequests."""

    id: str
    name: str
    image: str
    labels: Mapping[str, str]
    state: str
    """Docker's state: created, running, paused, restarting, exited, dead."""
    devices: tuple[str, ...]
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    all_gpus: bool = False
    """``--privileged`` or ``NVIDIA_VISIBLE_DEVICES=all``: it can use every GPU."""
    cpu_percent: float = 0.0
    cgroup_parent: str = ""
    exit_code: int | None = None
    net_bytes_per_s: float | None = None
    """Network traffic, received and sent, since the last look (``None``: not measured, e.g.
    on the host's network)."""
    gpu_count: int = 0
    """A device request by count (``--gpus 2``; -1 is ``all``), resolved against the host."""

    managed: bool = field(init=False, compare=False, repr=False)
    """Made by ds01 (its labels say so)."""
    owner: str | None = field(init=False, compare=False, repr=False)
    want_name: str | None = field(init=False, compare=False, repr=False)
    active: bool = field(init=False, compare=False, repr=False)
    """Holding its devices: running, or on its way there."""
    made_for_user: bool = field(init=False, compare=False, repr=False)
    """Made for its owner without a want (through the Docker socket): it counts for them
    (slice, container cap, lifecycle by type) but is never retired as a dropped want."""

    def __init__(  # noqa: PLR0917 - the fields, as the dataclass's own __init__
            self, id: str, name: str, image: str, labels: Mapping[str, str], state: str,
            devices: tuple[str, ...], created_at: datetime, started_at: datetime | None = None,
            finished_at: datetime | None = None, all_gpus: bool = False,
            cpu_percent: float = 0.0, cgroup_parent: str = "", exit_code: int | None = None,
            net_bytes_per_s: float | None = None, gpu_count: int = 0) -> None:
        """Written out, not made by ``dataclass``: a frozen dataclass sets each field through
        ``object.__setattr__``, three times slower, and a pass makes one per container. The
        fields derived from the labels are read once, here (plain attributes, not
        properties). ``tests/unit/test_plan.py`` checks it takes every field."""
        managed = labels.get(LABEL_MANAGED) == "true"
        owner = labels.get(LABEL_USER)
        vars(self).update(
            id=id, name=name, image=image, labels=labels, state=state, devices=devices,
            created_at=created_at, started_at=started_at, finished_at=finished_at,
            all_gpus=all_gpus, cpu_percent=cpu_percent, cgroup_parent=cgroup_parent,
            exit_code=exit_code, net_bytes_per_s=net_bytes_per_s, gpu_count=gpu_count,
            managed=managed, owner=owner, want_name=labels.get(LABEL_NAME),
            active=state in _ACTIVE, made_for_user=not managed and bool(owner))


_ACTIVE = frozenset(("created", "running", "restarting", "paused"))


@dataclass(frozen=True)
class Expected:
    """A container ds01d created: its id, devices, and when."""

    container_id: str
    devices: tuple[str, ...]
    at: datetime


@dataclass(frozen=True)
class Observed:
    """Everything seen in one pass, plus the daemon's short memory (``idle_since``...)."""

    now: datetime
    slices: Mapping[str, SliceState]
    containers: tuple[Container, ...]
    gpus: tuple[Gpu, ...]
    processes: tuple[GpuProcess, ...]
    owners: Mapping[int, ProcOwner]
    idle_since: Mapping[str, datetime] = field(default_factory=dict)
    """Container id -> when it was first seen idle (absent: active at the last sample)."""
    expected: Mapping[tuple[str, str], Expected] = field(default_factory=dict)
    """(user, name) -> a container ds01d created for that want and does not see yet (a
    listing that lags): its devices stay held, and the want is not served twice."""
    started: Mapping[str, datetime] = field(default_factory=dict)
    """Container id -> when ds01d started it (its runtime counts from then: Docker's own
    restarts of it, which move ``StartedAt``, do not start the count again)."""
    reported: frozenset[str] = frozenset()
    """Keys of warnings and flags already given while their condition lasts."""
    previous_reasons: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """(user, name) -> the reason last shown for a stopped container (display only)."""
    warned: Mapping[str, datetime] = field(default_factory=dict)
    """A coming stop (its ``Warn.announces`` key) -> when its owner was first told of it: a
    stop comes no sooner than ``stop_notice_m`` after that."""
    told: frozenset[str] = field(init=False, compare=False, repr=False)
    """Containers with a coming stop their owner was told of (the ids in ``warned``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "told", frozenset(k.split(":", 2)[1] for k in self.warned))
    adapter_errors: Mapping[str, str] = field(default_factory=dict)
    mig_activity: Mapping[str, float] | None = None
    """MIG instance uuid -> percent of its engines active (DCGM); ``None``: no DCGM reading,
    a compute process on an instance counts as activity."""
    busy: Mapping[str, str] = field(default_factory=dict)
    """Container id -> the signal that kept it busy at this sample (absent: idle)."""
    drain_since: Mapping[str, datetime] = field(default_factory=dict)
    """GPU uuid -> when ds01d first saw its MIG layout differ from ``mig-layout.yaml``."""


@dataclass(frozen=True)
class Account:
    """A user as the name service knows them (``None`` fields on a simulated host)."""

    uid: int | None
    gid: int | None
    home: str


@dataclass(frozen=True)
class Desired:
    """The admin's configuration, every valid want, and what applies to each wanting user."""

    config: DesiredConfig
    wants: tuple[Want, ...]
    effective: Mapping[str, Effective]
    accounts: Mapping[str, Account]
    invalid_wants: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """(user, name) -> why the want file was refused (shown as Failed)."""
    held: frozenset[tuple[str, str]] = frozenset()
    """Wants whose file exists but could not be used this pass (invalid, unreadable, not read
    yet): their containers are kept as they are, never retired as dropped."""
    held_users: Mapping[str, str] = field(default_factory=dict)
    """User -> why their want folder could not be read: all their containers are kept."""
    slice_parts: Mapping[str, str] = field(default_factory=dict)
    """User -> their part of ``ds01-<group>-<user>.slice`` (see ``naming.user_parts``)."""

    def holds(self, user: str | None, name: str | None) -> bool:
        """Whether the container of (user, name) must be kept though no valid want names it."""
        return user in self.held_users or (str(user), str(name)) in self.held


_DEVICES: list[tuple[tuple[Gpu, ...], tuple[Device, ...]]] = []
"""The last ``devices_of``: a pass asks it of the same reading several times (plan, the
device table, MIG plan, ``gpus.json``); the reading is kept alive with it, so the identity
check cannot match another tuple."""


def devices_of(gpus: tuple[Gpu, ...]) -> tuple[Device, ...]:
    """The allocatable devices: whole GPUs with MIG off, MIG instances otherwise."""
    last = _DEVICES[0] if _DEVICES else None
    if last is not None and last[0] is gpus:
        return last[1]
    found = _devices_of(gpus)
    _DEVICES[:] = [(gpus, found)]
    return found


def _devices_of(gpus: tuple[Gpu, ...]) -> tuple[Device, ...]:
    from ds01d.units import mig_gpu_equivalents

    out: list[Device] = []
    for gpu in gpus:
        if not gpu.mig_enabled:
            out.append(Device(gpu.uuid, gpu.index, None, 1.0))
            continue
        out.extend(Device(i.uuid, gpu.index, i.profile, mig_gpu_equivalents(i.profile),
                          i.gpu_instance_id) for i in gpu.instances if i.device)
    return tuple(out)
