"""Frozen values for desired state. No I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from ds01d.config.values import Limits
from ds01d.errors import Diagnostic, KeyPath
from ds01d.names import local_part

__all__ = ["Limits"]

Value = int | float | bool | None
"""A setting's value after parsing: sizes in bytes, durations in hours, ``None`` = unlimited."""

LIMIT_KEYS: tuple[str, ...] = (
    "max_gpu_equivalents", "max_gpu_slots_per_container", "allow_full_gpu", "max_cpus",
    "memory", "memory_swap", "shm_size", "pids_limit", "max_containers_per_user",
    "max_runtime_h", "idle_timeout_h", "gpu_hold_after_stop_h", "container_hold_after_stop_h",
    "max_tasks", "storage_tmp",
)
AGGREGATE_KEYS: tuple[str, ...] = ("cpu_quota", "memory_max", "memory_high", "tasks_max",
                                   "gpu_limit")
POLICY_KEYS: tuple[str, ...] = ("gpu_idle_threshold", "cpu_idle_threshold",
                                "network_idle_threshold", "idle_detection_window")
EXEMPTIBLE: tuple[str, ...] = ("idle_timeout_h", "max_runtime_h")
CONTAINER_TYPES: tuple[str, ...] = ("devcontainer", "compose", "docker", "api", "unknown")
DEFAULT_ALERTS: tuple[str, ...] = ("gpu.untracked", "quota.over", "slice.update", "mig.drift",
                                   "mig.layout_invalid", "config.invalid", "adapter.down",
                                   "reconcile.error")
"""What an admin is alerted to unless ``alerts.events`` says otherwise: GPU use nobody was
allocated, a user over quota, drift set back (slices) or found (MIG layout), errors."""


@dataclass(frozen=True)
class Layer:
    """The settings one source sets (only those): defaults, a group, an override, ...

    ``source`` is how ``ds01 limits`` names it: ``builtin``, ``defaults``, ``group:<name>``,
    ``override`` or ``exemption``.
    """

    source: str
    limits: Mapping[str, Value] = field(default_factory=dict)
    aggregate: Mapping[str, Value] = field(default_factory=dict)
    policies: Mapping[str, Value] = field(default_factory=dict)
    priority: int | None = None


@dataclass(frozen=True)
class Group:
    name: str
    priority: int
    members: frozenset[str]
    """User entries from inline ``members:`` and ``groups/<name>.members``, as written."""
    unix_groups: tuple[str, ...]
    layer: Layer


@dataclass(frozen=True)
class Override:
    user: str
    layer: Layer
    reason: str | None


@dataclass(frozen=True)
class Exemption:
    username: str
    exempt_from: frozenset[str]
    reason: str
    approved_by: str
    expires_at: datetime | None
    """Aware UTC datetime; ``None`` = permanent."""

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class GpuLayout:
    mig_enabled: bool
    devices: Mapping[str, int]
    """MIG profile -> instance count (empty when MIG is off)."""
    drain_deadline_h: float | None = 24.0
    """Hours its holders keep a GPU that must change to this layout (``None``: until they
    stop); the GPU's own ``drain_deadline_h``, else the file's."""


@dataclass(frozen=True)
class MigLayout:
    gpus: Mapping[str, GpuLayout]
    """GPU index as a string, or ``all``."""

    def for_gpu(self, index: int) -> GpuLayout | None:
        return self.gpus.get(str(index), self.gpus.get("all"))


@dataclass(frozen=True)
class Rewrite:
    """How an older key is written today (``ds01 check-config --migrate``).

    ``key``/``value``: the new name and value text (``None``: unchanged); ``drop``: the key is
    read and ignored, and is commented out with ``note``; ``move_to``: the section the new key
    goes to instead (the old one is commented out).
    """

    file: str
    path: KeyPath
    line: int
    key: str | None = None
    value: str | None = None
    drop: bool = False
    note: str = ""
    move_to: str | None = None


@dataclass(frozen=True)
class Dcgm:
    """Where per-MIG-instance activity is read (``dcgm:`` in resource-limits.yaml)."""

    exporter_url: str
    timeout_s: float = 2.0


@dataclass(frozen=True)
class GlobalPolicies:
    high_demand_threshold: float
    high_demand_idle_reduction: float
    grace_period_m: float
    keepalive_max_duration_h: float
    sigterm_grace_s: float
    created_container_timeout_m: float
    stop_notice_m: float = 10.0
    """Least minutes between telling a container's owner of an idle or runtime stop and the
    stop (0: the next pass after the warning)."""


