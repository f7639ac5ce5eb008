"""The MIG layout, applied: recorded-action tests on the simulated host.

Host: 4x A100-PCIE-40GB, GPUs 0-1 whole, GPU 2 MIG 3g.20gb x2 (placements 0 and 4), GPU 3
MIG 2g.10gb x3 (0, 2, 4); profiles and placements are those the GPU reports. Config: the
shipped example (students: MIG only; carol: whole GPUs; idle 2h for students).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ds01d.adapters.sim import SimNvml
from ds01d.core.model import LABEL_RECREATED
from tests.harness import Lab, with_layout

BASE = {"all": "{mig-enabled: false}", "2": "{mig-enabled: true, mig-devices: {3g.20gb: 2}}",
        "3": "{mig-enabled: true, mig-devices: {2g.10gb: 3}}"}


def layout(top: str = "", **gpus: str) -> str:
    """mig-layout.yaml: the example's layout with ``g<index>=...`` GPUs changed."""
    entries = BASE | {k.removeprefix("g"): v for k, v in gpus.items()}
    lines = "".join(f'  "{k}": {v}\n' for k, v in entries.items())
    return f"version: 1\n{top}gpus:\n{lines}"


def profiles(lab: Lab, gpu: int) -> list[str]:
    return sorted(i.profile for i in SimNvml(lab.host).gpus()[gpu].instances)


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


def test_the_example_layout_is_the_host_s_nothing_to_do(lab: Lab) -> None:
    assert lab.record() == []
    assert lab.plan().mig.changes == ()


def test_a_free_gpu_is_laid_out_at_once_and_no_other_is_touched(lab: Lab) -> None:
    before = SimNvml(lab.host).gpus()
    lab.config = with_layout(lab.config, layout(g3="{mig-enabled: true, mig-devices: "
                                                   "{1g.5gb: 7}}"))
    assert lab.record() == [*(f"mig 3 destroy 2g.10gb gi {gi}" for gi in (1, 2, 3)),
                            *(f"mig 3 create 1g.5gb at {s}" for s in range(7)),
                            "report gpu 3 mig.apply"]
    lab.apply()
    after = SimNvml(lab.host).gpus()
    assert profiles(lab, 3) == ["1g.5gb"] * 7
    assert after[:3] == before[:3]
    assert lab.plan().mig.changes == ()
    assert lab.record() == []


def test_an_instance_in_use_that_the_new_layout_keeps_is_kept_with_its_container(
        lab: Lab) -> None:
    lab.want("alice", "a", mig="3g.20gb")
    lab.apply()
    held = lab.uuid(2, 0)
    assert lab.status("alice", "a")["devices"] == [held]
    lab.config = with_layout(lab.config, layout(g2="{mig-enabled: true, mig-devices: "
                                                   "{3g.20gb: 1, 1g.5gb: 3}}"))
    assert lab.record() == ["mig 2 destroy 3g.20gb gi 2",
                            *(f"mig 2 create 1g.5gb at {s}" for s in (4, 5, 6)),
                            "report gpu 2 mig.apply"]
    lab.apply()
    assert lab.status("alice", "a")["phase"] == "Running"
    assert lab.uuid(2, 0) == held and profiles(lab, 2) == ["1g.5gb"] * 3 + ["3g.20gb"]


def test_the_busy_instance_is_the_one_kept_when_either_could_be(lab: Lab) -> None:
    lab.want("alice", "a", mig="3g.20gb")
    lab.want("bob", "b", mig="3g.20gb")
    lab.apply()
    lab.drop("alice", "a")
    lab.apply()  # alice's (GPU instance 1, placement 0) is free; bob's (2, at 4) in use
    lab.config = with_layout(lab.config, layout(g2="{mig-enabled: true, mig-devices: "
                                                   "{3g.20gb: 1, 2g.10gb: 2}}"))
    assert lab.record() == ["mig 2 destroy 3g.20gb gi 1", "mig 2 create 2g.10gb at 0",
                            "mig 2 create 2g.10gb at 2", "report gpu 2 mig.apply"]


def drain_lab(tmp_path: Path, deadline: str = "2") -> Lab:
    """carol on GPU 0, dave on GPU 1; then GPU 1 is to become seven 1g.5gb instances."""
    lab = Lab(tmp_path)
    lab.want("carol", "c", gpus=1)
    lab.apply()
    lab.want("dave", "d", gpus=1)
    lab.apply()
    assert lab.status("dave", "d")["devices"] == [lab.uuid(1)]
    lab.config = with_layout(lab.config, layout(g1="{mig-enabled: true, mig-devices: "
                                                   f"{{1g.5gb: 7}}, drain_deadline_h: {deadline}}}"))
    return lab


