"""Recorded-action tests: preload the simulated host, run one pass, compare the actions.

Host (default): GPUs 0-1 whole; GPU 2 MIG 3g.20gb x2; GPU 3 MIG 2g.10gb x3. Config: the
shipped example (students alice, bob, frank: MIG only, 0.5 gpueq, idle 2h; carol researcher,
idle exempt; dave faculty; erin admin).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ds01d.adapters.sim import SimHost, sim_gpu
from ds01d.core import actions as a
from ds01d.core.plan import plan
from tests.harness import Lab, config_from, example_config


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


def test_mig_want_gets_an_instance_best_fit(tmp_path: Path) -> None:
    lab = Lab(tmp_path, host=SimHost(gpus=[sim_gpu(0, {"2g.10gb": 3}), sim_gpu(1, {"2g.10gb": 3})]),
              config=replace(example_config(), mig_layout=None))
    lab.want("alice", "a", mig="2g.10gb")
    assert lab.record() == [f"create alice/a {lab.uuid(0, 0)}"]
    lab.apply()
    lab.want("bob", "b", mig="2g.10gb")
    assert lab.record() == [f"create bob/b {lab.uuid(0, 1)}"]  # GPU 0 has fewer left over


def test_full_gpus_are_the_lowest_free_ones(lab: Lab) -> None:
    lab.want("carol", "big", gpus=2)
    assert lab.record() == [f"create carol/big {lab.uuid(0)},{lab.uuid(1)}"]


def test_full_gpu_refused_to_students_with_the_profiles_they_may_ask_for(lab: Lab) -> None:
    lab.want("alice", "t", gpus=1)
    assert lab.record() == []
    s = lab.status("alice", "t")
    assert s["phase"] == "Failed"
    assert "allow_full_gpu is false): ask for a MIG instance with --mig PROFILE instead " \
           "(2g.10gb, 3g.20gb)" in str(s["reason"])


def test_a_profile_the_host_lacks_fails_in_plain_words(lab: Lab) -> None:
    lab.want("alice", "t", mig="1g.5gb")
    assert lab.status("alice", "t")["reason"] == \
        "this server has no 1g.5gb MIG instances (it has: 2g.10gb, 3g.20gb)"


def test_devices_are_exclusive_and_the_rest_queues(lab: Lab) -> None:
    lab.want("alice", "a", mig="3g.20gb")
    lab.want("bob", "b", mig="3g.20gb")
    lab.want("frank", "f", mig="3g.20gb", at=lab.now + timedelta(seconds=1))
    assert lab.record() == [f"create alice/a {lab.uuid(2, 0)}", f"create bob/b {lab.uuid(2, 1)}"]
    lab.apply()
    assert lab.plan().changes == ()
    s = lab.status("frank", "f")
    assert (s["phase"], s["queue_position"], s["reason"]) == \
        ("Pending", 1, "queued for a free 3g.20gb instance (2 in use by containers)")


def test_a_device_with_an_untracked_process_is_busy(lab: Lab) -> None:
    pid = lab.host.add_process(lab.uuid(0), uid=lab.host.uid_of("dave"), container_id=None,
                               mem_mib=500)
    lab.want("carol", "c", gpus=1)
    assert lab.record() == [f"create carol/c {lab.uuid(1)}", f"flag dave pid {pid} gpu 0"]


def test_quota_in_gpu_equivalents(lab: Lab) -> None:
    for name, profile in (("a", "3g.20gb"), ("b", "3g.20gb"), ("c", "2g.10gb")):
        lab.want("bob", name, mig=profile)  # bob: 1.0 gpueq (override)
    assert lab.record() == [f"create bob/a {lab.uuid(2, 0)}", f"create bob/b {lab.uuid(2, 1)}"]
    assert lab.status("bob", "c")["reason"] == (
        "waiting for your other containers: 0.857 of 1 GPU-equivalent in use "
        "(max_gpu_equivalents) and 0.286 more does not fit: drop one first (a, b: ds01 drop "
        "container NAME) or wait until it stops")


def test_aggregate_gpu_limit_counts_gpu_equivalents(tmp_path: Path) -> None:
    """The lab's "gpu_limit: 2.0 # gpueq": three 2g.10gb instances are 6/7 of a GPU, within
    2.0 (read as 2 devices, the third was refused); a whole GPU on top is over it."""
    lab = Lab(tmp_path, config=config_from(
        "groups:\n  g: {allow_full_gpu: true, max_gpu_equivalents: 4, max_gpu_slots_per_container: 4,"
        " max_containers_per_user: 9, aggregate: {gpu_limit: 2.0}}\ndefault_group: g\n"))
    for name in ("a", "b", "c"):
        lab.want("amy", name, mig="2g.10gb")
    lab.want("amy", "whole", gpus=2)
    got = lab.record()
    assert [line.split()[1] for line in got] == ["amy/a", "amy/b", "amy/c"]
    assert lab.status("amy", "whole")["reason"] == (
        "waiting for your other containers: 0.857 of 2 GPU-equivalents in use "
        "(aggregate.gpu_limit) and 2 more does not fit: drop one first (a, b, c: ds01 drop "
        "container NAME) or wait until it stops")
    lab.want("amy", "big", gpus=3)
    lab.record()
    assert lab.status("amy", "big")["phase"] == "Failed"
    assert "over your limit of 2 (aggregate.gpu_limit)" in str(lab.status("amy", "big")["reason"])


def test_max_containers_per_user(lab: Lab) -> None:
    for name in ("a", "b", "c"):
        lab.want("frank", name)
    assert lab.record() == ["create frank/a ", "create frank/b "]
    assert lab.status("frank", "c")["reason"] == \
        "waiting: you have 2 containers (max_containers_per_user is 2)"


def test_queue_order_priority_then_fair_share_then_time(lab: Lab) -> None:
    lab.want("erin", "x", mig="3g.20gb")
    lab.want("erin", "y", mig="3g.20gb")
    lab.want("bob", "held", mig="2g.10gb")
    lab.apply()
    t = lab.now
    lab.want("bob", "q", mig="3g.20gb", at=t)
    lab.want("frank", "q", mig="3g.20gb", at=t + timedelta(minutes=1))
    lab.want("alice", "q", mig="3g.20gb", at=t + timedelta(minutes=2))
    lab.want("carol", "q", mig="3g.20gb", at=t + timedelta(minutes=3))
    lab.want("dave", "q", mig="3g.20gb", at=t + timedelta(minutes=4))
    positions = {u: lab.status(u, "q")["queue_position"] for u in ("bob", "frank", "alice", "carol", "dave")}
    assert positions == {"dave": 1, "carol": 2, "frank": 3, "alice": 4, "bob": 5}


def test_the_head_of_the_queue_gets_a_freed_device_never_by_eviction(lab: Lab) -> None:
    lab.want("erin", "x", mig="3g.20gb")
    lab.want("erin", "y", mig="3g.20gb")
    lab.apply()
    lab.want("dave", "d", mig="3g.20gb")
    assert lab.record() == []  # a running container is never evicted, whatever the priority
    lab.drop("erin", "y")
    assert lab.record() == ["stop erin/y dropped", "remove erin/y dropped",
                            f"create dave/d {lab.uuid(2, 1)}"]


def start_idle(lab: Lab, user: str, name: str, **kw: object) -> None:
    lab.want(user, name, **kw)  # type: ignore[arg-type]
    lab.apply()
    lab.apply()  # the first look at the new container starts its idle timer


def idle_stop(lab: Lab, *, hours: float) -> None:
    """Time passes by ``hours`` in one step (ds01d saw none of it): the owner is warned, and
    the container is stopped ``stop_notice_m`` (10 minutes) later."""
    lab.advance(hours=hours)
    lab.apply()
    lab.advance(minutes=10)
    lab.apply()


def test_idle_warned_at_80_and_95_percent_then_stopped(lab: Lab) -> None:
    start_idle(lab, "alice", "t", mig="3g.20gb")
    lab.advance(minutes=95)
    assert lab.record() == []
    lab.advance(minutes=1)
    assert lab.record() == ["warn alice/t lifecycle.idle_warning 0.8"]
    lab.apply()
    assert lab.record() == []  # given once
    for _ in range(3):
        lab.advance(seconds=10)
        assert lab.apply().actions == ()  # and not again, pass after pass
    lab.advance(minutes=18)
    assert lab.record() == ["warn alice/t lifecycle.idle_warning 0.95"]
    lab.apply()
    lab.advance(minutes=6)
    assert lab.record() == ["stop alice/t idle"]
    lab.apply()
    assert lab.status("alice", "t")["phase"] == "Stopped"
    assert lab.status("alice", "t")["reason"] == "idle"


def test_activity_resets_the_idle_timer(lab: Lab) -> None:
    start_idle(lab, "alice", "t", mig="3g.20gb")
    lab.advance(minutes=100)
    lab.activity("alice", "t", gpu=40)  # a MIG instance: seen through its process
    lab.apply()
    lab.activity("alice", "t", gpu=0)
    lab.apply()
    lab.advance(minutes=100)
    assert lab.record() == ["warn alice/t lifecycle.idle_warning 0.8"]


def test_cpu_above_the_group_threshold_is_activity(lab: Lab) -> None:
    start_idle(lab, "alice", "t", mig="3g.20gb")
    lab.activity("alice", "t", cpu=2.5)  # students: cpu_idle_threshold 2
    lab.advance(hours=3)
    assert lab.record() == []


def test_keepalive_postpones_the_idle_stop_and_its_end_is_told_in_time(lab: Lab) -> None:
    start_idle(lab, "alice", "t", mig="3g.20gb", keepalive_until=None)
    w = lab.wants[("alice", "t")]
    lab.wants[("alice", "t")] = w.replace(keepalive_until=lab.now + timedelta(hours=3))
    lab.advance(hours=2, minutes=49)
    assert lab.record() == []
    lab.advance(minutes=1)  # 10 minutes (stop_notice_m) before the keepalive ends
    assert lab.record() == ["warn alice/t lifecycle.keepalive_warning end"]
    assert lab.status("alice", "t")["stops_at"] == "2026-01-05T12:00:00Z"
    lab.apply()
    lab.advance(minutes=9)
    assert lab.record() == []
    lab.advance(minutes=1)
    assert lab.record() == ["stop alice/t idle"]


def test_a_keepalive_that_ended_unseen_is_no_stop_without_a_warning(lab: Lab) -> None:
    start_idle(lab, "alice", "t", mig="3g.20gb")
    w = lab.wants[("alice", "t")]
    lab.wants[("alice", "t")] = w.replace(keepalive_until=lab.now + timedelta(hours=3))
    lab.advance(hours=4)  # ds01d saw none of the keepalive's last minutes
    assert lab.record() == ["warn alice/t lifecycle.idle_warning 0.95"]
    lab.apply()
    assert lab.status("alice", "t")["stops_at"] == "2026-01-05T13:10:00Z"
    lab.advance(minutes=9)
    assert lab.record() == []
    lab.advance(minutes=1)
    assert lab.record() == ["stop alice/t idle"]


def test_grace_period_for_young_containers_and_a_warning_before_it_ends(tmp_path: Path) -> None:
    """An idle timeout (6 minutes) shorter than the grace period (30): the stop comes when
    the grace period ends, and the owner hears of it stop_notice_m (10 minutes) before."""
    lab = Lab(tmp_path, config=config_from(
        "defaults: {idle_timeout_h: 0.1}\npolicies: {grace_period_m: 30}\n"))
    start_idle(lab, "amy", "t")
    lab.advance(minutes=19)
    assert lab.record() == []
    lab.advance(minutes=1)
    assert lab.record() == ["warn amy/t lifecycle.idle_warning notice"]
    lab.apply()
    for _ in range(3):
        lab.advance(minutes=1)
        assert lab.apply().actions == ()
    lab.advance(minutes=6)
    assert lab.record() == []
    lab.advance(minutes=1)
    assert lab.record() == ["stop amy/t idle"]


def test_high_demand_shrinks_idle_timeouts(tmp_path: Path) -> None:
    text = ("defaults: {idle_timeout_h: 2, allow_full_gpu: true, max_gpu_equivalents: null,"
            " max_containers_per_user: null}\n"
            "policies: {high_demand_threshold: 0.8, high_demand_idle_reduction: 0.5}\n")
    lab = Lab(tmp_path, config=config_from(text))
    for i, profile in enumerate(["3g.20gb", "3g.20gb", "2g.10gb", "2g.10gb", "2g.10gb"]):
        lab.want("u", f"m{i}", mig=profile)
    lab.want("u", "g0", gpus=1)
    lab.apply()
    for name in ["m0", "m1", "m2", "m3", "m4"]:
        lab.activity("u", name, cpu=50)
    lab.apply()  # 6 of 7 devices allocated: high demand; only g0 is idle
    lab.advance(minutes=61)
    assert lab.record() == ["warn u/g0 lifecycle.idle_warning 0.95"]  # the timeout shrank
    lab.apply()
    lab.advance(minutes=10)
    assert lab.record() == ["stop u/g0 idle"]


def test_runtime_warned_at_75_and_90_percent_then_stopped_even_when_busy(tmp_path: Path) -> None:
    lab = Lab(tmp_path, config=config_from("defaults: {max_runtime_h: 1, idle_timeout_h: null}\n"))
    lab.want("amy", "t")
    lab.apply()
    lab.activity("amy", "t", cpu=300)
    lab.advance(minutes=45)
    assert lab.record() == ["warn amy/t lifecycle.runtime_warning 0.75"]
    lab.apply()
    lab.advance(minutes=9)
    assert lab.record() == ["warn amy/t lifecycle.runtime_warning 0.9"]
    lab.apply()
    lab.advance(minutes=6)
    assert lab.record() == ["stop amy/t runtime"]


def test_an_exempt_user_is_never_idle_stopped(lab: Lab) -> None:
    start_idle(lab, "carol", "c", gpus=1)  # carol: idle_timeout_h exempt until 2027-03-31
    lab.advance(hours=20)
    assert lab.record() == []


def test_a_stopped_container_restarts_only_when_asked_again(lab: Lab) -> None:
    start_idle(lab, "alice", "t", mig="3g.20gb")
    idle_stop(lab, hours=2)
    lab.advance(hours=1)
    assert lab.record() == []
    lab.want("alice", "t", mig="3g.20gb")  # ds01 want again: a newer requested_at
    assert lab.record() == ["start alice/t"]
    lab.apply()
    assert lab.status("alice", "t")["phase"] == "Running"


def test_asking_again_with_other_options_replaces_the_container(lab: Lab) -> None:
    start_idle(lab, "alice", "t", mig="3g.20gb")
    idle_stop(lab, hours=2)
    lab.advance(minutes=1)
    lab.want("alice", "t", mig="2g.10gb")
    assert lab.record() == ["remove alice/t replaced", f"create alice/t {lab.uuid(3, 0)}"]


def test_stopped_containers_are_removed_after_the_hold(lab: Lab) -> None:
    start_idle(lab, "alice", "t", mig="3g.20gb")
    idle_stop(lab, hours=2)
    lab.advance(hours=23, minutes=59)
    assert lab.record() == []
    lab.advance(minutes=1)  # students: container_hold_after_stop_h 24
    assert lab.record() == ["remove alice/t held_expired", "remove-want alice/t"]


def test_a_dropped_want_stops_and_removes_its_container(lab: Lab) -> None:
    lab.want("alice", "t", mig="3g.20gb")
    lab.apply()
    lab.drop("alice", "t")
    assert lab.record() == ["stop alice/t dropped", "remove alice/t dropped"]


def test_untracked_use_flagged_once_while_it_lasts(lab: Lab) -> None:
    lab.want("alice", "t", mig="3g.20gb")
    lab.apply()
    cid = next(iter(lab.host.containers))
    inside = lab.host.add_process(lab.uuid(2, 1), uid=None, container_id=cid, mem_mib=100)
    host_pid = lab.host.add_process(lab.uuid(0), uid=lab.host.uid_of("dave"), container_id=None,
                                    mem_mib=100)
    assert lab.record() == [f"flag alice pid {inside} gpu 2", f"flag dave pid {host_pid} gpu 0"]
    lab.apply()
    assert lab.record() == []
    del lab.host.processes[str(host_pid)]
    lab.apply()
    lab.host.processes[str(host_pid)] = {"pid": host_pid, "device": lab.uuid(0), "mem": 1,
                                         "uid": lab.host.uid_of("dave"), "container_id": None}
    assert lab.record() == [f"flag dave pid {host_pid} gpu 0"]  # it came back: flagged again


def test_a_privileged_foreign_container_counts_as_using_every_gpu(lab: Lab) -> None:
    lab.host.containers["f" * 64] = {
        "id": "f" * 64, "name": "rogue", "image": "x", "labels": {}, "state": "running",
        "devices": [], "created_at": lab.host.now, "started_at": lab.host.now,
        "finished_at": None, "cpu_percent": 90.0, "gpu_util": 0.0, "cgroup_parent": "",
        "exit_code": None, "all_gpus": True}
    lab.want("carol", "c", gpus=1)
    assert lab.record() == []
    assert lab.status("carol", "c")["reason"] == \
        "queued for 1 free whole GPU (2 in use by containers)"


def test_foreign_containers_follow_their_container_type(lab: Lab) -> None:
    lab.host.containers["c" * 64] = {
        "id": "c" * 64, "name": "proj-web-1", "image": "x",
        "labels": {"com.docker.compose.project": "proj"}, "state": "running", "devices": [],
        "created_at": lab.host.now, "started_at": lab.host.now, "finished_at": None,
        "cpu_percent": 0.0, "gpu_util": 0.0, "cgroup_parent": "", "exit_code": None}
    lab.apply()
    lab.advance(minutes=20)  # compose: idle_timeout_h 0.5; grace_period_m 30
    assert lab.record() == ["warn None/proj-web-1 lifecycle.idle_warning notice"]
    lab.apply()
    lab.advance(minutes=10)
    assert lab.record() == ["stop None/proj-web-1 idle"]


def test_slices_created_kept_in_line_and_stopped(lab: Lab) -> None:
    lab.want("alice", "t")
    assert lab.record(slices=True)[:3] == ["ensure ds01.slice", "ensure ds01-student.slice",
                                           "ensure ds01-student-alice.slice"]
    lab.apply()
    lab.host.slices["ds01-student-alice.slice"]["MemoryMax"] = 1
    lab.host.slices["ds01-student-zed.slice"] = {}
    assert lab.record(slices=True) == ["set ds01-student-alice.slice ['MemoryMax']",
                                       "stop-slice ds01-student-zed.slice"]
    assert lab.host.slices["ds01-student-alice.slice"]["CPUQuotaPerSecUSec"] == 16_000_000


def test_plan_is_pure(lab: Lab) -> None:
    lab.want("alice", "t", mig="3g.20gb")
    desired, observed = lab.desired(), lab.observed()
    before = lab.host.to_json()
    assert plan(desired, observed, lab.now) == plan(desired, observed, lab.now)
    assert lab.host.to_json() == before


def test_asking_in_the_second_of_the_stop_is_not_asking_again(lab: Lab) -> None:
    start_idle(lab, "alice", "t", mig="3g.20gb")
    idle_stop(lab, hours=2)
    lab.want("alice", "t", mig="3g.20gb")  # the same second: maybe written before the stop
    assert lab.record() == []
    lab.advance(seconds=1)
    lab.want("alice", "t", mig="3g.20gb")
    assert lab.record() == ["start alice/t"]


def test_a_container_that_exits_at_once_is_not_restarted_over_and_over(lab: Lab) -> None:
    lab.want("alice", "t", mig="3g.20gb")
    lab.apply()
    (c,) = lab.host.containers.values()
    c.update(state="exited", finished_at=lab.host.now, exit_code=1)
    assert lab.record() == ["release alice/t exited with code 1"]
    lab.apply()
    assert lab.record() == []
    assert lab.status("alice", "t")["reason"] == "exited with code 1"


def test_a_creation_cut_short_is_finished(lab: Lab) -> None:
    lab.want("alice", "t", mig="3g.20gb")
    lab.apply()
    (c,) = lab.host.containers.values()
    c.update(state="created", started_at=None)  # ds01d died between create and start
    assert lab.record() == ["start alice/t"]
    lab.apply()
    assert lab.record() == []


def test_an_archived_user_is_given_no_container(tmp_path: Path) -> None:
    import tempfile

    from ds01d.config.loader import load_config

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "groups").mkdir()
        (Path(d) / "resource-limits.yaml").write_text("groups: {student: {}}\n"
                                                      "default_group: student\n")
        (Path(d) / "groups/archived.members").write_text("# access ended\nzed  # graduated\n")
        config = load_config(Path(d))
    lab = Lab(tmp_path, config=config)
    lab.want("zed", "t")
    lab.want("amy", "t")
    assert lab.record() == ["create amy/t "]
    status = lab.status("zed", "t")
    assert status["phase"] == "Failed"
    assert status["reason"] == ("your access has ended (groups/archived.members): ask the "
                                "lab's admins to restore it")


def test_a_creation_not_listed_yet_is_never_made_twice(lab: Lab) -> None:
    """Docker's listing may lag a create: the next pass must neither create the want again
    nor give its device to someone else (controllers call these expectations)."""
    from dataclasses import replace

    from ds01d.core import actions as a
    from ds01d.core.model import Expected

    lab.want("carol", "big", gpus=1)
    lab.want("dave", "other", gpus=1)
    first = lab.plan()
    (made,) = [x for x in first.actions if isinstance(x, a.CreateContainer)
               and x.spec.user == "carol"]
    observed = lab.observed()  # nothing created: as if the listing did not show it yet
    expecting = replace(observed, expected={("carol", "big"): Expected(
        "c" * 64, made.spec.devices, lab.now)})
    again = plan(lab.desired(observed), expecting, lab.now)
    creates = [x.spec for x in again.actions if isinstance(x, a.CreateContainer)]
    assert [(s.user, s.devices) for s in creates if s.user == "carol"] == []
    assert all(set(s.devices).isdisjoint(made.spec.devices) for s in creates)
    status = next(s for s in again.statuses if s.user == "carol")
    assert (status.phase, status.reason, status.devices) == ("Running", "starting",
                                                            made.spec.devices)


def test_a_container_removed_after_its_hold_frees_its_place_in_the_same_pass(lab: Lab) -> None:
    """frank (two containers at most): both idle-stopped; a third want waits for a place; when
    the first two are removed after the hold, the third is made in that same pass."""
    for name in ("a", "b"):
        start_idle(lab, "frank", name)
    lab.advance(hours=3)
    lab.apply()  # both told: stopped stop_notice_m (10 minutes) later
    lab.advance(minutes=10)
    lab.apply()  # both idle-stopped
    assert [lab.status("frank", n)["reason"] for n in ("a", "b")] == ["idle", "idle"]
    lab.want("frank", "c")
    lab.apply()
    assert lab.status("frank", "c")["phase"] == "Pending"
    lab.advance(hours=25)
    assert sorted(lab.record()) == ["create frank/c ",
                                    "remove frank/a held_expired", "remove frank/b held_expired",
                                    "remove-want frank/a", "remove-want frank/b"]
def test_a_runtime_stop_seen_late_is_warned_first(tmp_path: Path) -> None:
    lab = Lab(tmp_path, config=config_from("defaults: {max_runtime_h: 1, idle_timeout_h: null}\n"))
    lab.want("amy", "t")
    lab.apply()
    lab.activity("amy", "t", cpu=300)
    lab.advance(hours=2)  # ds01d saw none of it (suspended, or the clock jumped)
    assert lab.record() == ["warn amy/t lifecycle.runtime_warning 0.9"]
    lab.apply()
    assert lab.status("amy", "t")["stops_at"] == "2026-01-05T11:10:00Z"
    lab.advance(minutes=9, seconds=59)
    assert lab.record() == []
    lab.advance(seconds=1)
    assert lab.record() == ["stop amy/t runtime"]


def test_without_its_memory_ds01d_warns_again_before_it_stops(lab: Lab) -> None:
    start_idle(lab, "alice", "t", mig="3g.20gb")
    lab.advance(hours=2)
    lab.apply()  # warned: stops at 11:10
    lab.restart()  # what it was told is forgotten with the rest
    lab.apply()  # (the idle timer starts again too)
    lab.advance(hours=2)
    assert lab.record() == ["warn alice/t lifecycle.idle_warning 0.95"]


def test_asking_for_other_settings_while_running_replaces_the_container(lab: Lab) -> None:
    lab.want("alice", "t", mig="3g.20gb")
    lab.apply()
    lab.advance(minutes=5)
    lab.want("alice", "t", mig="2g.10gb")  # ds01 want container t --mig 2g.10gb --replace
    assert lab.record() == ["stop alice/t replaced", "remove alice/t replaced",
                            f"create alice/t {lab.uuid(3, 0)}"]
    lab.apply()
    assert lab.plan().changes == ()
    s = lab.status("alice", "t")
    assert (s["phase"], s["devices"]) == ("Running", [lab.uuid(3, 0)])


def test_a_replacement_that_must_wait_stops_the_old_one_and_queues(lab: Lab) -> None:
    lab.want("bob", "x", mig="2g.10gb")  # bob: 1.0 gpueq
    lab.want("alice", "t", mig="2g.10gb")
    lab.want("frank", "f", mig="2g.10gb")
    lab.want("dave", "big", gpus=1)
    lab.apply()
    lab.want("dave", "big", gpus=2)  # dave: faculty; GPU 1 is free, GPU 0 is his own
    assert lab.record() == ["stop dave/big replaced", "remove dave/big replaced",
                            f"create dave/big {lab.uuid(0)},{lab.uuid(1)}"]
    lab.want("alice", "t", mig="3g.20gb", cpus=2.0)
    lab.want("bob", "y", mig="3g.20gb")
    lab.want("frank", "g", mig="3g.20gb")
    lab.apply()
    lab.want("bob", "x", mig="3g.20gb")  # none left: the old one stops, the new one waits
    assert lab.record() == ["stop bob/x replaced"]
    lab.apply()
    s = lab.status("bob", "x")
    assert (s["phase"], s["reason"]) == (
        "Pending", "queued for a free 3g.20gb instance (2 in use by containers); then your "
        "container is made anew with the new settings (/workspace is kept)")
    assert lab.plan().changes == ()


def test_a_pending_want_says_what_holds_the_device_it_waits_for(lab: Lab) -> None:
    mine = lab.host.add_process(lab.uuid(0), uid=lab.host.uid_of("carol"), container_id=None,
                                mem_mib=500)
    lab.host.add_process(lab.uuid(1), uid=lab.host.uid_of("dave"), container_id=None,
                         mem_mib=500)
    lab.want("carol", "c", gpus=1)
    assert lab.status("carol", "c")["reason"] == (
        f"queued for 1 free whole GPU (GPU 0 busy: a process of yours outside containers "
        f"(pid {mine}); GPU 1 busy: a process outside ds01 containers)")


def test_a_user_over_a_lowered_quota_is_alerted_once(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    lab.want("bob", "a", mig="3g.20gb")
    lab.want("bob", "b", mig="3g.20gb")
    lab.apply()
    lab.config = config_from("defaults: {max_gpu_equivalents: 0.5}\n")
    assert lab.record() == ["alert quota.over bob"]
    alert = next(x for x in lab.plan().actions if isinstance(x, a.Alert))
    assert alert.message == ("bob holds 0.857 GPU-equivalents (max_gpu_equivalents 0.5): over "
                             "quota; nothing is stopped, their new wants wait until they are "
                             "under it")
    lab.apply()
    assert lab.record() == []


def test_a_container_is_made_with_every_field_it_has() -> None:
    """``Container.__init__`` is written out (for speed): it takes every field of the
    dataclass, in order, sets each, and derives the label fields as the labels say."""
    import inspect
    from dataclasses import fields
    from datetime import UTC, datetime

    from ds01d.core.model import LABEL_MANAGED, LABEL_NAME, LABEL_USER, Container

    init = [f.name for f in fields(Container) if f.init]
    assert list(inspect.signature(Container.__init__).parameters)[1:] == init
    t = datetime(2026, 1, 5, tzinfo=UTC)
    given: dict[str, Any] = {"id": "c1", "name": "n", "image": "i", "labels": {LABEL_MANAGED: "true",
             LABEL_USER: "alice", LABEL_NAME: "w"}, "state": "exited", "devices": ("d",),
             "created_at": t, "started_at": t, "finished_at": t, "all_gpus": True,
             "cpu_percent": 1.5, "cgroup_parent": "p.slice", "exit_code": 3,
             "net_bytes_per_s": 2.0, "gpu_count": 1}
    assert set(given) == set(init)
    c = Container(**given)
    assert {n: getattr(c, n) for n in init} == given
    assert (c.managed, c.owner, c.want_name, c.active, c.made_for_user) == (
        True, "alice", "w", False, False)
    socket_made = replace(c, labels={LABEL_USER: "bob"}, state="running")
    assert (socket_made.managed, socket_made.owner, socket_made.active,
            socket_made.made_for_user) == (False, "bob", True, True)
    with pytest.raises(AttributeError):
        c.state = "running"  # type: ignore[misc]
