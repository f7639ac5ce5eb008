"""ds01 end to end: real systemd, real dockerd, the fake NVML, the ds01 CLI as real users."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import GPU0, MIG_A, MIG_B, Lab, docker, run, tb, wait_for


def cgroup_value(slice_path: str, v1: tuple[str, str], v2: str) -> str:
    """A cgroup file of a slice: ``v1`` = (controller, file) on cgroup v1 (this CI), ``v2`` the
    file on cgroup v2 (a typical server)."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return (root / slice_path / v2).read_text().strip()
    return (root / v1[0] / slice_path / v1[1]).read_text().strip()


SLICE = "ds01.slice/ds01-student.slice/ds01-student-dsalice.slice"


def test_want_runs_as_the_user_in_their_slice_with_exactly_its_device(lab: Lab) -> None:
    lab.want("dsalice", "train", "--mig", "3g.20gb")
    wait_for("alice's container running", lambda: lab.running("dsalice", "train"))
    info = lab.inspect("dsalice", "train")
    host, config = info["HostConfig"], info["Config"]
    assert lab.status("dsalice", "train")["devices"] == [MIG_A]
    assert host["CgroupParent"] == "ds01-student-dsalice.slice"
    assert [r["DeviceIDs"] for r in host["DeviceRequests"]] == [[MIG_A]]
    assert not host["Privileged"]
    assert (host["NanoCpus"], host["Memory"], host["MemorySwap"], host["PidsLimit"]) == \
        (1_000_000_000, 256 << 20, 256 << 20, 100)
    uid, gid = lab.users["dsalice"]
    assert config["User"] == f"{uid}:{gid}"
    assert config["Labels"]["ds01.user"] == "dsalice" and config["Labels"]["ds01.name"] == "train"
    environ = docker("exec", info["Id"], "cat", "/proc/1/environ").split("\0")
    assert f"NVIDIA_VISIBLE_DEVICES={MIG_A}" in environ
    assert docker("exec", info["Id"], "id", "-u").strip() == str(uid)
    shown = tb("systemctl", "show", "ds01-student-dsalice.slice", "-p", "MemoryMax", "-p",
               "MemoryHigh", "-p", "TasksMax", "-p", "CPUQuotaPerSecUSec").split()
    assert sorted(shown) == ["CPUQuotaPerSecUSec=1.500000s", "MemoryHigh=419430400",
                             "MemoryMax=536870912", "TasksMax=300"]
    assert cgroup_value(SLICE, ("memory", "memory.limit_in_bytes"), "memory.max") == "536870912"
    assert cgroup_value(SLICE, ("pids", "pids.max"), "pids.max") == "300"
    quota = cgroup_value(SLICE, ("cpu", "cpu.cfs_quota_us"), "cpu.max")
    assert quota.split()[0] == "150000"
    scope = Path("/sys/fs/cgroup/pids") / SLICE / f"docker-{info['Id']}.scope"
    assert scope.exists() or (Path("/sys/fs/cgroup") / SLICE / scope.name).exists()


def test_drop_frees_the_device_and_the_queue_gets_it(lab: Lab) -> None:
    for user in ("dsalice", "dsbob", "dscarol"):
        lab.want(user, "w", "--mig", "3g.20gb")
    wait_for("two running", lambda: lab.running("dsalice", "w") and lab.running("dsbob", "w"))
    pending = wait_for("carol queued", lambda: lab.status("dscarol", "w").get("phase") == "Pending"
                       and lab.status("dscarol", "w"))
    assert pending["queue_position"] == 1
    held = lab.status("dsalice", "w")["devices"]
    lab.ds01("--as", "dsalice", "drop", "container", "w")
    wait_for("alice's container gone", lambda: not lab.inspect("dsalice", "w"))
    wait_for("carol running", lambda: lab.running("dscarol", "w"))
    assert lab.status("dscarol", "w")["devices"] == held


@pytest.mark.parametrize("lab", ["0.002"], indirect=True)  # idle_timeout_h: 7.2 s
def test_an_idle_container_is_stopped_and_its_device_released(lab: Lab) -> None:
    lab.want("dsalice", "nap", "--gpus", "1")
    wait_for("running", lambda: lab.running("dsalice", "nap"))
    stopped = wait_for("the idle stop", lambda: lab.status("dsalice", "nap").get("phase")
                       == "Stopped" and lab.status("dsalice", "nap"), timeout=40)
    assert stopped["reason"] == "idle" and stopped["devices"] == []
    assert lab.inspect("dsalice", "nap")["State"]["Status"] == "exited"
    assert [e["details"]["devices"] for e in lab.events("gpu.release")] == [[GPU0]]
    assert len(lab.events("lifecycle.idle_warning")) >= 1


def test_gpu_use_nobody_was_allocated_is_flagged_with_its_user(lab: Lab) -> None:
    lab.want("dsalice", "t", "--mig", "3g.20gb")
    wait_for("running", lambda: lab.running("dsalice", "t"))
    inside = lab.inspect("dsalice", "t")["State"]["Pid"]  # a PID as ds01d sees it
    uid = lab.users["dsbob"][0]
    tb("systemd-run", f"--uid={uid}", "--unit=ds01e2e-hostjob", "sleep", "300")
    host_pid = int(tb("systemctl", "show", "-p", "MainPID", "--value", "ds01e2e-hostjob"))
    try:
        lab.machine({GPU0: [{"pid": inside, "used_mib": 100}],
                     MIG_B: [{"pid": host_pid, "used_mib": 200}]})
        flags = wait_for("two flags", lambda: len(lab.events("gpu.untracked")) >= 2
                         and lab.events("gpu.untracked"))
    finally:
        tb("systemctl", "stop", "ds01e2e-hostjob")
    found = {(e["user"], e["details"]["device"], e["details"]["where"]) for e in flags}
    assert found == {("dsalice", GPU0, "ds01 container, device not allocated to it"),
                     ("dsbob", MIG_B, "host")}


