"""Lifecycle: idle and runtime stops with warnings first, and removal after the hold."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ds01d.config.model import DesiredConfig, Effective, Value
from ds01d.config.want import Want
from ds01d.core.actions import Action, RemoveContainer, RemoveWant, StopContainer, Warn
from ds01d.core.asks import respecified
from ds01d.core.mig import RELAYOUT, MigPlan, drain_note, drain_warning, holder_deadline
from ds01d.core.model import LABEL_SPEC, Container, Observed

IDLE_WARN_AT = (0.80, 0.95)
RUNTIME_WARN_AT = (0.75, 0.90)
DEVICES_TAKEN = "devices_taken"
"""Why a ds01 container started outside ds01 on devices another container holds is stopped."""


@dataclass(frozen=True)
class Timers:
    """The limits that apply to one container (hours; ``None`` = none)."""

    idle_timeout_h: float | None
    max_runtime_h: float | None
    sigterm_grace_s: float
    keepalive_until: datetime | None = None
    idle_window_h: float = 0.0
    """``idle_detection_window``: idle time counts only once it has lasted this long."""


@dataclass
class LifecycleResult:
    actions: list[Action] = field(default_factory=list)
    stopping: set[str] = field(default_factory=set)
    report_keys: set[str] = field(default_factory=set)
    stops_at: dict[str, datetime] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    """Container id -> its status reason while it runs, where not plain ``running``."""
    quiet: dict[str, Quiet] = field(default_factory=dict)
    """Running containers that had nothing said or done this pass, with until when that
    holds (for the next pass: :func:`quiet_stop`)."""


@dataclass(frozen=True, slots=True)
class Quiet:
    """A running container with nothing to say or do: its stop time (``None``: none), the
    same at any time from ``since`` until just before ``until`` while ``basis`` (what
    :func:`check_running` read of it) is the same."""

    basis: tuple[object, ...]
    since: datetime
    until: datetime
    stops_at: datetime | None


QUIET_MARGIN = timedelta(milliseconds=1)
"""Taken off each quiet span's end: a warning stage is judged on a fraction of a limit,
its moment here on a time (rounded to the microsecond)."""


def quiet_basis(c: Container, timers: Timers, observed: Observed, config: DesiredConfig,
                busy: bool) -> tuple[object, ...]:
    """Everything :func:`check_running` reads when it has nothing to say or do, the clock
    aside."""
    return (c.started_at, c.created_at, observed.started.get(c.id),
            observed.idle_since.get(c.id), c.id in observed.told, timers, config, busy)


def quiet_stop(c: Container, basis: tuple[object, ...], now: datetime,
               previous: Mapping[str, Quiet], out: LifecycleResult) -> bool:
    """Take a running container's stop time from the last pass, when it was quiet then and
    still is (same basis, ``now`` in its span). True: taken."""
    known = previous.get(c.id)
    if known is None or not known.since <= now < known.until or known.basis != basis:
        return False
    if known.stops_at is not None:
        out.stops_at[c.id] = known.stops_at
    out.quiet[c.id] = known
    return True


def asked_again(want: Want, c: Container) -> bool:
    """Whether the owner asked again for a stopped container: strictly after its stop.

    A want written in the very second of the stop is not taken as asked again: want times
    have whole seconds, so it may have been written just before the stop (an owner who asks
    then simply asks again). This also keeps a container that exits in the second it started
    from being restarted over and over.
    """
    return want.requested_at > (c.finished_at or c.created_at)


def container_type(c: Container) -> str:
    """How a container ds01 did not create was made, from its labels."""
    from ds01d.core.model import LABEL_TYPE

    labels = c.labels
    if labels.get(LABEL_TYPE) in ("devcontainer", "compose", "docker", "api"):
        return labels[LABEL_TYPE]
    if any(k.startswith("devcontainer.") for k in labels):
        return "devcontainer"
    if "com.docker.compose.project" in labels:
        return "compose"
    if labels.get("ds01.container_type") == "api" or any(k.startswith("io.portainer")
                                                         for k in labels):
        return "api"
    return "docker" if not labels else "unknown"


def high_demand(config: DesiredConfig, allocated: int, total: int) -> bool:
    return total > 0 and allocated / total >= config.policies.high_demand_threshold


def idle_timeout(timers: Timers, config: DesiredConfig, busy: bool) -> float | None:
    """The idle timeout in hours, shrunk under high demand."""
    if timers.idle_timeout_h is None:
        return None
    if busy:
        return timers.idle_timeout_h * (1 - config.policies.high_demand_idle_reduction)
    return timers.idle_timeout_h


_TIMERS: dict[tuple[int, int, int, datetime | None],
              tuple[object, object, DesiredConfig, Timers]] = {}


def _managed_timers(eff: Effective, config: DesiredConfig, keep: datetime | None) -> Timers:
    """The timers of a ds01 container: the same while its owner's limits and idle policy
    (objects shared by every user with the same limits, pass after pass, from
    ``EffectiveCache``) and its keepalive stay."""
    limits, policies = eff.limits, eff.policies
    key = (id(limits), id(policies), id(config), keep)
    known = _TIMERS.get(key)
    if known is not None and known[0] is limits and known[1] is policies \
            and known[2] is config:
        return known[3]
    found = Timers(limits.idle_timeout_h, limits.max_runtime_h,
                   config.policies.sigterm_grace_s, keep, policies.idle_detection_window)
    if len(_TIMERS) >= 4096:  # a new configuration's, or many keepalives: start again
        _TIMERS.clear()
    _TIMERS[key] = (limits, policies, config, found)
    return found


_SPAN: dict[float, timedelta] = {}


def as_hours(h: float) -> timedelta:
    """``timedelta(hours=h)``, made once per value (every container's timers, every pass)."""
    known = _SPAN.get(h)
    if known is None:
        known = timedelta(hours=h)
        if len(_SPAN) < 1024:
            _SPAN[h] = known
    return known


def timers_for(c: Container, want: Want | None, eff: Effective | None,
               config: DesiredConfig) -> Timers:
    if c.managed and eff is not None:
        return _managed_timers(eff, config, want.keepalive_until if want is not None else None)
    grace = config.policies.sigterm_grace_s
    window = eff.policies.idle_detection_window if eff is not None else 0.0
    settings: Mapping[str, Value] = config.container_types.get(container_type(c), {})
    fallback = eff.limits if eff is not None else None

    def pick(key: str, default: float | None) -> float | None:
        value = settings.get(key, default)
        return None if value is None else float(value)

    return Timers(pick("idle_timeout_h", fallback.idle_timeout_h if fallback else None),
                  pick("max_runtime_h", fallback.max_runtime_h if fallback else None),
                  pick("sigterm_grace_s", grace) or 0.0, idle_window_h=window)


def _label(c: Container) -> tuple[str | None, str]:
    return c.owner, c.want_name or c.name


def _stage(fraction: float, marks: tuple[float, ...]) -> float | None:
    passed = [m for m in marks if fraction >= m]
    return passed[-1] if passed else None


def utc(t: datetime) -> str:
    """A time as notices and statuses give it: ``2026-01-05 11:00 UTC``."""
    return f"{t:%Y-%m-%d %H:%M} UTC"


def span(seconds: float) -> str:
    """A duration as notices give it: ``25 min``, ``1.7h``."""
    return f"{seconds / 3600:.1f}h" if seconds >= 3600 else f"{int(seconds // 60)} min"


@dataclass(frozen=True)
class Coming:
    """A stop on its way: when it is due, the key that announces it, and how to word it."""

    reason: str
    """``idle`` or ``runtime``: the stop's reason."""
    due: datetime
    announces: str
    event: str
    stage: float | str | None
    """The warning stage reached now (a fraction of the limit), if any."""
    suffix: str
    words: Callable[[datetime], str]
    """The warning's text, given when the stop will come."""
    idle_for_s: float | None = None


def stop_when_told(c: Container, coming: Coming, *, grace_s: float, observed: Observed,
                   notice: timedelta, out: LifecycleResult) -> bool:
    """Stop ``c`` once ``coming`` is due and its owner was told at least ``notice`` before.

    Until then each warning stage is given once, and a warning is given at the latest
    ``notice`` before the stop: a stop that would come sooner than ``notice`` after the first
    warning (a keepalive ending, a timeout shorter than the grace period, high demand) waits.
    True: it is stopped in this pass.
    """
    now = observed.now
    told = observed.warned.get(coming.announces)
    at = max(coming.due, (told or now) + notice)
    if told is not None and now >= at:
        user, name = _label(c)
        out.actions.append(StopContainer(c.id, user, name, coming.reason, grace_s, c.devices,
                                         coming.idle_for_s))
        out.stopping.add(c.id)
        return True
    out.stops_at[c.id] = min(at, out.stops_at.get(c.id, at))
    stage = coming.stage
    if stage is not None:  # given once while it holds: plan() leaves out what was given
        _warn(out, c, coming, stage, coming.words(at))
    given = stage is None or _warning_key(c, coming, stage) in observed.reported
    if told is None and given and now >= coming.due - notice:
        _warn(out, c, coming, "notice", coming.words(at))  # none was told: tell now
    if told is not None or stage is not None or now >= coming.due - notice:
        out.report_keys.add(coming.announces)  # remembered while this stop is on its way
    return False


_SPANS: dict[int, tuple[DesiredConfig, timedelta, timedelta]] = {}


def _spans(config: DesiredConfig) -> tuple[timedelta, timedelta]:
    """``stop_notice_m`` and ``grace_period_m`` as spans, made once per configuration."""
    known = _SPANS.get(id(config))
    if known is None or known[0] is not config:
        policies = config.policies
        known = (config, timedelta(minutes=policies.stop_notice_m),
                 timedelta(minutes=policies.grace_period_m))
        _SPANS.clear()
        _SPANS[id(config)] = known
    return known[1], known[2]


FOREVER = datetime.max.replace(tzinfo=UTC)


def check_running(c: Container, timers: Timers, *, observed: Observed, config: DesiredConfig,
                  busy: bool, out: LifecycleResult) -> datetime | None:
    """Runtime first (it cannot be kept alive), then idle. Returns until when nothing will be
    said or done about ``c`` as the clock moves (its stop time alone set), all else the
    same; ``None``: something is (a warning, a stop, its owner told), or may be."""
    now = observed.now
    notice, grace = _spans(config)
    until: datetime | None = FOREVER
    if timers.max_runtime_h is not None:
        started = observed.started.get(c.id) or c.started_at or c.created_at
        limit = as_hours(timers.max_runtime_h)
        due = started + limit
        fraction = (now - started) / limit if limit else 1.0
        if fraction < RUNTIME_WARN_AT[0] and now < due - notice and c.id not in observed.told:
            out.stops_at[c.id] = due  # nothing to say yet (the quiet case, inline: per pass)
            until = min(started + limit * RUNTIME_WARN_AT[0], due - notice)
        else:  # a warning stage reached, the notice span entered, or its owner told
            until = None
            stage = _stage(fraction, RUNTIME_WARN_AT)
            _, name = _label(c)
            hours = timers.max_runtime_h
            coming = Coming("runtime", due, f"runtime:{c.id}:{started.isoformat()}",
                            "lifecycle.runtime_warning", stage, "",
                            lambda at: f"{name} reaches its runtime limit of {hours:g}h and "
                            f"will be stopped at {utc(at)}; /workspace is kept")
            if stop_when_told(c, coming, grace_s=timers.sigterm_grace_s, observed=observed,
                              notice=notice, out=out):
                return None
    idle = _check_idle(c, timers, observed=observed, config=config, busy=busy, out=out,
                       spans=(notice, grace))
    return None if until is None or idle is None else min(until, idle)


def _check_idle(c: Container, timers: Timers, *, observed: Observed, config: DesiredConfig,
                busy: bool, out: LifecycleResult, spans: tuple[timedelta, timedelta]
                ) -> datetime | None:
    """The idle stop: due ``idle_timeout_h`` after the container went idle (and idle for the
    whole detection window), never inside the grace period after its start nor before a
    keepalive ends; told at least ``stop_notice_m`` before. Returns as
    :func:`check_running`."""
    since = observed.idle_since.get(c.id)
    if since is None:
        return FOREVER
    timeout = idle_timeout(timers, config, busy)
    if timeout is None:
        return FOREVER
    now = observed.now
    notice, grace = spans
    grace_end = (c.started_at or c.created_at) + grace
    keep = timers.keepalive_until
    limit = as_hours(timeout)
    window = as_hours(timers.idle_window_h)
    due = max(since + max(limit, window), grace_end)
    kept = keep is not None and now < keep
    if keep is not None:
        due = max(due, keep)
        if kept and now < keep - notice:
            return keep - notice  # kept alive: its end is told in time
    if now - since < window:
        out.stops_at[c.id] = min(due, out.stops_at.get(c.id, due))
        return since + window  # not idle for the whole detection window yet: nothing to say
    fraction = (now - since) / limit if limit else 1.0
    if not kept and (fraction < IDLE_WARN_AT[0] or now < grace_end) and now < due - notice \
            and c.id not in observed.told:
        out.stops_at[c.id] = min(due, out.stops_at.get(c.id, due))
        # nothing to say yet (the quiet case, inline: it runs for every container)
        return min(max(since + limit * IDLE_WARN_AT[0], grace_end), due - notice)
    stage = None if kept or now < grace_end else _stage(fraction, IDLE_WARN_AT)
    _, name = _label(c)
    idle = span((now - since).total_seconds())
    hint = f"unless it is used (or: ds01 keepalive {name} --for 2h)"
    if keep is not None and kept:
        coming = Coming("idle", due, f"idle:{c.id}:{since.isoformat()}",
                        "lifecycle.keepalive_warning", "end",
                        f":{keep.isoformat()}:{since.isoformat()}",
                        lambda at: f"the keepalive of {name} ends at {utc(keep)}; it has been "
                        f"idle for {idle} and will be stopped at {utc(at)} {hint}")
    else:
        coming = Coming("idle", due, f"idle:{c.id}:{since.isoformat()}",
                        "lifecycle.idle_warning", stage, f":{since.isoformat()}",
                        lambda at: f"{name} has been idle for {idle} and will be "
                        f"stopped at {utc(at)} {hint}",
                        (now - since).total_seconds())
    stop_when_told(c, coming, grace_s=timers.sigterm_grace_s, observed=observed,
                   notice=notice, out=out)
    return None


def _warning_key(c: Container, coming: Coming, stage: float | str) -> str:
    shown = f"{stage:g}" if isinstance(stage, float) else stage
    return f"{coming.event}:{c.id}:{shown}{coming.suffix}"


def _warn(out: LifecycleResult, c: Container, coming: Coming, stage: float | str,
          message: str) -> None:
    key = _warning_key(c, coming, stage)
    out.report_keys.add(key)
    user, name = _label(c)
    out.actions.append(Warn(user, name, coming.event, message, key, coming.announces,
                            c.managed))


def check_drains(mig: MigPlan, observed: Observed, *, grace_s: float,
                 out: LifecycleResult) -> None:
    """Holders of devices a layout change takes away: warned with the deadline, stopped and
    removed at it (reason ``mig-relayout``; their wants stay, queued again for the new
    layout)."""
    for change in mig.changes:
        for c in mig.holders(change, observed.containers):
            if c.id in out.stopping:
                continue
            deadline = holder_deadline(change, c)
            user, name = _label(c)
            if deadline is not None and observed.now >= deadline:
                out.actions.append(StopContainer(c.id, user, name, RELAYOUT, grace_s, c.devices))
                out.actions.append(RemoveContainer(c.id, user, name, RELAYOUT))
                out.stopping.add(c.id)
                continue
            if deadline is not None:
                out.stops_at[c.id] = min(deadline, out.stops_at.get(c.id, deadline))
            out.notes[c.id] = drain_note(change, c)
            warning = drain_warning(c, change)
            out.report_keys.add(warning.report_key)
            out.actions.append(warning)


def check_stopped(c: Container, want: Want | None, *, eff: Effective | None,
                  config: DesiredConfig, now: datetime, out: LifecycleResult) -> None:
    """Remove a stopped ds01 container after ``container_hold_after_stop_h``; a stuck
    ``created`` one after ``created_container_timeout_m``."""
    user, name = _label(c)
    if c.state == "created":
        limit = timedelta(minutes=config.policies.created_container_timeout_m)
        if now >= c.created_at + limit:
            out.actions.append(RemoveContainer(c.id, user, name, "stuck_created"))
            out.stopping.add(c.id)
            if want is not None and user is not None and want.settings is not None \
                    and want.settings.start == "client":
                out.actions.append(RemoveWant(user, want.name))  # its client is gone
        return
    if eff is None or c.finished_at is None or eff.limits.container_hold_after_stop_h is None:
        return
    if want is not None and (asked_again(want, c)
                             or respecified(want, c.labels.get(LABEL_SPEC))):
        return  # the wants planner starts or replaces it
    remove_at = c.finished_at + timedelta(hours=eff.limits.container_hold_after_stop_h)
    out.stops_at[c.id] = remove_at
    if now >= remove_at:
        out.actions.append(RemoveContainer(c.id, user, name, "held_expired"))
        out.stopping.add(c.id)  # no longer counts against its owner's containers this pass
        if want is not None and user is not None:
            out.actions.append(RemoveWant(user, want.name))
