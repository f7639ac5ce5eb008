"""``ds01d``: converge the machine onto desired state, pass after pass.

Level-triggered: file changes (inotify, through watchdog) and a periodic resync only *wake*
the loop; every pass observes the machine and plans from scratch. What a pass carries to the
next is one small value, :class:`~ds01d.runtime.carry.Carry` (when wants were first seen, when
containers went idle, which warnings were given, why ds01d stopped what it stopped), saved
after each pass and read back whole at start. Everything else the daemon holds is a cache of
what it can read again.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from ds01d import __version__
from ds01d.adapters import notify
from ds01d.adapters.nss import account as nss_account
from ds01d.adapters.nss import uid_of
from ds01d.adapters.nss import user_name as nss_user_name
from ds01d.adapters.tty import UTMP, Terminals
from ds01d.config.effective import NoNss, Nss
from ds01d.config.model import DesiredConfig
from ds01d.core.asks import settle
from ds01d.core.gpus import Shown, kept_summary
from ds01d.core.idle import busy_signals, track_idle, track_started
from ds01d.core.model import Account, Desired, Observed
from ds01d.core.plan import Kept, Plan, plan
from ds01d.core.wants import by_want
from ds01d.paths import Paths
from ds01d.runtime import carry
from ds01d.runtime.carry import Carry, Saver
from ds01d.runtime.dcgm import job_map, write_job_map
from ds01d.runtime.desired import ConfigSource, EffectiveCache, assemble
from ds01d.runtime.events import EventLog, Unrecorded, event
from ds01d.runtime.executor import Executor, blocking, safe_actions
from ds01d.runtime.metrics import Collector, Snapshot, Totals, unplanned
from ds01d.runtime.metrics import build as build_metrics
from ds01d.runtime.notices import Alerter, UserNotices
from ds01d.runtime.observe import Adapters, observe
from ds01d.runtime.outbox import Outbox
from ds01d.runtime.simroot import sim_account
from ds01d.runtime.userfiles import UserFiles
from ds01d.runtime.wantfiles import WantSource, WantsRead, ensure_spool
from ds01d.units import iso, parse_when

log = logging.getLogger("ds01d")
GPUS_FILE = "gpus.json"
"""Under ``var/lib/ds01``: what ``ds01 gpus`` shows (world-readable, names nobody)."""
STATUS_CACHE = "status-cache.pickle"
"""The status folders as ds01d last wrote them, for the next ds01d (in the state folder)."""
CONFIG_CACHE = "config-cache.pickle"
"""The last valid configuration with its files' fingerprint, for the next ds01d."""
MIN_GAP_S = 0.5
"""The least time between the starts of two passes: a user writing files in a loop wakes
ds01d at most twice a second, and a want is served within half a second plus a pass."""
ACCOUNT_TTL_S = 600.0
"""How long a user's account (uid, gid, home) is trusted before the name service is asked
again; it is asked again at once when the user asks for a container (a new want, or asking
again), so a moved home is used for the next container."""
CHECK_PLANS = "DS01_CHECK_PLANS"
"""Set to 1: every kept part of a plan (the wants' statuses, the slices' actions) is checked
against a fresh one (the test suites set it)."""


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
    """Read the carried state saved by an earlier ds01d (tests turn it off)."""
    host: Any = None
    """An in-memory simulated host to drive instead of the one under ``--root`` (benchmarks)."""
    machine_of: tuple[Adapters, Callable[[], datetime]] | None = None
    """Adapters and clock to use on a real root instead of systemd, Docker and NVML (tests of
    the real-host path: real name service and file ownership, a fake machine)."""
    job_map_dir: Path = field(default=Path())
    """dcgm-exporter job-mapping folder (default ``run/ds01/dcgm-job-map`` under the root)."""
    utmp: str = UTMP
    """Where the users' login sessions are listed (terminal notices)."""
    read_only: bool = False
    """Observe and plan, write nothing (``ds01 plan``): no events, no snapshot, no spool
    set-up, nothing moved aside."""

    carry: Carry = field(default_factory=Carry)
    """What this pass carries to the next and across restarts: the daemon's only memory."""

    # Caches, rebuilt after a restart from the files and the machine:
    config: ConfigSource = field(init=False)
    want_files: WantSource = field(init=False)
    limits_cache: EffectiveCache = field(init=False)
    files: UserFiles = field(init=False)
    saver: Saver = field(init=False)
    executor: Executor | None = None
    accounts: dict[str, tuple[Account, float]] = field(default_factory=dict)
    """User -> their account and when it was looked up."""
    real: Adapters | None = None
    dcgm_reader: tuple[Any, Any] | None = None
    """The ``dcgm:`` settings in use, and their reader (made again when they change)."""
    snapshot_of: DesiredConfig | None = None
    snapshot_until: datetime | None = None
    job_map: dict[str, str] | None = None
    sim_host: Any = None
    """The simulated host, while a pass holds it."""
    watcher: Any = None
    """The file watcher of a serving daemon (``None`` for one pass, or in tests)."""

    # What the daemon says about itself (journal, events, metrics, systemctl status):
    events: EventLog = field(init=False)
    down: dict[str, str] = field(default_factory=dict)
    shown_errors: tuple[str, ...] = ()
    notices: UserNotices = field(init=False)
    alerter: Alerter = field(init=False)
    layout_seen: list[int] | None = None
    """``mig-layout.yaml``'s stamp taken before this pass loaded the configuration."""
    gpus_made: Shown | None = None
    """The last ``gpus.json`` body made, with the plan of the wants it was made with."""
    gpus_shown: tuple[dict[str, Any], tuple[int, int, int] | None] | None = None
    """What ``gpus.json`` holds, and the file as it was then (inode, size, mtime): a file
    removed or replaced by someone else is written again."""
    drifted: tuple[int, ...] = ()
    config_valid: bool | None = None
    last: tuple[Plan, Observed, Desired, bool, float] | None = None
    """The last pass, for the metrics (built at the first scrape after it). Let go when the
    next pass starts, its gauges built first where metrics are served: that pass is made
    without the last one's plan alive beside it (5 MiB at the peak at 20,000 users)."""
    _metrics: Snapshot | None = None
    metrics_served: bool = False
    """``/metrics`` is served (:func:`serve_metrics`): a scrape during a pass, or after one
    that failed, gets the gauges of the last pass that planned."""
    _shown: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Guards ``last`` and ``_metrics`` against a scrape (another thread)."""
    totals: Totals = field(default_factory=Totals)
    passes: int = 0
    kept: Kept | None = None
    """Parts of the last pass's plan with what they were planned from: the next pass keeps
    each whose basis is unchanged (``plan(previous=)``)."""
    check_plans: bool = field(default_factory=lambda: os.environ.get(CHECK_PLANS) == "1")
    """Plan afresh even the parts of the last plan that are kept, and fail the pass when the
    two differ (``DS01_CHECK_PLANS=1``: the test suites set it)."""
    last_pass_at: float = 0.0
    last_pass_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.job_map_dir == Path():
            self.job_map_dir = self.paths.run / "dcgm-job-map"
        kept = self.read_memory and not self.read_only
        self.config = ConfigSource(self.paths.etc,
                                   saved=self.paths.state / CONFIG_CACHE if kept else None)
        self.want_files = WantSource(
            self.paths.wants, user_name=None if self.simulate else nss_user_name,
            uid_of=None if self.simulate else uid_of, foreign_dir=self.paths.state / "foreign",
            saved=self.paths.state / "want-cache.pickle" if self.read_memory else None)
        self.limits_cache = EffectiveCache()
        self.files = UserFiles(self.paths.status, account=self.account, owned=not self.simulate,
                               saved=self.paths.state / STATUS_CACHE if kept else None)
        self.alerter = Alerter(Outbox("ds01d-alerts"))
        terminals = None if self.simulate else Terminals(utmp=self.utmp)
        self.notices = UserNotices(Outbox("ds01d-notices"), self.account, terminals,
                                   as_user=not self.simulate)
        self.events = Unrecorded() if self.read_only else EventLog(
            self.paths.events, user_copy=self.files.append_event,
            on_event=self.alerter.consider)
        self.saver = Saver(self.paths.state, refresh_s=self.interval)
        if self.read_only:
            self.want_files.foreign_dir = None
        else:
            self._ensure_spool()
        if self.read_memory:
            self.carry = carry.load(self.paths.state, max_age_s=None if self.simulate
                                    else 3 * self.interval)
            self.saver.adopt(self.carry)  # what is on disk: not written again unless it changes

    def _ensure_spool(self) -> None:
        try:
            fixed = ensure_spool(self.paths.wants)
            if fixed:
                log.warning("want spool set right: %s", fixed)
        except OSError as e:
            log.error("cannot set up the want spool %s: %s", self.paths.wants, e.strerror or e)

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
            if self.machine_of is not None:
                yield self.machine_of[0], self.machine_of[1](), None
                return
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
            self.sim_host = host
            try:
                yield adapters, clock.now(), host
            finally:
                self.sim_host = None

    def desired(self, observed: Observed, host: Any) -> Desired | None:
        from ds01d.snapshot import layout_stamp

        self.layout_seen = layout_stamp(str(self.paths.etc))  # before the load: see _write_gpus
        config = self.config.load()
        self._report_config(observed.now)
        if config is None:
            return None
        self.alerter.config = config.alerts
        stale = self.snapshot_until is not None and observed.now >= self.snapshot_until
        nss = self.nss()
        self.limits_cache.watch(config, nss)  # Unix group changes: seen in this pass
        if (config is not self.snapshot_of or stale or self.limits_cache.nss_changed) \
                and not self.read_only:
            self._write_snapshot(config, observed.now)
        read = self.want_files.load()
        if self.watcher is not None:
            self.watcher.follow(set(read.folders))
        self._report_foreign(read, observed.now)
        unseen = any((w.user, w.name) not in self.carry.asks for w in read.wants)
        containers = {k: cs[0] for k, cs in by_want(observed).items()} if unseen else {}
        wants, asks = settle(read.wants, self.carry.asks, now=observed.now,
                             containers=containers,
                             keepalive_max_h=config.policies.keepalive_max_duration_h,
                             keep=read.held)
        for key, ask in asks.items():  # a user who asks again: their account afresh
            if self.carry.asks.get(key) != ask:
                self.accounts.pop(key[0], None)
        self.carry = replace(self.carry, asks=asks)
        owners = {c.owner for c in observed.containers if c.owner}  # socket-made too
        return assemble(config, replace(read, wants=tuple(wants)), users=owners,
                        nss=nss, account=self.account, now=observed.now,
                        cache=self.limits_cache)

    def account(self, user: str) -> Account | None:
        """uid, gid and home of ``user`` (the simulated host's, or NSS's), asked again after
        :data:`ACCOUNT_TTL_S` (a home moved, an account made again, are seen)."""
        known = self.accounts.get(user)
        now = time.monotonic()
        if known is not None and now - known[1] < ACCOUNT_TTL_S:
            return known[0]
        if self.simulate:
            host = self.sim_host or self.host
            if host is None:
                return Account(None, None, str(self.paths.root / "home" / user))
            found: Account | None = sim_account(self.paths, host, user)
        else:
            found = nss_account(user)
        if found is None:
            self.accounts.pop(user, None)
            return None
        self.accounts[user] = (found, now)
        return found

    def _report_foreign(self, read: WantsRead, now: datetime) -> None:
        """One event per uid that made spool entries not theirs to make, per pass."""
        folder = self.paths.state / "foreign"
        for f in read.foreign:
            shown = ", ".join(f.names)
            self.events.emit(event("spool.foreign", when=now, user=f.owner, details={
                "entries": list(f.names), "owner_uid": f.owner_uid, "moved": f.moved,
                "moved_to": str(folder)}),
                f"uid {f.owner_uid} ({f.owner}) made spool entries that are not theirs to "
                f"make ({shown}): {f.moved} moved to {folder}")

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

        if self.snapshot_of is None and not any(g.unix_groups for g in config.groups.values()):
            kept, until = snapshot.made_from(self.paths.top, self.config.seen, __version__,
                                             iso(now))
            if kept:  # a new ds01d, a snapshot already right: not made again
                self.snapshot_of = config
                self.snapshot_until = None if until is None else parse_when(until)
                return
        body = snapshot_body(config, fingerprint=self.config.seen, now=now, nss=self.nss())
        if snapshot.write(self.paths.top, body):
            self.snapshot_of = config
            until = body["valid_until"]
            self.snapshot_until = None if until is None else parse_when(until)

    def _report_config(self, now: datetime) -> None:
        """``config.invalid`` when an edit breaks the configuration (once per set of errors),
        ``config.valid`` when it is fixed."""
        shown = tuple(str(e) for e in self.config.errors)
        if shown and shown != self.shown_errors:
            kept = "keeping the last valid one" if self.config.last else "nothing to keep"
            self.events.emit(event("config.invalid", when=now, user=None,
                                   details={"errors": list(shown[:20]),
                                            "kept_last": bool(self.config.last)}),
                             f"desired state invalid ({kept}): {'; '.join(shown[:20])}")
        if not shown and self.config_valid is False:
            self.events.emit(event("config.valid", when=now, user=None, details={}),
                             "desired state valid again")
        self.shown_errors = shown
        self.config_valid = not shown

    def with_dcgm(self, adapters: Adapters) -> Adapters:
        """The adapters, with the DCGM reader the configuration names (``dcgm:``)."""
        config = self.config.last or self.config.load()  # a change applies from the next pass
        wanted = None if config is None else config.dcgm
        if wanted is None:
            self.dcgm_reader = None
        elif self.dcgm_reader is None or self.dcgm_reader[0] != wanted:
            from ds01d.adapters.dcgm import DcgmExporter

            self.dcgm_reader = (wanted, DcgmExporter(wanted.exporter_url,
                                                     timeout_s=wanted.timeout_s))
        return replace(adapters, dcgm=None if self.dcgm_reader is None else self.dcgm_reader[1])

    def plan_once(self, adapters: Adapters, now: datetime, host: Any) -> PassResult:
        """Observe and plan, without executing (``ds01 plan``, and the first half of a pass)."""
        observed = observe(self.with_dcgm(adapters), now)
        desired = self.desired(observed, host)
        if desired is None:
            return PassResult(None, observed)
        busy = busy_signals(observed, desired.effective)
        idle = track_idle(self.carry.idle_since, observed, desired.effective, now, busy=busy)
        started = track_started(self.carry.started, observed)
        expected = carry.pending(self.carry.expected, {c.id for c in observed.containers}, now)
        self.carry = replace(self.carry, idle_since=idle, started=started, expected=expected)
        x = self.executor
        reported = frozenset(x.reported) if x else self.carry.reported
        reasons = dict(x.reasons) if x else dict(self.carry.reasons)
        warned = dict(x.warned) if x else dict(self.carry.warned)
        observed = replace(observed, idle_since=idle, started=started, expected=expected,
                           reported=reported, previous_reasons=reasons, busy=busy,
                           drain_since=self.carry.mig_drain_since, warned=warned)
        planned = plan(desired, observed, now, previous=self.kept, check=self.check_plans)
        self.kept = planned.kept
        return PassResult(planned, observed, desired)

    def due(self, interval: float) -> bool:
        """Whether a resync is due (the last pass began ``interval`` seconds ago or more)."""
        return time.monotonic() - self.last_pass_at >= interval

    def run_pass(self) -> PassResult:
        started = time.monotonic()
        config = self.config.last
        self._let_go()
        try:
            result = self._pass()
            if self.passes == 0 or self.config.last is not config:
                _settle_heap()
        finally:
            self.passes += 1
            self.last_pass_at = started
            self.last_pass_ms = (time.monotonic() - started) * 1000
            self.totals.observe_pass(self.last_pass_ms / 1000)
        if result.plan is not None and result.desired is not None:
            with self._shown:
                self.last = (result.plan, result.observed, result.desired,
                             not self.config.errors, time.time())
                self._metrics = None
        elif result.desired is None:  # no configuration has been valid yet: say so
            with self._shown:
                self._metrics = unplanned(result.observed, valid=False, ended_at=time.time())
        return result

    def _let_go(self) -> None:
        """Before a pass: the last pass's gauges built if metrics are served and no scrape
        built them yet, then its plan let go."""
        if self.metrics_served:
            _ = self.metrics
        with self._shown:
            self.last = None

    @property
    def metrics(self) -> Snapshot | None:
        """The gauges of the last pass, built at the first scrape after it (not in the pass),
        or before the next pass starts; during a pass, and after one that failed, those of
        the last pass that planned (where metrics are served)."""
        with self._shown:
            last, built = self.last, self._metrics
        if built is not None or last is None:
            return built
        plan_, observed, desired, valid, ended = last
        built = build_metrics(plan_, observed, desired, valid=valid, ended_at=ended)
        with self._shown:
            if self.last is last:  # not a pass that ended meanwhile
                self._metrics = built
        return built

    def _pass(self) -> PassResult:
        with self.machine() as (adapters, now, host):
            if self.executor is None:
                self.executor = Executor(adapters, self.paths, self.events, files=self.files,
                                         reported=set(self.carry.reported),
                                         reasons=dict(self.carry.reasons),
                                         flagged=dict(self.carry.flagged),
                                         warned=dict(self.carry.warned), totals=self.totals,
                                         tell=self.notices.tell)
            self.executor.adapters = adapters
            result = self.plan_once(adapters, now, host)
            self._report_adapters(result.observed)
            if result.plan is None:
                return result
            if not blocking(result.observed.adapter_errors):
                self._report_drift(result)  # said before what this pass does about it
            actions = safe_actions(result.plan, result.observed.adapter_errors)
            result.executed, result.failed = self.executor.apply(actions, now)
            self.executor.forget_gone(result.plan, result.observed)
            self.executor.forget_reports(result.plan.report_keys, now)
            self.carry = replace(self.carry, mig_drain_since=dict(result.plan.drain_since))
            if not blocking(result.observed.adapter_errors):
                keep = frozenset(result.desired.held_users) if result.desired else frozenset()
                self.executor.write_statuses(result.plan.statuses, keep=keep)
                self._write_job_map(result)
                self._write_gpus(result)
            self._save_carry()
            self.want_files.save()
            self.files.save()
            return result

    def close(self) -> None:
        """What a stopping ds01d keeps for the next one, kept now (the status folders as
        written, when an event appended since the last pass moved a folder's stamp)."""
        self.files.save()

    def _write_job_map(self, result: PassResult) -> None:
        if result.plan is None:
            return
        mapping = job_map(result.observed, result.plan.statuses)
        if mapping != self.job_map:
            try:
                write_job_map(self.job_map_dir, mapping)
            except OSError as e:
                log.warning("dcgm job map not written: %s", e.strerror or e)
                return
            self.job_map = mapping

    def _write_gpus(self, result: PassResult) -> None:
        """``var/lib/ds01/gpus.json`` for ``ds01 gpus`` (everyone may read it; it names
        nobody), rewritten when it changes."""
        if result.plan is None or result.desired is None:
            return
        from ds01d.fsutil import holds, signature, write_atomic

        self.gpus_made = kept_summary(result.plan, result.observed, result.desired,
                                      self.gpus_made, check=self.check_plans)
        # the layout's stamp as it was before this pass loaded it: an edit made during the
        # pass leaves gpus.json marked older, and ds01 want asks ds01d
        body = {**self.gpus_made[1], "layout": self.layout_seen}
        path = self.paths.state / GPUS_FILE
        on_disk = signature(path)
        if self.gpus_shown is not None and self.gpus_shown == (body, on_disk):
            return
        text = json.dumps(body, separators=(",", ":")) + "\n"  # one line: the C encoder
        if on_disk is not None and holds(path, text):  # a new ds01d: already right
            self.gpus_shown = (body, on_disk)
            return
        try:
            write_atomic(path, text, mode=0o644, durable=False)
        except OSError as e:
            log.warning("%s not written: %s", GPUS_FILE, e.strerror or e)
            return
        self.gpus_shown = (body, signature(path))

    def _report_drift(self, result: PassResult) -> None:
        """``mig.drift`` when GPUs start to differ from mig-layout.yaml (an admin alert), and
        ``mig.converged`` when they all match again."""
        if result.plan is None:
            return
        now = tuple(sorted(c.gpu.index for c in result.plan.mig.changes))
        if now == self.drifted:
            return
        if now:
            self.events.emit(event("mig.drift", when=result.observed.now, user=None,
                                   details={"gpus": list(now)}),
                             f"MIG layout of GPU {', '.join(map(str, now))} differs from "
                             "mig-layout.yaml")
        else:
            self.events.emit(event("mig.converged", when=result.observed.now, user=None,
                                   details={}), "MIG layout matches mig-layout.yaml again")
        self.drifted = now

    def _save_carry(self) -> None:
        """The carried state: what the executor remembers, with the idle timers and asks."""
        x = self.executor
        if x is not None:
            self.carry = replace(self.carry, reported=frozenset(x.reported),
                                 reasons=dict(x.reasons), flagged=dict(x.flagged),
                                 warned=dict(x.warned),
                                 started={**self.carry.started, **x.started},
                                 expected={**self.carry.expected, **x.expected})
            x.started, x.expected = {}, {}
        try:
            self.saver.save(self.carry)
        except OSError as e:
            log.error("carried state not saved in %s: %s", self.paths.state, e.strerror or e)


GC_THRESHOLD = (50_000, 20, 10)
"""The cyclic collector's thresholds in ds01d's process (:func:`tune_collector`): a pass
replaces what the last one made (what it drops is freed by its reference count), so its
allocations minus frees stay near zero; Python's default (a young collection every 700 more
allocations) ran several full collections per pass at 20,000 users, a fifth of the pass,
finding next to nothing to free. Cycles are still collected, once 50,000 more objects are
alive than before."""


def tune_collector() -> None:
    """Set up the garbage collector of a process that runs passes (ds01d's ``main``, and the
    benchmarks that measure it); a library caller's process keeps its own settings."""
    gc.set_threshold(*GC_THRESHOLD)


PASS_MODULES = ("pickle", "yaml", "ds01d.jsonfast", "ds01d.patterns")
"""What a pass imports beyond ``ds01d.daemon``'s own imports (the CLI imports them only when
it must)."""


def start_process() -> None:
    """ds01d's process before its first pass (its ``main``, and the benchmark of a new
    ds01d): the collector tuned, every module a pass needs imported, and what is alive then
    (the modules) moved out of the collector's way, so that the first pass's full collection
    (:func:`_settle_heap`) looks only at what the pass made."""
    tune_collector()
    for name in PASS_MODULES:
        importlib.import_module(name)
    gc.freeze()


def _settle_heap() -> None:
    """After the first pass, and after a new configuration: what is alive now (the config,
    caches, the carried state) is moved out of the collector's way, so that each pass only
    pays for the garbage it makes (the collector was a quarter of a pass at 20,000 users)."""
    gc.collect()
    gc.freeze()


WAKING = frozenset({"created", "deleted", "modified", "moved"})
"""The file events that change desired state; opens, reads and closes never wake ds01d."""


def wakes(event_type: str, paths: tuple[str, ...], *, trigger: str | None,
          folder: bool = False) -> bool:
    """Whether a file event should wake a pass: a change (not an open or a close) to a file
    that is not a temp file of an atomic write (a rename counts by its destination too); in
    the simulated host's folder only the ``ds01 sim`` commands' trigger file counts (ds01d's
    own writes of the host never wake it). A folder "modified" only echoes a change to one of
    its files, which has its own event."""
    if event_type not in WAKING or (folder and event_type == "modified"):
        return False
    for path in paths:
        if not path:
            continue
        if trigger is not None and os.path.dirname(path) == os.path.dirname(trigger):
            if path == trigger:
                return True
            continue
        name = os.path.basename(path)
        if not (name.startswith(".") or name.endswith(".tmp")):
            return True
    return False


class Watcher:
    """inotify: through watchdog, ``etc/ds01`` (the admin's, recursive), the want spool, and
    in the simulated host's folder the commands' trigger; each user's want folder one level
    deep (a user's sub-folders are never read, and must not cost root's inotify watches),
    all through one inotify instance and one thread (``runtime/inotify.py``: watchdog's
    thread per folder cost half a second of a new ds01d's first pass at 2,000 users)."""

    def __init__(self, paths: Paths, wake: threading.Event, simulate: bool) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        from ds01d.runtime.simroot import TRIGGER

        trigger = str(paths.sim / TRIGGER) if simulate else None

        class Wake(FileSystemEventHandler):
            def on_any_event(self, ev: FileSystemEvent) -> None:
                found = (str(ev.src_path), str(getattr(ev, "dest_path", "") or ""))
                if wakes(ev.event_type, found, trigger=trigger, folder=ev.is_directory):
                    wake.set()

        def in_folder(kind: str, path: str, is_folder: bool) -> None:
            if kind == "overflow" or wakes(kind, (path,), trigger=None, folder=is_folder):
                wake.set()  # an overflow lost events: the pass reads every folder anyway

        self.handler = Wake()
        self.observer = Observer()
        self.wants = paths.wants
        from ds01d.runtime.inotify import FolderWatch

        self.folders = FolderWatch(in_folder)
        self.users: dict[str, int] = {}
        for folder, recursive in ((paths.etc, True), (paths.wants, False)) + (
                ((paths.sim, False),) if simulate else ()):
            folder.mkdir(parents=True, exist_ok=True)
            self.observer.schedule(self.handler, str(folder), recursive=recursive)
        self.observer.start()

    def follow(self, users: set[str]) -> None:
        """Watch exactly these users' want folders (those read this pass); a folder removed
        or replaced since is watched again."""
        live = self.folders.paths
        for user in [u for u, wd in self.users.items() if u not in users or wd not in live]:
            self.folders.remove(self.users.pop(user))
        for user in users - set(self.users):
            try:
                self.users[user] = self.folders.add(str(self.wants / user))
            except OSError as e:  # gone meanwhile, or no watch left: the resync still reads
                log.warning("not watching %s: %s", user, e.strerror or e)

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)
        self.folders.close()