def test_a_gpu_in_use_drains_with_notice_then_is_applied_at_the_deadline(
        tmp_path: Path) -> None:
    lab = drain_lab(tmp_path)
    start = lab.now
    lab.want("frank", "f", mig="1g.5gb")
    assert lab.record() == ["warn dave/d mig.drain_warning", "report gpu 1 mig.drain"]
    lab.apply()
    due = f"{start + timedelta(hours=2):%Y-%m-%d %H:%M} UTC"
    assert lab.status("frank", "f")["reason"] == f"waiting for GPU 1's new layout (due {due})"
    dave = lab.status("dave", "d")
    assert dave["phase"] == "Running" and dave["stops_at"] == f"{start + timedelta(hours=2):%Y-%m-%dT%H:%M:%SZ}"
    assert dave["reason"] == "running; GPU 1's MIG layout changes (mig-relayout)"
    lab.advance(hours=1, minutes=59)
    assert lab.record() == []  # told once; a restart of the clock does not move the deadline
    lab.advance(minutes=1)
    assert lab.record() == ["stop dave/d mig-relayout", "remove dave/d mig-relayout"]
    lab.apply()
    assert lab.status("dave", "d")["reason"] == \
        "queued for 1 free whole GPU (1 in use by containers)"  # his want stays
    assert lab.record() == ["mig 1 mode on", *(f"mig 1 create 1g.5gb at {s}" for s in range(7)),
                            "report gpu 1 mig.apply"]
    lab.apply()
    assert lab.record() == [f"create frank/f {lab.uuid(1, 0)}"]
    lab.apply()
    assert lab.plan().mig.changes == ()
    lab.drop("carol", "c")  # GPU 0 is free: dave's want, queued again, gets it
    assert lab.record() == ["stop carol/c dropped", "remove carol/c dropped",
                            f"create dave/d {lab.uuid(0)}"]
    lab.apply()
    assert lab.record() == []


