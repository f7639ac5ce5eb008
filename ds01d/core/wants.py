"""Wants -> containers: per-container and per-user limits, allocation, and the fair queue.

Queue order: group ``priority`` (higher first), then fair share (the user's GPU-equivalents in
use / their quota, lower first), then request time. Re-evaluated every pass; a running
container is never evicted. A want that is blocked does not block the ones behind it that
can be served with other devices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from operator import attrgetter

from ds01d.config.model import Effective
from ds01d.config.values import quota_caps
from ds01d.config.want import Want, limit_problems, with_defaults
from ds01d.config.want import host_problems as want_host_problems
from ds01d.core import model as m
from ds01d.core.actions import (
    Action,
    ContainerSpec,
    CreateContainer,
    RemoveContainer,
    StartContainer,
    StopContainer,
)
from ds01d.core.asks import respecified, spec_of
from ds01d.core.devices import Holding, choose, holding, tracked, user_of_process
from ds01d.core.lifecycle import DEVICES_TAKEN, LifecycleResult, asked_again
from ds01d.core.mig import MigPlan, stale
from ds01d.core.model import Container, Desired, Device, Observed
from ds01d.core.naming import docker_name, user_slice
from ds01d.core.status import WantStatus
from ds01d.units import iso, quantity

Key = tuple[str, str]


def settings_problems(want: Want, desired: Desired) -> list[str]:
    """The container settings a want carries, against the one rule set (config/settings)."""
    if want.settings is None:
        return []
    from ds01d.config.settings import problems

    acct = desired.accounts.get(want.user)
    if acct is None:
        return [f"{want.user} is not a user on this host"]
    return problems(want.settings, home=acct.home)


@dataclass
class _Pass:
    """Bookkeeping while one pass serves the queue."""

    now: datetime
    free: list[Device]
    usage: dict[str, float]
    containers: dict[str, int]
    gpus_unread: bool = False
    """NVML could not be read this pass: no device is given (CPU-only wants go on)."""
    mig: MigPlan = field(default_factory=MigPlan)
    releasing: frozenset[str] = frozenset()
    """Containers stopped or removed in this pass (their devices are free)."""
    replacing: frozenset[str] = frozenset()
    """Running containers whose owner asked for other settings: stopped, then made anew."""
    groups: Mapping[Key, list[Container]] = field(default_factory=dict)
    holding_ids: frozenset[str] = frozenset()
    """Containers that hold devices at the start of the pass."""
    taken: dict[str, list[str]] = field(default_factory=dict)
    """User -> names of their wants given devices in this pass."""
    actions: list[Action] = field(default_factory=list)
    statuses: dict[Key, WantStatus] = field(default_factory=dict)


def by_want(observed: Observed) -> dict[Key, list[Container]]:
    """ds01 containers per (user, want name), the one to keep first (active, then newest)."""
    out: dict[Key, list[Container]] = {}
    for c in observed.containers:
        if c.managed and c.owner and c.want_name:
            out.setdefault((c.owner, c.want_name), []).append(c)
    for cs in out.values():
        if len(cs) > 1:
            cs.sort(key=lambda c: (not c.active, -c.created_at.timestamp(), c.id))
    return out


def _retire(c: Container, reason: str, grace: float, actions: list[Action]) -> None:
    name = c.want_name or c.name
    if c.active:
        actions.append(StopContainer(c.id, c.owner, name, reason, grace, c.devices))
    actions.append(RemoveContainer(c.id, c.owner, name, reason))


@dataclass(frozen=True)
class Offer:
    """What this server has: its MIG profiles and its whole GPUs (once the MIG layout changes
    under way are done)."""

    profiles: tuple[str, ...]
    whole: int

    @classmethod
    def of(cls, devices: tuple[Device, ...], mig: MigPlan | None = None) -> Offer:
        mig = mig or MigPlan()
        staying = [d for d in devices if d.uuid not in mig.going]
        coming = [c.future for c in mig.changes if c.problem is None]
        profiles = {d.profile for d in staying if d.profile} | {p for f in coming for p in f if p}
        return cls(tuple(sorted(profiles)), sum(1 for d in staying if d.profile is None)
                   + sum(f[""] for f in coming))


def host_problems(want: Want, offer: Offer) -> list[str]:
    """Why this server can never serve ``want``, whatever is running."""
    return want_host_problems(want, offer.profiles, offer.whole)


def gpu_quotas(eff: Effective) -> list[tuple[str, float]]:
    """The caps on a user's GPU-equivalents held at once, with the key setting each."""
    return quota_caps(eff.limits.max_gpu_equivalents, eff.aggregate.gpu_limit)