def serve_metrics(d: Daemon, port: int, address: str = "127.0.0.1",
                  users: tuple[str, ...] = ("prometheus",)) -> None:
    """``/metrics`` on ``address:port`` (port 0: none), built from the last pass at each
    scrape, for root and ``users`` only (see ``runtime/metricsserver.py``)."""
    if not port:
        return
    from prometheus_client import CollectorRegistry, make_wsgi_app

    from ds01d.runtime import metricsserver

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(d))
    allowed = frozenset(uid for u in users if (uid := uid_of(u)) is not None)
    try:
        metricsserver.start(make_wsgi_app(registry), address=address, port=port,
                            allowed=allowed)
    except OSError as e:  # a busy port must not keep ds01d from its work
        log.error("no metrics: cannot listen on %s:%d (%s); use --metrics-port", address, port,
                  e)
        return
    d.metrics_served = True
    log.info("metrics on %s:%d/metrics", address, port)


def serve(d: Daemon, *, interval: float, metrics_port: int = 0,
          metrics_address: str = "127.0.0.1", metrics_users: tuple[str, ...] = ("prometheus",)
          ) -> int:
    """Pass after pass until SIGTERM/SIGINT; a failing pass is logged, never fatal."""
    wake, stop = threading.Event(), threading.Event()
    serve_metrics(d, metrics_port, metrics_address, metrics_users)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping after this pass", signum)
        stop.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watcher = d.watcher = Watcher(d.paths, wake, d.simulate)
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
            gap = d.last_pass_at + MIN_GAP_S - time.monotonic()
            if gap > 0 and not stop.is_set():  # woken at once: changes are read together
                stop.wait(gap)
    finally:
        notify.notify(stopping=1)
        watcher.stop()
        d.close()
        d.notices.outbox.close(timeout=5)
        d.alerter.outbox.close(timeout=5)
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
    p.add_argument("--metrics-address", default="127.0.0.1", metavar="ADDR",
                   help="address the metrics listen on (default %(default)s: this host only, "
                   "since metrics name users; 0.0.0.0 for a Prometheus elsewhere)")
    p.add_argument("--metrics-users", default="prometheus", metavar="NAMES",
                   help="users of this host who may read the metrics, besides root "
                   "(comma-separated; default %(default)s)")
    p.add_argument("--utmp", default=UTMP, metavar="FILE",
                   help="where login sessions are listed, for notices on users' terminals "
                   "(default %(default)s)")
    p.add_argument("--version", action="version", version=f"ds01d {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    thresholds = gc.get_threshold()
    start_process()
    try:
        return _main(args)
    finally:  # a caller in the same process (the tests) gets its own settings back
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="ds01d: %(levelname)s %(message)s")
    paths = Paths.from_option(args.root)
    if args.simulate:
        from ds01d.runtime.simroot import init_sim_root

        for line in init_sim_root(paths):
            log.info("set up %s", line)
    d = Daemon(paths, simulate=args.simulate, interval=args.interval,
               job_map_dir=Path(args.dcgm_job_map) if args.dcgm_job_map else Path(),
               utmp=args.utmp)
    if args.once:
        r = d.run_pass()
        d.close()
        d.notices.outbox.close(timeout=5)
        d.alerter.outbox.close(timeout=5)
        return 1 if r.plan is None or r.failed else 0
    return serve(d, interval=args.interval, metrics_port=args.metrics_port,
                 metrics_address=args.metrics_address,
                 metrics_users=tuple(u for u in args.metrics_users.split(",") if u))
