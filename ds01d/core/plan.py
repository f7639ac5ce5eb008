"""``plan(desired, observed, now)``: the whole policy, as a pure function.

Order of the actions: slices, then stops and removals (devices are released), then creations
and starts (devices are taken), then warnings and flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from operator import attrgetter

from ds01d.config.model import DesiredConfig
from ds01d.config.want import Want
from ds01d.core.actions import (
    MIG_STEPS,
    MUTATING,
    Action,
    Alert,
    CreateContainer,
    EnsureSlice,
    FlagUntracked,
    MigEvent,
    ReleaseDevices,
    RemoveContainer,
    RemoveWant,
    SetSliceProperties,
    StartContainer,
    StopContainer,
    StopSlice,
    Warn,
)
from ds01d.core.alerts import over_quota
from ds01d.core.devices import Holding, holding
from ds01d.core.lifecycle import (
    DEVICES_TAKEN,
    QUIET_MARGIN,
    LifecycleResult,
    Quiet,
    Timers,
    check_drains,
    check_running,
    check_stopped,
    high_demand,
    quiet_basis,
    quiet_stop,
    timers_for,
)
from ds01d.core.mig import MigPlan, mig_actions, plan_mig, recreated_notice
from ds01d.core.model import Container, Desired, Device, Observed, devices_of
from ds01d.core.slices import plan_slices
from ds01d.core.status import WantStatus
from ds01d.core.untracked import plan_untracked
from ds01d.core.wants import (
    WantsPlanned,
    exit_reason,
    plan_wants,
    shapes,
    superseded,
    wants_basis,
)


@dataclass(frozen=True)
class Kept:
    """Parts of a plan with what they were planned from (their *basis*): a later pass whose
    basis for a part is equal takes that part as it is."""

    wants: WantsPlanned | None = None
    """The statuses of the wants (``None``: that plan had actions, or hung on the clock)."""
    slices: tuple[tuple[object, ...], tuple[Action, ...]] | None = None
    """The basis of the slices' actions (the desired state, the containers, the slices, the
    containers removed in that pass), and the actions."""
    life: Mapping[str, Quiet] = field(default_factory=dict)
    """Running containers with nothing to say or do, each with its basis and time span."""


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    statuses: tuple[WantStatus, ...]
    report_keys: frozenset[str]
    """Warnings and flags whose condition holds now (given once while it lasts)."""
    mig: MigPlan = field(default_factory=MigPlan)
    """GPUs whose MIG layout must change, with their steps (or why they cannot)."""
    kept: Kept | None = field(default=None, compare=False, repr=False)
    """Parts of this plan with what they were planned from, for the next pass
    (``plan(previous=)``)."""

    @property
    def drain_since(self) -> Mapping[str, datetime]:
        """What the next pass must be told (``Observed.drain_since``): when each drain began."""
        return self.mig.drain_since

    @property
    def changes(self) -> tuple[Action, ...]:
        """The actions that change the machine (what "nothing to do" is about)."""
        return tuple(a for a in self.actions if isinstance(a, MUTATING))


def _order(a: Action) -> int:
    """Slices; stops and removals (devices released); MIG steps; creations and starts
    (devices taken); reports; slices no longer used."""
    if isinstance(a, EnsureSlice | SetSliceProperties):
        return 0
    if isinstance(a, MIG_STEPS):
        return 2
    if isinstance(a, CreateContainer | StartContainer):
        return 3
    if isinstance(a, Warn | FlagUntracked | MigEvent | Alert):
        return 4
    if isinstance(a, StopSlice):
        return 5
    return 1


def plan_holders(desired: Desired, observed: Observed, start: Holding,
                 out: LifecycleResult) -> None:
    """A ds01 container running on devices that are no longer its own is stopped (its devices
    stay with their holder); one that stopped without ds01 releases its devices."""
    grace = desired.config.policies.sigterm_grace_s
    for c in observed.containers:
        if not c.devices or not c.managed:
            continue
        if c.state == "running" and any(start.by_device.get(d, c.id) != c.id
                                        for d in c.devices):
            out.actions.append(StopContainer(c.id, c.owner, c.want_name or c.name,
                                             DEVICES_TAKEN, grace))
            out.stopping.add(c.id)
            continue
        key = (c.owner or "", c.want_name or "")
        if not c.active and c.finished_at is not None and key not in observed.previous_reasons:
            out.actions.append(ReleaseDevices(c.id, key[0], key[1], c.devices,
                                              exit_reason(c), c.finished_at))


def plan_lifecycle(desired: Desired, observed: Observed, *, busy: bool, start: Holding,
                   mig: MigPlan | None = None, devices: Mapping[str, Device] | None = None,
                   previous: Mapping[str, Quiet] | None = None) -> LifecycleResult:
    """Stops, removals and warnings for existing containers; ``busy``: high demand; ``start``:
    who holds each device at the start of the pass; ``mig``: the layout changes whose holders
    are warned, then stopped; ``devices``: by uuid; ``previous``: the last pass's quiet
    containers (``LifecycleResult.quiet``), whose stop times are taken while they hold."""
    mig = mig or MigPlan()
    previous = previous or {}
    wants: dict[tuple[str, str], Want] = {(w.user, w.name): w for w in desired.wants}
    out = LifecycleResult()
    plan_holders(desired, observed, start, out)
    if devices is None:
        devices = {d.uuid: d for d in devices_of(observed.gpus)}
    for c in observed.containers:
        key = (c.owner or "", c.want_name or "")
        want = wants.get(key)
        eff = desired.effective.get(c.owner or "")
        if c.managed and want is None and not desired.holds(c.owner, c.want_name):
            continue  # dropped: the wants planner retires it
        if c.id in out.stopping:
            continue
        if c.state == "running":
            _running(c, timers_for(c, want, eff, desired.config), desired.config, observed,
                     busy=busy, previous=previous, out=out)
            if (notice := recreated_notice(c, devices)) is not None:
                out.report_keys.add(notice.report_key)
                out.actions.append(notice)
        elif c.managed or c.made_for_user:
            check_stopped(c, want, eff=eff, config=desired.config, now=observed.now, out=out)
    check_drains(mig, observed, grace_s=desired.config.policies.sigterm_grace_s, out=out)
    return out


def _running(c: Container, timers: Timers, config: DesiredConfig, observed: Observed, *,
             busy: bool, previous: Mapping[str, Quiet], out: LifecycleResult) -> None:
    """A running container's idle and runtime limits: its stop time taken from ``previous``
    while it stays quiet, else checked (and kept when quiet)."""
    basis = quiet_basis(c, timers, observed, config, busy)
    if quiet_stop(c, basis, observed.now, previous, out):
        return
    until = check_running(c, timers, observed=observed, config=config, busy=busy, out=out)
    if until is not None and until - QUIET_MARGIN > observed.now:
        out.quiet[c.id] = Quiet(basis, observed.now, until - QUIET_MARGIN,
                                out.stops_at.get(c.id))


def demand_after(start: Holding, life: LifecycleResult, want_actions: list[Action]) -> int:
    """Devices held once this pass's stops and starts are done."""
    kept = sum(1 for holder in start.by_device.values() if holder not in life.stopping)
    taken = sum(len(a.spec.devices) if isinstance(a, CreateContainer) else len(a.devices)
                for a in want_actions if isinstance(a, CreateContainer | StartContainer))
    return kept + taken