def share(user: str, eff: Effective, usage: Mapping[str, float]) -> float:
    quota = min((cap for _, cap in gpu_quotas(eff)), default=None)
    used = usage.get(user, 0.0)
    if quota is None:
        return 0.0
    return used / quota if quota > 0 else float("inf")


def queue_order(wants: list[Want], desired: Desired, usage: Mapping[str, float]) -> list[Want]:
    def key(w: Want) -> tuple[int, float, datetime, str, str]:
        eff = desired.effective[w.user]
        return (-eff.priority, share(w.user, eff, usage), w.requested_at, w.user, w.name)

    return sorted(wants, key=key)


_SHAPE = attrgetter(*(f.name for f in fields(Container)
                      if f.init and f.name not in ("cpu_percent", "net_bytes_per_s")))
"""A container as :func:`plan_wants` reads it: every field but the two samples of its
activity (their effect is in ``Observed.busy`` and ``idle_since``), which move every pass on a
real host."""


@dataclass(frozen=True)
class WantsPlanned:
    """The answer of :func:`plan_wants` with everything it was computed from (its *basis*,
    :func:`wants_basis`): a later pass whose basis is equal takes the answer as it is, with
    no action to take and the same statuses, however far the clock moved."""

    basis: tuple[object, ...]
    statuses: tuple[WantStatus, ...]
    """Sorted by (user, name), as ``Plan.statuses``."""


def shapes(observed: Observed) -> tuple[tuple[object, ...], ...]:
    """Every container as the planners read it (:data:`_SHAPE`), for a basis."""
    return tuple(map(_SHAPE, observed.containers))


def wants_basis(desired: Desired, observed: Observed, life: LifecycleResult,
                devices: tuple[Device, ...], *, mig: MigPlan, start: Holding,
                seen: tuple[tuple[object, ...], ...]) -> tuple[object, ...] | None:
    """Everything :func:`plan_wants` reads, the clock aside (``seen``: :func:`shapes`);
    ``None`` when its answer may depend on the clock itself: a stop in this pass (the status
    is stamped with the time), a MIG layout change under way (the status says when it is
    due).

    The clock's other effects are in the basis: who holds which device (``start``: a stopped
    container's devices are held until its ``gpu_hold_after_stop_h`` ends), and each running
    container's stop time and note (``life``: idle and runtime limits, warnings).
    """
    if life.stopping or mig.changes:
        return None
    return (desired, seen, observed.expected, observed.idle_since, observed.busy,
            observed.previous_reasons, observed.adapter_errors,
            tuple((p.pid, p.device_uuid) for p in observed.processes), observed.owners,
            dict(life.notes), dict(life.stops_at), devices, mig, start)