def test_kill_9_while_creating_restarts_and_converges(lab: Lab) -> None:
    first = lab.main_pid()
    for user in ("dsalice", "dsbob", "dscarol"):
        device = ("--gpus", "1") if user == "dscarol" else ("--mig", "3g.20gb")
        lab.want(user, "k", *device)
    tb("kill", "-9", str(first))
    wait_for("a new ds01d", lambda: lab.main_pid() not in (0, first))
    wait_for("all three running", lambda: all(lab.running(u, "k")
                                              for u in ("dsalice", "dsbob", "dscarol")))
    restarts = int(tb("systemctl", "show", "-p", "NRestarts", "--value", "ds01d"))
    assert restarts >= 1
    ids = docker("ps", "-aq", "--filter", "label=ds01.managed=true").split()
    assert len(ids) == 3, "one container per want, no duplicates"
    devices = [d for i in ids for r in json.loads(docker("inspect", i))[0]["HostConfig"][
        "DeviceRequests"] for d in r["DeviceIDs"]]
    assert sorted(devices) == sorted(set(devices)) and len(devices) == 3


def test_dockerd_restart_under_ds01d(lab: Lab) -> None:
    lab.want("dsalice", "r", "--mig", "3g.20gb")
    wait_for("running", lambda: lab.running("dsalice", "r"))
    pid = lab.main_pid()
    tb("systemctl", "stop", "ds01-testbed-dockerd")
    wait_for("the outage reported", lambda: lab.events("adapter.down"), timeout=20)
    assert tb("systemctl", "is-active", "ds01d").strip() == "active"
    run("scripts/testbed.sh", "dockerd")
    wait_for("the return reported", lambda: lab.events("adapter.up"), timeout=30)
    wait_for("running again", lambda: lab.running("dsalice", "r"), timeout=30)
    assert lab.main_pid() == pid
    assert lab.status("dsalice", "r")["devices"] == [MIG_A]


def test_journal_entries_per_user(lab: Lab) -> None:
    lab.want("dsalice", "j", "--mig", "3g.20gb")
    lab.want("dsbob", "j", "--mig", "3g.20gb")
    wait_for("running", lambda: lab.running("dsalice", "j") and lab.running("dsbob", "j"))

    invocation = tb("systemctl", "show", "-p", "InvocationID", "--value", "ds01d").strip()

    def entries() -> list[dict[str, str]]:  # this test's ds01d only (earlier tests' too are there)
        out = tb("journalctl", "-u", "ds01d", "DS01_USER=dsalice",
                 f"_SYSTEMD_INVOCATION_ID={invocation}", "-o", "json", "--no-pager")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    found = wait_for("alice's journal entries", lambda: len(entries()) >= 2 and entries())
    assert {e["DS01_USER"] for e in found} == {"dsalice"}
    actions = {e["DS01_ACTION"] for e in found}
    assert {"container.create", "gpu.allocate"} <= actions
    create = next(e for e in found if e["DS01_ACTION"] == "container.create")
    assert create["DS01_CONTAINER"] == "j" and create["DS01_DEVICE"] == MIG_A
    assert create["PRIORITY"] == "6" and len(create["MESSAGE_ID"]) == 32


@pytest.mark.parametrize("gpus", ["device=0", "1"])
def test_a_foreign_container_holds_the_gpu_docker_gives_it(lab: Lab, gpus: str) -> None:
    """``docker run --gpus device=0`` (an index) or ``--gpus 1`` (a count: the first GPU),
    read back from the real dockerd, resolved against the host's GPUs."""
    cid = docker("run", "-d", "--gpus", gpus, "ds01-test:1", "sleep", "300").strip()
    lab.want("dsalice", "g", "--gpus", "1")
    pending = wait_for("alice queued behind the foreign container",
                       lambda: lab.status("dsalice", "g").get("phase") == "Pending"
                       and lab.status("dsalice", "g"))
    assert pending["reason"] == "queued for 1 free whole GPU(s)"
    docker("rm", "-f", cid)
    wait_for("alice running on GPU 0", lambda: lab.running("dsalice", "g"))
    assert lab.status("dsalice", "g")["devices"] == [GPU0]


def test_a_container_stopped_outside_ds01_releases_its_device(lab: Lab) -> None:
    lab.want("dsalice", "x", "--mig", "3g.20gb")
    wait_for("running", lambda: lab.running("dsalice", "x"))
    docker("stop", "-t", "1", lab.inspect("dsalice", "x")["Id"])
    release = wait_for("the release", lambda: lab.events("gpu.release"))
    assert [(e["user"], e["details"]["devices"], e["details"]["reason"]) for e in release] == \
        [("dsalice", [MIG_A], "exited")]
    stopped = wait_for("stopped", lambda: lab.status("dsalice", "x").get("phase") == "Stopped"
                       and lab.status("dsalice", "x"))
    assert stopped["reason"].startswith("exited with code")
