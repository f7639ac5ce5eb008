"""``ds01 shell NAME``: docker exec through ds01's socket; a stopped container asked for again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ds01d.cli import main
from tests.conftest import MakeRoot
from tests.unit.test_loader import LAB_FILES

FAKE_DOCKER = """#!/bin/sh
echo "DOCKER_HOST=$DOCKER_HOST"
echo "$@"
"""


@pytest.fixture
def root(make_root: MakeRoot, tmp_path: Path) -> Path:
    r = make_root(LAB_FILES, simulated=True)
    assert main(["--root", str(r), "--as", "alice", "want", "container", "train"]) == 0
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "docker").write_text(FAKE_DOCKER)
    (bindir / "docker").chmod(0o755)
    return r


def status(root: Path, phase: str) -> None:
    folder = root / "var/lib/ds01/status/alice"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.json").write_text(json.dumps({"user": "alice", "name": "train",
                                                   "phase": phase, "reason": phase.lower()}))


def shell(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{root.parent / 'bin'}:{os.environ['PATH']}")
    env.pop("DOCKER_HOST", None)
    return subprocess.run([sys.executable, "-m", "ds01d.cli", "--root", str(root), "--as",
                           "alice", "shell", *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, check=False)


def test_a_running_container_gets_a_shell_through_ds01s_socket(root: Path) -> None:
    status(root, "Running")
    done = shell(root, "train", "--", "id", "-u")
    assert done.returncode == 0, done.stderr
    host, argv = done.stdout.splitlines()
    assert host == f"DOCKER_HOST=unix://{root}/run/ds01/docker.sock"
    assert argv == "exec -i -w /workspace train id -u"


def test_a_stopped_container_is_asked_for_again(root: Path) -> None:
    want = root / "var/lib/ds01/wants/alice/train.yaml"
    before = want.read_text()
    main(["--root", str(root), "sim", "advance", "1h"])
    status(root, "Stopped")
    done = shell(root, "train", "--wait", "0.2")
    assert done.returncode == 1 and "asked ds01d to start train again" in done.stderr
    assert "not running yet" in done.stderr
    assert want.read_text() != before  # a new version: ds01d takes it as asked again
