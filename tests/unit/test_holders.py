"""GPU holders ds01 did not plan: devices as Docker and the NVIDIA runtime really give them,
a ds01 container started again on devices no longer its own, a container that exits by
itself, NVML unreadable."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ds01d.adapters.docker import NetMeter, gpu_request
from ds01d.adapters.sim import SimHost, sim_gpu
from ds01d.core import actions as a
from ds01d.core.devices import DeviceTable
from ds01d.core.model import Container
from ds01d.core.naming import docker_name
from ds01d.core.plan import plan
from ds01d.report import report
from ds01d.runtime.executor import safe_actions
from ds01d.runtime.observe import observe
from ds01d.runtime.simroot import sim_adapters
from tests.harness import Lab, config_from, example_config
from tests.unit.test_idle import NoNvml


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


def foreign(lab: Lab, name: str, *, devices: list[str], count: int = 0) -> None:
    """A container someone ran with ``docker run --gpus ...``, as the Docker adapter reads it."""
    cid = (name * 64)[:64]
    lab.host.containers[cid] = {
        "id": cid, "name": name, "image": "x", "labels": {}, "state": "running",
        "devices": devices, "gpu_count": count, "created_at": lab.host.now,
        "started_at": lab.host.now, "finished_at": None, "cpu_percent": 90.0, "gpu_util": 0.0,
        "cgroup_parent": "", "exit_code": None}


# --- what Docker gives a container -----------------------------------------------------


def inspect_of(**host: Any) -> dict[str, Any]:
    return {"DeviceRequests": None, "Privileged": False, "Runtime": "runc", **host}


@pytest.mark.parametrize(("host", "env", "expected"), [
    # docker run --gpus device=0
    (inspect_of(DeviceRequests=[{"Driver": "", "Count": 0, "DeviceIDs": ["0"],
                                 "Capabilities": [["gpu"]], "Options": {}}]), [],
     (("0",), 0, False)),
    # docker run --gpus 2
    (inspect_of(DeviceRequests=[{"Driver": "", "Count": 2, "DeviceIDs": None,
                                 "Capabilities": [["gpu"]], "Options": {}}]), [],
     ((), 2, False)),
    # docker run --gpus all
    (inspect_of(DeviceRequests=[{"Driver": "", "Count": -1, "DeviceIDs": None,
                                 "Capabilities": [["gpu"]], "Options": {}}]), [],
     ((), 0, True)),
    # ds01's own: the UUIDs it allocated (an image's NVIDIA_VISIBLE_DEVICES=all is overridden)
    (inspect_of(DeviceRequests=[{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["MIG-a"],
                                 "Capabilities": [["gpu"]]}]),
     ["NVIDIA_VISIBLE_DEVICES=all"], (("MIG-a",), 0, False)),
    # --runtime nvidia -e NVIDIA_VISIBLE_DEVICES=1,2:0 (also the default runtime)
    (inspect_of(Runtime="nvidia"), ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=1,2:0"],
     (("1", "2:0"), 0, False)),
    (inspect_of(Runtime="nvidia"), ["NVIDIA_VISIBLE_DEVICES=all"], ((), 0, True)),
    (inspect_of(Runtime="nvidia"), ["NVIDIA_VISIBLE_DEVICES=void"], ((), 0, False)),
    # a CUDA image under runc: its NVIDIA_VISIBLE_DEVICES=all gives it nothing
    (inspect_of(), ["NVIDIA_VISIBLE_DEVICES=all"], ((), 0, False)),
    (inspect_of(Privileged=True), [], ((), 0, True)),
])
def test_what_docker_and_the_nvidia_runtime_give(host: dict[str, Any], env: list[str],
                                                 expected: tuple[object, ...]) -> None:
    assert gpu_request(host, env) == expected


def test_references_resolve_against_the_host() -> None:
    host = SimHost()
    gpus = tuple(sim_adapters(host)[0].nvml.gpus())
    table = DeviceTable.of(gpus)
    g = host.gpus

    def devices(refs: tuple[str, ...], count: int = 0, every: bool = False) -> tuple[str, ...]:
        c = Container("c", "c", "x", {}, "running", refs, host.clock(), gpu_count=count,
                      all_gpus=every)
        return table.resolve(c).devices

    assert devices(("0",)) == (g[0]["uuid"],)
    assert devices(("2",)) == tuple(i["uuid"] for i in g[2]["instances"])  # MIG mode: all
    assert devices(("3:1",)) == (g[3]["instances"][1]["uuid"],)
    assert devices((), count=2) == (g[0]["uuid"], g[1]["uuid"])  # the first two GPUs
    assert len(devices((), every=True)) == 2 + 2 + 3
    assert devices((g[1]["uuid"],)) == (g[1]["uuid"],)


# --- foreign containers hold what they were given --------------------------------------


def test_a_foreign_container_with_a_gpu_index_holds_that_gpu(lab: Lab) -> None:
    foreign(lab, "a", devices=["0"])
    lab.want("carol", "c", gpus=1)
    assert lab.record() == [f"create carol/c {lab.uuid(1)}"]


def test_a_foreign_container_with_a_count_holds_the_first_gpus(lab: Lab) -> None:
    foreign(lab, "b", devices=[], count=1)
    lab.want("carol", "c", gpus=1)
    assert lab.record() == [f"create carol/c {lab.uuid(1)}"]
    lab.apply()
    lab.want("carol", "d", gpus=1)
    lab.record()
    assert lab.status("carol", "d")["reason"] == \
        "queued for 1 free whole GPU (2 in use by containers)"


def test_every_process_on_a_device_counts_it_busy(lab: Lab) -> None:
    """A process in a foreign container on a MIG instance its container did not ask for."""
    foreign(lab, "c", devices=[])
    cid = lab.host.container("c")["id"]
    lab.host.add_process(lab.uuid(2, 0), uid=None, container_id=cid, mem_mib=100)
    lab.want("alice", "t", mig="3g.20gb")
    assert lab.record() == [f"create alice/t {lab.uuid(2, 1)}", "flag None pid 4000 gpu 2"]


# --- a ds01 container started again on devices no longer its own ----------------------


def test_a_ds01_container_on_devices_given_to_another_is_stopped(tmp_path: Path) -> None:
    lab = Lab(tmp_path, host=SimHost(gpus=[sim_gpu(0, {"3g.20gb": 1})]),
              config=replace(example_config(), mig_layout=None))
    lab.want("alice", "a", mig="3g.20gb")
    lab.apply()
    mine = lab.host.container(docker_name("alice", "a"))
    lab.host.containers[mine["id"]].update(state="exited", finished_at=lab.host.now,
                                           exit_code=0)
    lab.apply()  # alice's container stopped by itself: its instance is free again
    lab.want("bob", "b", mig="3g.20gb", at=lab.now)
    assert lab.record() == [f"create bob/b {lab.uuid(0, 0)}"]
    lab.apply()
    lab.advance(minutes=5)
    lab.host.containers[mine["id"]].update(state="running", started_at=lab.host.now,
                                           finished_at=None)  # docker start, outside ds01
    assert lab.record() == ["stop alice/a devices_taken"]
    lab.apply()
    assert lab.status("alice", "a")["phase"] == "Stopped"
    assert lab.status("alice", "a")["reason"] == "devices_taken"
    assert lab.status("bob", "b")["phase"] == "Running"
    stops = [e for e in lab.executor.events.read() if e["event_type"] == "container.stop"]  # type: ignore[union-attr]
    assert stops[-1]["user"] == "alice" and stops[-1]["details"]["reason"] == "devices_taken"
    assert lab.record() == []


# --- a container that exits by itself releases its devices ----------------------------


def test_an_exited_container_releases_its_devices_when_it_stopped(lab: Lab) -> None:
    """Held one hour, exited by itself, seen ten hours later: one GPU-hour, not eleven."""
    lab.want("alice", "t", mig="3g.20gb")
    start = lab.now
    lab.apply()
    lab.advance(hours=1)
    c = lab.host.container(docker_name("alice", "t"))
    c.update(state="exited", finished_at=lab.host.now, exit_code=0)
    lab.advance(hours=10)
    assert lab.record() == ["release alice/t exited with code 0"]
    lab.apply()
    assert lab.record() == []
    events = lab.executor.events.read()  # type: ignore[union-attr]
    release = [e for e in events if e["event_type"] == "gpu.release"]
    assert [(e["timestamp"], e["details"]["reason"]) for e in release] == \
        [("2026-01-05T10:00:00Z", "exited")]
    body = report(events, since=start, until=lab.now, group_of=lambda u: "student")
    assert body["users"]["alice"]["gpu_hours"] == pytest.approx(1.0)


def test_a_stop_by_ds01_is_released_once(lab: Lab) -> None:
    lab.want("alice", "t", mig="3g.20gb")
    lab.apply()
    lab.apply()
    lab.advance(hours=2, minutes=1)
    assert lab.after_notice() == ["stop alice/t idle"]
    lab.apply()
    lab.advance(hours=1)
    assert lab.record() == []  # ds01 stopped it: released then, not again
    releases = [e for e in lab.executor.events.read() if e["event_type"] == "gpu.release"]  # type: ignore[union-attr]
    assert len(releases) == 1


# --- NVML unreadable holds back device work only ------------------------------------


def test_with_nvml_unreadable_cpu_only_containers_are_still_created(tmp_path: Path) -> None:
    lab = Lab(tmp_path, config=config_from(
        "defaults: {allow_full_gpu: true, max_gpu_equivalents: 2}\n"))
    lab.want("amy", "cpu")
    lab.want("amy", "gpu", gpus=1)
    blind = replace(sim_adapters(lab.host)[0], nvml=NoNvml())
    observed = observe(blind, lab.now)
    assert "nvml" in observed.adapter_errors
    p = plan(lab.desired(observed), observed, lab.now)
    kept = safe_actions(p, observed.adapter_errors)
    assert [x.key for x in kept if isinstance(x, a.CreateContainer)] == ["container/amy/cpu"]
    gpu = next(s for s in p.statuses if s.name == "gpu")
    assert (gpu.phase, gpu.reason) == ("Pending", "waiting: the GPUs cannot be read right now "
                                       "(NVML); CPU-only containers go on")


def test_nvml_unreadable_holds_back_device_actions(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    lab.want("alice", "t", mig="3g.20gb")
    p = lab.plan()
    assert safe_actions(p, {"nvml": "mismatch"}) == [x for x in p.actions
                                                     if not isinstance(x, a.CreateContainer)]
    assert safe_actions(p, {}) == list(p.actions)


# --- network counters ---------------------------------------------------------------


NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: {lo} 10 0 0 0 0 0 0 {lo} 10 0 0 0 0 0 0
  eth0: {rx} 20 0 0 0 0 0 0 {tx} 20 0 0 0 0 0 0
"""


