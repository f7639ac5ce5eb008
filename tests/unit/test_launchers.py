"""The launchers `make venv` installs import only ds01 (pip's import re first)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("name", ["ds01", "ds01d"])
def test_the_launcher_is_lean_and_isolated(name: str) -> None:
    launcher = BIN / name
    text = launcher.read_text()
    assert text.startswith(f"#!{BIN}/python -I\n"), text
    assert "import re" not in text
    done = subprocess.run([str(launcher), "--version"], capture_output=True, text=True,
                          check=True, env={"PYTHONPATH": "/nonexistent", "PATH": "/usr/bin"})
    assert done.stdout.startswith(name)


def test_status_imports_nothing_it_does_not_use(tmp_path: Path) -> None:
    """``ds01 status`` through the launcher: no argparse, re, json, dataclasses or typing."""
    done = subprocess.run([sys.executable, "-I", "-X", "importtime", str(BIN / "ds01"),
                           "--root", str(tmp_path), "--as", "x", "status"],
                          capture_output=True, text=True, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "ds01d.cli" in imported
    assert not imported & {"argparse", "re", "json", "dataclasses", "typing", "yaml"}, imported
