"""GPUs, MIG profiles and instances, utilisation and GPU processes through NVML
(nvidia-ml-py); and the MIG layout changes ds01d plans (MIG mode, GPU and compute instances).

Errors become conditions: NVML missing or the driver not loaded makes :meth:`gpus` raise
:class:`AdapterError` (the pass sees no GPUs and holds back what depends on them); a lost GPU
is left out and named in :attr:`NvmlAdapter.problems`; utilisation that MIG mode does not
report is ``None``. A change the driver refuses is a :class:`TemporaryError` (in use: retried
with backoff) or a :class:`PermanentError` (a reset needed, a profile the GPU lacks), in words
an admin can act on, never a crashed pass.

ref: https://docs.nvidia.com/deploy/nvml-api/group__nvmlMultiInstanceGPU.html
"""

from __future__ import annotations

import contextlib
import ctypes
import re
from typing import Any

import pynvml

from ds01d.adapters import base
from ds01d.adapters.base import AdapterError, PermanentError, TemporaryError
from ds01d.core.model import Gpu, GpuProcess, MigInstance, MigProfile

_MIG_NAME = re.compile(r"MIG (\S+)\Z")


def _why(e: pynvml.NVMLError) -> str:
    if isinstance(e, pynvml.NVMLError_LibraryNotFound):
        return "NVML library not found (is the NVIDIA driver installed?)"
    if isinstance(e, pynvml.NVMLError_DriverNotLoaded):
        return "the NVIDIA driver is not loaded"
    if isinstance(e, pynvml.NVMLError_GpuIsLost):
        return "GPU is lost (fell off the bus, or needs a reset)"
    if isinstance(e, pynvml.NVMLError_NoPermission):
        return "NVML: no permission (MIG changes and placements need root)"
    return f"NVML: {e}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlAdapter:
    """The :class:`ds01d.adapters.base.Nvml` protocol over the real NVML."""

    def __init__(self) -> None:
        self.ready = False
        self.problems: dict[str, str] = {}
        self.tables: dict[str, tuple[MigProfile, ...]] = {}
        """GPU uuid -> its MIG profiles, read once (a GPU's profiles do not change)."""

    def _init(self) -> None:
        if not self.ready:
            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as e:
                raise AdapterError(_why(e)) from None
            self.ready = True

    def driver_version(self) -> str:
        self._init()
        return str(pynvml.nvmlSystemGetDriverVersion())

    def _handles(self) -> list[tuple[int, Any]]:
        self._init()
        self.problems = {}
        out = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            try:
                out.append((index, pynvml.nvmlDeviceGetHandleByIndex(index)))
            except pynvml.NVMLError as e:
                self.problems[f"gpu {index}"] = _why(e)
        return out

    def gpus(self) -> list[Gpu]:
        try:
            return [g for index, h in self._handles() if (g := self._gpu(index, h)) is not None]
        except pynvml.NVMLError as e:
            self.ready = False
            raise AdapterError(_why(e)) from None

    @staticmethod
    def _mig_mode(h: Any) -> tuple[bool, bool] | None:
        """(current, pending) MIG mode; ``None``: the GPU has no MIG."""
        try:
            current, pending = pynvml.nvmlDeviceGetMigMode(h)
        except pynvml.NVMLError_NotSupported:
            return None
        on = pynvml.NVML_DEVICE_MIG_ENABLE
        return current == on, pending == on

    def _gpu(self, index: int, h: Any) -> Gpu | None:
        try:
            mode = self._mig_mode(h)
            mig = mode is not None and mode[0]
            uuid = str(pynvml.nvmlDeviceGetUUID(h))
            profiles = self._profiles(index, uuid, h) if mode is not None else ()
            return Gpu(index=index, uuid=uuid, model=str(pynvml.nvmlDeviceGetName(h)),
                       memory_mib=int(pynvml.nvmlDeviceGetMemoryInfo(h).total) >> 20,
                       mig_enabled=mig, instances=self._instances(h, profiles) if mig else (),
                       utilization=None if mig else self._utilization(h),
                       mig_pending=mode[1] if mode is not None and mode[1] != mode[0] else None,
                       profiles=profiles)
        except pynvml.NVMLError as e:
            self.problems[f"gpu {index}"] = _why(e)
            return None

    def _profiles(self, index: int, uuid: str, h: Any) -> tuple[MigProfile, ...]:
        """The GPU's MIG profiles and placements (ref: nvmlDeviceGetGpuInstanceProfileInfoV,
        nvmlDeviceGetGpuInstancePossiblePlacements_v2), read once per GPU."""
        if uuid in self.tables:
            return self.tables[uuid]
        out = []
        try:
            for kind in range(pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT):
                try:
                    info = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(h, kind)
                except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_InvalidArgument):
                    continue  # not a profile of this GPU
                name = _text(info.name).removeprefix("MIG ")
                out.append(MigProfile(name, int(info.id), int(info.sliceCount),
                                      int(info.instanceCount), int(info.memorySizeMB),
                                      self._placements(h, int(info.id))))
        except pynvml.NVMLError as e:
            self.problems[f"gpu {index} MIG profiles"] = _why(e)
            return ()
        self.tables[uuid] = tuple(out)
        return self.tables[uuid]

    @staticmethod
    def _placements(h: Any, profile_id: int) -> tuple[tuple[int, int], ...]:
        count = ctypes.c_uint(0)
        pynvml.nvmlDeviceGetGpuInstancePossiblePlacements(h, profile_id, None,
                                                          ctypes.byref(count))
        found = (pynvml.c_nvmlGpuInstancePlacement_t * count.value)()
        pynvml.nvmlDeviceGetGpuInstancePossiblePlacements(h, profile_id, found,
                                                          ctypes.byref(count))
        return tuple((int(p.start), int(p.size)) for p in found[:count.value])

    def _utilization(self, h: Any) -> float | None:
        try:
            return float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
        except pynvml.NVMLError_NotSupported:
            return None

    def _mig_handles(self, h: Any) -> list[Any]:
        out = []
        for i in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(h)):
            try:
                out.append(pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, i))
            except (pynvml.NVMLError_NotFound, pynvml.NVMLError_InvalidArgument):
                continue  # no instance in this slot
        return out

    @staticmethod
    def _gpu_instances(h: Any, profiles: tuple[MigProfile, ...]
                       ) -> dict[int, tuple[str, tuple[int, int], Any]]:
        """GPU instance id -> (profile, placement, handle), for every GPU instance (ref:
        nvmlDeviceGetGpuInstances, nvmlGpuInstanceGetInfo)."""
        out = {}
        for p in profiles:
            found = (pynvml.c_nvmlGpuInstance_t * max(p.instances, 1))()
            count = ctypes.c_uint(0)
            pynvml.nvmlDeviceGetGpuInstances(h, p.id, found, ctypes.byref(count))
            for gi in found[:count.value]:
                info = pynvml.nvmlGpuInstanceGetInfo(gi)
                out[int(info.id)] = (p.name, (int(info.placement.start),
                                              int(info.placement.size)), gi)
        return out

    def _instances(self, h: Any, profiles: tuple[MigProfile, ...]) -> tuple[MigInstance, ...]:
        """MIG devices, and GPU instances without a compute instance (``uuid`` empty)."""
        try:
            gis = self._gpu_instances(h, profiles)
        except pynvml.NVMLError:
            gis = {}  # an older driver, or no permission: the devices alone, placements unknown
        out = {}
        for m in self._mig_handles(h):
            gi = int(pynvml.nvmlDeviceGetGpuInstanceId(m))
            found = _MIG_NAME.search(str(pynvml.nvmlDeviceGetName(m)))
            profile, placement = gis[gi][:2] if gi in gis else (
                found.group(1) if found else "unknown", None)
            out[gi] = MigInstance(str(pynvml.nvmlDeviceGetUUID(m)), profile, gi, placement)
        for gi, (profile, placement, _) in gis.items():
            out.setdefault(gi, MigInstance("", profile, gi, placement))
        return tuple(out[gi] for gi in sorted(out))

    def processes(self) -> list[GpuProcess]:
        """Compute processes on each whole GPU, and on each MIG instance of the others."""
        try:
            out: list[GpuProcess] = []
            for _, h in self._handles():
                mode = self._mig_mode(h)
                for device in self._mig_handles(h) if mode and mode[0] else [h]:
                    uuid = str(pynvml.nvmlDeviceGetUUID(device))
                    out += [GpuProcess(int(p.pid), uuid, int(p.usedGpuMemory or 0) >> 20)
                            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(device)]
            return out
        except pynvml.NVMLError as e:
            self.ready = False
            raise AdapterError(_why(e)) from None

    # ---- changing the MIG layout ------------------------------------------------------

    def _handle(self, gpu_uuid: str) -> tuple[int, Any]:
        try:
            for index, h in self._handles():
                if str(pynvml.nvmlDeviceGetUUID(h)) == gpu_uuid:
                    return index, h
        except pynvml.NVMLError as e:
            raise TemporaryError(_why(e)) from None
        raise PermanentError(f"no GPU {gpu_uuid} on this host")

    @staticmethod
    def _pids(device: Any) -> list[tuple[int, str]]:
        """Processes on a GPU or MIG device, with their names where NVML knows them."""
        procs = []
        for fn in (pynvml.nvmlDeviceGetComputeRunningProcesses,
                   pynvml.nvmlDeviceGetGraphicsRunningProcesses):
            try:
                procs += [int(p.pid) for p in fn(device)]
            except pynvml.NVMLError:
                continue
        out = []
        for pid in sorted(set(procs)):
            try:
                out.append((pid, _text(pynvml.nvmlSystemGetProcessName(pid))))
            except pynvml.NVMLError:
                out.append((pid, ""))
        return out

    def set_mig_mode(self, gpu_uuid: str, enabled: bool) -> None:
        """ref: nvmlDeviceSetMigMode: the activation status says whether the mode took effect
        (in use: idle the GPU and retry; reset required: it takes effect at the next reset)."""
        index, h = self._handle(gpu_uuid)
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if enabled else pynvml.NVML_DEVICE_MIG_DISABLE
        try:
            status = int(pynvml.nvmlDeviceSetMigMode(h, mode))
        except pynvml.NVMLError_InUse:
            status = pynvml.NVML_ERROR_IN_USE
        except pynvml.NVMLError as e:
            raise PermanentError(f"MIG mode on GPU {index}: {_why(e)}") from None
        if status == pynvml.NVML_ERROR_IN_USE:
            instances = 0 if enabled else len(self._mig_handles(h))
            raise base.mig_mode_in_use(index, enabled, self._pids(h), instances=instances)
        if status == pynvml.NVML_ERROR_RESET_REQUIRED:
            raise base.mig_mode_needs_reset(index, enabled)
        if status != pynvml.NVML_SUCCESS:
            raise PermanentError(f"MIG mode on GPU {index}: {pynvml.nvmlErrorString(status)}")
        current = self._mig_mode(h)
        if current is not None and current[0] != enabled:
            raise base.mig_mode_needs_reset(index, enabled)

    def _mig_device(self, h: Any, gpu_instance_id: int) -> Any:
        return next((m for m in self._mig_handles(h)
                     if int(pynvml.nvmlDeviceGetGpuInstanceId(m)) == gpu_instance_id), None)

    def _in_use(self, index: int, h: Any, gpu_instance_id: int) -> TemporaryError:
        m = self._mig_device(h, gpu_instance_id)
        uuid = str(pynvml.nvmlDeviceGetUUID(m)) if m is not None else f"GI {gpu_instance_id}"
        return base.mig_instance_in_use(index, uuid, self._pids(m) if m is not None else [])

    def destroy_instance(self, gpu_uuid: str, gpu_instance_id: int) -> None:
        """Its compute instances, then the GPU instance (ref: nvmlComputeInstanceDestroy,
        nvmlGpuInstanceDestroy); one already gone is what this step wanted."""
        index, h = self._handle(gpu_uuid)
        try:
            gi = pynvml.nvmlDeviceGetGpuInstanceById(h, gpu_instance_id)
        except (pynvml.NVMLError_NotFound, pynvml.NVMLError_InvalidArgument):
            return
        except pynvml.NVMLError as e:
            raise TemporaryError(f"GPU {index} GI {gpu_instance_id}: {_why(e)}") from None
        try:
            for ci in self._compute_instances(gi):
                pynvml.nvmlComputeInstanceDestroy(ci)
            pynvml.nvmlGpuInstanceDestroy(gi)
        except pynvml.NVMLError_InUse:
            raise self._in_use(index, h, gpu_instance_id) from None
        except pynvml.NVMLError as e:
            raise TemporaryError(f"GPU {index} GI {gpu_instance_id}: {_why(e)}") from None

    @staticmethod
    def _compute_instances(gi: Any) -> list[Any]:
        out = []
        for kind in range(pynvml.NVML_COMPUTE_INSTANCE_PROFILE_COUNT):
            found = (pynvml.c_nvmlComputeInstance_t * 8)()
            count = ctypes.c_uint(0)
            try:
                pynvml.nvmlGpuInstanceGetComputeInstances(gi, kind, found, ctypes.byref(count))
            except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_InvalidArgument):
                continue
            out += found[:count.value]
        return out

    def create_instance(self, gpu_uuid: str, profile_id: int, start: int) -> str:
        """A GPU instance at the placement, then one compute instance filling it (ref:
        nvmlDeviceCreateGpuInstanceWithPlacement, nvmlGpuInstanceCreateComputeInstance); a
        GPU instance whose compute instance fails is destroyed again."""
        index, h = self._handle(gpu_uuid)
        model = str(pynvml.nvmlDeviceGetName(h))
        mode = self._mig_mode(h)
        if mode is None or not mode[0]:
            raise PermanentError(f"GPU {index}: MIG is off; no instance can be created")
        profile = next((p for p in self.tables.get(gpu_uuid, ()) if p.id == profile_id), None)
        size = dict(profile.placements).get(start) if profile else None
        if profile is None or size is None:
            raise base.mig_profile_unsupported(index, model, f"id {profile_id} at {start}")
        placement = pynvml.c_nvmlGpuInstancePlacement_t()
        placement.start, placement.size = start, size
        try:
            gi = pynvml.nvmlDeviceCreateGpuInstanceWithPlacement(h, profile_id,
                                                                 ctypes.byref(placement))
        except pynvml.NVMLError_InsufficientResources:
            raise base.mig_out_of_placement(index, profile.name, start) from None
        except pynvml.NVMLError_NotSupported:
            raise base.mig_profile_unsupported(index, model, profile.name) from None
        except pynvml.NVMLError as e:
            raise TemporaryError(f"GPU {index}: creating {profile.name}: {_why(e)}") from None
        try:
            pynvml.nvmlGpuInstanceCreateComputeInstance(gi, self._full_compute(gi, profile))
            gi_id = int(pynvml.nvmlGpuInstanceGetInfo(gi).id)
            m = self._mig_device(h, gi_id)
            return "" if m is None else str(pynvml.nvmlDeviceGetUUID(m))
        except pynvml.NVMLError as e:
            with contextlib.suppress(pynvml.NVMLError):  # else the next pass destroys it
                pynvml.nvmlGpuInstanceDestroy(gi)
            raise TemporaryError(f"GPU {index}: compute instance in {profile.name}: "
                                 f"{_why(e)}") from None

    @staticmethod
    def _full_compute(gi: Any, profile: MigProfile) -> int:
        """The compute instance profile taking all of the GPU instance's slices."""
        for kind in range(pynvml.NVML_COMPUTE_INSTANCE_PROFILE_COUNT):
            try:
                info = pynvml.nvmlGpuInstanceGetComputeInstanceProfileInfo(
                    gi, kind, pynvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
            except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_InvalidArgument):
                continue
            if int(info.sliceCount) == profile.slices:
                return int(info.id)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
