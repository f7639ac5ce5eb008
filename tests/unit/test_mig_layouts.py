"""Every valid MIG layout of an A100 40GB, an A100 80GB and an H100 80GB, as mig-parted's
tests go over them: plan -> apply (through the real nvidia-ml-py and the fake libnvidia-ml,
which holds the profiles and placements these GPUs report) -> observe -> no drift.

A layout is valid when its instances' placements can be kept apart (and no profile is asked
more often than the GPU holds it); the GPUs go from each layout straight to the next, so
every step also keeps what it can of the one before.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tests.fakenvml.build import load

load()

from ds01d.adapters.nvml import NvmlAdapter  # noqa: E402
from ds01d.adapters.sim import SimHost, model_profiles  # noqa: E402
from ds01d.core.mig import place  # noqa: E402
from ds01d.core.model import MigProfile  # noqa: E402
from tests.harness import Lab, with_layout  # noqa: E402

MODELS = ("NVIDIA A100-PCIE-40GB", "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3")


def fits(counts: dict[str, int], table: dict[str, MigProfile]) -> bool:
    names = sorted((p for p, n in counts.items() for _ in range(n)),
                   key=lambda p: (-table[p].memory_mib, p))
    return place(names, table, 0) is not None


def valid_layouts(model: str) -> list[dict[str, int]]:
    """Every non-empty set of instances the GPU can hold, by brute force over the counts."""
    table = {p.name: p for p in model_profiles(model)}
    out = []
    for counts in itertools.product(*(range(p.instances + 1) for p in table.values())):
        layout = {name: n for name, n in zip(table, counts, strict=True) if n}
        if layout and fits(layout, table):
            out.append(layout)
    return out


def yaml_of(layouts: list[dict[str, int] | None]) -> str:
    lines = ["version: 1", "gpus:"]
    for i, devices in enumerate(layouts):
        entry = ({"mig-enabled": False} if devices is None
                 else {"mig-enabled": True, "mig-devices": devices})
        lines.append(f'  "{i}": {json.dumps(entry)}')
    return "\n".join(lines) + "\n"


def test_the_brute_force_agrees_with_the_known_counts() -> None:
    """127 layouts each (checked by hand against the profiles' instance counts and the
    8 memory slices): e.g. 7 x 1g, 4g + 3g, 3 x 2g + 1g, 1g.10gb x4."""
    for model in MODELS:
        layouts = valid_layouts(model)
        assert len(layouts) == 127, model
    a100 = valid_layouts(MODELS[0])
    assert {"1g.5gb": 7} in a100 and {"4g.20gb": 1, "3g.20gb": 1} in a100
    assert {"1g.5gb": 1, "2g.10gb": 3} in a100 and {"1g.10gb": 4} in a100
    assert {"1g.10gb": 4, "1g.5gb": 1} not in a100 and {"3g.20gb": 2, "1g.5gb": 1} not in a100


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    path = tmp_path / "nvml.json"
    path.write_text(json.dumps({"driver": "550.54.15", "gpus": [
        {"uuid": f"GPU-{i}0000000-0000-0000-0000-000000000000", "name": m, "memory_mib": 81920,
         "mig": False, "utilization": 0} for i, m in enumerate(MODELS)]}))
    monkeypatch.setenv("DS01_FAKE_NVML", str(path))
    return Lab(tmp_path / "root", host=SimHost(gpus=[]), nvml=NvmlAdapter())


def test_every_valid_layout_is_planned_applied_and_then_matches(lab: Lab) -> None:
    chains = [valid_layouts(m) for m in MODELS]
    steps: list[list[dict[str, int] | None]] = [list(t) for t in zip(*chains, strict=True)]
    steps.append([None, None, None])  # and back to whole GPUs
    for layouts in steps:
        lab.config = with_layout(lab.config, yaml_of(layouts))
        p = lab.apply()
        assert p.mig.changes and all(c.problem is None for c in p.mig.changes), layouts
        assert lab.executor is not None
        assert lab.executor.backoff == {}, lab.executor.backoff
        seen = lab.adapters().nvml.gpus()
        for gpu, devices in zip(seen, layouts, strict=True):
            assert gpu.mig_enabled == (devices is not None)
            have: dict[str, int] = {}
            for i in gpu.instances:
                have[i.profile] = have.get(i.profile, 0) + 1
            assert have == (devices or {}), (gpu.model, devices)
        assert lab.plan().mig.changes == (), layouts  # no drift
