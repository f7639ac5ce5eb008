"""Containers users make through ds01's Docker socket (labels ``ds01.user`` and ``ds01.type``,
no want): they count for their owner and follow their type's limits, but are never retired
as dropped wants (recorded actions on the simulated host)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.harness import Lab, config_from

CAP_ONE = """\
version: 1
defaults: {max_gpu_equivalents: 2, allow_full_gpu: true, max_containers_per_user: 1,
           container_hold_after_stop_h: 1}
default_group: student
groups: {student: {members: [alice, bob]}}
container_types: {devcontainer: {idle_timeout_h: 0.5}}
policies: {grace_period_m: 0}
"""


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path, config=config_from(CAP_ONE))


def socket_made(lab: Lab, user: str, name: str, *, state: str = "running") -> str:
    cid = hashlib.sha256(f"{user}/{name}".encode()).hexdigest()
    lab.host.containers[cid] = {
        "id": cid, "name": f"ds01-{user}-{name}", "image": "x",
        "labels": {"ds01.user": user, "ds01.type": "devcontainer", "ds01.managed": "false",
                   "ds01.name": ""},
        "state": state, "devices": [], "created_at": lab.host.now, "started_at": lab.host.now,
        "finished_at": None if state == "running" else lab.host.now, "cpu_percent": 0.0,
        "gpu_util": 0.0, "cgroup_parent": f"ds01-student-{user}.slice",
        "exit_code": None if state == "running" else 0}
    return cid


def test_never_retired_and_its_owners_slice_is_kept_in_line(lab: Lab) -> None:
    socket_made(lab, "alice", "dev")
    assert lab.record(slices=True) == ["ensure ds01.slice", "ensure ds01-student.slice",
                                       "ensure ds01-student-alice.slice"]
    lab.apply()
    assert lab.record(slices=True) == []


def test_it_counts_toward_the_owners_container_cap(lab: Lab) -> None:
    socket_made(lab, "alice", "dev")
    lab.want("alice", "t", gpus=1)
    lab.want("bob", "t", gpus=1)
    assert lab.record() == ["create bob/t " + lab.uuid(0)]
    assert lab.status("alice", "t")["reason"] == ("waiting: you have 1 containers "
                                                  "(max_containers_per_user is 1)")


def test_it_follows_its_container_type(lab: Lab) -> None:
    socket_made(lab, "alice", "dev")
    lab.apply()
    lab.advance(minutes=31)  # devcontainer: idle_timeout_h 0.5
    assert lab.record() == ["warn alice/ds01-alice-dev lifecycle.idle_warning 0.95"]
    lab.apply()  # its owner is told: stopped stop_notice_m (10 minutes) later
    lab.advance(minutes=10)
    assert lab.record() == ["stop alice/ds01-alice-dev idle"]


def test_stopped_it_is_removed_after_the_owners_hold(lab: Lab) -> None:
    socket_made(lab, "alice", "dev", state="exited")
    assert lab.record() == []
    lab.advance(hours=1, seconds=1)  # container_hold_after_stop_h: 1
    assert lab.record() == ["remove alice/ds01-alice-dev held_expired"]


def test_gpu_use_in_it_is_flagged_with_its_owner(lab: Lab) -> None:
    cid = socket_made(lab, "alice", "dev")
    pid = lab.host.add_process(lab.uuid(0), uid=None, container_id=cid, mem_mib=100)
    assert lab.record() == [f"flag alice pid {pid} gpu 0"]