def test_network_rate_from_the_namespace_counters(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "42/net").mkdir(parents=True)
    dev = tmp_path / "42/net/dev"
    clock = iter([100.0, 110.0])
    monkeypatch.setattr("ds01d.adapters.docker.time.monotonic", lambda: next(clock))
    meter = NetMeter(tmp_path)
    dev.write_text(NET_DEV.format(lo=5_000_000, rx=1000, tx=500))
    assert meter.rate("c", 42, "bridge") == 0.0  # the first look
    dev.write_text(NET_DEV.format(lo=9_000_000, rx=11_000, tx=2_500))
    assert meter.rate("c", 42, "bridge") == pytest.approx((10_000 + 2_000) / 10)
    assert meter.rate("c", 42, "host") is None  # the host's traffic is not the container's
    assert meter.rate("d", 43, "bridge") is None  # gone


def test_storage_tmp_becomes_a_tmpfs(tmp_path: Path) -> None:
    lab = Lab(tmp_path, config=config_from("defaults: {storage_tmp: 50G}\n"))
    lab.want("amy", "t")
    create = next(x for x in lab.plan().actions if isinstance(x, a.CreateContainer))
    assert create.spec.tmp_size == 50 * 1024**3
    lab.apply()
    assert lab.host.container(docker_name("amy", "t"))["tmp_size"] == 50 * 1024**3