def restamp(statuses: list[WantStatus], observed: Observed, life: LifecycleResult
            ) -> list[WantStatus]:
    """Running statuses with the stop times of ``life`` (all else planned already)."""
    ids = {c.name: c.id for c in observed.containers}
    out = []
    for s in statuses:
        cid = ids.get(s.container or "") if s.phase == "Running" else None
        out.append(s if cid is None else replace(s, stops_at=life.stops_at.get(cid)))
    return out


def plan(desired: Desired, observed: Observed, now: datetime, *,
         previous: Kept | None = None, check: bool = False) -> Plan:
    """Everything the next pass should do, and the status of every want. No I/O.

    High demand (``high_demand_threshold`` of all devices allocated) is judged on the devices
    held at the start of the pass and, when this pass's own allocations cross the threshold,
    planned again with it: a pass only ever escalates, so planning again after applying
    finds nothing more to do.

    ``previous``: the last pass's ``Plan.kept``; the parts whose basis is the same (for the
    wants: :func:`~ds01d.core.wants.wants_basis`) are taken as they are, not planned again
    (``check``: they are planned again, and must come out the same).
    """
    previous = previous or Kept()
    observed = replace(observed, now=now)
    devices = devices_of(observed.gpus)
    mig = plan_mig(desired.config, observed)
    start = holding(observed, devices, desired.effective,
                    releasing=superseded(desired, observed))
    busy = high_demand(desired.config, len(start.by_device), len(devices))
    by_uuid = {d.uuid: d for d in devices}
    life = _lifecycle(desired, observed, busy=busy, start=start, mig=mig, devices=by_uuid,
                      previous=previous.life, check=check)
    seen = shapes(observed)
    basis = wants_basis(desired, observed, life, devices, mig=mig, start=start, seen=seen)
    kept = previous.wants if previous.wants is not None and basis is not None \
        and previous.wants.basis == basis else None
    if kept is not None:
        want_actions: list[Action] = []
        statuses = list(kept.statuses)
        if check:
            _same_as_planned(kept, plan_wants(desired, observed, life, devices, mig))
    else:
        want_actions, statuses = plan_wants(desired, observed, life, devices, mig)
    held_after = demand_after(start, life, want_actions)
    if not busy and high_demand(desired.config, held_after, len(devices)):
        busier = _lifecycle(desired, observed, busy=True, start=start, mig=mig,
                            devices=by_uuid, previous=previous.life, check=check)
        if busier.actions != life.actions:  # only then can the wants come out otherwise
            want_actions, statuses = plan_wants(desired, observed, busier, devices, mig)
        else:
            statuses = restamp(statuses, observed, busier)
        life = busier
        basis = None
    flags, flag_keys = plan_untracked(observed)
    relayout, mig_keys = mig_actions(mig, observed)
    alerts, alert_keys = over_quota(start, devices, desired.effective)
    removed = life.actions + want_actions
    gone = frozenset(x.container_id for x in removed if isinstance(x, RemoveContainer))
    expired = {(x.user, x.name) for x in removed if isinstance(x, RemoveWant)}
    after = replace(desired, wants=tuple(w for w in desired.wants
                                         if (w.user, w.name) not in expired))
    slices = _slices(after, observed, gone, seen, previous.slices, check=check)
    actions = list(slices[1]) + life.actions + want_actions + flags + relayout + alerts
    keys = frozenset(life.report_keys | flag_keys | mig_keys | alert_keys)
    fresh = [a for a in actions if not (isinstance(a, Warn | FlagUntracked | MigEvent | Alert)
                                        and a.report_key in observed.reported)]
    ordered = sorted(fresh, key=_order)
    final = kept.statuses if kept is not None and basis is not None else \
        tuple(sorted(statuses, key=attrgetter("user", "name")))
    planned = None if basis is None or want_actions else \
        kept if kept is not None else WantsPlanned(basis, final)  # kept: the very same
    return Plan(tuple(ordered), final, keys, mig, Kept(planned, slices, life.quiet))