def test_no_new_allocation_on_what_goes_away(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    lab.want("bob", "b", mig="2g.10gb")
    lab.apply()
    lab.config = with_layout(lab.config, layout(g3="{mig-enabled: true, mig-devices: "
                                                   "{1g.5gb: 7}}"))
    lab.want("alice", "a", mig="2g.10gb")  # two 2g.10gb are free, but they go
    lab.want("frank", "f", mig="3g.20gb")  # GPU 2 stays: served
    assert lab.record() == [f"create frank/f {lab.uuid(2, 0)}", "warn bob/b mig.drain_warning",
                            "report gpu 3 mig.drain"]
    s = lab.status("alice", "a")
    assert (s["phase"], s["reason"]) == (
        "Failed", "this server has no 2g.10gb MIG instances (it has: 1g.5gb, 3g.20gb)")


def test_deadline_zero_stops_at_once_and_null_never(tmp_path: Path) -> None:
    lab = drain_lab(tmp_path, deadline="0")
    assert lab.record() == ["stop dave/d mig-relayout", "remove dave/d mig-relayout",
                            "report gpu 1 mig.drain"]
    lab = drain_lab(tmp_path / "2", deadline="null")
    assert lab.record() == ["warn dave/d mig.drain_warning", "report gpu 1 mig.drain"]
    lab.activity("dave", "d", cpu=50)
    lab.apply()
    [told] = [e for e in lab.executor.events.read() if e["event_type"] == "mig.drain_warning"]  # type: ignore[union-attr]
    assert told["details"]["message"] == (
        "GPU 1's MIG layout changes to MIG 1g.5gb x7: it waits until d stops (there is no "
        "deadline); stop it when you can (ds01 drop container d)")
    lab.advance(days=5)  # within dave's runtime limit (7 days, warned from 75%)
    assert lab.record() == []
    assert lab.status("dave", "d")["reason"] == \
        "running; GPU 1's MIG layout changes when this container stops (mig-relayout)"
    lab.drop("dave", "d")  # it stops by itself: applied then
    assert lab.record()[:2] == ["stop dave/d dropped", "remove dave/d dropped"]
    lab.apply()
    assert lab.record()[0] == "mig 1 mode on"


def test_a_global_deadline_and_a_per_change_one(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    text = layout("drain_deadline_h: 5\n", g1="{mig-enabled: true, mig-devices: {3g.20gb: 2}}",
                  g0="{mig-enabled: true, mig-devices: {7g.40gb: 1}, drain_deadline_h: 1}")
    lab.config = with_layout(lab.config, text)
    deadlines = {c.gpu.index: c.deadline for c in lab.plan().mig.changes}
    assert deadlines == {0: lab.now + timedelta(hours=1), 1: lab.now + timedelta(hours=5)}


@pytest.mark.parametrize(("devices", "why"), [
    ("{1g.10gb: 4, 1g.5gb: 1}", "MIG 1g.10gb x4, 1g.5gb x1 does not fit GPU 3 (NVIDIA "
     "A100-PCIE-40GB): no placement of these instances keeps their memory slices apart"),
    ("{1g.20gb: 2}", "GPU 3 (NVIDIA A100-PCIE-40GB) has no MIG profile 1g.20gb (it has: "
     "1g.5gb, 1g.5gb+me, 1g.10gb, 2g.10gb, 3g.20gb, 4g.20gb, 7g.40gb)"),
    ("{1g.5gb+me: 2}", "GPU 3 (NVIDIA A100-PCIE-40GB) holds at most 1 1g.5gb+me; 2 asked"),
])
def test_a_layout_the_gpu_cannot_hold_is_reported_and_nothing_is_touched(
        lab: Lab, devices: str, why: str) -> None:
    lab.want("bob", "b", mig="2g.10gb")
    lab.config = with_layout(lab.config, layout(g3=f"{{mig-enabled: true, mig-devices: "
                                                   f"{devices}}}"))
    assert lab.record() == [f"create bob/b {lab.uuid(3, 0)}", "report gpu 3 mig.layout_invalid"]
    lab.apply()
    [change] = lab.plan().mig.changes
    assert change.problem == why and change.going == frozenset()
    events = [e for e in lab.executor.events.read() if e["event_type"] == "mig.layout_invalid"]  # type: ignore[union-attr]
    assert [e["details"]["error"] for e in events] == [why]
    assert lab.record() == []  # said once


def test_mig_off_destroys_every_instance_then_turns_mig_off(lab: Lab) -> None:
    lab.want("carol", "c", gpus=2)
    lab.apply()
    lab.want("dave", "d", gpus=1)
    lab.config = with_layout(lab.config, layout(g2="{mig-enabled: false}"))
    assert lab.status("dave", "d")["reason"] == "waiting for GPU 2's new layout (due now)"
    assert lab.record() == ["mig 2 destroy 3g.20gb gi 1", "mig 2 destroy 3g.20gb gi 2",
                            "mig 2 mode off", "report gpu 2 mig.apply"]
    lab.apply()
    assert lab.record() == [f"create dave/d {lab.uuid(2)}"]


def test_a_mode_change_that_needs_a_reset_says_so_and_waits(lab: Lab) -> None:
    lab.host.gpus[1]["mig_reset_required"] = True
    lab.config = with_layout(lab.config, layout(g1="{mig-enabled: true, mig-devices: "
                                                   "{3g.20gb: 2}}"))
    lab.apply()
    errors = [e for e in lab.executor.events.read() if e["event_type"] == "reconcile.error"]  # type: ignore[union-attr]
    assert [e["details"]["error"] for e in errors] == [
        "MIG mode on on GPU 1 takes effect at the next GPU reset: run `nvidia-smi -r -i 1` "
        "while nothing uses it (or reboot)"]
    assert SimNvml(lab.host).gpus()[1].mig_pending is True
    lab.want("carol", "c", gpus=1)
    assert f"create carol/c {lab.uuid(0)}" in lab.record()  # not GPU 1: it goes
    lab.host.gpus[1].update(mig_enabled=True, mig_pending=None)  # the admin reset it
    lab.advance(seconds=61)  # a permanent error is retried after the longest backoff
    assert lab.record() == ["mig 1 create 3g.20gb at 0", "mig 1 create 3g.20gb at 4",
                            f"create carol/c {lab.uuid(0)}"]


def test_a_process_outside_containers_holds_the_change_and_is_named(tmp_path: Path) -> None:
    lab = drain_lab(tmp_path, deadline="1")
    lab.drop("dave", "d")
    lab.apply()
    pid = lab.host.add_process(lab.uuid(1), uid=lab.host.uid_of("erin"), container_id=None,
                               mem_mib=100)
    lab.advance(hours=1)
    assert lab.record() == [f"flag erin pid {pid} gpu 1", "report gpu 1 mig.blocked"]
    lab.apply()
    [event] = [e for e in lab.executor.events.read() if e["event_type"] == "mig.blocked"]  # type: ignore[union-attr]
    assert event["details"]["pids"] == [str(pid)]
    del lab.host.processes[str(pid)]
    assert lab.record()[0] == "mig 1 mode on"


def test_a_stopped_container_whose_instance_was_destroyed_is_made_again_when_asked(
        lab: Lab) -> None:
    lab.want("alice", "t", mig="3g.20gb")
    lab.apply()
    lab.apply()
    lab.advance(hours=2, minutes=1)
    lab.apply()  # told: stopped stop_notice_m (10 minutes) later
    lab.advance(minutes=10)
    lab.apply()  # idle-stopped
    assert lab.status("alice", "t")["reason"] == "idle"
    old = lab.uuid(2, 0)
    lab.config = with_layout(lab.config, layout(g2="{mig-enabled: true, mig-devices: "
                                                   "{3g.20gb: 1, 2g.10gb: 2}}"))
    lab.apply()  # alice's stopped container holds nothing: GPU instance 1 goes
    assert lab.status("alice", "t")["reason"] == "idle"  # not restarted unasked
    new = lab.uuid(2, 0)
    assert new != old
    lab.advance(minutes=5)
    lab.want("alice", "t", mig="3g.20gb")
    assert lab.record() == ["remove alice/t replaced", f"create alice/t {new}"]
    lab.apply()
    c = next(c for c in lab.host.containers.values() if c["state"] == "running")
    assert c["labels"][LABEL_RECREATED] == old
    assert lab.record() == ["warn alice/t mig.recreated"]


def test_a_restarted_daemon_without_its_memory_starts_the_drain_again_later(
        tmp_path: Path) -> None:
    lab = drain_lab(tmp_path)
    lab.apply()
    lab.advance(hours=1)
    lab.restart()
    lab.apply()  # the drain begins again here: 2h from now, never sooner
    lab.advance(hours=1, minutes=59)
    assert lab.record() == []
    lab.advance(minutes=1)
    assert lab.record() == ["stop dave/d mig-relayout", "remove dave/d mig-relayout"]


def test_a_container_started_after_the_drain_began_gets_the_full_notice(lab: Lab) -> None:
    lab.want("alice", "a", mig="3g.20gb")
    lab.apply()
    lab.activity("alice", "a", cpu=50)
    two = "{mig-enabled: true, mig-devices: {3g.20gb: 1, 2g.10gb: 2}, drain_deadline_h: 2}"
    lab.config = with_layout(lab.config, layout(g2=two))
    lab.apply()  # alice's instance (at 0) goes; the other 3g.20gb stays
    lab.advance(hours=1)
    lab.want("bob", "b", mig="3g.20gb")
    lab.apply()  # bob starts on the instance that stays
    lab.activity("bob", "b", cpu=50)
    lab.config = with_layout(lab.config, layout(g2="{mig-enabled: true, mig-devices: "
                                                   "{2g.10gb: 3, 1g.5gb: 1}, drain_deadline_h: 2}"))
    assert lab.record() == ["warn bob/b mig.drain_warning"]  # now his goes too
    lab.apply()
    assert lab.status("bob", "b")["stops_at"] == f"{lab.now + timedelta(hours=2):%Y-%m-%dT%H:%M:%SZ}"
    lab.advance(hours=1)
    assert lab.record() == ["stop alice/a mig-relayout",  # the drain's own deadline
                            "remove alice/a mig-relayout"]
    lab.apply()
    lab.advance(minutes=59)
    assert lab.record() == []
    lab.advance(minutes=1)
    assert lab.record() == ["stop bob/b mig-relayout",  # two hours after he started
                            "remove bob/b mig-relayout"]


def test_re_created_in_the_pass_that_destroys_the_old_instance_is_told_too(lab: Lab) -> None:
    lab.want("alice", "t", mig="3g.20gb")
    lab.apply()
    lab.apply()
    lab.advance(hours=2, minutes=1)
    lab.apply()  # told: stopped stop_notice_m (10 minutes) later
    lab.advance(minutes=10)
    lab.apply()  # idle-stopped on GPU 2's instance at 0
    old = lab.uuid(2, 0)
    lab.config = with_layout(lab.config, layout(g2="{mig-enabled: true, mig-devices: "
                                                   "{3g.20gb: 1, 2g.10gb: 2}}"))
    lab.advance(minutes=5)
    lab.want("alice", "t", mig="3g.20gb")  # asked again in the pass that lays GPU 2 out
    kept = lab.uuid(2, 1)
    assert lab.record() == ["remove alice/t replaced", "mig 2 destroy 3g.20gb gi 1",
                            "mig 2 create 2g.10gb at 0", "mig 2 create 2g.10gb at 2",
                            f"create alice/t {kept}", "report gpu 2 mig.apply"]
    lab.apply()
    c = next(c for c in lab.host.containers.values() if c["state"] == "running")
    assert c["labels"][LABEL_RECREATED] == old
    assert lab.record() == ["warn alice/t mig.recreated"]
