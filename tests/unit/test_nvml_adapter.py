"""The NVML adapter with the real nvidia-ml-py against the fake libnvidia-ml.so.1.

The fake reads $DS01_FAKE_NVML on every call, so each test changes the machine between calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakenvml.build import load

load()

from ds01d.adapters.base import AdapterError  # noqa: E402
from ds01d.adapters.nvml import NvmlAdapter  # noqa: E402
from ds01d.core.model import GpuProcess, MigInstance  # noqa: E402

A100 = "NVIDIA A100-PCIE-40GB"


def machine() -> dict[str, Any]:
    return {"driver": "550.54.15", "gpus": [
        {"uuid": "GPU-00000000-0000-0000-0000-000000000000", "name": A100, "memory_mib": 40960,
         "mig": False, "utilization": 35, "processes": [{"pid": 100, "used_mib": 1000}]},
        {"uuid": "GPU-11111111-1111-1111-1111-111111111111", "name": A100, "memory_mib": 40960,
         "mig": True, "instances": [
             {"uuid": "MIG-aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa", "profile": "3g.20gb", "gi": 1,
              "ci": 0, "memory_mib": 19968, "processes": [{"pid": 200, "used_mib": 512}]},
             {"uuid": "MIG-bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb", "profile": "3g.20gb", "gi": 2,
              "ci": 0, "memory_mib": 19968, "processes": []}]},
    ]}


Write = Callable[[dict[str, Any]], None]


@pytest.fixture
def nvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[NvmlAdapter, Write]]:
    path = tmp_path / "nvml.json"

    def write(state: dict[str, Any]) -> None:
        path.write_text(json.dumps(state))

    write(machine())
    monkeypatch.setenv("DS01_FAKE_NVML", str(path))
    yield NvmlAdapter(), write


def test_gpus_mig_instances_and_utilisation(nvml: tuple[NvmlAdapter, Write]) -> None:
    adapter, _ = nvml
    whole, split = adapter.gpus()
    assert (whole.index, whole.uuid, whole.model, whole.memory_mib, whole.mig_enabled,
            whole.utilization) == (0, "GPU-00000000-0000-0000-0000-000000000000", A100, 40960,
                                   False, 35.0)
    assert split.mig_enabled and split.utilization is None  # not reported in MIG mode
    assert split.instances == (
        MigInstance("MIG-aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa", "3g.20gb", 1, (0, 4)),
        MigInstance("MIG-bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb", "3g.20gb", 2, (4, 4)))
    assert adapter.driver_version() == "550.54.15"


def test_processes_per_gpu_and_per_mig_instance(nvml: tuple[NvmlAdapter, Write]) -> None:
    adapter, _ = nvml
    assert adapter.processes() == [
        GpuProcess(100, "GPU-00000000-0000-0000-0000-000000000000", 1000),
        GpuProcess(200, "MIG-aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa", 512)]


def test_the_machine_changes_between_calls(nvml: tuple[NvmlAdapter, Write]) -> None:
    adapter, write = nvml
    state = machine()
    state["gpus"][1]["instances"][1]["processes"] = [{"pid": 300, "used_mib": 64}]
    state["gpus"][0]["processes"] = []
    write(state)
    assert adapter.processes() == [
        GpuProcess(200, "MIG-aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa", 512),
        GpuProcess(300, "MIG-bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb", 64)]


def test_a_lost_gpu_is_left_out_and_named(nvml: tuple[NvmlAdapter, Write]) -> None:
    adapter, write = nvml
    state = machine()
    state["gpus"][0]["lost"] = True
    write(state)
    assert [g.index for g in adapter.gpus()] == [1]
    assert adapter.problems == {"gpu 0": "GPU is lost (fell off the bus, or needs a reset)"}


def test_no_driver_is_a_clear_condition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS01_FAKE_NVML", str(tmp_path / "missing.json"))
    with pytest.raises(AdapterError, match="the NVIDIA driver is not loaded"):
        NvmlAdapter().gpus()


def test_a_function_the_fake_lacks_raises_function_not_found(
        nvml: tuple[NvmlAdapter, Write]) -> None:
    import pynvml

    nvml[0].gpus()
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        pynvml.nvmlDeviceGetPowerUsage(pynvml.nvmlDeviceGetHandleByIndex(0))


def test_no_nvml_library_is_a_clear_condition() -> None:
    """In a process that cannot find libnvidia-ml.so.1 at all (no driver installed)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    code = ("from ds01d.adapters.base import AdapterError\n"
            "from ds01d.adapters.nvml import NvmlAdapter\n"
            "try:\n    NvmlAdapter().gpus()\nexcept AdapterError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "NVML library not found (is the NVIDIA driver installed?)"


def test_a_lost_gpu_is_observed_as_a_named_condition(nvml: tuple[NvmlAdapter, Write]) -> None:
    from datetime import UTC, datetime

    from ds01d.adapters.sim import SimDocker, SimHost, SimProcfs, SimSystemd
    from ds01d.runtime.observe import Adapters, observe

    adapter, write = nvml
    state = machine()
    state["gpus"][0]["lost"] = True
    write(state)
    host = SimHost()
    seen = observe(Adapters(SimSystemd(host), SimDocker(host), adapter, SimProcfs(host)),
                   datetime.now(UTC))
    assert [g.index for g in seen.gpus] == [1]
    assert seen.adapter_errors == {"nvml:gpu 0": "GPU is lost (fell off the bus, or needs a reset)"}