@dataclass(frozen=True)
class Alerts:
    """Where admin alerts go: a chat webhook (``alerts`` in resource-limits.yaml)."""

    webhook_url: str | None
    webhook_url_file: str | None
    """A root-only file holding the URL (read by ds01d when it sends)."""
    events: tuple[str, ...]
    """Event types (``gpu.untracked``) or categories (``gpu``) that are alerted."""
    timeout_s: float = 5.0
    retries: int = 3


@dataclass(frozen=True)
class DesiredConfig:
    """Everything the admin files say, validated."""

    builtin: Layer
    defaults: Layer
    default_group: str | None
    groups: Mapping[str, Group]
    overrides: Mapping[str, Override]
    exemptions: tuple[Exemption, ...]
    policies: GlobalPolicies
    container_types: Mapping[str, Mapping[str, Value]]
    mig_layout: MigLayout | None
    warnings: tuple[Diagnostic, ...] = ()
    alerts: Alerts | None = None
    """Admin alerts to a webhook (``None``: the journal and the event log only)."""
    socket_admins: tuple[str, ...] = ()
    """Unix groups whose members pass through the Docker socket (``docker_socket``)."""
    lab_defaults: Layer = field(default_factory=lambda: Layer("policies"))
    """Lab-wide defaults set in the global ``policies`` (idle thresholds, the hold after a
    stop): between builtin and ``defaults``."""
    archived: frozenset[str] = frozenset()
    """Users whose access ended (``groups/archived.members``)."""
    match_without_domain: bool = True
    dcgm: Dcgm | None = None
    rewrites: tuple[Rewrite, ...] = ()

    @cached_property
    def named(self) -> frozenset[str]:
        """Every user name the files list: members, overrides, exemptions, archived."""
        names = {e for g in self.groups.values() for e in g.members} | set(self.overrides)
        return frozenset(names | {e.username for e in self.exemptions} | self.archived)

    @cached_property
    def short_names(self) -> Mapping[str, tuple[str, ...]]:
        """The short slice-name form of every user name the files name -> those names."""
        from ds01d.core.naming import short_part

        index: dict[str, list[str]] = {}
        for name in sorted(self.named):
            index.setdefault(short_part(name), []).append(name)
        return {k: tuple(v) for k, v in index.items()}

    @cached_property
    def member_index(self) -> Mapping[str, tuple[tuple[str, str], ...]]:
        """User name without ``@domain`` -> (entry as written, group): membership in O(1)."""
        index: dict[str, list[tuple[str, str]]] = {}
        for group in self.groups.values():
            for entry in sorted(group.members):
                index.setdefault(local_part(entry), []).append((entry, group.name))
        return {k: tuple(v) for k, v in index.items()}


@dataclass(frozen=True)
class Aggregate:
    """Limits of the user's slice (``None`` = unlimited)."""

    cpu_quota: float | None
    memory_max: int | None
    memory_high: int | None
    tasks_max: int | None
    gpu_limit: float | None
    """GPU-equivalents held at once over all the user's containers."""


@dataclass(frozen=True)
class IdlePolicy:
    gpu_idle_threshold: float
    """Percent utilisation (whole GPU, or a MIG instance's DCGM activity)."""
    cpu_idle_threshold: float
    """Percent of one CPU."""
    network_idle_threshold: float
    """Bytes per second, received and sent."""
    idle_detection_window: float
    """Hours every signal must stay below its threshold before the container counts as idle."""


@dataclass(frozen=True)
class Effective:
    """What applies to one user, and where each value came from."""

    user: str
    group: str | None
    priority: int
    limits: Limits
    aggregate: Aggregate
    policies: IdlePolicy
    sources: Mapping[str, str]
    """``limits`` key, ``aggregate.<key>`` or ``policies.<key>`` -> layer source."""
    reason: str | None = None
    warnings: tuple[str, ...] = ()
    archived: bool = False
    """Listed in ``groups/archived.members``: access ended, no container is given."""

    def for_user(self, user: str) -> Effective:
        """The same limits, for ``user`` (``dataclasses.replace(self, user=user)``, without
        its checks: a new ds01d makes one per user in its first pass)."""
        twin = object.__new__(Effective)
        twin.__dict__.update(self.__dict__, user=user)
        return twin
