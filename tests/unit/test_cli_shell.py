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


def test_options_before_the_command_and_a_wait_out_of_range(root: Path) -> None:
    status(root, "Running")
    done = shell(root, "train", "--wait", "5", "--", "id", "-u")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == "exec -i -w /workspace train id -u"
    refused = shell(root, "train", "--wait", "-1")
    assert refused.returncode == 2 and "--wait: 0 to 86400 seconds" in refused.stderr


def test_a_stopped_container_is_asked_for_again(root: Path) -> None:
    want = root / "var/lib/ds01/wants/alice/train.yaml"
    before = want.read_text()
    main(["--root", str(root), "sim", "advance", "1h"])
    status(root, "Stopped")
    done = shell(root, "train", "--wait", "0.2")
    assert done.returncode == 1 and "asked ds01d to start train again" in done.stderr
    assert "not running yet" in done.stderr
    assert want.read_text() != before  # a new version: ds01d takes it as asked again


def test_ds01_want_names_a_command_environment_and_ports(make_root: MakeRoot) -> None:
    from ds01d.config.want import from_yaml

    r = make_root(LAB_FILES, simulated=True)
    assert main(["--root", str(r), "--as", "alice", "want", "container", "nb", "--env", "A=1",
                 "--port", "8888", "--command", "jupyter lab"]) == 0
    want = from_yaml((r / "var/lib/ds01/wants/alice/nb.yaml").read_text(), user="alice",
                     file="nb.yaml")
    s = want.settings
    assert s is not None and s.workspace and s.command == ("jupyter", "lab")
    assert s.env == ("A=1",) and [(p.container_port, p.host_port) for p in s.ports] == [
        (8888, 8888)]
    assert main(["--root", str(r), "--as", "alice", "want", "container", "x", "--port",
                 "22"]) == 1
