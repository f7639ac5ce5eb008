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
        """GPUs with MIG mode, MIG profiles, MIG instances and utilisation."""

    def processes(self) -> list[GpuProcess]:
        """Every compute process, per GPU or MIG instance."""

    def set_mig_mode(self, gpu_uuid: str, enabled: bool) -> None:
        """Turn MIG on or off; raises when the change is left pending (in use, or a reset
        is needed)."""

    def destroy_instance(self, gpu_uuid: str, gpu_instance_id: int) -> None:
        """Destroy a GPU instance and its compute instance (gone already: nothing to do)."""

    def create_instance(self, gpu_uuid: str, profile_id: int, start: int) -> str:
        """Create a GPU instance at a placement, and one compute instance filling it;
        returns the new MIG device's UUID."""


def _pids(pids: list[tuple[int, str]]) -> str:
    return ", ".join(f"{pid} ({name})" if name else str(pid) for pid, name in pids)


def mig_mode_in_use(gpu: int, enabled: bool, pids: list[tuple[int, str]], *,
                    instances: int = 0) -> TemporaryError:
    """MIG mode left pending because something uses the GPU (retried: it may stop)."""
    mode = "on" if enabled else "off"
    if instances:
        why = f"it still has {instances} MIG instances"
    elif pids:
        why = f"in use by processes {_pids(pids)}"
    else:
        why = ("in use by another client NVML cannot name: nvidia-persistenced, the nvidia_drm "
               "module (modeset), a display server or a monitoring agent (dcgm, "
               f"nv-hostengine); `fuser -v /dev/nvidia{gpu}` names them")
    return TemporaryError(f"MIG mode {mode} on GPU {gpu} is pending: {why}")


def mig_mode_needs_reset(gpu: int, enabled: bool) -> PermanentError:
    """MIG mode set, taking effect only at the next GPU reset."""
    mode = "on" if enabled else "off"
    return PermanentError(f"MIG mode {mode} on GPU {gpu} takes effect at the next GPU reset: "
                          f"run `nvidia-smi -r -i {gpu}` while nothing uses it (or reboot)")


def mig_instance_in_use(gpu: int, uuid: str, pids: list[tuple[int, str]]) -> TemporaryError:
    return TemporaryError(f"MIG instance {uuid} on GPU {gpu} is in use by processes "
                          f"{_pids(pids)}")


def mig_profile_unsupported(gpu: int, model: str, profile: str) -> PermanentError:
    return PermanentError(f"GPU {gpu} ({model}) does not support MIG profile {profile}")


def mig_out_of_placement(gpu: int, profile: str, start: int) -> TemporaryError:
    """The placement is taken (by an instance ds01 did not expect): the next pass re-plans."""
    return TemporaryError(f"GPU {gpu}: no room for {profile} at memory slice {start} (another "
                          "instance takes it, or the GPU holds no more of this profile)")


class Dcgm(Protocol):
    def mig_activity(self) -> list[MigReading]:
        """Each MIG instance's activity (DCGM profiling metrics)."""


class Procfs(Protocol):
    def owner(self, pid: int) -> ProcOwner:
        """PID -> container id (from its cgroup) or host uid and user."""


class Clock(Protocol):
    def now(self) -> datetime:
        ...
