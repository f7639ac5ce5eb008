"""Executor, observer and daemon on the simulated host: errors stay per object."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ds01d.adapters.base import PermanentError
from ds01d.adapters.sim import SimDocker, SimHost, sim_gpu
from ds01d.core import actions as a
from ds01d.daemon import Daemon
from ds01d.paths import Paths
from ds01d.runtime.executor import safe_actions
from ds01d.runtime.simroot import init_sim_root
from tests.harness import Lab


def test_a_device_the_host_lacks_fails_at_start_as_docker_does() -> None:
    host = SimHost()
    docker = SimDocker(host)
    spec = a.ContainerSpec("ds01-x-t", "x", "t", "img", {}, ("GPU-nonexistent",), "ds01-g-x.slice",
                           None, None, None, None, None, None, None, "/w")
    with pytest.raises(PermanentError, match="unknown device GPU-nonexistent"):
        docker.create_and_start(spec)
    (c,) = docker.list_containers()
    assert c.state == "created"


def test_one_failing_container_does_not_stall_the_others(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    lab.want("alice", "a", mig="3g.20gb")
    lab.want("bob", "b", mig="3g.20gb")
    lab.host.containers["z" * 64] = {  # a name conflict makes alice's create fail
        "id": "z" * 64, "name": "ds01-alice-a", "image": "x", "labels": {}, "state": "exited",
        "devices": [], "created_at": lab.host.now, "started_at": None, "finished_at": None,
        "cpu_percent": 0.0, "gpu_util": 0.0, "cgroup_parent": "", "exit_code": 0}
    lab.apply()
    assert lab.executor is not None
    names = sorted(c["name"] for c in lab.host.containers.values())
    assert "ds01-bob-b" in names
    back = lab.executor.backoff["container/alice/a"]
    assert (back.step, back.permanent) == (0, False) and "Conflict" in back.message
    lab.apply()  # within the backoff: not retried
    assert lab.executor.backoff["container/alice/a"].step == 0
    lab.advance(seconds=2)
    lab.apply()
    assert lab.executor.backoff["container/alice/a"].step == 1


def test_a_permanent_error_becomes_the_status(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    lab.want("alice", "a", mig="3g.20gb")
    lab.host.gpus[2]["instances"][0]["uuid"] = "MIG-gone"  # NVML sees it; Docker will not
    real = SimHost.device_uuids
    lab.host.device_uuids = lambda: real(lab.host) - {"MIG-gone"}  # type: ignore[method-assign]
    p = lab.apply()
    assert lab.executor is not None
    lab.executor.write_statuses(p.statuses)
    body = json.loads((tmp_path / "var/lib/ds01/status/alice/a.json").read_text())
    assert body["phase"] == "Failed" and "unknown device MIG-gone" in body["reason"]


def test_with_docker_unseen_nothing_is_created_twice(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    lab.want("alice", "a", mig="3g.20gb")
    lab.apply()
    p = lab.plan()
    from dataclasses import replace

    blind = replace(lab.observed(), containers=(), adapter_errors={"docker": "down"})
    from ds01d.core.plan import plan

    p = plan(lab.desired(), blind, lab.now)
    assert any(isinstance(x, a.CreateContainer) for x in p.actions)  # what blindness would do
    assert not [x for x in safe_actions(p, blind.adapter_errors)
                if isinstance(x, a.CreateContainer | a.StopContainer | a.RemoveContainer)]


def _sim_root(tmp_path: Path) -> Paths:
    paths = Paths(tmp_path / "root")
    init_sim_root(paths)
    return paths


def _want(paths: Paths, user: str, name: str, extra: str = "") -> None:
    folder = paths.wants / user
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(
        f"version: 1\nkind: container\nname: {name}\nimage: img\n"
        f"requested_at: '2026-01-05T09:00:00Z'\n{extra}")


def test_invalid_config_keeps_the_last_valid_one(tmp_path: Path) -> None:
    paths = _sim_root(tmp_path)
    d = Daemon(paths, simulate=True)
    _want(paths, "alice", "a", "mig: 3g.20gb\n")
    assert d.run_pass().plan is not None
    limits = paths.etc / "resource-limits.yaml"
    limits.write_text(limits.read_text().replace("max_cpus: 8", "max_cpu: 8"))
    _want(paths, "bob", "b", "mig: 3g.20gb\n")
    r = d.run_pass()
    assert r.plan is not None and any(isinstance(x, a.CreateContainer) for x in r.plan.actions)
    events = [json.loads(x) for x in paths.events.read_text().splitlines()]
    invalid = [e for e in events if e["event_type"] == "config.invalid"]
    assert len(invalid) == 1 and "did you mean 'max_cpus'" in invalid[0]["details"]["errors"][0]
    d.run_pass()
    events = [json.loads(x) for x in paths.events.read_text().splitlines()]
    assert len([e for e in events if e["event_type"] == "config.invalid"]) == 1  # said once


def test_a_broken_want_file_fails_alone(tmp_path: Path) -> None:
    paths = _sim_root(tmp_path)
    _want(paths, "alice", "a", "mig: 3g.20gb\n")
    _want(paths, "alice", "b", "gpus: lots\n")
    (paths.wants / "alice" / "c.yaml").symlink_to("/etc/passwd")
    d = Daemon(paths, simulate=True)
    d.run_pass()
    status = {p.stem: json.loads(p.read_text()) for p in (paths.status / "alice").glob("*.json")}
    assert status["a"]["phase"] == "Running"
    assert status["b"]["phase"] == "Failed" and "'lots' is not a whole number" in status["b"]["reason"]
    assert status["c"]["phase"] == "Failed" and "symlink" in status["c"]["reason"]


def test_a_restart_with_empty_memory_changes_nothing_that_runs(tmp_path: Path) -> None:
    paths = _sim_root(tmp_path)
    for user, mig in (("alice", "3g.20gb"), ("bob", "3g.20gb"), ("frank", "3g.20gb")):
        _want(paths, user, "w", f"mig: {mig}\n")
    Daemon(paths, simulate=True).run_pass()
    before = (paths.sim / "host.json").read_text()
    fresh = Daemon(paths, simulate=True, read_memory=False)
    r = fresh.run_pass()
    assert r.plan is not None and r.plan.changes == ()
    assert json.loads((paths.sim / "host.json").read_text())["containers"] == \
        json.loads(before)["containers"]


def _derived(paths: Paths) -> dict[str, tuple[int, int]]:
    """Every file ds01d derives (statuses, gpus.json, the job map): inode and mtime."""
    out = {}
    for folder in (paths.status, paths.state / "gpus.json", paths.run / "dcgm-job-map"):
        for f in [folder] if folder.is_file() else folder.rglob("*"):
            if f.is_file() and f.name != "events.jsonl":
                st = f.stat()
                out[str(f)] = (st.st_ino, st.st_mtime_ns)
    return out


def test_a_new_ds01d_rewrites_no_derived_file_that_is_right(tmp_path: Path) -> None:
    paths = _sim_root(tmp_path)
    for user, extra in (("alice", "mig: 3g.20gb\n"), ("bob", "gpus: 1\n"), ("frank", "")):
        _want(paths, user, "w", extra)
    first = Daemon(paths, simulate=True)
    for _ in range(3):  # served: nothing more to change
        first.run_pass()
    before = _derived(paths)
    assert str(paths.state / "gpus.json") in before and len(before) >= 4, before
    Daemon(paths, simulate=True).run_pass()
    assert _derived(paths) == before
    (paths.state / "gpus.json").unlink()  # removed by someone: written again
    d = Daemon(paths, simulate=True)
    d.run_pass()
    assert (paths.state / "gpus.json").exists()
    (paths.state / "gpus.json").unlink()  # and by the same daemon's next pass
    d.run_pass()
    assert (paths.state / "gpus.json").exists()


def _ds01d(root: Path, *args: str) -> subprocess.Popen[str]:
    exe = Path(sys.executable).parent / "ds01d"
    return subprocess.Popen([str(exe), "--root", str(root), "--simulate", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_the_daemon_wakes_on_a_new_want_and_stops_on_sigterm(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc = _ds01d(root, "--interval", "60")
    try:
        deadline = time.monotonic() + 20
        while not (root / "var/lib/ds01/ds01d-state.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _want(Paths(root), "alice", "a", "mig: 2g.10gb\n")
        status = root / "var/lib/ds01/status/alice/a.json"
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status.exists(), "no pass after the want was written (watchdog wake)"
        assert json.loads(status.read_text())["phase"] == "Running"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "ds01d stopped" in out


def test_a_users_folder_wakes_ds01d_through_one_inotify_instance(tmp_path: Path) -> None:
    """Users' want folders are watched through one inotify instance and one thread: a want
    written (atomically, or in place), renamed or removed wakes; an open or read, a temp
    file, or a sub-folder's own changes do not; a folder removed and made again is watched
    again, as is one moved away and made anew; an overflowed queue wakes (events were
    lost)."""
    import threading

    from ds01d.daemon import Watcher
    from ds01d.runtime import inotify

    paths = _sim_root(tmp_path)
    wake = threading.Event()
    watcher = Watcher(paths, wake, simulate=True)
    try:
        users = {f"u{i}" for i in range(300)}
        for user in users:
            (paths.wants / user / "sub").mkdir(parents=True)
        threads = threading.active_count()
        watcher.follow(users)
        assert threading.active_count() == threads  # no thread per folder

        def woken(change: Callable[[], object]) -> bool:
            time.sleep(0.2)
            wake.clear()
            change()
            return wake.wait(1.0)

        folder = paths.wants / "u7"
        assert woken(lambda: (folder / ".w.yaml.tmp").write_text("x")) is False
        assert woken(lambda: (folder / ".w.yaml.tmp").rename(folder / "w.yaml")) is True
        assert woken((folder / "w.yaml").read_text) is False

        def append() -> None:
            with (folder / "w.yaml").open("a") as f:
                f.write("#\n")

        assert woken(append) is True
        assert woken(lambda: (folder / "sub" / "x").write_text("x")) is False
        assert woken((folder / "w.yaml").unlink) is True
        shutil.rmtree(folder)
        time.sleep(0.2)
        folder.mkdir()
        watcher.follow(users)  # the next pass
        assert woken(lambda: (folder / "w.yaml").write_text("x")) is True
        folder.rename(paths.wants / ".u7-old")  # moved away (its watch would follow it)
        time.sleep(0.2)
        folder.mkdir()
        watcher.follow(users)
        assert woken(lambda: (folder / "w.yaml").write_text("x")) is True
        wake.clear()
        watcher.folders._deliver([(1, inotify.IN_Q_OVERFLOW, "")])
        assert wake.is_set()
    finally:
        watcher.stop()


def _passes(port: int) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    line = next(x for x in text.splitlines()
                if x.startswith("ds01_reconcile_duration_seconds_count"))
    return float(line.split()[-1])


def test_an_idle_daemon_rests(tmp_path: Path) -> None:
    """No pass wakes another: ds01d's own writes (the simulated host, statuses, its state)
    and its reads of the files it watches never wake it; a ds01 command does, once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "root"
    proc = _ds01d(root, "--interval", "60", "--metrics-port", str(port))
    try:
        deadline = time.monotonic() + 20
        while not (root / "var/lib/ds01/ds01d-state.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _want(Paths(root), "alice", "a", "mig: 2g.10gb\n")
        time.sleep(2)
        settled = _passes(port)
        time.sleep(3)
        assert _passes(port) == settled, "ds01d woke itself while nothing changed"
        exe = Path(sys.executable).parent / "ds01"
        subprocess.run([str(exe), "--root", str(root), "sim", "advance", "1m"], check=True,
                       capture_output=True)
        time.sleep(2)
        assert _passes(port) == settled + 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


@pytest.mark.parametrize(("kind", "paths", "woken"), [
    ("opened", ("/e/etc/ds01/resource-limits.yaml",), False),
    ("closed", ("/e/etc/ds01/resource-limits.yaml",), False),
    ("modified", ("/e/etc/ds01/resource-limits.yaml",), True),
    ("created", ("/e/wants/alice/.t.yaml.ab12.tmp",), False),
    ("moved", ("/e/wants/alice/.t.yaml.ab12.tmp", "/e/wants/alice/t.yaml"), True),
    ("deleted", ("/e/wants/alice/t.yaml",), True),
    ("modified", ("/e/sim/host.json",), False),
    ("moved", ("/e/sim/host.123.tmp", "/e/sim/host.json"), False),
    ("modified", ("/e/sim/changed",), True),
    ("modified", ("/e/sim",), False),
    ("deleted", ("/e/wants/alice",), True),
])
def test_what_wakes_a_pass(kind: str, paths: tuple[str, ...], woken: bool) -> None:
    from ds01d.daemon import wakes

    folder = "." not in paths[0].rsplit("/", 1)[-1] and paths[0] != "/e/sim/changed"
    assert wakes(kind, paths, trigger="/e/sim/changed", folder=folder) is woken


def test_once_exits_after_one_pass(tmp_path: Path) -> None:
    proc = _ds01d(tmp_path / "root", "--once")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert (tmp_path / "root/etc/ds01/resource-limits.yaml").exists()
    assert os.path.exists(tmp_path / "root/var/lib/ds01/sim/host.json")


def test_the_daemons_own_events_take_the_one_emission_path(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from ds01d.runtime.events import EventLog, event
    from ds01d.units import parse_when

    log = EventLog(tmp_path / "events.jsonl")
    when = parse_when("2026-01-05T09:00:00Z")
    with caplog.at_level(logging.INFO, logger="ds01d"):
        log.emit(event("adapter.down", when=when, user=None, details={"adapter": "docker"}),
                 "docker unavailable")
        log.emit(event("container.create", when=when, user="alice", details={}))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "docker unavailable"), ("INFO", "container.create alice {}")]
    assert [e["event_type"] for e in log.read()] == ["adapter.down", "container.create"]


