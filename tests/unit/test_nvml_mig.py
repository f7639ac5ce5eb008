"""Changing the MIG layout through the real nvidia-ml-py against the fake libnvidia-ml.so.1:
the profiles and placements the GPU reports, instances made and destroyed, MIG mode, and the
errors real drivers give, as clear errors (the fake writes its state back to its file)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakenvml.build import load

load()

from ds01d.adapters.base import PermanentError, TemporaryError  # noqa: E402
from ds01d.adapters.nvml import NvmlAdapter  # noqa: E402
from ds01d.core.model import MigInstance, MigProfile  # noqa: E402

A100_40, A100_80, H100 = "NVIDIA A100-PCIE-40GB", "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"
GPU = [f"GPU-{n}{n}{n}{n}{n}{n}{n}{n}-0000-0000-0000-000000000000" for n in range(4)]
MIG_A = "MIG-aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"


def machine() -> dict[str, Any]:
    return {"driver": "550.54.15", "gpus": [
        {"uuid": GPU[0], "name": A100_40, "memory_mib": 40960, "mig": False, "utilization": 0},
        {"uuid": GPU[1], "name": A100_80, "memory_mib": 81920, "mig": True, "instances": [
            {"uuid": MIG_A, "profile": "3g.40gb", "gi": 1, "ci": 0, "start": 4,
             "memory_mib": 40192, "processes": [{"pid": 4242, "used_mib": 512, "name": "python"}]}]},
        {"uuid": GPU[2], "name": H100, "memory_mib": 81559, "mig": True, "instances": []},
        {"uuid": GPU[3], "name": "Tesla V100-SXM2-32GB", "memory_mib": 32768, "mig": False}]}


Machine = tuple[NvmlAdapter, Callable[[], dict[str, Any]], Path]


@pytest.fixture
def nvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    path = tmp_path / "nvml.json"
    path.write_text(json.dumps(machine()))
    monkeypatch.setenv("DS01_FAKE_NVML", str(path))
    yield NvmlAdapter(), lambda: json.loads(path.read_text()), path


def test_the_profile_table_and_placements_are_read_from_each_gpu(nvml: Machine) -> None:
    adapter, _, _ = nvml
    a40, a80, h100, v100 = adapter.gpus()
    assert [(p.name, p.id, p.slices, p.instances) for p in a40.profiles] == [
        ("1g.5gb", 19, 1, 7), ("2g.10gb", 14, 2, 3), ("3g.20gb", 9, 3, 2), ("4g.20gb", 5, 4, 1),
        ("7g.40gb", 0, 7, 1), ("1g.5gb+me", 20, 1, 1), ("1g.10gb", 15, 1, 4)]
    table = {p.name: p for p in a40.profiles}
    assert table["3g.20gb"] == MigProfile("3g.20gb", 9, 3, 2, 19968, ((0, 4), (4, 4)))
    assert table["1g.10gb"].placements == ((0, 2), (2, 2), (4, 2), (6, 2))
    assert table["7g.40gb"].placements == ((0, 8),)
    assert sorted(p.name for p in a80.profiles) == sorted(p.name for p in h100.profiles) == [
        "1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]
    assert {p.name: p.memory_mib for p in h100.profiles}["3g.40gb"] == 40448
    assert v100.profiles == () and not v100.mig_enabled
    assert a80.instances == (MigInstance(MIG_A, "3g.40gb", 1, (4, 4)),)


def test_an_instance_is_created_at_its_placement_and_written_back(nvml: Machine) -> None:
    adapter, state, _ = nvml
    adapter.gpus()
    uuid = adapter.create_instance(GPU[2], 9, 4)  # 3g.40gb at memory slice 4
    assert uuid.startswith("MIG-")
    [inst] = state()["gpus"][2]["instances"]
    assert (inst["uuid"], inst["profile"], inst["start"], inst["ci"]) == (uuid, "3g.40gb", 4, 0)
    assert adapter.gpus()[2].instances == (MigInstance(uuid, "3g.40gb", 1, (4, 4)),)
    again = adapter.create_instance(GPU[2], 9, 0)
    assert again != uuid
    adapter.destroy_instance(GPU[2], 1)
    adapter.create_instance(GPU[2], 9, 4)
    assert uuid not in {i.uuid for i in adapter.gpus()[2].instances}  # a new UUID each time


def test_a_taken_placement_is_out_of_placement(nvml: Machine) -> None:
    adapter, _, _ = nvml
    adapter.gpus()
    with pytest.raises(TemporaryError, match=r"GPU 1: no room for 4g.40gb at memory slice 0"):
        adapter.create_instance(GPU[1], 5, 0)  # 4g.40gb takes 0-3; fine alone
        adapter.create_instance(GPU[1], 5, 0)
    with pytest.raises(TemporaryError, match=r"no room for 1g\.10gb at memory slice 4"):
        adapter.create_instance(GPU[1], 19, 4)  # inside the 3g.40gb at 4-7


def test_a_profile_the_gpu_lacks_is_refused(nvml: Machine) -> None:
    adapter, _, _ = nvml
    adapter.gpus()
    with pytest.raises(PermanentError, match=r"GPU 2 \(NVIDIA H100 80GB HBM3\) does not "
                       "support MIG profile id 6 at 0"):
        adapter.create_instance(GPU[2], 6, 0)
    with pytest.raises(PermanentError, match="GPU 0: MIG is off"):
        adapter.create_instance(GPU[0], 9, 0)


def test_an_instance_in_use_is_not_destroyed_and_its_processes_are_named(
        nvml: Machine) -> None:
    adapter, state, path = nvml
    adapter.gpus()
    with pytest.raises(TemporaryError, match=f"MIG instance {MIG_A} on GPU 1 is in use by "
                       r"processes 4242 \(python\)"):
        adapter.destroy_instance(GPU[1], 1)
    s = state()
    s["gpus"][1]["instances"][0]["processes"] = []
    path.write_text(json.dumps(s))
    adapter.destroy_instance(GPU[1], 1)
    adapter.destroy_instance(GPU[1], 1)  # gone already: nothing to do
    assert state()["gpus"][1]["instances"] == []


def test_a_gpu_instance_without_a_compute_instance_is_seen_and_destroyed(nvml: Machine) -> None:
    adapter, state, path = nvml
    s = state()
    s["gpus"][2]["instances"] = [{"profile": "2g.20gb", "gi": 3, "ci": None, "start": 2}]
    path.write_text(json.dumps(s))
    assert adapter.gpus()[2].instances == (MigInstance("", "2g.20gb", 3, (2, 2)),)
    adapter.destroy_instance(GPU[2], 3)
    assert adapter.gpus()[2].instances == ()


def test_mig_mode_changes_or_says_why_not(nvml: Machine) -> None:
    adapter, _, _ = nvml
    adapter.set_mig_mode(GPU[0], True)
    assert adapter.gpus()[0].mig_enabled
    with pytest.raises(TemporaryError, match="MIG mode off on GPU 1 is pending: it still has "
                       "1 MIG instances"):
        adapter.set_mig_mode(GPU[1], False)
    assert adapter.gpus()[1].mig_pending is False
    adapter.set_mig_mode(GPU[1], True)  # back: nothing pending
    assert adapter.gpus()[1].mig_pending is None


def test_a_mode_change_needing_a_reset_or_held_by_a_client_is_a_clear_error(
        nvml: Machine) -> None:
    adapter, state, path = nvml
    s = state()
    s["gpus"][0]["mig_reset_required"] = True
    s["gpus"][2]["held"] = True
    path.write_text(json.dumps(s))
    with pytest.raises(PermanentError, match=r"MIG mode on on GPU 0 takes effect at the next "
                       r"GPU reset: run `nvidia-smi -r -i 0`"):
        adapter.set_mig_mode(GPU[0], True)
    assert adapter.gpus()[0].mig_pending is True
    with pytest.raises(TemporaryError, match="in use by another client NVML cannot name: "
                       "nvidia-persistenced, the nvidia_drm module"):
        adapter.set_mig_mode(GPU[2], False)
    s = state()
    s["gpus"][2]["held"] = False
    s["gpus"][2]["graphics"] = [{"pid": 1500, "used_mib": 16, "name": "Xorg"}]
    path.write_text(json.dumps(s))
    with pytest.raises(TemporaryError, match=r"in use by processes 1500 \(Xorg\)"):
        adapter.set_mig_mode(GPU[2], False)
    with pytest.raises(PermanentError, match="MIG mode on GPU 3: NVML: Not Supported"):
        adapter.set_mig_mode(GPU[3], True)


def test_an_instance_keeps_its_placement_when_another_goes(nvml: Machine) -> None:
    """Instances listed without a placement take the first free one once; destroying one of
    them must not move the others (as on a GPU)."""
    adapter, state, path = nvml
    s = state()
    s["gpus"][2]["instances"] = [
        {"uuid": f"MIG-{n}{n}{n}{n}{n}{n}{n}{n}-0000-0000-0000-000000000000",
         "profile": "3g.40gb", "gi": n, "ci": 0} for n in (1, 2)]
    path.write_text(json.dumps(s))
    assert [i.placement for i in adapter.gpus()[2].instances] == [(0, 4), (4, 4)]
    adapter.destroy_instance(GPU[2], 1)
    assert [i.placement for i in adapter.gpus()[2].instances] == [(4, 4)]
    adapter.create_instance(GPU[2], 14, 0)  # a 2g.20gb where the first one was
