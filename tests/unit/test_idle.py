"""What counts as idle: MIG activity from DCGM (processes only without it), network traffic,
and the detection window. Each test fails when its signal is ignored."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ds01d.adapters.base import AdapterError
from ds01d.adapters.dcgm import DcgmExporter
from ds01d.config.loader import load_config
from ds01d.core.idle import MIG_UNKNOWN, busy_signals, track_idle
from ds01d.core.model import Gpu, GpuProcess
from ds01d.core.naming import docker_name
from ds01d.core.plan import Kept, Plan, plan
from ds01d.runtime.observe import observe
from ds01d.runtime.simroot import EXAMPLE, sim_adapters
from tests.fakedcgm import Scrape, exporter
from tests.harness import Lab, config_from


def start(lab: Lab, user: str, name: str, **kw: object) -> None:
    lab.want(user, name, **kw)  # type: ignore[arg-type]
    lab.apply()
    lab.apply()


def cuda_context(lab: Lab, user: str, name: str) -> None:
    """A notebook that holds a CUDA context and computes nothing: a process on its MIG
    instance, the instance's engines idle."""
    c = lab.host.container(docker_name(user, name))
    (device,) = c["devices"]
    lab.host.add_process(device, uid=lab.host.uid_of(user), container_id=c["id"], mem_mib=900)