def test_a_user_moved_between_unix_groups_is_seen_within_a_pass(tmp_path: Path) -> None:
    """No file under etc/ds01 changes: the limits cache and the snapshot follow NSS."""
    from ds01d import snapshot
    from ds01d.config.effective import FakeNss

    paths = _sim_root(tmp_path)
    (paths.etc / "resource-limits.yaml").write_text(
        "default_group: student\ngroups:\n  student: {max_cpus: 4}\n"
        "  researcher: {unix_groups: [phd], max_cpus: 32}\n")
    (paths.etc / "groups").mkdir(exist_ok=True)
    (paths.etc / "groups/student.members").write_text("amy\n")
    nss = FakeNss(groups={"phd": frozenset()})
    d = Daemon(paths, simulate=True)
    d.nss = lambda: nss  # type: ignore[method-assign]
    _want(paths, "amy", "a")
    r = d.run_pass()
    assert r.desired is not None and r.desired.effective["amy"].group == "student"
    nss.groups["phd"] = frozenset({"amy"})  # usermod -aG phd amy
    r = d.run_pass()
    assert r.desired is not None and r.desired.effective["amy"].group == "researcher"
    etc = str(paths.etc)
    body = snapshot.lookup(paths.top, etc, "amy", "2026-01-05T09:00:00Z")
    assert body is not None and body["group"] == "researcher" and body["limits"]["max_cpus"] == 32


