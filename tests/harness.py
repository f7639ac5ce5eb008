"""A lab on the simulated host for planner tests: preload, plan once, record the actions."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ds01d.adapters.base import Dcgm
from ds01d.adapters.sim import SimHost, set_activity
from ds01d.config.effective import NoNss
from ds01d.config.loader import load_config
from ds01d.config.model import DesiredConfig
from ds01d.config.want import Want
from ds01d.core import actions as a
from ds01d.core.idle import busy_signals, track_idle
from ds01d.core.model import Account, Desired, Observed
from ds01d.core.naming import docker_name
from ds01d.core.plan import Kept, Plan, plan
from ds01d.paths import Paths
from ds01d.runtime.desired import assemble
from ds01d.runtime.events import EventLog
from ds01d.runtime.executor import Executor
from ds01d.runtime.observe import Adapters, observe
from ds01d.runtime.simroot import EXAMPLE, sim_adapters
from ds01d.runtime.userfiles import UserFiles
from ds01d.runtime.wantfiles import WantsRead


def example_config() -> DesiredConfig:
    return load_config(EXAMPLE)


def summary(action: a.Action) -> str:
    """One line per action, as recorded-action tests compare them."""
    if isinstance(action, a.CreateContainer):
        return f"create {action.spec.user}/{action.spec.want_name} {','.join(action.spec.devices)}"
    if isinstance(action, a.StartContainer):
        return f"start {action.user}/{action.name}"
    if isinstance(action, a.StopContainer):
        return f"stop {action.user}/{action.name} {action.reason}"
    if isinstance(action, a.RemoveContainer):
        return f"remove {action.user}/{action.name} {action.reason}"
    if isinstance(action, a.RemoveWant):
        return f"remove-want {action.user}/{action.name}"
    if isinstance(action, a.Warn) and action.event_type.startswith("mig."):
        return f"warn {action.user}/{action.name} {action.event_type}"
    if isinstance(action, a.Warn):
        return f"warn {action.user}/{action.name} {action.event_type} {action.key.split(':')[2]}"
    if isinstance(action, a.FlagUntracked):
        return f"flag {action.user} pid {action.pid} gpu {action.gpu_index}"
    if isinstance(action, a.Alert):
        return f"alert {action.event_type} {action.user}"
    if isinstance(action, a.ReleaseDevices):
        return f"release {action.user}/{action.name} {action.reason}"
    if isinstance(action, a.EnsureSlice):
        return f"ensure {action.name}"
    if isinstance(action, a.SetSliceProperties):
        return f"set {action.name} {sorted(action.properties)}"
    if isinstance(action, a.SetMigMode):
        return f"mig {action.gpu_index} mode {'on' if action.enabled else 'off'}"
    if isinstance(action, a.DestroyMigInstance):
        return f"mig {action.gpu_index} destroy {action.profile} gi {action.gpu_instance_id}"
    if isinstance(action, a.CreateMigInstance):
        return f"mig {action.gpu_index} create {action.profile} at {action.start}"
    if isinstance(action, a.MigEvent):
        return f"report gpu {action.gpu_index} {action.event_type}"
    assert isinstance(action, a.StopSlice)
    return f"stop-slice {action.name}"


@dataclass
class Lab:
    """A simulated lab, driven the way ds01d drives it, in memory."""

    root: Path
    config: DesiredConfig = field(default_factory=example_config)
    host: SimHost = field(default_factory=SimHost)
    wants: dict[tuple[str, str], Want] = field(default_factory=dict)
    idle: dict[str, datetime] = field(default_factory=dict)
    drains: dict[str, datetime] = field(default_factory=dict)
    executor: Executor | None = None
    dcgm: Dcgm | None = None
    """A DCGM reader (e.g. the real adapter against tests/fakedcgm.py); ``None``: none."""
    nvml: Any = None
    """An NVML adapter to use instead of the simulated host's (the real one, over the fake
    libnvidia-ml)."""
    kept: Kept | None = None
    """What the last plan keeps for the next, as ds01d passes it on (every kept part is
    checked against a fresh one: ``plan(check=True)``)."""

    def adapters(self) -> Adapters:
        """The simulated host's adapters (with :attr:`nvml` in place of its NVML, and :attr:`dcgm`)."""
        sim = replace(sim_adapters(self.host)[0], dcgm=self.dcgm)
        return sim if self.nvml is None else replace(sim, nvml=self.nvml)

    @property
    def now(self) -> datetime:
        return self.host.clock()

    def uuid(self, gpu: int, instance: int | None = None) -> str:
        g = self.host.gpus[gpu]
        return str(g["uuid"] if instance is None else g["instances"][instance]["uuid"])

    def want(self, user: str, name: str, *, gpus: int | None = None, mig: str | None = None,
             at: datetime | None = None, **kw: object) -> Want:
        w = Want(user, name, "img:1", at or self.now, gpus=gpus, mig=mig, **kw)  # type: ignore[arg-type]
        self.wants[(user, name)] = w
        return w

    def drop(self, user: str, name: str) -> None:
        del self.wants[(user, name)]

    def advance(self, **delta: float) -> None:
        self.host.now += timedelta(**delta).total_seconds()

    def activity(self, user: str, name: str, *, gpu: float | None = None,
                 cpu: float | None = None, net: float | None = None) -> None:
        set_activity(self.host, docker_name(user, name), gpu_util=gpu, cpu=cpu, net=net)

    def desired(self, observed: Observed | None = None) -> Desired:
        observed = observed or observe(self.adapters(), self.now)
        owners = {c.owner for c in observed.containers if c.owner}  # as ds01d: socket-made too
        return assemble(self.config, WantsRead(tuple(self.wants.values())), users=owners,
                        nss=NoNss(), account=lambda u: Account(1000, 1000, f"/home/{u}"),
                        now=self.now)

    def observed(self) -> Observed:
        observed = observe(self.adapters(), self.now)
        desired = self.desired(observed)
        busy = busy_signals(observed, desired.effective)
        self.idle = track_idle(self.idle, observed, desired.effective, self.now, busy=busy)
        reported = frozenset(self.executor.reported) if self.executor else frozenset()
        reasons = dict(self.executor.reasons) if self.executor else {}
        warned = dict(self.executor.warned) if self.executor else {}
        return replace(observed, idle_since=dict(self.idle), reported=reported,
                       previous_reasons=reasons, busy=busy, drain_since=dict(self.drains),
                       warned=warned)

    def plan(self) -> Plan:
        observed = self.observed()  # one look at the host per plan, as ds01d does
        found = plan(self.desired(observed), observed, self.now, previous=self.kept, check=True)
        self.kept = found.kept
        return found

    def record(self, *, slices: bool = False) -> list[str]:
        """The actions of one plan, summarised (slice actions left out unless asked)."""
        return [summary(x) for x in self.plan().actions
                if slices or not isinstance(x, a.EnsureSlice | a.SetSliceProperties | a.StopSlice)]

    def after_notice(self) -> list[str]:
        """This pass tells the owners of coming stops; ``stop_notice_m`` later: the actions
        then (ds01d stops nothing it has not announced at least that long before)."""
        self.apply()
        self.advance(minutes=self.config.policies.stop_notice_m)
        return self.record()

    def apply(self) -> Plan:
        """One full pass: plan, execute on the fake host, remember like ds01d does."""
        if self.executor is None:
            paths = Paths(self.root)
            files = UserFiles(paths.status, account=lambda u: Account(None, None, "/"),
                              owned=False)
            self.executor = Executor(self.adapters(), paths,
                                     EventLog(paths.events, user_copy=files.append_event),
                                     files=files)
        p = self.plan()
        self.executor.apply(list(p.actions), self.now)
        self.executor.forget_reports(p.report_keys)
        self.drains = dict(p.drain_since)
        for x in p.actions:
            if isinstance(x, a.RemoveWant):
                self.wants.pop((x.user, x.name), None)
        return p

    def restart(self) -> None:
        """ds01d restarted with an empty memory: idle timers, reports, drains, backoff all
        gone."""
        self.idle = {}
        self.drains = {}
        self.executor = None
        self.kept = None

    def status(self, user: str, name: str) -> dict[str, object]:
        p = self.plan()
        return next(s.to_json() for s in p.statuses if (s.user, s.name) == (user, name))


def config_from(text: str) -> DesiredConfig:
    """A config from one resource-limits.yaml text (written to a temp folder)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "resource-limits.yaml").write_text(text)
        return load_config(Path(d))


def with_layout(config: DesiredConfig, text: str) -> DesiredConfig:
    """``config`` with the MIG layout of one mig-layout.yaml text (through the loader)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "resource-limits.yaml").write_text("version: 1\n")
        (Path(d) / "mig-layout.yaml").write_text(text)
        return replace(config, mig_layout=load_config(Path(d)).mig_layout)