def plan_wants(desired: Desired, observed: Observed, life: LifecycleResult,
               devices: tuple[Device, ...], mig: MigPlan | None = None
               ) -> tuple[list[Action], list[WantStatus]]:
    """Create, start, replace or retire containers so that each want is served or queued.
    ``mig``: layout changes under way (their devices that go are handed to no one)."""
    mig = mig or MigPlan()
    groups = by_want(observed)
    wants = {(w.user, w.name): w for w in desired.wants}
    actions: list[Action] = []
    releasing = set(life.stopping)
    grace = desired.config.policies.sigterm_grace_s
    for key in sorted(groups):
        cs = groups[key]
        if key not in wants and desired.holds(*key):
            continue  # its want could not be used this pass: kept exactly as it is
        keep = cs[:1] if key in wants else []
        for extra in cs[len(keep):]:
            if extra.id not in life.stopping:
                _retire(extra, "dropped" if key not in wants else "duplicate", grace, actions)
            releasing.add(extra.id)
    replacing = _replacing(groups, wants, life)
    for old in replacing:
        actions.append(StopContainer(old.id, old.owner, old.want_name or old.name, "replaced",
                                     grace, old.devices))
        releasing.add(old.id)
    kept = _held_after_stop(desired, observed, life)
    hold = holding(observed, devices, desired.effective,
                   releasing=frozenset(releasing - kept) | superseded(desired, observed))
    state = _start_pass(devices, hold, now=observed.now, groups=groups, releasing=releasing,
                        others=tuple(c for c in observed.containers if c.made_for_user),
                        mig=mig)
    state.replacing = frozenset(old.id for old in replacing)
    state.gpus_unread = "nvml" in observed.adapter_errors
    waiting: list[Want] = []
    offer = Offer.of(devices, mig)
    for key, want in sorted(wants.items()):
        c = _primary(groups, key)
        if c is None and _expected(want, observed, state):
            continue
        if not _settled(want, c, desired=desired, observed=observed, life=life, offer=offer,
                        state=state):
            waiting.append(want)
    _held_statuses(desired, groups, wants, state)
    position = 0
    for want in queue_order(waiting, desired, state.usage):
        c = _primary(groups, (want.user, want.name))
        reason = _serve(want, c, desired, hold, state)
        if reason is not None and reason.startswith("queued for"):
            reason += waiting_on(want, devices, hold, observed)
        if reason is not None and c is not None and _respecified(want, c):
            reason += "; then your container is made anew with the new settings (/workspace " \
                "is kept)"
        if reason is not None:
            position += 1
            state.statuses[(want.user, want.name)] = WantStatus(
                want.user, want.name, "Pending", reason, (), want.gpu_equivalents, position,
                want.requested_at, spec=spec_of(want))
    return actions + state.actions, list(state.statuses.values())


def superseded(desired: Desired, observed: Observed) -> frozenset[str]:
    """Stopped ds01 containers whose want now asks for other settings: made anew once the want
    is served, they hold no device meanwhile (``gpu_hold_after_stop_h`` keeps devices for a
    container to start again; these will not be). Without this, the devices a container gave
    up when it was replaced would be claimed back by it in the next pass from whoever got
    them."""
    stopped = [c for c in observed.containers
               if not c.active and c.managed and c.devices and c.owner and c.want_name]
    if not stopped:
        return frozenset()
    wants = {(w.user, w.name): w for w in desired.wants}
    return frozenset(c.id for c in stopped
                     if (w := wants.get((c.owner or "", c.want_name or ""))) is not None
                     and _respecified(w, c))


def _held_after_stop(desired: Desired, observed: Observed, life: LifecycleResult
                     ) -> set[str]:
    """Containers the lifecycle stops in this pass (idle, runtime...) that keep their devices
    for their owner's ``gpu_hold_after_stop_h``, as they will once stopped: not given to
    another want in this pass only to be taken back in the next. Not those removed in this
    pass, nor those stopped for running on devices another container holds."""
    if not life.stopping:
        return set()
    gone = {x.container_id for x in life.actions if isinstance(x, RemoveContainer)} | {
        x.container_id for x in life.actions
        if isinstance(x, StopContainer) and x.reason == DEVICES_TAKEN}
    return {c.id for c in observed.containers
            if c.id in life.stopping and c.id not in gone and c.managed
            and _holds_after_stop(desired.effective.get(c.owner or ""))}