KEPT_CONFIG = """\
version: 1
defaults: {max_gpu_equivalents: 2, max_gpu_slots_per_container: 2, allow_full_gpu: true,
           idle_timeout_h: 1, max_runtime_h: 3, gpu_hold_after_stop_h: 0.5}
default_group: student
groups:
  student: {priority: 10}
policies: {stop_notice_m: 30, grace_period_m: 0, idle_detection_window: 5m}
"""


def test_a_kept_plan_of_the_wants_is_the_plan_made_afresh_as_the_clock_moves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Passes that change nothing but the clock keep the last plan of the wants (not planned
    again); each kept plan is checked against one made afresh (``DS01_CHECK_PLANS``, set for
    every test) through the warnings, the stop notice, the idle stop, a runtime stop, and the
    end of a stopped container's hold on its GPU (the queued want behind it is served)."""
    import ds01d.core.plan as planner

    paths = _sim_root(tmp_path)
    (paths.etc / "resource-limits.yaml").write_text(KEPT_CONFIG)
    for name in ("user-overrides.yaml", "lifecycle-exemptions.yaml"):
        (paths.etc / name).unlink(missing_ok=True)
    host = SimHost(gpus=[sim_gpu(0), sim_gpu(1)],
                   now=datetime(2026, 1, 5, 9, tzinfo=UTC).timestamp())
    d = Daemon(paths, simulate=True, host=host, read_memory=False)
    assert d.check_plans
    _want(paths, "alice", "idle", "gpus: 1\n")
    _want(paths, "bob", "busy", "gpus: 1\n")
    _want(paths, "carol", "queued", "gpus: 1\n")  # after the others: waits for a GPU
    checked: list[int] = []  # passes that kept the last plan (and checked it)
    real = planner._same_as_planned

    def spy(*args: Any) -> None:
        checked.append(1)
        real(*args)

    monkeypatch.setattr(planner, "_same_as_planned", spy)
    import ds01d.daemon as daemon_module

    shown_again: list[int] = []  # passes that kept the last gpus.json body (and checked it)
    from ds01d.core.gpus import kept_summary as real_summary

    def kept_summary(*args: Any, **kw: Any) -> Any:
        made = real_summary(*args, **kw)
        shown_again.extend([1] if made is args[3] else [])
        return made

    monkeypatch.setattr(daemon_module, "kept_summary", kept_summary)
    seen: set[str] = set()
    passes = 0
    for _ in range(50):  # 7 min a pass: each stage is crossed between two passes
        busy = next((c for c in host.containers.values() if c["name"].endswith("busy")), None)
        if busy is not None and busy["state"] == "running":
            busy["cpu_percent"] = 90.0 + passes % 3  # busy, with a sample that moves
        d.run_pass()
        passes += 1
        for user in ("alice", "bob", "carol"):
            for p in (paths.status / user).glob("*.json"):
                body = json.loads(p.read_text())
                seen |= {f"{body['phase']}:{p.stem}", body["reason"]}
        host.now += 7 * 60
    events = [json.loads(x)["event_type"] for x in paths.events.read_text().splitlines()]
    assert {"Running:idle", "Stopped:idle", "Running:busy", "Stopped:busy", "Pending:queued",
            "Running:queued"} <= seen
    assert "devices_taken" not in seen  # the held GPU was not given away, then taken back
    assert "lifecycle.idle_warning" in events and "lifecycle.runtime_warning" in events
    assert len(checked) > passes // 2, f"the last plan was kept in {len(checked)} passes"
    assert len(shown_again) > passes // 2, f"gpus.json's body kept in {len(shown_again)}"


