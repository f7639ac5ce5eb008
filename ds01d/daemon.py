"""``ds01d``: converge the machine onto desired state, pass after pass.

Level-triggered: file changes (inotify, through watchdog) and a periodic resync only *wake*
the loop; every pass observes the machine and plans from scratch. The only memory kept
between passes is when each container went idle and which warnings were given. It is saved to
``run/ds01/memory.json`` after each pass and read back at start only when fresh (at most three
resync periods old on a real host), so a restart neither resets idle timers nor trusts stale
ones; without it (or with it stale) the timers start again, which can delay a stop but never
cause one. Separately, it keeps when each GPU's MIG layout drain began (``mig_drain_since``):
the deadline its holders were told counts from then, across restarts, however old.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from ds01d import __version__
from ds01d.adapters import notify
from ds01d.adapters.nss import account as nss_account
from ds01d.adapters.nss import uid_of
from ds01d.config.effective import NoNss, Nss
from ds01d.config.model import DesiredConfig
from ds01d.core.idle import track_idle
from ds01d.core.model import Account, Desired, Observed
from ds01d.core.plan import Plan, plan
from ds01d.paths import Paths
from ds01d.runtime.dcgm import job_map, write_job_map
from ds01d.runtime.desired import (
    ConfigSource,
    EffectiveCache,
    WantSource,
    assemble,
)
from ds01d.runtime.events import EventLog, event
from ds01d.runtime.executor import Executor, blocking, safe_actions
from ds01d.runtime.metrics import Collector, Snapshot, Totals
from ds01d.runtime.metrics import build as build_metrics
from ds01d.runtime.observe import Adapters, observe
from ds01d.runtime.simroot import sim_account
from ds01d.statusfiles import read_statuses
from ds01d.units import parse_when

log = logging.getLogger("ds01d")


@dataclass
class PassResult:
    plan: Plan | None
    observed: Observed
    desired: Desired | None = None
    executed: int = 0
    failed: int = 0


@dataclass
class Daemon:
    paths: Paths
    simulate: bool
    interval: float = 10.0
    read_memory: bool = True
    host: Any = None
    """An in-memory simulated host to drive instead of the one under ``--root`` (benchmarks)."""
    job_map_dir: Path = field(default=Path())
    """dcgm-exporter job-mapping folder (default ``run/ds01/dcgm-job-map`` under the root)."""
    config: ConfigSource = field(init=False)
    want_files: WantSource = field(init=False)
    limits_cache: EffectiveCache = field(init=False)
    saved_memory: str | None = None
    """The memory last written (rewritten only when it changed, or a resync period on)."""
    saved_at: float = 0.0
    restored: frozenset[str] = frozenset()
    """Reports given before a restart (from the saved memory): not given again."""
    events: EventLog = field(init=False)
    executor: Executor | None = None
    idle: dict[str, datetime] = field(default_factory=dict)
    drains: dict[str, datetime] = field(default_factory=dict)
    """GPU uuid -> when its MIG layout drain began (``Observed.drain_since``)."""
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    snapshot_of: DesiredConfig | None = None
    real: Adapters | None = None
    down: dict[str, str] = field(default_factory=dict)
    last: tuple[Plan, Observed, Desired, bool, float] | None = None
    job_map: dict[str, str] | None = None
    _metrics: Snapshot | None = None
    totals: Totals = field(default_factory=Totals)
    passes: int = 0
    last_pass_at: float = 0.0
    last_pass_ms: float = 0.0
    snapshot_until: datetime | None = None
    shown_errors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.job_map_dir == Path():
            self.job_map_dir = self.paths.run / "dcgm-job-map"
        self.config = ConfigSource(self.paths.etc)
        self.want_files = WantSource(self.paths.wants, uid_of=None if self.simulate else uid_of)
        self.limits_cache = EffectiveCache()
        self.events = EventLog(self.paths.events)
        for s in read_statuses(str(self.paths.status)):
            if s.get("phase") == "Stopped":
                self.reasons[(str(s.get("user")), str(s.get("name")))] = str(s.get("reason"))
        if self.read_memory:
            self.idle, self.restored = load_memory(self.paths, max_age_s=None if self.simulate
                                                   else 3 * self.interval)
            self.drains = load_drains(self.paths)

    def real_adapters(self) -> Adapters:
        """systemd over D-Bus, Docker's API, NVML and /proc (made once, on first use)."""
        if self.real is None:
            from ds01d.adapters.docker import DockerAdapter
            from ds01d.adapters.nvml import NvmlAdapter
            from ds01d.adapters.procfs import ProcfsAdapter
            from ds01d.adapters.systemd import SystemdAdapter

            self.real = Adapters(SystemdAdapter(), DockerAdapter(), NvmlAdapter(),
                                 ProcfsAdapter())
        return self.real

    @contextlib.contextmanager
    def machine(self) -> Iterator[tuple[Adapters, datetime, Any]]:
        """The adapters and the clock for one pass (the simulated host is locked meanwhile)."""
        if not self.simulate:
            yield self.real_adapters(), datetime.now(UTC), None
            return
        from ds01d.adapters.sim import locked
        from ds01d.runtime.simroot import sim_adapters

        if self.host is not None:
            adapters, clock = sim_adapters(self.host)
            yield adapters, clock.now(), self.host
            return
        with locked(self.paths.sim) as host:
            adapters, clock = sim_adapters(host)
            yield adapters, clock.now(), host

    def desired(self, observed: Observed, host: Any) -> Desired | None:
        config = self.config.load()
        self._report_config(observed.now)
        if config is None:
            return None
        stale = self.snapshot_until is not None and observed.now >= self.snapshot_until
        if config is not self.snapshot_of or stale:
            self._write_snapshot(config, observed.now)
        wants, invalid = self.want_files.load()
        owners = {c.owner for c in observed.containers if c.managed and c.owner}

        def account(user: str) -> Account | None:
            if user not in self.accounts:
                found = (sim_account(self.paths, host, user) if self.simulate
                         else nss_account(user))
                if found is None:
                    return None
                self.accounts[user] = found
            return self.accounts[user]

        return assemble(config, wants, invalid, users=owners, nss=self.nss(), account=account,
                        now=observed.now, cache=self.limits_cache)

    def nss(self) -> Nss:
        """No Unix groups on the simulated host; the system's (looked up afresh each pass,
        so group changes are seen) otherwise."""
        if self.simulate:
            return NoNss()
        from ds01d.adapters.nss import SystemNss

        return SystemNss()

    def _report_adapters(self, observed: Observed) -> None:
        """An adapter that stops answering is said once (journal + event), and so is its
        return; meanwhile the passes go on without what depends on it."""
        now_down = dict(observed.adapter_errors)
        for name, why in now_down.items():
            self.totals.errors[f"observe:{name}"] += 1
            if name not in self.down:
                self.events.emit(event("adapter.down", when=observed.now, user=None,
                                       details={"adapter": name, "error": why}),
                                 f"{name} unavailable: {why} (holding back what depends on it)")
        for name in self.down.keys() - now_down.keys():
            self.events.emit(event("adapter.up", when=observed.now, user=None,
                                   details={"adapter": name}), f"{name} available again")
        self.down = now_down

    def _write_snapshot(self, config: DesiredConfig, now: datetime) -> None:
        """Every named user's limits for the ``ds01`` commands (``ds01d/snapshot.py``)."""
        from ds01d import snapshot
        from ds01d.config.effective import snapshot_body

        body = snapshot_body(config, fingerprint=self.config.seen, now=now, nss=self.nss())
        if snapshot.write(self.paths.top, body):
            self.snapshot_of = config
            until = body["valid_until"]
            self.snapshot_until = None if until is None else parse_when(until)

    def _report_config(self, now: datetime) -> None:
        shown = tuple(str(e) for e in self.config.errors)
        if shown and shown != self.shown_errors:
            kept = "keeping the last valid one" if self.config.last else "nothing to keep"
            self.events.emit(event("config.invalid", when=now, user=None,
                                   details={"errors": list(shown[:20]),
                                            "kept_last": bool(self.config.last)}),
                             f"desired state invalid ({kept}): {'; '.join(shown)}")
        self.shown_errors = shown

    def plan_once(self, adapters: Adapters, now: datetime, host: Any) -> PassResult:
        """Observe and plan, without executing (``ds01 plan``, and the first half of a pass)."""
        observed = observe(adapters, now)
        desired = self.desired(observed, host)
        if desired is None:
            return PassResult(None, observed)
        self.idle = track_idle(self.idle, observed, desired.effective, now)
        reported = frozenset(self.executor.reported) if self.executor else self.restored
        observed = replace(observed, idle_since=dict(self.idle), reported=reported,
                           previous_reasons=dict(self.reasons), drain_since=dict(self.drains))
        return PassResult(plan(desired, observed, now), observed, desired)

    def due(self, interval: float) -> bool:
        """Whether a resync is due (the last pass began ``interval`` seconds ago or more)."""
        return time.monotonic() - self.last_pass_at >= interval

    def run_pass(self) -> PassResult:
        started = time.monotonic()
        try:
            result = self._pass()
        finally:
            self.passes += 1
            self.last_pass_at = started
            self.last_pass_ms = (time.monotonic() - started) * 1000
            self.totals.observe_pass(self.last_pass_ms / 1000)
        if result.plan is not None and result.desired is not None:
            self.last = (result.plan, result.observed, result.desired, not self.config.errors,
                         time.time())
            self._metrics = None
        return result

    @property
    def metrics(self) -> Snapshot | None:
        """The gauges of the last pass, built at the first scrape after it (not in the pass)."""
        if self._metrics is None and self.last is not None:
            plan_, observed, desired, valid, ended = self.last
            self._metrics = build_metrics(plan_, observed, desired, valid=valid, ended_at=ended)
        return self._metrics

    def _pass(self) -> PassResult:
        with self.machine() as (adapters, now, host):
            if self.executor is None:
                self.executor = Executor(adapters, self.paths, self.events,
                                         reported=set(self.restored), reasons=self.reasons,
                                         totals=self.totals)
            self.executor.adapters = adapters
            result = self.plan_once(adapters, now, host)
            self._report_adapters(result.observed)
            if result.plan is None:
                return result
            actions = safe_actions(result.plan, result.observed.adapter_errors)
            result.executed, result.failed = self.executor.apply(actions, now)
            self.executor.forget_reports(result.plan.report_keys, now)
            self.drains = dict(result.plan.drain_since)
            if not blocking(result.observed.adapter_errors):
                self.executor.write_statuses(result.plan.statuses)
                mapping = job_map(result.observed, result.plan.statuses)
                if mapping != self.job_map:
                    write_job_map(self.job_map_dir, mapping)
                    self.job_map = mapping
            self._write_memory()
            return result

    def _write_memory(self) -> None:
        """``run/ds01/memory.json``: idle timers and reports given (see the module docstring)."""
        from ds01d.fsutil import write_atomic

        memory = {"idle_since": {k: v.isoformat() for k, v in self.idle.items()},
                  "reported": sorted(self.executor.reported if self.executor else ()),
                  "mig_drain_since": {k: v.isoformat() for k, v in self.drains.items()}}
        text = json.dumps(memory, sort_keys=True)
        if text == self.saved_memory and time.time() - self.saved_at < self.interval:
            return
        self.paths.run.mkdir(parents=True, exist_ok=True)
        self.saved_at = time.time()
        write_atomic(self.paths.run / "memory.json",
                     json.dumps({"saved_at": self.saved_at, **memory}, indent=1))
        self.saved_memory = text


