"""The closed set of things a pass may do. Each is a frozen value with a ``key``: the object it
acts on, used for per-object backoff and for recorded-action tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ds01d.config.settings import ContainerSettings


class _OnSlice:
    """Actions on a slice: keyed ``slice/<name>``."""

    name: str

    @property
    def key(self) -> str:
        return f"slice/{self.name}"


class _OnContainer:
    """Actions on a user's container: keyed ``container/<user>/<want name>``."""

    user: str | None
    name: str

    @property
    def key(self) -> str:
        return f"container/{self.user}/{self.name}"


class _Reported:
    """Reports (warnings, flags, alerts) given once while their condition lasts: keyed by
    ``report_key``."""

    report_key: str

    @property
    def key(self) -> str:
        return self.report_key


@dataclass(frozen=True)
class EnsureSlice(_OnSlice):
    """Create a transient slice with these properties (``None`` = infinity)."""

    name: str
    properties: Mapping[str, int | None]


@dataclass(frozen=True)
class SetSliceProperties(_OnSlice):
    """Set drifted properties of an existing slice back."""

    name: str
    properties: Mapping[str, int | None]


@dataclass(frozen=True)
class StopSlice(_OnSlice):
    name: str


@dataclass(frozen=True)
class ContainerSpec:
    """Everything Docker needs to create one ds01 container."""

    docker_name: str
    user: str
    want_name: str
    image: str
    labels: Mapping[str, str]
    devices: tuple[str, ...]
    cgroup_parent: str
    nano_cpus: int | None
    memory: int | None
    memory_swap: int | None
    shm_size: int | None
    pids_limit: int | None
    uid: int | None
    gid: int | None
    workspace: str
    """Host folder bind-mounted at ``/workspace``: ``<home>/workspace/<name>``."""
    home: str = ""
    """The owner's home: the workspace is made and checked from there as the owner; every
    bind source of ``settings`` lies under it."""
    tmp_size: int | None = None
    """Bytes of a tmpfs at ``/tmp`` (``storage_tmp``; ``None``: none)."""
    command: tuple[str, ...] = ("sleep", "infinity")
    """What the container runs: it stays up for its owner to ``docker exec`` into."""
    settings: ContainerSettings | None = None
    """What its owner asked for beyond image and resources (command, environment, mounts,
    ports...); ``None``: a plain ds01 container (``command``, the workspace at /workspace)."""


@dataclass(frozen=True)
class CreateContainer:
    """Create and start a container holding exactly ``spec.devices``."""

    spec: ContainerSpec
    gpu_equivalents: float

    @property
    def key(self) -> str:
        return f"container/{self.spec.user}/{self.spec.want_name}"


@dataclass(frozen=True)
class StartContainer(_OnContainer):
    """Start an existing stopped container again (its owner asked again)."""

    container_id: str
    user: str
    name: str
    devices: tuple[str, ...]
    gpu_equivalents: float = 0.0
    asked_at: datetime | None = None
    """When ds01d first saw the want that starts it (its owner hears if it had to wait)."""


@dataclass(frozen=True)
class StopContainer(_OnContainer):
    """Stop a container (SIGTERM, SIGKILL after ``grace_s``); its devices are released."""

    container_id: str
    user: str | None
    name: str
    reason: str
    """``idle``, ``runtime``, ``dropped``, ``user``..."""
    grace_s: float
    devices: tuple[str, ...] = ()
    idle_for_s: float | None = None
    """For an idle stop: how long it had been idle (reported as reclaimed GPU time)."""


@dataclass(frozen=True)
class RemoveContainer(_OnContainer):
    container_id: str
    user: str | None
    name: str
    reason: str


@dataclass(frozen=True)
class ReleaseDevices(_OnContainer):
    """Record that a ds01 container stopped without ds01 (it exited, or its owner stopped
    it) and its devices went back: ``gpu.release`` at ``at``, so reports count right."""

    container_id: str
    user: str
    name: str
    devices: tuple[str, ...]
    reason: str
    at: datetime


@dataclass(frozen=True)
class RemoveWant:
    """Delete a fulfilled want: its policy-stopped container was removed after the hold."""

    user: str
    name: str

    @property
    def key(self) -> str:
        return f"want/{self.user}/{self.name}"


@dataclass(frozen=True)
class Warn(_Reported):
    """Tell a user that something is coming (a notice: event, journal, their terminals, the
    notice file in the container, ``ds01 status``); given once per ``report_key``."""

    user: str | None
    name: str
    event_type: str
    message: str
    report_key: str
    announces: str | None = None
    """The stop this warning announces (``idle:<id>:<since>``, ``runtime:<id>:<start>``): ds01d
    remembers when it was first told, and the stop waits ``stop_notice_m`` from then."""
    managed: bool = True
    """About a ds01 container (``name`` is its want name): the notice file in its
    ``/workspace`` gets the warning too."""


@dataclass(frozen=True)
class FlagUntracked(_Reported):
    """GPU use nobody was allocated: flagged once per (pid, device) while it lasts."""

    pid: int
    device: str
    gpu_index: int
    user: str | None
    container: str | None
    used_memory_mib: int
    report_key: str
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Alert(_Reported):
    """Something an admin should hear of (event, journal, the alert webhook); given once per
    ``report_key`` while it lasts."""

    event_type: str
    user: str | None
    message: str
    report_key: str
    details: Mapping[str, object] = field(default_factory=dict)


class _OnGpu:
    """MIG steps on a GPU: keyed ``mig/<gpu index>`` (one failing step holds back the rest)."""

    gpu_index: int

    @property
    def key(self) -> str:
        return f"mig/{self.gpu_index}"


@dataclass(frozen=True)
class SetMigMode(_OnGpu):
    """Turn MIG on or off (ref: nvmlDeviceSetMigMode; may need a GPU reset to take effect)."""

    gpu_index: int
    gpu_uuid: str
    enabled: bool


@dataclass(frozen=True)
class DestroyMigInstance(_OnGpu):
    """Destroy a GPU instance and its compute instance (ref: nvmlComputeInstanceDestroy,
    nvmlGpuInstanceDestroy)."""

    gpu_index: int
    gpu_uuid: str
    gpu_instance_id: int
    uuid: str
    """The MIG device's UUID (empty for a GPU instance without a compute instance)."""
    profile: str


@dataclass(frozen=True)
class CreateMigInstance(_OnGpu):
    """Create a GPU instance at a placement and one compute instance filling it (ref:
    nvmlDeviceCreateGpuInstanceWithPlacement, nvmlGpuInstanceCreateComputeInstance)."""

    gpu_index: int
    gpu_uuid: str
    profile: str
    profile_id: int
    start: int
    size: int


@dataclass(frozen=True)
class MigEvent(_Reported):
    """A MIG layout change reported (event + journal): once per ``report_key``."""

    gpu_index: int
    event_type: str
    message: str
    report_key: str
    details: Mapping[str, object] = field(default_factory=dict)


Action = (EnsureSlice | SetSliceProperties | StopSlice | CreateContainer | StartContainer
          | StopContainer | RemoveContainer | RemoveWant | Warn | FlagUntracked | Alert
          | ReleaseDevices
          | SetMigMode | DestroyMigInstance | CreateMigInstance | MigEvent)
MIG_STEPS = (SetMigMode, DestroyMigInstance, CreateMigInstance)
MUTATING = (EnsureSlice, SetSliceProperties, StopSlice, CreateContainer, StartContainer,
            StopContainer, RemoveContainer, RemoveWant, *MIG_STEPS)
"""Actions that change the machine (the rest only report)."""