def test_a_kept_plan_of_the_slices_still_sets_drift_back(tmp_path: Path) -> None:
    """Passes that change nothing keep the slices' actions; a slice whose limits someone
    changed (or that went away) is seen in the next pass, and set back."""
    paths = _sim_root(tmp_path)
    host = SimHost()
    d = Daemon(paths, simulate=True, host=host, read_memory=False)
    _want(paths, "alice", "a", "gpus: 1\n")
    for _ in range(3):
        d.run_pass()
    user = next(n for n in host.slices if n.endswith("-alice.slice"))
    right = dict(host.slices[user])
    assert right["MemoryMax"] is not None
    d.run_pass()
    host.slices[user]["MemoryMax"] = 1 << 40  # changed behind ds01d's back
    r = d.run_pass()
    assert r.plan is not None and any(isinstance(x, a.SetSliceProperties) for x in r.plan.actions)
    assert host.slices[user] == right
    del host.slices[user]
    d.run_pass()
    assert host.slices[user] == right


def test_a_replaced_container_does_not_claim_back_the_gpu_it_gave_up(tmp_path: Path) -> None:
    """With ``gpu_hold_after_stop_h``, a container stopped to be made anew (its owner asked
    for other settings) gives its GPU up for good: the owner's other want that got it keeps
    it, and the new container is made once a GPU is free. Nothing is stopped for
    ``devices_taken``, and no pass fails."""
    paths = _sim_root(tmp_path)
    (paths.etc / "resource-limits.yaml").write_text(KEPT_CONFIG.replace(
        "idle_timeout_h: 1, max_runtime_h: 3", "idle_timeout_h: 9, max_runtime_h: 9"))
    for name in ("user-overrides.yaml", "lifecycle-exemptions.yaml"):
        (paths.etc / name).unlink(missing_ok=True)
    host = SimHost(gpus=[sim_gpu(0), sim_gpu(1)],
                   now=datetime(2026, 1, 5, 9, tzinfo=UTC).timestamp())
    d = Daemon(paths, simulate=True, host=host, read_memory=False)

    def asks(name: str, extra: str, at: str) -> None:
        (paths.wants / "dave").mkdir(parents=True, exist_ok=True)
        (paths.wants / "dave" / f"{name}.yaml").write_text(
            f"version: 1\nkind: container\nname: {name}\nimage: img\nrequested_at: '{at}'\n"
            f"{extra}")

    reasons: set[str] = set()

    def step() -> None:
        r = d.run_pass()
        assert r.plan is not None
        reasons.update(s.reason for s in r.plan.statuses)
        host.now += 300

    asks("b", "gpus: 1\n", "2026-01-05T09:00:00Z")
    step()
    asks("a", "gpus: 2\n", "2026-01-05T09:05:00Z")  # waits: dave's quota is 2
    step()
    asks("b", "gpus: 1\ncpus: 2\n", "2026-01-05T09:10:00Z")  # b made anew: its GPU goes
    for _ in range(10):
        step()
    running = {c["name"] for c in host.containers.values() if c["state"] == "running"}
    assert "ds01-dave-a" in running, running
    assert "devices_taken" not in reasons, reasons