def load_memory(paths: Paths, *, max_age_s: float | None
                ) -> tuple[dict[str, datetime], frozenset[str]]:
    """The idle timers and given reports saved by the last pass, if fresh enough."""
    try:
        body = json.loads((paths.run / "memory.json").read_text())
        if max_age_s is not None and time.time() - float(body["saved_at"]) > max_age_s:
            return {}, frozenset()
        idle = {str(k): datetime.fromisoformat(v) for k, v in body["idle_since"].items()}
        return idle, frozenset(str(k) for k in body["reported"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, frozenset()


def load_drains(paths: Paths) -> dict[str, datetime]:
    """When each GPU's MIG layout drain began, as saved by the last pass (at any age: the
    deadline its holders were told counts from then)."""
    try:
        body = json.loads((paths.run / "memory.json").read_text())
        return {str(k): datetime.fromisoformat(v)
                for k, v in body.get("mig_drain_since", {}).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _watch(paths: Paths, wake: threading.Event, simulate: bool) -> Any:
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    class Wake(FileSystemEventHandler):
        def on_any_event(self, ev: FileSystemEvent) -> None:
            path = str(ev.src_path)
            if "/." not in path:  # temp files of atomic writes
                wake.set()

    observer = Observer()
    folders = [paths.etc, paths.wants] + ([paths.sim] if simulate else [])
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        observer.schedule(Wake(), str(folder), recursive=folder != paths.sim)
    observer.start()
    return observer


def serve_metrics(d: Daemon, port: int) -> None:
    """``/metrics`` on ``port`` (0: none), built from the last pass at each scrape."""
    if not port:
        return
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(d))
    try:
        start_http_server(port, registry=registry)
    except OSError as e:  # a busy port must not keep ds01d from its work
        log.error("no metrics: cannot listen on port %d (%s); use --metrics-port", port, e)
        return
    log.info("metrics on :%d/metrics", port)


def serve(d: Daemon, *, interval: float, metrics_port: int = 0) -> int:
    """Pass after pass until SIGTERM/SIGINT; a failing pass is logged, never fatal."""
    wake, stop = threading.Event(), threading.Event()
    serve_metrics(d, metrics_port)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping after this pass", signum)
        stop.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watcher = _watch(d.paths, wake, d.simulate)
    if not d.simulate:
        docker = d.real_adapters().docker
        threading.Thread(target=docker.wait_for_events, args=(wake, stop),  # type: ignore[attr-defined]
                         name="docker-events", daemon=True).start()
    log.info("ds01d %s started (root %s%s, resync every %gs)", __version__, d.paths.root,
             ", simulated host" if d.simulate else "", interval)
    beat = notify.watchdog_period_s()
    tick = min(interval, beat) if beat else interval
    ready = False
    try:
        while not stop.is_set():
            wake.clear()
            _one_pass(d, interval)
            if not ready:
                notify.notify(ready=1, status=_status_line(d))
                ready = True
            while not stop.is_set():
                notify.notify(watchdog=1, status=_status_line(d))
                if wake.wait(timeout=tick) or d.due(interval):
                    break
    finally:
        notify.notify(stopping=1)
        watcher.stop()
        watcher.join(timeout=5)
    log.info("ds01d stopped")
    return 0


def _one_pass(d: Daemon, interval: float) -> None:
    try:
        r = d.run_pass()
        if r.executed:
            log.info("pass: %d actions, %d failed", r.executed, r.failed)
    except Exception:
        log.exception("pass failed; next try in %gs", interval)


def _status_line(d: Daemon) -> str:
    """What ``systemctl status ds01d`` shows."""
    down = f"; unavailable: {', '.join(sorted(d.down))}" if d.down else ""
    invalid = "; configuration invalid (last valid kept)" if d.config.errors else ""
    return f"{d.passes} passes, last {d.last_pass_ms:.0f} ms{down}{invalid}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ds01d", description="ds01's daemon: converges the "
                                "machine onto the desired state in etc/ds01 and the users' wants.")
    p.add_argument("--root", metavar="DIR", help="root prefix of every path (env DS01_ROOT)")
    p.add_argument("--simulate", action="store_true",
                   help="drive the simulated host under --root (made on first use): 4x A100, "
                   "no GPU, root or Docker needed; drive it with `ds01 sim ...`")
    p.add_argument("--once", action="store_true", help="run one pass and exit")
    p.add_argument("--interval", type=float, default=10.0, metavar="SECONDS",
                   help="resync period (default %(default)s); file changes wake it sooner")
    p.add_argument("--dcgm-job-map", metavar="DIR", help="folder for dcgm-exporter's "
                   "--hpc-job-mapping-dir files (default: run/ds01/dcgm-job-map under --root)")
    p.add_argument("--metrics-port", type=int, default=9101, metavar="PORT",
                   help="serve Prometheus metrics on PORT (default %(default)s; 0: off)")
    p.add_argument("--version", action="version", version=f"ds01d {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="ds01d: %(levelname)s %(message)s")
    paths = Paths.from_option(args.root)
    if args.simulate:
        from ds01d.runtime.simroot import init_sim_root

        for line in init_sim_root(paths):
            log.info("set up %s", line)
    d = Daemon(paths, simulate=args.simulate, interval=args.interval,
               job_map_dir=Path(args.dcgm_job_map) if args.dcgm_job_map else Path())
    if args.once:
        r = d.run_pass()
        return 1 if r.plan is None or r.failed else 0
    return serve(d, interval=args.interval, metrics_port=args.metrics_port)