_UUIDS = ("GPU-0", "GPU-1", "GPU-2", "GPU-3")


@st.composite
def _claimants(draw: st.DrawFn) -> list[Container]:
    """Containers (ds01's or not, active or stopped within their hold) claiming devices, some
    claimed twice."""
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
    out = []
    for i in range(draw(st.integers(1, 5))):
        devices = tuple(draw(st.lists(st.sampled_from(_UUIDS), min_size=1, max_size=3,
                                      unique=True)))
        managed = draw(st.booleans())
        labels = {"ds01.managed": "true", "ds01.user": "dave", "ds01.name": f"w{i}"} \
            if managed else {}
        state = draw(st.sampled_from(["running", "exited"])) if managed else "running"
        at = t0 + timedelta(minutes=draw(st.integers(0, 50)))
        out.append(Container(f"c{i}", f"n{i}", "img", labels, state, devices, at, at,
                             at + timedelta(minutes=5) if state == "exited" else None,
                             all_gpus=not managed and draw(st.booleans())))
    return out


@given(_claimants())
def test_every_claimed_device_has_its_first_claimant(containers: list[Container]) -> None:
    """However many containers claim the same devices, every device claimed has a holder (the
    first to claim it), and a ds01 container's devices are counted for its owner only where
    it holds them; nothing is left unclaimed and nothing raises."""
    from datetime import UTC, datetime

    from ds01d.config.effective import NoNss
    from ds01d.core.devices import claimed_at, holding
    from ds01d.core.model import Device, Observed
    from ds01d.runtime.desired import EffectiveCache

    config = config_from("version: 1\ndefaults: {gpu_hold_after_stop_h: 1}\n")
    now = datetime(2026, 1, 5, 10, tzinfo=UTC)
    eff = {"dave": EffectiveCache().get(config, "dave", now=now, nss=NoNss())}
    observed = Observed(now, {}, tuple(containers), (), (), {})
    devices = tuple(Device(u, i, None, 1.0) for i, u in enumerate(_UUIDS))
    hold = holding(observed, devices, eff, releasing=frozenset())
    order = sorted(containers, key=lambda c: (claimed_at(c), c.id))
    for uuid in _UUIDS:
        claimants = [c for c in order if uuid in (_UUIDS if c.all_gpus else c.devices)]
        assert hold.by_device.get(uuid) == (claimants[0].id if claimants else None)
    mine = sorted(d for ds in hold.by_user.values() for d in ds)
    assert mine == sorted(d for d, holder in hold.by_device.items()
                          if next(c for c in containers if c.id == holder).managed)
