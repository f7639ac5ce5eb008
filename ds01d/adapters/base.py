"""The adapter protocols: how the daemon sees and changes the machine.

Real adapters (pystemd, docker, pynvml, /proc) and the stateful fakes of the simulated host
implement the same protocols, so the planner and executor never know which they talk to.
Errors: :class:`TemporaryError` is retried with per-object backoff; :class:`PermanentError`
becomes a status reason and an event, and is not retried in a tight loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from ds01d.core.actions import ContainerSpec
from ds01d.core.model import Container, Gpu, GpuProcess, MigReading, ProcOwner, SliceState


class AdapterError(Exception):
    """Something the machine refused or could not do."""


class TemporaryError(AdapterError):
    """Worth retrying later (the daemon backs off: 1 s, 2 s, 3 s, 5 s ... 60 s)."""


class PermanentError(AdapterError):
    """Retrying will not help until something changes (a missing image, a bad device)."""


class Systemd(Protocol):
    def list_slices(self) -> list[SliceState]:
        """ds01's slices (``ds01.slice`` and ``ds01-*.slice``) with managed properties."""

    def start_slice(self, name: str, properties: Mapping[str, int | None]) -> None:
        """Create a transient slice."""

    def set_slice_properties(self, name: str, properties: Mapping[str, int | None]) -> None:
        ...

    def stop_slice(self, name: str) -> None:
        ...


class Docker(Protocol):
    def list_containers(self) -> list[Container]:
        """Every container, ds01's and others', with devices from DeviceRequests."""

    def create_and_start(self, spec: ContainerSpec) -> str:
        """Create and start; returns the container id."""

    def start(self, container_id: str) -> None:
        ...

    def stop(self, container_id: str, grace_s: float) -> None:
        ...

    def remove(self, container_id: str) -> None:
        ...


class Nvml(Protocol):
    def gpus(self) -> list[Gpu]:
        """GPUs with MIG mode, MIG instances and utilisation."""

    def processes(self) -> list[GpuProcess]:
        """Every compute process, per GPU or MIG instance."""


class Dcgm(Protocol):
    def mig_activity(self) -> list[MigReading]:
        """Each MIG instance's activity (DCGM profiling metrics)."""


class Procfs(Protocol):
    def owner(self, pid: int) -> ProcOwner:
        """PID -> container id (from its cgroup) or host uid and user."""


class Clock(Protocol):
    def now(self) -> datetime:
        ...
