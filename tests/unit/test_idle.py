"""What counts as idle: MIG activity from DCGM (processes only without it), network traffic,
and the detection window. Each test fails when its signal is ignored."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from ds01d.adapters.base import AdapterError
from ds01d.adapters.dcgm import DcgmExporter
from ds01d.core.idle import MIG_UNKNOWN, busy_signals, track_idle
from ds01d.core.model import Gpu, GpuProcess
from ds01d.core.naming import docker_name
from ds01d.runtime.observe import observe
from ds01d.runtime.simroot import sim_adapters
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