def test_an_idle_notebook_on_mig_is_reclaimed_with_dcgm(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    with exporter(Scrape(lab.host)) as url:
        lab.dcgm = DcgmExporter(url)
        start(lab, "alice", "nb", mig="3g.20gb")
        cuda_context(lab, "alice", "nb")
        lab.apply()
        lab.advance(hours=2, minutes=1)  # students: idle_timeout_h 2
        assert lab.after_notice() == ["stop alice/nb idle"]


def test_without_dcgm_a_process_counts_and_status_says_so(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    start(lab, "alice", "nb", mig="3g.20gb")
    cuda_context(lab, "alice", "nb")
    lab.apply()
    lab.advance(hours=5)
    assert lab.record() == []
    assert lab.status("alice", "nb")["busy"] == f"a process on MIG 3g.20gb ({MIG_UNKNOWN})"


def test_dcgm_activity_keeps_a_mig_container_busy(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    scrape = Scrape(lab.host)
    with exporter(scrape) as url:
        lab.dcgm = DcgmExporter(url)
        start(lab, "alice", "train", mig="3g.20gb")
        c = lab.host.container(docker_name("alice", "train"))
        gi = next(i["gi"] for g in lab.host.gpus for i in g["instances"]
                  if i["uuid"] == c["devices"][0])
        scrape.active[(2, gi)] = 0.6
        lab.apply()
        lab.advance(hours=5)
        assert lab.record() == []
        assert lab.status("alice", "train")["busy"] == "MIG 3g.20gb >= 5% (DCGM)"
        scrape.active[(2, gi)] = 0.01  # below the students' 5%
        lab.apply()
        lab.advance(hours=2, minutes=1)
        assert lab.after_notice() == ["stop alice/train idle"]


def test_network_traffic_is_activity(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    start(lab, "alice", "web")  # CPU only
    lab.activity("alice", "web", net=20 * 1024)  # students: 1k/s
    lab.advance(hours=5)
    assert lab.record() == []
    assert lab.status("alice", "web")["busy"] == "network >= 1K/s"
    lab.activity("alice", "web", net=100)
    lab.apply()
    lab.advance(hours=2, minutes=1)
    assert lab.after_notice() == ["stop alice/web idle"]


def test_the_lab_network_threshold_in_its_older_form(tmp_path: Path) -> None:
    """1048576 bytes per hourly check is 291 bytes/s: 300 B/s is busy, 200 B/s idle."""
    lab = Lab(tmp_path, config=config_from(
        "defaults: {idle_timeout_h: 0.5}\npolicies: {network_idle_threshold: 1048576}\n"))
    start(lab, "amy", "web")
    lab.activity("amy", "web", net=300)
    lab.advance(hours=3)
    assert lab.record() == []
    lab.activity("amy", "web", net=200)
    lab.apply()
    lab.advance(minutes=31)
    assert lab.after_notice() == ["stop amy/web idle"]


def test_the_detection_window_delays_counting_idle(tmp_path: Path) -> None:
    """The lab's idle_detection_window: 3 (hourly checks) under a half-hour idle timeout:
    nothing happens before three hours of idleness, then the stop is due at once (and comes
    once its owner has been told stop_notice_m before)."""
    lab = Lab(tmp_path, config=config_from(
        "defaults: {idle_timeout_h: 0.5}\ngroups:\n  student:\n    policies:\n"
        "      idle_detection_window: 3\ndefault_group: student\n"))
    start(lab, "amy", "t")
    lab.advance(hours=2, minutes=59)
    assert lab.record() == []
    assert lab.status("amy", "t")["stops_at"] == "2026-01-05T12:00:00Z"
    lab.advance(minutes=1)
    assert lab.record() == ["warn amy/t lifecycle.idle_warning 0.95"]  # due: told first
    assert lab.after_notice() == ["stop amy/t idle"]


def test_a_detection_window_in_minutes(tmp_path: Path) -> None:
    lab = Lab(tmp_path, config=config_from(
        "defaults: {idle_timeout_h: 0.25}\npolicies: {idle_detection_window: 30m, grace_period_m: 0}\n"))
    start(lab, "amy", "t")
    lab.advance(minutes=29)
    assert lab.record() == []
    lab.advance(minutes=1)
    assert lab.after_notice() == ["stop amy/t idle"]


class NoNvml:
    """NVML that cannot be read (a driver upgraded under a running ds01d)."""

    def gpus(self) -> list[Gpu]:
        raise AdapterError("NVML: Driver/library version mismatch")

    def processes(self) -> list[GpuProcess]:
        raise AdapterError("NVML: Driver/library version mismatch")

    def set_mig_mode(self, gpu_uuid: str, enabled: bool) -> None:
        raise AdapterError("NVML: Driver/library version mismatch")

    def destroy_instance(self, gpu_uuid: str, gpu_instance_id: int) -> None:
        raise AdapterError("NVML: Driver/library version mismatch")

    def create_instance(self, gpu_uuid: str, profile_id: int, start: int) -> str:
        raise AdapterError("NVML: Driver/library version mismatch")


def test_with_nvml_unreadable_a_gpu_container_is_never_idle_stopped(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    start(lab, "alice", "t", mig="3g.20gb")
    lab.advance(hours=1)
    blind = replace(sim_adapters(lab.host)[0], nvml=NoNvml())
    observed = observe(blind, lab.now)
    desired = lab.desired(observed)
    busy = busy_signals(observed, desired.effective)
    assert busy[lab.host.container(docker_name("alice", "t"))["id"]] == \
        "GPU unknown: NVML unreadable"
    cid = lab.host.container(docker_name("alice", "t"))["id"]
    idle_before = {cid: lab.now - timedelta(hours=4)}
    assert track_idle(idle_before, observed, desired.effective, lab.now) == {}


@functools.cache
def _running_lab(window: str = "10m") -> tuple[Lab, datetime]:
    """Containers of two students (idle 2 h, runtime 72 h, the detection window
    ``window``), a faculty member (8 h, 168 h) and an admin (12 h, none), all running: 4 of
    the host's 7 devices, high demand (idle limits halved) from half of them held."""
    lab = Lab(Path(tempfile.mkdtemp(prefix="ds01-quiet-", dir=os.environ.get("TMPDIR"))))
    etc = lab.root / "etc"
    shutil.copytree(EXAMPLE, etc)
    limits = etc / "resource-limits.yaml"
    limits.write_text(limits.read_text().replace("idle_detection_window: 10m",
                                                 f"idle_detection_window: {window}"))
    lab.config = load_config(etc)
    lab.config = replace(lab.config, policies=replace(lab.config.policies,
                                                      high_demand_threshold=0.5))
    for user, kw in (("alice", {"mig": "3g.20gb"}), ("frank", {"mig": "2g.10gb"}),
                     ("dave", {"gpus": 1}), ("erin", {"gpus": 1})):
        start(lab, user, "w", **kw)
    return lab, lab.now


_NEAR = st.integers(-200, 0) | st.integers(-6000, 0)
"""Minutes before the lab's start: near (idle limits) or far (runtime limits)."""


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_quiet_containers_kept_from_the_last_pass_are_as_checked_afresh(
        data: st.DataObject) -> None:
    """A running container with nothing to say keeps its stop time for the next pass; a pass
    that keeps it plans exactly what a fresh one does, whatever changed in between: the
    clock (either way), when it went idle, when ds01d started it, whether its owner was told
    of a stop, a keepalive, high demand (a container gone)."""
    lab, base = _running_lab()
    ids = sorted(c["id"] for c in lab.host.containers.values())
    moment = _NEAR.map(lambda m: base + timedelta(minutes=m))

    mostly = st.integers(0, 3).map(bool)  # three times in four

    def variant(last: dict[str, Any] | None) -> dict[str, Any]:
        def pick(key: str, fresh: Any) -> Any:
            if last is not None and data.draw(mostly, label=f"keep {key}"):
                return last[key]
            return data.draw(fresh, label=key)

        def some(value: Any) -> Any:  # per container: mostly one
            return st.fixed_dictionaries({i: st.tuples(mostly, value) for i in ids}).map(
                lambda d: {i: v for i, (on, v) in d.items() if on})
        return {
            "idle": pick("idle", some(moment)),
            "started": pick("started", some(moment).map(
                lambda d: dict(list(d.items())[:1]))),
            "told": pick("told", st.sets(st.sampled_from(ids), max_size=1)),
            "keep": pick("keep", st.none() | st.integers(0, 600).map(
                lambda m: base + timedelta(minutes=m))),
            "gone": pick("gone", st.sets(st.sampled_from(ids), max_size=1)),
        }

    def plan_at(v: dict[str, Any], now: datetime, previous: Kept | None = None,
                check: bool = False) -> Plan:
        want = lab.wants[("alice", "w")]
        lab.wants[("alice", "w")] = want.replace(keepalive_until=v["keep"])
        try:
            observed = lab.observed()
            desired = lab.desired(observed)
        finally:
            lab.wants[("alice", "w")] = want
        warned = {f"idle:{cid}:{v['idle'][cid].isoformat() if cid in v['idle'] else 'x'}":
                  now - timedelta(minutes=1) for cid in v["told"]}
        observed = replace(observed, idle_since=v["idle"], started=v["started"], warned=warned,
                           containers=tuple(c for c in observed.containers
                                            if c.id not in v["gone"]))
        return plan(desired, observed, now, previous=previous, check=check)

    first = variant(None)
    second = variant(first)
    t1 = base + timedelta(minutes=data.draw(st.integers(0, 600), label="t1"))
    step = data.draw(st.integers(-120, 200) | st.integers(-5, 6000), label="step")
    t2 = t1 + timedelta(minutes=step)
    kept = plan_at(first, t1).kept
    assert kept is not None
    again = plan_at(second, t2, kept, check=True)  # check: the quiet ones are checked too
    fresh = plan_at(second, t2)
    assert (again.actions, again.statuses, again.report_keys) == \
        (fresh.actions, fresh.statuses, fresh.report_keys)


def _two_passes(first: dict[str, Any], second: dict[str, Any], t1: datetime, t2: datetime,
                window: str) -> tuple[Plan, Plan]:
    """Alice's container planned at ``t1`` then ``t2`` (idle since ``idle``, told of a stop
    ``told``, keepalive ``keep``): the second pass kept from the first, and a fresh one."""
    lab, _ = _running_lab(window)
    alice = next(c["id"] for c in lab.host.containers.values() if "alice" in c["name"])
    want = lab.wants[("alice", "w")]

    def plan_at(v: dict[str, Any], now: datetime, previous: Kept | None = None) -> Plan:
        lab.wants[("alice", "w")] = want.replace(keepalive_until=v.get("keep"))
        try:
            observed = lab.observed()
            desired = lab.desired(observed)
        finally:
            lab.wants[("alice", "w")] = want
        since = v["idle"]
        warned = {f"idle:{alice}:{since.isoformat()}": now} if v.get("told") else {}
        observed = replace(observed, idle_since={alice: since}, warned=warned)
        return plan(desired, observed, now, previous=previous)

    kept = plan_at(first, t1).kept
    assert kept is not None and alice in kept.life, "alice's container was quiet at t1"
    return plan_at(second, t2, kept), plan_at(second, t2)


@pytest.mark.parametrize("case", ["told", "window", "clock set back"])
def test_a_quiet_container_is_checked_again_when_what_it_was_quiet_on_changes(
        case: str) -> None:
    """Edges of keeping a quiet container's stop time (beside the search above): its owner
    told of the stop since; the detection window ending; the clock set back into the span
    before a keepalive's end is told. The kept pass plans what a fresh one does (here
    without the check, which would hide a difference by failing)."""
    window = "50m" if case == "window" else "10m"  # idle limit: 1 h (high demand)
    _, base = _running_lab(window)
    minute = timedelta(minutes=1)
    first: dict[str, Any]
    second: dict[str, Any]
    if case == "told":  # idle 20 min, quiet; then told (a warning given for it)
        first = {"idle": base - 5 * minute}
        second = {**first, "told": True}
        t1 = t2 = base + 15 * minute
    elif case == "window":  # idle 45 min, in the window; then 55 min: past it and 80%
        first = second = {"idle": base}
        t1, t2 = base + 45 * minute, base + 55 * minute
    else:  # idle 35 min, past a keepalive's end (quiet); then back before its end is told
        first = second = {"idle": base + 30 * minute, "keep": base + 60 * minute}
        t1, t2 = base + 65 * minute, base + 45 * minute
    kept, fresh = _two_passes(first, second, t1, t2, window)
    assert (kept.actions, kept.statuses, kept.report_keys) == \
        (fresh.actions, fresh.statuses, fresh.report_keys)