def _holds_after_stop(eff: Effective | None) -> bool:
    return eff is not None and eff.limits.gpu_hold_after_stop_h != 0


def _expected(want: Want, observed: Observed, state: _Pass) -> bool:
    """A container ds01d made for ``want`` that the listing does not show yet: it is never
    made twice, and its devices are nobody else's meanwhile."""
    made = observed.expected.get((want.user, want.name))
    if made is None:
        return False
    taken = set(made.devices)
    if any(d.uuid in taken for d in state.free):
        state.free = [d for d in state.free if d.uuid not in taken]
        state.usage[want.user] = state.usage.get(want.user, 0.0) + want.gpu_equivalents
    state.containers[want.user] = state.containers.get(want.user, 0) + 1
    state.statuses[(want.user, want.name)] = WantStatus(
        want.user, want.name, "Running", "starting", made.devices, want.gpu_equivalents, None,
        made.at)
    return True


def _held_statuses(desired: Desired, groups: Mapping[Key, list[Container]],
                   wants: Mapping[Key, Want], state: _Pass) -> None:
    """The status of each want that could not be used this pass, and of each container kept
    because of it: its own phase, and why ds01d leaves it as it is."""
    keys = {k for k in groups if k not in wants and desired.holds(*k)}
    keys |= {k for k in desired.held if k not in wants}
    keys |= {(u, "_invalid") for u in desired.held_users}
    for key in sorted(keys):
        why = desired.invalid_wants.get(key) or desired.held_users.get(key[0]) \
            or "not read yet (many changes at once); read in a later pass"
        c = _primary(groups, key)
        if c is None:
            phase = "Failed" if key in desired.invalid_wants or key[1] == "_invalid" \
                else "Pending"
            state.statuses[key] = WantStatus(*key, phase, why, since=None)
            continue
        kept = f"{why} (your container is kept as it is until this is fixed or you drop it)"
        phase = "Running" if c.active else "Stopped"
        state.statuses[key] = WantStatus(*key, phase, kept, c.devices if c.active else (),
                                         0.0, None, c.started_at if c.active else c.finished_at,
                                         container=c.name)
    for key, why in desired.invalid_wants.items():
        state.statuses.setdefault(key, WantStatus(*key, "Failed", why, since=None))


def _respecified(want: Want, c: Container) -> bool:
    return respecified(want, c.labels.get(m.LABEL_SPEC))


def _replacing(groups: Mapping[Key, list[Container]], wants: Mapping[Key, Want],
               life: LifecycleResult) -> list[Container]:
    """Running containers whose owner now asks for other settings (``ds01 want --replace``):
    stopped in this pass and made anew once their want is served."""
    out = []
    for key, cs in groups.items():
        want = wants.get(key)
        c = cs[0]
        if want is not None and c.active and _respecified(want, c) \
                and c.id not in life.stopping:
            out.append(c)
    return sorted(out, key=lambda c: (c.owner or "", c.want_name or ""))


def waiting_on(want: Want, devices: tuple[Device, ...], hold: Holding,
               observed: Observed) -> str:
    """What holds the devices a queued want could get, naming no one but the asker: their own
    process outside containers is named with its PID (they can end it)."""
    fits = [d for d in devices if d.profile == want.mig]
    notes: list[str] = []
    busy = 0
    for d in fits:
        holder = hold.by_device.get(d.uuid)
        if holder is None or not holder.startswith("untracked:"):
            busy += holder is not None
            continue
        where = f"GPU {d.gpu_index}" + (f" ({d.profile})" if d.profile else "")
        mine = sorted(p.pid for p in observed.processes if p.device_uuid == d.uuid
                      and not tracked(p.pid, d.uuid, observed)
                      and user_of_process(p.pid, observed) == want.user)
        notes.append(f"{where} busy: a process of yours outside containers (pid {mine[0]})"
                     if mine else f"{where} busy: a process outside ds01 containers")
    if busy:
        notes.append(f"{busy} in use by containers")
    return f" ({'; '.join(notes[:4])})" if notes else ""


