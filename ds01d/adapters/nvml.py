"""GPUs, MIG instances, utilisation and GPU processes through NVML (nvidia-ml-py).

Read-only: ds01 never changes MIG mode, layout or any GPU setting. Errors become conditions:
NVML missing or the driver not loaded makes :meth:`gpus` raise :class:`AdapterError` (the pass
sees no GPUs and holds back what depends on them); a lost GPU is left out and named in
:attr:`NvmlAdapter.problems`; utilisation that MIG mode does not report is ``None``.
"""

from __future__ import annotations

import re
from typing import Any

import pynvml

from ds01d.adapters.base import AdapterError
from ds01d.core.model import Gpu, GpuProcess, MigInstance

_MIG_NAME = re.compile(r"MIG (\S+)$")


def _why(e: pynvml.NVMLError) -> str:
    if isinstance(e, pynvml.NVMLError_LibraryNotFound):
        return "NVML library not found (is the NVIDIA driver installed?)"
    if isinstance(e, pynvml.NVMLError_DriverNotLoaded):
        return "the NVIDIA driver is not loaded"
    if isinstance(e, pynvml.NVMLError_GpuIsLost):
        return "GPU is lost (fell off the bus, or needs a reset)"
    return f"NVML: {e}"


class NvmlAdapter:
    """The :class:`ds01d.adapters.base.Nvml` protocol over the real NVML."""

    def __init__(self) -> None:
        self.ready = False
        self.problems: dict[str, str] = {}

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
    def _mig_on(h: Any) -> bool:
        try:
            return bool(pynvml.nvmlDeviceGetMigMode(h)[0] == pynvml.NVML_DEVICE_MIG_ENABLE)
        except pynvml.NVMLError_NotSupported:
            return False  # a GPU without MIG support

    def _gpu(self, index: int, h: Any) -> Gpu | None:
        mig = self._mig_on(h)
        try:
            return Gpu(index=index, uuid=str(pynvml.nvmlDeviceGetUUID(h)),
                       model=str(pynvml.nvmlDeviceGetName(h)),
                       memory_mib=int(pynvml.nvmlDeviceGetMemoryInfo(h).total) >> 20,
                       mig_enabled=mig, instances=self._instances(h) if mig else (),
                       utilization=None if mig else self._utilization(h))
        except pynvml.NVMLError as e:
            self.problems[f"gpu {index}"] = _why(e)
            return None

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

    def _instances(self, h: Any) -> tuple[MigInstance, ...]:
        out = []
        for m in self._mig_handles(h):
            found = _MIG_NAME.search(str(pynvml.nvmlDeviceGetName(m)))
            out.append(MigInstance(uuid=str(pynvml.nvmlDeviceGetUUID(m)),
                                   profile=found.group(1) if found else "unknown",
                                   gpu_instance_id=int(pynvml.nvmlDeviceGetGpuInstanceId(m))))
        return tuple(out)

    def processes(self) -> list[GpuProcess]:
        """Compute processes on each whole GPU, and on each MIG instance of the others."""
        try:
            out: list[GpuProcess] = []
            for _, h in self._handles():
                for device in self._mig_handles(h) if self._mig_on(h) else [h]:
                    uuid = str(pynvml.nvmlDeviceGetUUID(device))
                    out += [GpuProcess(int(p.pid), uuid, int(p.usedGpuMemory or 0) >> 20)
                            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(device)]
            return out
        except pynvml.NVMLError as e:
            self.ready = False
            raise AdapterError(_why(e)) from None
