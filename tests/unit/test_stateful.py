"""Random wants, drops, activity, time, host processes, MIG layout changes and daemon restarts
on the simulated host; after every step: no device held twice, no container runs on a device
that is gone, no user over quota, planning again right after applying does nothing (a layout
change takes the passes it needs: stop, apply, serve), a restart with an empty memory
changes nothing that runs, and no idle or runtime stop comes without a warning to its owner at
least stop_notice_m before."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ds01d.core import actions as a
from ds01d.core.model import devices_of
from ds01d.core.naming import docker_name
from ds01d.core.plan import plan
from tests.harness import Lab, with_layout

USERS = ["alice", "bob", "frank", "carol", "dave", "erin"]
KINDS = [{}, {"mig": "3g.20gb"}, {"mig": "2g.10gb"}, {"mig": "1g.5gb"}, {"gpus": 1}, {"gpus": 2}]
LAYOUTS = ["{mig-enabled: false}", "{mig-enabled: true, mig-devices: {3g.20gb: 2}}",
           "{mig-enabled: true, mig-devices: {2g.10gb: 3}}",
           "{mig-enabled: true, mig-devices: {1g.5gb: 7}}",
           "{mig-enabled: true, mig-devices: {3g.20gb: 1, 2g.10gb: 2}}",
           "{mig-enabled: true, mig-devices: {3g.20gb: 1, 1g.5gb: 3}}"]


class LabMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.lab = Lab(Path(self.tmp.name))
        self.told: dict[str, list[float]] = {}
        """Container id -> when its owner was warned of a coming stop."""
        plain = self.lab.apply

        def apply() -> object:
            started = {cid: c["started_at"] for cid, c in self.lab.host.containers.items()}
            p = plain()
            self.check_told(p.actions, started)
            return p

        self.lab.apply = apply  # type: ignore[method-assign,assignment]

    def check_told(self, actions: tuple[a.Action, ...], started: dict[str, float]) -> None:
        now, notice = self.lab.host.now, self.lab.config.policies.stop_notice_m * 60
        for x in actions:
            if isinstance(x, a.Warn) and x.announces:
                self.told.setdefault(x.announces.split(":")[1], []).append(now)
            if isinstance(x, a.StopContainer) and x.reason in ("idle", "runtime"):
                since = started[x.container_id]
                told = self.told.get(x.container_id, [])
                assert any(since <= t <= now - notice for t in told), (x, told, since, now)

    def teardown(self) -> None:
        self.tmp.cleanup()

    def settle(self) -> None:
        """One pass; then, while a MIG layout change is under way and not waiting for its
        deadline, the passes it takes (stop, apply, serve)."""
        p = self.lab.apply()
        for _ in range(3):
            mig = self.lab.plan().mig
            moving = [c for c in mig.changes if c.problem is None and not mig.blocked(c)]
            if not moving and not p.mig.changes:
                return
            p = self.lab.apply()

    @rule(gpu=st.integers(0, 3), layout=st.sampled_from(LAYOUTS),
          deadline=st.sampled_from(["0", "1", "null"]))
    def relayout(self, gpu: int, layout: str, deadline: str) -> None:
        gpus = {"all": LAYOUTS[0], "2": LAYOUTS[1], "3": LAYOUTS[2]}
        if self.lab.config.mig_layout is not None:
            gpus = {k: _text(v.mig_enabled, v.devices) for k, v in
                    self.lab.config.mig_layout.gpus.items()}
        gpus[str(gpu)] = layout
        text = f"version: 1\ndrain_deadline_h: {deadline}\ngpus:\n" + "".join(
            f'  "{k}": {v}\n' for k, v in gpus.items())
        self.lab.config = with_layout(self.lab.config, text)
        self.settle()

    @rule(user=st.sampled_from(USERS), name=st.sampled_from(["a", "b", "c"]),
          kind=st.sampled_from(KINDS))
    def want(self, user: str, name: str, kind: dict[str, object]) -> None:
        self.lab.want(user, name, **kind)  # type: ignore[arg-type]
        self.settle()

    @precondition(lambda self: self.lab.wants)
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        user, name = data.draw(st.sampled_from(sorted(self.lab.wants)))
        self.lab.drop(user, name)
        self.settle()

    @precondition(lambda self: any(c["state"] == "running"
                                   for c in self.lab.host.containers.values()))
    @rule(data=st.data(), gpu=st.sampled_from([None, 0, 50]), cpu=st.sampled_from([None, 0, 80]))
    def activity(self, data: st.DataObject, gpu: float | None, cpu: float | None) -> None:
        running = sorted((c["labels"]["ds01.user"], c["labels"]["ds01.name"])
                         for c in self.lab.host.containers.values() if c["state"] == "running")
        user, name = data.draw(st.sampled_from(running))
        self.lab.activity(user, name, gpu=gpu, cpu=cpu)
        self.lab.apply()

    @rule(minutes=st.sampled_from([1, 20, 45, 100, 600, 1500, 5000]))
    def advance(self, minutes: int) -> None:
        self.lab.advance(minutes=minutes)
        self.settle()

    @rule(gpu=st.integers(0, 3), user=st.sampled_from(USERS))
    def host_process(self, gpu: int, user: str) -> None:
        g = self.lab.host.gpus[gpu]
        device = g["instances"][0]["uuid"] if g["instances"] else g["uuid"]
        self.lab.host.add_process(device, uid=self.lab.host.uid_of(user), container_id=None,
                                  mem_mib=10)
        self.lab.apply()

    @precondition(lambda self: any(p["container_id"] is None
                                   for p in self.lab.host.processes.values()))
    @rule(data=st.data())
    def end_host_process(self, data: st.DataObject) -> None:
        pids = sorted(k for k, p in self.lab.host.processes.items() if p["container_id"] is None)
        del self.lab.host.processes[data.draw(st.sampled_from(pids))]
        self.settle()

    @rule()
    def restart(self) -> None:
        self.lab.restart()
        self.lab.apply()

    @invariant()
    def no_device_held_twice(self) -> None:
        seen: dict[str, str] = {}
        for c in self.lab.host.containers.values():
            if c["state"] in ("running", "created"):
                for d in c["devices"]:
                    assert d not in seen, f"{d} held by {seen[d]} and {c['name']}"
                    seen[d] = c["name"]

    @invariant()
    def no_container_runs_on_a_device_that_is_gone(self) -> None:
        there = self.lab.host.device_uuids()
        for c in self.lab.host.containers.values():
            if c["state"] == "running":
                assert set(c["devices"]) <= there, (c["name"], c["devices"])

    @invariant()
    def nobody_over_quota(self) -> None:
        desired = self.lab.desired()
        gpueq = {d.uuid: d.gpu_equivalents for d in devices_of(self.lab.observed().gpus)}
        used: dict[str, float] = {}
        for c in self.lab.host.containers.values():
            if c["state"] == "running":
                u = c["labels"]["ds01.user"]
                used[u] = used.get(u, 0.0) + sum(gpueq[d] for d in c["devices"])
        for u, total in used.items():
            eff = desired.effective[u]
            for cap in (eff.limits.max_gpu_equivalents, eff.aggregate.gpu_limit):
                assert cap is None or total <= cap + 1e-9, (u, total, cap)

    @invariant()
    def planning_again_does_nothing(self) -> None:
        assert self.lab.plan().changes == ()

    @invariant()
    def empty_memory_changes_nothing_that_runs(self) -> None:
        observed = replace(self.lab.observed(), idle_since={}, reported=frozenset(),
                           previous_reasons={}, drain_since={}, warned={})
        assert plan(self.lab.desired(), observed, self.lab.now).changes == ()


def _text(enabled: bool, devices: Mapping[str, int]) -> str:
    if not enabled:
        return "{mig-enabled: false}"
    counts = ", ".join(f"{p}: {n}" for p, n in sorted(devices.items()))
    return f"{{mig-enabled: true, mig-devices: {{{counts}}}}}"


LabMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow])
TestLab = LabMachine.TestCase


def test_docker_name_is_what_the_machine_uses() -> None:
    assert docker_name("alice", "a") == "ds01-alice-a"