def _primary(groups: Mapping[Key, list[Container]], key: Key) -> Container | None:
    cs = groups.get(key)
    return cs[0] if cs else None


def _start_pass(devices: tuple[Device, ...], hold: Holding, *, now: datetime,
                groups: Mapping[Key, list[Container]], releasing: set[str],
                others: tuple[Container, ...] = (), mig: MigPlan | None = None) -> _Pass:
    gpueq = {d.uuid: d.gpu_equivalents for d in devices}
    usage = {u: sum(gpueq.get(d, 0.0) for d in ds) for u, ds in hold.by_user.items()}
    count: dict[str, int] = {}
    for (user, _), cs in groups.items():
        count[user] = count.get(user, 0) + sum(1 for c in cs if c.id not in releasing)
    for c in others:  # made through the Docker socket: they count too
        if c.owner and c.id not in releasing:
            count[c.owner] = count.get(c.owner, 0) + 1
    mig = mig or MigPlan()
    free = [d for d in devices if d.uuid not in hold.by_device and d.uuid not in mig.going]
    return _Pass(now, free, usage, count, mig=mig, releasing=frozenset(releasing),
                 groups=groups, holding_ids=frozenset(hold.by_device.values()))


def _holders(state: _Pass, user: str) -> list[str]:
    """The names of ``user``'s containers that hold devices (after this pass's choices)."""
    names = sorted(name for (u, name), cs in state.groups.items()
                   if u == user and any(c.id in state.holding_ids for c in cs))
    return names + [n for n in state.taken.get(user, []) if n not in names]


def _settled(want: Want, c: Container | None, *, desired: Desired, observed: Observed,
             life: LifecycleResult, offer: Offer, state: _Pass) -> bool:
    """Give ``want`` its status when it needs no allocation this pass; False: queue it."""
    key = (want.user, want.name)
    eff = desired.effective[want.user]
    if c is not None and c.id in state.replacing:
        return False  # stopped in this pass; queued with its new settings
    if c is not None and c.id in life.stopping:
        stop = next(a for a in life.actions if isinstance(a, StopContainer | RemoveContainer)
                    and a.container_id == c.id)
        state.statuses[key] = _stopped(want, c, stop.reason, observed.now, eff)
        return True
    if c is not None and c.state == "created" and _client_starts(want):
        # made for a Docker client that starts it itself (docker run, devcontainer up); it
        # holds its devices meanwhile and is removed after created_container_timeout_m
        state.statuses[key] = WantStatus(want.user, want.name, "Pending",
                                         "created: waiting for your Docker client to start it",
                                         c.devices, want.gpu_equivalents, None, c.created_at)
        return True
    if c is not None and c.state == "created":
        # created but never started: a creation cut short (ds01d killed between Docker's
        # create and start); finish it. One that keeps failing is removed after
        # created_container_timeout_m (lifecycle).
        state.actions.append(StartContainer(c.id, want.user, want.name, c.devices,
                                            want.gpu_equivalents))
        state.statuses[key] = WantStatus(want.user, want.name, "Running", "starting",
                                         c.devices, want.gpu_equivalents, None, c.created_at,
                                         spec=spec_of(want))
        return True
    if c is not None and c.active:
        state.statuses[key] = _running(want, c, observed, life)
        return True
    if c is not None and not asked_again(want, c) and not _respecified(want, c):
        reason = observed.previous_reasons.get(key) or exit_reason(c)
        state.statuses[key] = _stopped(want, c, reason, c.finished_at or c.created_at, eff)
        return True
    if eff.archived:
        state.statuses[key] = WantStatus(want.user, want.name, "Failed", ARCHIVED_REASON, (),
                                         want.gpu_equivalents, None, want.requested_at)
        return True
    problems = limit_problems(want, eff.limits, offer.profiles) + settings_problems(want, desired)
    if "nvml" not in observed.adapter_errors:  # GPUs unseen: they are not missing, just unread
        problems += host_problems(want, offer)
    cap = eff.aggregate.gpu_limit
    if cap is not None and want.gpu_equivalents > cap + 1e-9:
        problems.append(f"asking for {quantity(want.gpu_equivalents, 'GPU-equivalent', '.3g')} "
                        "is over your "
                        f"limit of {cap:g} (aggregate.gpu_limit)")
    if problems:
        state.statuses[key] = WantStatus(want.user, want.name, "Failed", "; ".join(problems),
                                         (), want.gpu_equivalents, None, want.requested_at,
                                         spec=spec_of(want))
        return True
    return False