def _lifecycle(desired: Desired, observed: Observed, *, busy: bool, start: Holding,
               mig: MigPlan, devices: Mapping[str, Device], previous: Mapping[str, Quiet],
               check: bool) -> LifecycleResult:
    """:func:`plan_lifecycle` with the last pass's quiet containers (``check``: and without,
    the two must agree)."""
    life = plan_lifecycle(desired, observed, busy=busy, start=start, mig=mig, devices=devices,
                          previous=previous)
    if check and previous:
        fresh = plan_lifecycle(desired, observed, busy=busy, start=start, mig=mig,
                               devices=devices)
        if (fresh.actions, fresh.stopping, fresh.report_keys, fresh.stops_at, fresh.notes) != \
                (life.actions, life.stopping, life.report_keys, life.stops_at, life.notes):
            raise AssertionError("kept quiet containers differ from a fresh lifecycle")
    return life


def _slices(after: Desired, observed: Observed, gone: frozenset[str],
            seen: tuple[tuple[object, ...], ...],
            previous: tuple[tuple[object, ...], tuple[Action, ...]] | None, *, check: bool
            ) -> tuple[tuple[object, ...], tuple[Action, ...]]:
    """The slices' actions with their basis: the last pass's when its basis is the same
    (``plan_slices`` reads no clock)."""
    basis = (after, seen, observed.slices, gone)
    if previous is not None and previous[0] == basis:
        if check and tuple(plan_slices(after, observed, gone=gone)) != previous[1]:
            raise AssertionError("kept slice actions differ from fresh ones")
        return previous
    return basis, tuple(plan_slices(after, observed, gone=gone))


def _same_as_planned(kept: WantsPlanned, fresh: tuple[list[Action], list[WantStatus]]) -> None:
    """The check of ``plan(check=True)``: the wants planned again come out as kept."""
    statuses = tuple(sorted(fresh[1], key=attrgetter("user", "name")))
    if fresh[0] or statuses != kept.statuses:
        differ = [f"{a} != {b}" for a, b in zip(statuses, kept.statuses, strict=False)
                  if a != b][:3]
        raise AssertionError(f"kept wants plan differs from a fresh one: {fresh[0][:3]} "
                             f"{differ} ({len(statuses)} vs {len(kept.statuses)} statuses)")