def test_a_new_ds01d_trusts_no_want_folder_that_changed_while_it_was_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new ds01d takes the wants (and folder listings) the last one kept for the folders
    that did not change, reading none of them through a descriptor; a folder that gained a
    file, a file edited in place, and a folder swapped for a link to another are each seen in
    its first pass."""
    from ds01d.runtime import wantfiles

    paths = _sim_root(tmp_path)
    for user in ("ann", "ben", "cat", "dan"):
        _want(paths, user, "w", "gpus: 1\n")
    Daemon(paths, simulate=True).run_pass()
    assert (paths.state / "want-cache.pickle").exists()
    _want(paths, "ann", "x")  # ann: a new file
    edited = paths.wants / "ben" / "w.yaml"  # ben: edited in place
    with edited.open("r+") as f:
        f.seek(0, 2)
        f.write("cpus: 3\n")
    (tmp_path / "elsewhere").mkdir()  # cat: the folder swapped for a link
    _want(paths, "cat", "w", "gpus: 1\n")
    (paths.wants / "cat").rename(tmp_path / "cat-old")
    (paths.wants / "cat").symlink_to(tmp_path / "elsewhere")
    listed: list[str] = []
    real = wantfiles.WantSource._listing

    def spy(self: wantfiles.WantSource, fd: int, user: str, stamp: Any) -> Any:
        listed.append(user)
        return real(self, fd, user, stamp)

    monkeypatch.setattr(wantfiles.WantSource, "_listing", spy)
    r = Daemon(paths, simulate=True).run_pass()
    assert r.desired is not None
    wants = {(w.user, w.name): w for w in r.desired.wants}
    assert ("ann", "x") in wants and wants[("ben", "w")].cpus == 3
    assert ("cat", "w") not in wants and "cat" in r.desired.held_users
    assert ("dan", "w") in wants
    assert sorted(listed) == ["ann", "ben"]  # dan's (unchanged) was not read again


def test_a_new_ds01d_reads_back_only_the_status_folders_changed_while_it_was_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopping ds01d keeps its status folders as written; the next one reads back none
    that is as kept, and sees each that changed while it was down (a status removed, a file
    added, the whole folder removed, a folder made anew), setting it right in its first pass
    and rewriting nothing that was."""
    from ds01d.runtime import userfiles

    paths = _sim_root(tmp_path)
    users = ("ann", "ben", "cat", "dan", "eve")
    for user in users:
        _want(paths, user, "w", "gpus: 1\n")
    d = Daemon(paths, simulate=True)
    d.run_pass()
    d.run_pass()
    d.close()
    assert (paths.state / "status-cache.pickle").exists()
    right = {u: (paths.status / u / "w.json").read_text() for u in users}
    (paths.status / "ann" / "w.json").unlink()  # ann: her status removed
    (paths.status / "ben" / "x.json").write_text("{}")  # ben: a file added
    shutil.rmtree(paths.status / "cat")  # cat: the whole folder
    shutil.rmtree(paths.status / "dan")  # dan: the folder made anew, with a stale status
    (paths.status / "dan").mkdir(mode=0o700)
    (paths.status / "dan" / "w.json").write_text(right["dan"].replace("Running", "Pending"))
    read: list[str] = []
    real = userfiles._read_back

    def spy(fd: int) -> dict[str, str]:
        read.append(os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1])
        return real(fd)

    monkeypatch.setattr(userfiles, "_read_back", spy)
    before = (paths.status / "eve" / "w.json").stat()
    Daemon(paths, simulate=True).run_pass()
    assert sorted(read) == ["ann", "ben", "cat", "dan"]  # eve's was as kept
    assert {u: (paths.status / u / "w.json").read_text() for u in users} == right
    assert not (paths.status / "ben" / "x.json").exists()
    after = (paths.status / "eve" / "w.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_pass_imports_nothing_that_ds01d_did_not_import_at_start(tmp_path: Path) -> None:
    """``start_process`` imports every module a pass needs (its first pass then pays for no
    import, and the collector never walks them), on a root with wants, statuses and the
    kept caches of a previous ds01d."""
    paths = _sim_root(tmp_path)
    _want(paths, "alice", "a", "gpus: 1\n")
    d = Daemon(paths, simulate=True)
    d.run_pass()
    d.close()
    code = (
        "import sys\n"
        "from ds01d.daemon import Daemon, start_process\n"
        "from ds01d.paths import Paths\n"
        "start_process()\n"
        "before = set(sys.modules)\n"
        f"d = Daemon(Paths({str(paths.root)!r}), simulate=True)\n"
        "d.run_pass()\n"
        "d.run_pass()\n"
        "print(sorted(set(sys.modules) - before))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]", out.stdout


def test_a_new_ds01d_takes_the_kept_configuration_only_when_no_file_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last ds01d's configuration is taken as it was when every file is as it was (no
    parsing); an edit that keeps the size and sets the modification time back is still seen
    (the files are parsed again), as is a kept file that is not root's own."""
    import ds01d.runtime.desired as desired_module

    paths = _sim_root(tmp_path)
    Daemon(paths, simulate=True).run_pass()
    cache = paths.state / "config-cache.pickle"
    assert cache.exists()
    parsed: list[int] = []
    from ds01d.config.loader import load_config as real

    def spy(etc: Path) -> Any:
        parsed.append(1)
        return real(etc)

    monkeypatch.setattr(desired_module, "load_config", spy)
    d = Daemon(paths, simulate=True)
    assert d.run_pass().plan is not None and parsed == []
    limits = paths.etc / "resource-limits.yaml"
    st = limits.stat()
    text = limits.read_text()
    limits.write_text(text.replace("idle_timeout_h: 2", "idle_timeout_h: 3", 1))
    os.utime(limits, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
    r = Daemon(paths, simulate=True).run_pass()
    assert parsed == [1] and r.desired is not None
    assert r.desired.config.defaults.limits["idle_timeout_h"] == 3
    os.chmod(cache, 0o644)  # readable by others: not ds01d's own, not taken
    Daemon(paths, simulate=True).run_pass()
    assert parsed == [1, 1]


@pytest.mark.skipif(os.geteuid() != 0, reason="gives folders to other uids: needs root")
def test_a_status_folder_kept_across_a_restart_goes_to_its_users_new_uid(
        tmp_path: Path) -> None:
    """An account made again under another uid while ds01d was down: its status folder,
    otherwise as kept, is given to the new uid (not left readable by whoever gets the old
    one)."""
    from ds01d.core.model import Account
    from ds01d.runtime.userfiles import UserFiles

    top, cache = tmp_path / "status", tmp_path / "status-cache.pickle"
    files = {"alice": {"a.json": "{}\n"}}
    old = UserFiles(top, account=lambda u: Account(1001, 1001, "/home/alice"), saved=cache)
    old.sync(files)
    old.save()
    assert (top / "alice").stat().st_uid == 1001
    new = UserFiles(top, account=lambda u: Account(2002, 2002, "/home/alice"), saved=cache)
    new.sync(files)
    st = (top / "alice").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (2002, 2002, 0o700)


_CHANGES = st.sampled_from([
    ("state", "exited"), ("state", "running"), ("started_at", 1.0), ("finished_at", 2.0),
    ("exit_code", 137), ("cpu_percent", 55.0), ("net_bps", 9.0), ("gpu_count", 2),
    ("all_gpus", True), ("name", "renamed"), ("image", "other:2"), ("cgroup_parent", "x.slice"),
    ("devices+", "GPU-extra"), ("devices-", None), ("labels+", "ds01.user"), ("labels-", None),
])


@given(st.lists(_CHANGES, max_size=12))
def test_the_simulated_docker_lists_each_change_made_to_a_container(
        changes: list[tuple[str, Any]]) -> None:
    """A listing is what the simulated host holds now, whatever changed since the last one,
    in place (a device list, the labels) or not: never a record kept from before."""
    host = SimHost()
    docker = SimDocker(host)
    spec_id = "c" * 64
    host.containers[spec_id] = {
        "id": spec_id, "name": "n", "image": "img:1", "labels": {"a": "b"}, "state": "running",
        "devices": ["GPU-0"], "created_at": 100.0, "started_at": 100.0, "finished_at": None,
        "cpu_percent": 0.0, "gpu_util": 0.0, "cgroup_parent": "", "exit_code": None,
        "net_bps": 0.0}
    c = host.containers[spec_id]
    assert docker.list_containers() == [docker._record(c)]
    for key, value in changes:
        if key == "devices+":
            c["devices"].append(value)
        elif key == "devices-":
            c["devices"][:] = c["devices"][1:]
        elif key == "labels+":
            c["labels"][value] = "someone"
        elif key == "labels-":
            c["labels"].clear()
        else:
            c[key] = value
        listed = SimDocker(host).list_containers()  # a new adapter each pass, as ds01d's
        assert listed == [docker._record(c)]