def _client_starts(want: Want) -> bool:
    return want.settings is not None and want.settings.start == "client"


ARCHIVED_REASON = ("your access has ended (groups/archived.members): ask the lab's admins "
                   "to restore it")


def exit_reason(c: Container) -> str:
    return "exited" if c.exit_code is None else f"exited with code {c.exit_code}"


def _running(want: Want, c: Container, observed: Observed, life: LifecycleResult) -> WantStatus:
    gpueq = want.gpu_equivalents
    return WantStatus(want.user, want.name, "Running", life.notes.get(c.id, "running"),
                      c.devices, gpueq, None, c.started_at or c.created_at,
                      idle_since=observed.idle_since.get(c.id),
                      stops_at=life.stops_at.get(c.id), container=c.name,
                      busy=observed.busy.get(c.id),
                      spec=c.labels.get(m.LABEL_SPEC) or spec_of(want))


def _stopped(want: Want, c: Container, reason: str, since: datetime,
             eff: Effective) -> WantStatus:
    """Stopped since ``since``; ``stops_at`` is when the container is removed."""
    hold = eff.limits.container_hold_after_stop_h
    removed = None if hold is None else since + timedelta(hours=hold)
    return WantStatus(want.user, want.name, "Stopped", reason, (), 0.0, None, since,
                      stops_at=removed, container=c.name, spec=spec_of(want))


def _serve(want: Want, c: Container | None, desired: Desired, hold: Holding,
           state: _Pass) -> str | None:
    """Start, replace or create the container for ``want``; the reason it waits otherwise."""
    eff = desired.effective[want.user]
    lim = eff.limits
    if want.user not in desired.accounts:
        return "waiting: your account cannot be looked up (the name service did not answer)"
    others = state.containers.get(want.user, 0) - (
        1 if c is not None and c.id not in state.releasing else 0)
    cap = lim.max_containers_per_user
    if cap is not None and others >= cap:
        return f"waiting: you have {others} containers (max_containers_per_user is {cap})"
    if c is not None and _restartable(want, c, hold, state):
        state.actions.append(StartContainer(c.id, want.user, want.name, c.devices,
                                            want.gpu_equivalents, want.requested_at))
        counted = any(hold.by_device.get(d) == c.id for d in c.devices)
        _take(state, want, c.devices, counted=counted, new=False)
        return None
    used = state.usage.get(want.user, 0.0)
    for key, quota in gpu_quotas(eff):
        if used + want.gpu_equivalents > quota + 1e-9:
            return (f"waiting for your other containers: {used:.3g} of "
                    f"{quantity(quota, 'GPU-equivalent')} in use ({key}) and "
                    f"{want.gpu_equivalents:.3g} more does "
                    f"not fit: drop one first ({', '.join(_holders(state, want.user)) or '-'}: "
                    "ds01 drop container NAME) or wait until it stops")
    if want.device_count and state.gpus_unread:
        return "waiting: the GPUs cannot be read right now (NVML); CPU-only containers go on"
    picked = choose(state.free, profile=want.mig, count=want.device_count) or None
    if want.device_count and picked is None:
        return _queued(want, state)
    if c is not None:
        state.actions.append(RemoveContainer(c.id, want.user, want.name, "replaced"))
    uuids = tuple(d.uuid for d in picked or ())
    gone = stale(c, state.mig) if c is not None else ()
    state.actions.append(CreateContainer(container_spec(want, eff, desired, uuids,
                                                        recreated_from=gone),
                                         want.gpu_equivalents))
    _take(state, want, uuids, counted=False, new=c is None)
    return None


