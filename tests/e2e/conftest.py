"""The testbed (scripts/e2e.sh starts it): ds01d run by a real systemd from units/ds01d.service,
against a real dockerd and the fake NVML, driven through the ds01 CLI as real users."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.fakenvml.build import build

TB = REPO / "scripts/testbed.sh"
BIN = Path(sys.executable).parent
USERS = tuple(os.environ.get("DS01_E2E_USERS", "dsalice,dsbob,dscarol").split(","))
"""The test users (made with useradd when missing, removed after): three names, which a
machine shared by several checkouts sets apart per checkout (``DS01_E2E_USERS``)."""
ALICE, BOB, CAROL = USERS
GPU0 = "GPU-e2e00000-0000-0000-0000-000000000000"
GPU1 = "GPU-e2e11111-1111-1111-1111-111111111111"
MIG_A = "MIG-e2eaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
MIG_B = "MIG-e2ebbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb"

CONFIG = """\
version: 1
defaults:
  max_gpu_equivalents: 1
  allow_full_gpu: true
  max_cpus: 1
  memory: 256m
  memory_swap: 256m
  shm_size: 64m
  pids_limit: 100
  max_containers_per_user: 3
  idle_timeout_h: {idle}
  max_runtime_h: null
  container_hold_after_stop_h: null
default_group: student
groups:
  student:
    members: [{alice}, {bob}, {carol}]
    aggregate: {{cpu_quota: "150%", memory_max: 512m, memory_high: 400m, tasks_max: 300,
                gpu_limit: 2}}
policies: {{grace_period_m: 0, sigterm_grace_s: 1, high_demand_threshold: 1,
           idle_detection_window: 1s, stop_notice_m: 0.1}}
"""


def run(*cmd: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=check)


def tb(*cmd: str) -> str:
    """A command inside the testbed's namespaces (systemctl, journalctl, kill...)."""
    return run(TB, "exec", *cmd).stdout


def docker(*args: str) -> str:
    return run("docker", *args).stdout


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@contextlib.contextmanager
def unix_users(names: tuple[str, ...]) -> Iterator[dict[str, tuple[int, int]]]:
    """Real Unix users for a test (made with useradd, removed after): name -> (uid, gid)."""
    if "DOCKER_HOST" not in os.environ or "DS01_TESTBED_DIR" not in os.environ:
        pytest.fail("run the end-to-end tests with `make e2e` (it starts the testbed)")
    made = []
    homes = REPO / "build/e2e-home"
    try:
        for u in names:
            if run("id", u, check=False).returncode != 0:
                run("useradd", "--no-create-home", "--no-user-group", "--shell",
                    "/usr/sbin/nologin", "--home-dir", str(homes / u), u)
                made.append(u)
            else:  # left over from an interrupted run: their home is ours for this run
                run("usermod", "--home", str(homes / u), u)
        ids = {u: (int(run("id", "-u", u).stdout), int(run("id", "-g", u).stdout))
               for u in names}
        for u, (uid, gid) in ids.items():  # real homes: the users' own (ds01d works there as them)
            home = homes / u
            home.mkdir(parents=True, exist_ok=True)
            os.chown(home, uid, gid)
            home.chmod(0o750)
        yield ids
    finally:
        for u in made:
            run("userdel", u, check=False)
            shutil.rmtree(homes / u, ignore_errors=True)


@pytest.fixture(scope="session")
def users() -> Iterator[dict[str, tuple[int, int]]]:
    with unix_users(USERS) as made:
        yield made


