"""Benchmarks on the testbed (real systemd + dockerd; ``make bench`` runs them as root).

1. From a want written (``ds01 want container``) to its container ``Running``: median of 20,
   beside Docker's own create+start of the same container measured alone.
2. From a container's idle timeout reached to its device released, in resync periods: median
   of 10, one container after another.
3. ``docker ps`` and ``docker exec true`` as a user through ds01's Docker socket, beside the
   same commands straight to dockerd, interleaved pair by pair, median of 20.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.conftest import (  # noqa: E402
    ALICE,
    BOB,
    CAROL,
    CONFIG,
    Lab,
    _install_unit,
    docker,
    run,
    tb,
    unix_users,
    wait_for,
)

RUNS = 20
IDLE_RUNS = 10
INTERVAL = 10.0
IDLE_H = 0.002


def start(root: Path, idle: str, interval: float) -> Lab:
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    (root / "etc/ds01").mkdir(parents=True)
    text = CONFIG.format(idle=idle, alice=ALICE, bob=BOB, carol=CAROL).replace(
        "max_containers_per_user: 3", "max_containers_per_user: null")
    (root / "etc/ds01/resource-limits.yaml").write_text(text)
    lab = Lab(root, {})
    lab.machine()
    _install_unit(root, lab.nvml)
    unit = Path(os.environ["DS01_TESTBED_DIR"]) / "run/systemd/system/ds01d.service.d/testbed.conf"
    unit.write_text(unit.read_text().replace("--interval 1", f"--interval {interval:g}")
                    .replace("Environment=DS01_CHECK_PLANS=1\n", ""))  # as installed
    tb("systemctl", "daemon-reload")
    tb("systemctl", "start", "ds01d")
    return lab


def stop(lab: Lab) -> None:
    tb("systemctl", "stop", "ds01d")
    ids = docker("ps", "-aq").split()
    if ids:
        docker("rm", "-f", *ids)


def docker_alone() -> float:
    """Docker's own create+start of a container like ds01's, median ms."""
    times = []
    for i in range(RUNS):
        t = time.perf_counter()
        run("docker", "run", "-d", "--name", f"bench-alone-{i}", "--cgroup-parent",
            f"ds01-student-{ALICE}.slice", "--memory", "256m", "--cpus", "1", "ds01-test:1",
            "sleep", "infinity")
        times.append((time.perf_counter() - t) * 1000)
    docker("rm", "-f", *[f"bench-alone-{i}" for i in range(RUNS)])
    return statistics.median(times)


def want_to_running(lab: Lab) -> float:
    times = []
    for i in range(RUNS):
        t = time.perf_counter()
        lab.want(ALICE, f"b{i}")
        wait_for("running", lambda i=i: lab.running(ALICE, f"b{i}"), timeout=60)  # type: ignore[misc]
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def idle_to_release(lab: Lab) -> list[float]:
    """Seconds from the idle timeout reached to the device released, one container at a
    time (each takes the same GPU), IDLE_RUNS times."""
    return [_one_idle(lab, f"idle{i}") for i in range(IDLE_RUNS)]


def _one_idle(lab: Lab, name: str) -> float:
    lab.want(ALICE, name, "--gpus", "1")
    wait_for("running", lambda: lab.running(ALICE, name), timeout=60)
    started = lab.inspect(ALICE, name)["State"]["StartedAt"][:26].rstrip("Z")
    start_at = datetime.fromisoformat(started).timestamp()
    wait_for("released", lambda: lab.status(ALICE, name).get("phase") == "Stopped",
             timeout=120)
    return time.time() - (start_at + IDLE_H * 3600)


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    import subprocess

    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return (time.perf_counter() - t) * 1000


def socket_overhead(lab: Lab) -> dict[str, tuple[float, float]]:
    """Median ms of ``docker ps`` and ``docker exec true``: (through the socket, direct)."""
    from tests.e2e.test_socket import _install

    user = "dssann"
    wants = lab.root / "var/lib/ds01/wants"
    wants.mkdir(parents=True, exist_ok=True)
    os.chmod(wants, 0o1777)
    _install(lab.root)
    tb("systemctl", "start", "ds01-docker.socket")
    sock = f"unix://{os.environ['DS01_TESTBED_DIR']}/run/ds01/docker.sock"
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/"}
    via = ["runuser", "-u", user, "--", "env", f"DOCKER_HOST={sock}", "docker"]
    direct = ["runuser", "-u", "root", "--", "env", f"DOCKER_HOST={os.environ['DOCKER_HOST']}",
              "docker"]
    run(*via, "run", "-d", "--name", "b", "ds01-test:1", "sleep", "600")
    found: dict[str, tuple[float, float]] = {}
    try:
        for what, args in (("docker ps", ["ps"]), ("docker exec true",
                                                   ["exec", "b", "true"])):
            direct_args = args if args[0] == "ps" else ["exec", "ds01-dssann-b", "true"]
            pairs = [(_timed(via + args, base), _timed(direct + direct_args, base))
                     for _ in range(RUNS)]
            found[what] = (statistics.median(p[0] for p in pairs),
                           statistics.median(p[1] for p in pairs))
    finally:
        tb("systemctl", "stop", "ds01-docker.service", "ds01-docker.socket")
    return found


def main() -> int:
    # a real user with a real home: ds01d works there as them (made and removed as the
    # end-to-end tests do)
    with unix_users((ALICE,)):
        return measure()


def measure() -> int:
    root = REPO / "build/bench-testbed"
    alone = docker_alone()
    lab = start(root, "null", INTERVAL)
    try:
        ds01 = want_to_running(lab)
    finally:
        stop(lab)
    lab = start(root, str(IDLE_H), 2.0)
    try:
        late = idle_to_release(lab)
    finally:
        stop(lab)
    lab = start(root, "null", INTERVAL)
    try:
        sock = socket_overhead(lab)
    finally:
        stop(lab)
    rows = [
        (f"want written -> Running (median of {RUNS}, resync {INTERVAL:g} s)", f"{ds01:.0f} ms",
         ""),
        ("  Docker's own create+start alone (docker run -d)", f"{alone:.0f} ms", ""),
        ("  ds01's share (the difference)", f"{ds01 - alone:.0f} ms", "< 1000 ms"),
        (f"idle timeout reached -> device released (resync 2 s, median of {IDLE_RUNS})",
         f"{statistics.median(late):.1f} s", "< 2 resync periods (4 s)"),
        (f"  spread over the {IDLE_RUNS}", f"{min(late):.1f}-{max(late):.1f} s", ""),
    ]
    for what, (through, straight) in sock.items():
        added = 100 * (through - straight) / straight
        rows += [(f"{what} through ds01's socket (median of {RUNS})", f"{through:.0f} ms", ""),
                 (f"  {what} straight to dockerd", f"{straight:.0f} ms", ""),
                 ("  added by the socket", f"{added:.0f}%", "<= 20%")]
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark (testbed)':<{width}}  {'median':>8}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>8}  {target}")
    print(json.dumps({"want_to_running_ms": ds01, "docker_alone_ms": alone,
                      "idle_to_release_s": late,
                      "idle_to_release_median_s": statistics.median(late),
                      "socket_ms": {k: {"socket": v[0], "direct": v[1]}
                                    for k, v in sock.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