def _queued(want: Want, state: _Pass) -> str:
    """Why a want waits for a device: none free, or a GPU's new layout will bring one."""
    change = state.mig.provider(want.mig)
    if change is not None:
        due = state.mig.due(change, state.now)
        return f"waiting for GPU {change.gpu.index}'s new layout ({due})"
    what = f"a free {want.mig} instance" if want.mig else quantity(want.gpus or 0, "free whole GPU")
    return f"queued for {what}"


def _restartable(want: Want, c: Container, hold: Holding, state: _Pass) -> bool:
    if c.labels.get(m.LABEL_SPEC) != spec_of(want) or set(c.devices) & state.mig.going:
        return False
    free = {d.uuid for d in state.free}
    return all(d in free or hold.by_device.get(d) == c.id for d in c.devices)


def _take(state: _Pass, want: Want, uuids: tuple[str, ...], *, counted: bool,
          new: bool) -> None:
    """Mark ``uuids`` taken; ``counted``: already in the user's usage (held after a stop)."""
    taken = set(uuids)
    state.free = [d for d in state.free if d.uuid not in taken]
    if uuids:
        state.taken.setdefault(want.user, []).append(want.name)
    if not counted:
        state.usage[want.user] = state.usage.get(want.user, 0.0) + want.gpu_equivalents
    if new:
        state.containers[want.user] = state.containers.get(want.user, 0) + 1
    state.statuses[(want.user, want.name)] = WantStatus(
        want.user, want.name, "Running", "starting", uuids, want.gpu_equivalents, None,
        state.now, spec=spec_of(want))


def container_spec(want: Want, eff: Effective, desired: Desired,
                   devices: tuple[str, ...], *, recreated_from: tuple[str, ...] = ()
                   ) -> ContainerSpec:
    """How a want's container is made: exactly its devices, its limits, as its owner;
    ``recreated_from``: the devices of the container it replaces that no longer exist."""
    full = with_defaults(want, eff.limits)
    acct = desired.accounts[want.user]  # _serve never creates for an unknown account
    swap = eff.limits.memory_swap
    if swap is not None and full.memory is not None:
        swap = max(swap, full.memory)
    labels = {m.LABEL_MANAGED: "true", m.LABEL_USER: want.user, m.LABEL_NAME: want.name,
              m.LABEL_GROUP: eff.group or "", m.LABEL_DEVICES: ",".join(devices),
              m.LABEL_GPUEQ: f"{want.gpu_equivalents:.4f}",
              m.LABEL_REQUESTED: iso(want.requested_at),
              m.LABEL_SPEC: spec_of(want)}
    if want.settings is not None:
        labels[m.LABEL_TYPE] = want.settings.kind
    if recreated_from:
        labels[m.LABEL_RECREATED] = ",".join(recreated_from)
    return ContainerSpec(
        docker_name=docker_name(want.user, want.name), user=want.user, want_name=want.name,
        image=want.image, labels=labels, devices=devices,
        cgroup_parent=user_slice(eff.group or "default", want.user,
                                 desired.slice_parts.get(want.user)),
        nano_cpus=None if full.cpus is None else int(full.cpus * 1e9),
        memory=full.memory, memory_swap=swap, shm_size=full.shm,
        pids_limit=eff.limits.pids_limit, uid=acct.uid, gid=acct.gid,
        workspace=f"{acct.home}/workspace/{want.name}", home=acct.home,
        tmp_size=eff.limits.storage_tmp, settings=want.settings)
