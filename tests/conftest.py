"""Shared test helpers: a temporary ds01 root with desired-state files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ds01d.adapters.sim import SimHost

REPO = Path(__file__).resolve().parent.parent
# every pass that keeps the last plan of the wants also plans them afresh, and fails when
# the two differ: every test of a daemon checks what is kept
os.environ.setdefault("DS01_CHECK_PLANS", "1")

MakeRoot = Callable[..., Path]


@pytest.fixture
def make_root(tmp_path: Path) -> MakeRoot:
    """``make_root({"resource-limits.yaml": "...", "groups/x.members": "..."})`` -> root."""

    def make(files: dict[str, str], *, simulated: bool = False) -> Path:
        root = tmp_path / "root"
        etc = root / "etc/ds01"
        etc.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = etc / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if simulated:
            (root / "var/lib/ds01/sim").mkdir(parents=True, exist_ok=True)
            (root / "var/lib/ds01/sim/host.json").write_text(SimHost().to_json())
        return root

    return make
