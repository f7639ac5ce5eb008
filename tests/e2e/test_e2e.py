"""ds01 end to end: real systemd, real dockerd, the fake NVML, the ds01 CLI as real users."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    ALICE,
    BOB,
    CAROL,
    GPU0,
    MIG_A,
    MIG_B,
    Lab,
    docker,
    run,
    tb,
    wait_for,
)


def cgroup_value(slice_path: str, v1: tuple[str, str], v2: str) -> str:
    """A cgroup file of a slice: ``v1`` = (controller, file) on cgroup v1 (this CI), ``v2`` the
    file on cgroup v2 (a typical server)."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return (root / slice_path / v2).read_text().strip()
    return (root / v1[0] / slice_path / v1[1]).read_text().strip()


SLICE = f"ds01.slice/ds01-student.slice/ds01-student-{ALICE}.slice"


def test_want_runs_as_the_user_in_their_slice_with_exactly_its_device(lab: Lab) -> None:
    lab.want(ALICE, "train", "--mig", "3g.20gb")
    wait_for("alice's container running", lambda: lab.running(ALICE, "train"))
    info = lab.inspect(ALICE, "train")
    host, config = info["HostConfig"], info["Config"]
    assert lab.status(ALICE, "train")["devices"] == [MIG_A]
    assert host["CgroupParent"] == f"ds01-student-{ALICE}.slice"
    assert [r["DeviceIDs"] for r in host["DeviceRequests"]] == [[MIG_A]]
    assert not host["Privileged"]
    assert (host["NanoCpus"], host["Memory"], host["MemorySwap"], host["PidsLimit"]) == \
        (1_000_000_000, 256 << 20, 256 << 20, 100)
    uid, gid = lab.users[ALICE]
    assert config["User"] == f"{uid}:{gid}"
    assert config["Labels"]["ds01.user"] == ALICE and config["Labels"]["ds01.name"] == "train"
    environ = docker("exec", info["Id"], "cat", "/proc/1/environ").split("\0")
    assert f"NVIDIA_VISIBLE_DEVICES={MIG_A}" in environ
    assert docker("exec", info["Id"], "id", "-u").strip() == str(uid)
    shown = tb("systemctl", "show", f"ds01-student-{ALICE}.slice", "-p", "MemoryMax", "-p",
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
    for user in (ALICE, BOB, CAROL):
        lab.want(user, "w", "--mig", "3g.20gb")
    wait_for("two running", lambda: lab.running(ALICE, "w") and lab.running(BOB, "w"))
    pending = wait_for("carol queued", lambda: lab.status(CAROL, "w").get("phase") == "Pending"
                       and lab.status(CAROL, "w"))
    assert pending["queue_position"] == 1
    held = lab.status(ALICE, "w")["devices"]
    lab.ds01("--as", ALICE, "drop", "container", "w")
    wait_for("alice's container gone", lambda: not lab.inspect(ALICE, "w"))
    wait_for("carol running", lambda: lab.running(CAROL, "w"))
    assert lab.status(CAROL, "w")["devices"] == held


@pytest.mark.parametrize("lab", ["0.002"], indirect=True)  # idle_timeout_h: 7.2 s
def test_an_idle_container_is_stopped_and_its_device_released(lab: Lab) -> None:
    lab.want(ALICE, "nap", "--gpus", "1")
    wait_for("running", lambda: lab.running(ALICE, "nap"))
    stopped = wait_for("the idle stop", lambda: lab.status(ALICE, "nap").get("phase")
                       == "Stopped" and lab.status(ALICE, "nap"), timeout=40)
    assert stopped["reason"] == "idle" and stopped["devices"] == []
    assert lab.inspect(ALICE, "nap")["State"]["Status"] == "exited"
    assert [e["details"]["devices"] for e in lab.events("gpu.release")] == [[GPU0]]
    assert len(lab.events("lifecycle.idle_warning")) >= 1


def test_gpu_use_nobody_was_allocated_is_flagged_with_its_user(lab: Lab) -> None:
    lab.want(ALICE, "t", "--mig", "3g.20gb")
    wait_for("running", lambda: lab.running(ALICE, "t"))
    inside = lab.inspect(ALICE, "t")["State"]["Pid"]  # a PID as ds01d sees it
    uid = lab.users[BOB][0]
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
    assert found == {(ALICE, GPU0, "ds01 container, device not allocated to it"),
                     (BOB, MIG_B, "host")}


def test_kill_9_while_creating_restarts_and_converges(lab: Lab) -> None:
    first = lab.main_pid()
    for user in (ALICE, BOB, CAROL):
        device = ("--gpus", "1") if user == CAROL else ("--mig", "3g.20gb")
        lab.want(user, "k", *device)
    tb("kill", "-9", str(first))
    wait_for("a new ds01d", lambda: lab.main_pid() not in (0, first))
    wait_for("all three running", lambda: all(lab.running(u, "k")
                                              for u in (ALICE, BOB, CAROL)))
    restarts = int(tb("systemctl", "show", "-p", "NRestarts", "--value", "ds01d"))
    assert restarts >= 1
    ids = docker("ps", "-aq", "--filter", "label=ds01.managed=true").split()
    assert len(ids) == 3, "one container per want, no duplicates"
    devices = [d for i in ids for r in json.loads(docker("inspect", i))[0]["HostConfig"][
        "DeviceRequests"] for d in r["DeviceIDs"]]
    assert sorted(devices) == sorted(set(devices)) and len(devices) == 3


def test_dockerd_restart_under_ds01d(lab: Lab) -> None:
    lab.want(ALICE, "r", "--mig", "3g.20gb")
    wait_for("running", lambda: lab.running(ALICE, "r"))
    pid = lab.main_pid()
    tb("systemctl", "stop", "ds01-testbed-dockerd")
    wait_for("the outage reported", lambda: lab.events("adapter.down"), timeout=20)
    assert tb("systemctl", "is-active", "ds01d").strip() == "active"
    run("scripts/testbed.sh", "dockerd")
    wait_for("the return reported", lambda: lab.events("adapter.up"), timeout=30)
    wait_for("running again", lambda: lab.running(ALICE, "r"), timeout=30)
    assert lab.main_pid() == pid
    assert lab.status(ALICE, "r")["devices"] == [MIG_A]


def test_journal_entries_per_user(lab: Lab) -> None:
    lab.want(ALICE, "j", "--mig", "3g.20gb")
    lab.want(BOB, "j", "--mig", "3g.20gb")
    wait_for("running", lambda: lab.running(ALICE, "j") and lab.running(BOB, "j"))

    invocation = tb("systemctl", "show", "-p", "InvocationID", "--value", "ds01d").strip()

    def entries() -> list[dict[str, str]]:  # this test's ds01d only (earlier tests' too are there)
        out = tb("journalctl", "-u", "ds01d", f"DS01_USER={ALICE}",
                 f"_SYSTEMD_INVOCATION_ID={invocation}", "-o", "json", "--no-pager")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    found = wait_for("alice's journal entries", lambda: len(entries()) >= 2 and entries())
    assert {e["DS01_USER"] for e in found} == {ALICE}
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
    lab.want(ALICE, "g", "--gpus", "1")
    pending = wait_for("alice queued behind the foreign container",
                       lambda: lab.status(ALICE, "g").get("phase") == "Pending"
                       and lab.status(ALICE, "g"))
    assert pending["reason"] == "queued for 1 free whole GPU (1 in use by containers)"
    docker("rm", "-f", cid)
    wait_for("alice running on GPU 0", lambda: lab.running(ALICE, "g"))
    assert lab.status(ALICE, "g")["devices"] == [GPU0]


def test_a_container_stopped_outside_ds01_releases_its_device(lab: Lab) -> None:
    lab.want(ALICE, "x", "--mig", "3g.20gb")
    wait_for("running", lambda: lab.running(ALICE, "x"))
    docker("stop", "-t", "1", lab.inspect(ALICE, "x")["Id"])
    release = wait_for("the release", lambda: lab.events("gpu.release"))
    assert [(e["user"], e["details"]["devices"], e["details"]["reason"]) for e in release] == \
        [(ALICE, [MIG_A], "exited")]
    stopped = wait_for("stopped", lambda: lab.status(ALICE, "x").get("phase") == "Stopped"
                       and lab.status(ALICE, "x"))
    assert stopped["reason"].startswith("exited with code")


def test_a_workspace_link_is_refused_and_the_container_hardened(lab: Lab) -> None:
    """~/workspace pointing into a folder of root's: ds01d, working as the user, cannot make
    the workspace there, and says so; a normal workspace is the user's own, and the container
    runs with no new privileges and no capabilities."""
    uid, gid = lab.users[CAROL]
    home = Path(run("getent", "passwd", CAROL).stdout.split(":")[5])
    target = lab.root / "roots-folder"
    target.mkdir()
    link = home / "workspace"
    if link.is_symlink() or link.exists():
        run("rm", "-rf", str(link))
    link.symlink_to(target)
    import os

    os.lchown(link, uid, gid)
    try:
        lab.want(CAROL, "t")
        failed = wait_for("a clear failure", lambda: lab.status(CAROL, "t").get("phase")
                          == "Failed" and lab.status(CAROL, "t"))
        assert "Permission denied" in failed["reason"], failed
        assert list(target.iterdir()) == [] and not lab.inspect(CAROL, "t")
    finally:
        link.unlink()
    lab.want(ALICE, "ok")
    wait_for("running", lambda: lab.running(ALICE, "ok"))
    info = lab.inspect(ALICE, "ok")
    assert info["HostConfig"]["SecurityOpt"] == ["no-new-privileges:true"]
    assert info["HostConfig"]["CapDrop"] == ["ALL"]
    mount = next(m for m in info["Mounts"] if m["Destination"] == "/workspace")
    uid_a = lab.users[ALICE][0]
    assert Path(mount["Source"]).stat().st_uid == uid_a and mount["Type"] == "bind"
    status = docker("exec", info["Id"], "cat", "/proc/1/status")
    assert "NoNewPrivs:\t1" in status and "CapEff:\t0000000000000000" in status
