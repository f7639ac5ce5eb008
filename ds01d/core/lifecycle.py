"""Lifecycle: idle and runtime stops with warnings first, and removal after the hold."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ds01d.config.model import DesiredConfig, Effective, Value
from ds01d.config.want import Want
from ds01d.core.actions import Action, RemoveContainer, RemoveWant, StopContainer, Warn
from ds01d.core.mig import RELAYOUT, MigPlan, drain_note, drain_warning, holder_deadline
from ds01d.core.model import Container, Observed

IDLE_WARN_AT = (0.80, 0.95)
RUNTIME_WARN_AT = (0.75, 0.90)


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


def timers_for(c: Container, want: Want | None, eff: Effective | None,
               config: DesiredConfig) -> Timers:
    grace = config.policies.sigterm_grace_s
    window = eff.policies.idle_detection_window if eff is not None else 0.0
    if c.managed and eff is not None:
        keep = want.keepalive_until if want is not None else None
        return Timers(eff.limits.idle_timeout_h, eff.limits.max_runtime_h, grace, keep, window)
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


def check_running(c: Container, timers: Timers, *, observed: Observed, config: DesiredConfig,
                  busy: bool, out: LifecycleResult) -> None:
    """Runtime first (it cannot be kept alive), then idle."""
    user, name = _label(c)
    now = observed.now
    started = observed.started.get(c.id) or c.started_at or c.created_at
    if timers.max_runtime_h is not None:
        limit = timedelta(hours=timers.max_runtime_h)
        out.stops_at[c.id] = started + limit
        fraction = (now - started) / limit if limit else 1.0
        if fraction >= 1.0:
            out.actions.append(StopContainer(c.id, user, name, "runtime", timers.sigterm_grace_s,
                                             c.devices))
            out.stopping.add(c.id)
            return
        if (stage := _stage(fraction, RUNTIME_WARN_AT)) is not None:
            _warn(out, c, "lifecycle.runtime_warning", stage=stage, suffix="",
                  message=f"{name} reaches its runtime limit of {timers.max_runtime_h:g}h at "
                  f"{(started + limit):%Y-%m-%d %H:%M} UTC and will be stopped")
    _check_idle(c, timers, observed=observed, config=config, busy=busy, out=out)


def _check_idle(c: Container, timers: Timers, *, observed: Observed, config: DesiredConfig,
                busy: bool, out: LifecycleResult) -> None:
    user, name = _label(c)
    now = observed.now
    timeout = idle_timeout(timers, config, busy)
    since = observed.idle_since.get(c.id)
    if timeout is None or since is None:
        return
    if timers.keepalive_until is not None and timers.keepalive_until > now:
        return
    started = c.started_at or c.created_at
    if now < started + timedelta(minutes=config.policies.grace_period_m):
        return
    limit = timedelta(hours=timeout)
    window = timedelta(hours=timers.idle_window_h)
    stop_at = since + max(limit, window)
    out.stops_at[c.id] = min(stop_at, out.stops_at.get(c.id, stop_at))
    if now - since < window:
        return  # not idle for the whole detection window yet
    fraction = (now - since) / limit if limit else 1.0
    if fraction >= 1.0:
        out.actions.append(StopContainer(c.id, user, name, "idle", timers.sigterm_grace_s,
                                         c.devices, (now - since).total_seconds()))
        out.stopping.add(c.id)
    elif (stage := _stage(fraction, IDLE_WARN_AT)) is not None:
        idle_h = (now - since).total_seconds() / 3600
        _warn(out, c, "lifecycle.idle_warning", stage=stage, suffix=f":{since.isoformat()}",
              message=f"{name} has been idle for {idle_h:.1f}h and will "
              f"be stopped at {stop_at:%Y-%m-%d %H:%M} UTC unless it is used (or: ds01 "
              f"keepalive {name} --for 2h)")


def _warn(out: LifecycleResult, c: Container, event: str, *, stage: float, message: str,
          suffix: str) -> None:
    key = f"{event}:{c.id}:{stage:g}{suffix}"
    out.report_keys.add(key)
    user, name = _label(c)
    out.actions.append(Warn(user, name, event, message, key))


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
    if want is not None and asked_again(want, c):
        return  # the wants planner starts or replaces it
    remove_at = c.finished_at + timedelta(hours=eff.limits.container_hold_after_stop_h)
    out.stops_at[c.id] = remove_at
    if now >= remove_at:
        out.actions.append(RemoveContainer(c.id, user, name, "held_expired"))
        out.stopping.add(c.id)  # no longer counts against its owner's containers this pass
        if want is not None and user is not None:
            out.actions.append(RemoveWant(user, want.name))