class Lab:
    """One ds01 root, one ds01d run by the testbed's systemd, one fake NVML machine."""

    def __init__(self, root: Path, users: dict[str, tuple[int, int]]) -> None:
        self.root, self.users = root, users
        self.nvml = root / "nvml.json"

    def machine(self, procs: dict[str, list[dict[str, int]]] | None = None) -> None:
        procs = procs or {}
        state = {"driver": "550.54.15", "gpus": [
            {"uuid": GPU0, "name": "NVIDIA A100-PCIE-40GB", "memory_mib": 40960, "mig": False,
             "utilization": 0, "processes": procs.get(GPU0, [])},
            {"uuid": GPU1, "name": "NVIDIA A100-PCIE-40GB", "memory_mib": 40960, "mig": True,
             "instances": [
                 {"uuid": MIG_A, "profile": "3g.20gb", "gi": 1, "ci": 0, "memory_mib": 19968,
                  "processes": procs.get(MIG_A, [])},
                 {"uuid": MIG_B, "profile": "3g.20gb", "gi": 2, "ci": 0, "memory_mib": 19968,
                  "processes": procs.get(MIG_B, [])}]}]}
        tmp = self.nvml.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.nvml)

    def ds01(self, *args: str) -> str:
        return run(BIN / "ds01", "--root", str(self.root), *args).stdout

    def want(self, user: str, name: str, *args: str) -> str:
        """``ds01 want container`` as ``user``, with the testbed's local image."""
        return self.ds01("--as", user, "want", "container", name, "--image", "ds01-test:1",
                         *args)

    def status(self, user: str, name: str) -> dict[str, Any]:
        path = self.root / "var/lib/ds01/status" / user / f"{name}.json"
        try:
            body: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return body

    def events(self, kind: str) -> list[dict[str, Any]]:
        path = self.root / "var/log/ds01/events.jsonl"
        if not path.exists():
            return []
        return [e for line in path.read_text().splitlines()
                if (e := json.loads(line))["event_type"] == kind]

    def inspect(self, user: str, name: str) -> dict[str, Any]:
        out = run("docker", "inspect", f"ds01-{user}-{name}", check=False).stdout
        found: list[dict[str, Any]] = json.loads(out or "[]")
        return found[0] if found else {}

    def running(self, user: str, name: str) -> bool:
        info = self.inspect(user, name)
        return bool(info) and info["State"]["Status"] == "running" and \
            self.status(user, name).get("phase") == "Running"

    def main_pid(self) -> int:
        return int(tb("systemctl", "show", "-p", "MainPID", "--value", "ds01d").strip())


def _install_unit(root: Path, nvml: Path) -> None:
    units = Path(os.environ["DS01_TESTBED_DIR"]) / "run/systemd/system"
    shutil.copy(REPO / "units/ds01d.service", units / "ds01d.service")
    dropin = units / "ds01d.service.d"
    dropin.mkdir(exist_ok=True)
    (dropin / "testbed.conf").write_text(f"""\
# the testbed: ds01d from this checkout, on a test root, the testbed's dockerd, the fake NVML
[Service]
ExecStart=
ExecStart={BIN / "ds01d"} --root {root} --interval 1 --utmp {root / "utmp"}
Environment=DOCKER_HOST=unix:///run/ds01-docker.sock
Environment=LD_LIBRARY_PATH={REPO / "build/fakenvml"} DS01_FAKE_NVML={nvml}
Environment=PYTHONUNBUFFERED=1
Environment=DS01_CHECK_PLANS=1
StateDirectory=
LogsDirectory=
CacheDirectory=
RuntimeDirectory=
PrivateTmp=no
WatchdogSec=10s
RestartSec=1s
""")
    tb("systemctl", "daemon-reload")


@contextlib.contextmanager
def running_lab(name: str, users: dict[str, tuple[int, int]], *, idle: str = "null",
                files: dict[str, str] | None = None) -> Iterator[Lab]:
    """A ds01 root with the test config (and ``files`` in etc/ds01), the fake NVML machine and
    ds01d started by the testbed's systemd; stopped, with every container removed, after."""
    build()
    root = REPO / "build/e2e" / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "etc/ds01").mkdir(parents=True)
    (root / "etc/ds01/resource-limits.yaml").write_text(
        CONFIG.format(idle=idle, alice=ALICE, bob=BOB, carol=CAROL))
    for file, text in (files or {}).items():
        (root / "etc/ds01" / file).write_text(text)
    lab = Lab(root, users)
    lab.machine()
    _install_unit(root, lab.nvml)
    run(TB, "exec", "systemctl", "reset-failed", "ds01d", check=False)  # no start limit
    tb("systemctl", "start", "ds01d")  # Type=notify: returns once ds01d is READY
    try:
        yield lab
    finally:
        print(tb("journalctl", "-u", "ds01d", "--no-pager", "-n", "40"))  # shown on failure
        tb("systemctl", "stop", "ds01d")
        ids = docker("ps", "-aq").split()
        if ids:
            docker("rm", "-f", *ids)


@pytest.fixture
def lab(request: pytest.FixtureRequest, users: dict[str, tuple[int, int]]) -> Iterator[Lab]:
    idle = getattr(request, "param", None) or "null"
    with running_lab(request.node.name, users, idle=idle) as made:
        yield made
