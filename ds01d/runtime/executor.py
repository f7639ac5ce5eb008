"""Apply a plan through the adapters: idempotent, one failing object never stalls the others.

Per-object backoff (kopf-style): a :class:`TemporaryError` waits 1, 2, 3, 5, 8 ... seconds
(capped at 60) before that object is tried again; a success resets it. A
:class:`PermanentError` is reported (status reason, event) and retried only after the cap.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ds01d.adapters.base import PermanentError
from ds01d.core import actions as a
from ds01d.core.lifecycle import span
from ds01d.core.mig import RELAYOUT
from ds01d.core.model import Expected, Observed
from ds01d.core.plan import Plan
from ds01d.core.status import WantStatus
from ds01d.paths import Paths
from ds01d.runtime.events import EventLog, event
from ds01d.runtime.metrics import Totals
from ds01d.runtime.notices import Notice
from ds01d.runtime.observe import Adapters
from ds01d.runtime.userfiles import UserFiles, status_file
from ds01d.units import parse_when

log = logging.getLogger("ds01d")
BACKOFF_S = (1, 2, 3, 5, 8, 13, 21, 34, 55, 60)
WAITED_S = 60.0
"""A want served this long after ds01d first saw it had to wait: its owner is told."""

_NEEDS = {
    "docker": (a.CreateContainer, a.StartContainer, a.StopContainer, a.RemoveContainer,
               a.RemoveWant, a.Warn, a.ReleaseDevices, *a.MIG_STEPS),
    "systemd": (a.EnsureSlice, a.SetSliceProperties, a.StopSlice, a.CreateContainer,
                a.StartContainer),
}


def needs(x: a.Action) -> set[str]:
    """The adapters an action depends on: NVML only for what involves devices (a CPU-only
    container does not wait for a GPU driver to answer) and for MIG steps."""
    out = {name for name, kinds in _NEEDS.items() if isinstance(x, kinds)}
    devices = (x.spec.devices if isinstance(x, a.CreateContainer)
               else x.devices if isinstance(x, a.StartContainer) else ())
    if devices or isinstance(x, (a.FlagUntracked, *a.MIG_STEPS)):
        out.add("nvml")
    return out


def blocking(adapter_errors: Mapping[str, str]) -> bool:
    """Whether an adapter statuses depend on could not be read at all: with Docker or systemd
    unseen nothing can be said of a want (NVML unseen only makes GPU wants wait)."""
    return any(name in _NEEDS for name in adapter_errors)


def safe_actions(plan: Plan, adapter_errors: Mapping[str, str]) -> list[a.Action]:
    """Drop what depends on an adapter that could not be read this pass: with Docker unseen,
    every want would look container-less and be created twice; with NVML unseen, devices
    would look free."""
    return [x for x in plan.actions if not needs(x) & adapter_errors.keys()]


@dataclass
class Backoff:
    until: float
    step: int
    message: str
    permanent: bool


@dataclass
class Executor:
    adapters: Adapters
    paths: Paths
    events: EventLog
    files: UserFiles | None = None
    """Where statuses are written (``None``: nowhere, as in planner tests)."""
    rendered: dict[tuple[str, str], tuple[WantStatus, str | None, str]] = field(
        default_factory=dict)
    """Each status as last rendered to text (rendered again only when it changed)."""
    files_of: tuple[tuple[WantStatus, ...], dict[str, str], dict[str, dict[str, str]]] | None \
        = None
    """The statuses last written, the errors shown with them, and the files made of them."""
    backoff: dict[str, Backoff] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)
    started: dict[str, datetime] = field(default_factory=dict)
    """Containers this executor started this pass (their runtime counts from now)."""
    expected: dict[tuple[str, str], Expected] = field(default_factory=dict)
    """Containers this executor created this pass (not made twice while not yet listed)."""
    """(user, name) -> why ds01 stopped it: shown in its status while it stays stopped."""
    totals: Totals = field(default_factory=Totals)
    flagged: dict[str, str | None] = field(default_factory=dict)
    """Report key of a flag -> its user (for the end event, while this process knows it)."""
    warned: dict[str, datetime] = field(default_factory=dict)
    """A coming stop (``Warn.announces``) -> when its owner was first told of it."""
    tell: Callable[[Notice, datetime], None] | None = None
    """Where notices go (terminals, notice files): ``UserNotices.tell``; ``None``: nowhere."""

    def apply(self, actions: list[a.Action], now: datetime) -> tuple[int, int]:
        """Run each action whose object is not backing off: (how many ran, how many failed)."""
        ran = failed = 0
        t = now.timestamp()
        for action in actions:
            b = self.backoff.get(action.key)
            if b is not None and t < b.until:
                continue
            ran += 1
            try:
                self._run(action, now)
            except Exception as e:  # every failure is per object, by design
                failed += 1
                self._failed(action, e, t, now)
            else:
                self.backoff.pop(action.key, None)
        return ran, failed

    def _failed(self, action: a.Action, e: Exception, t: float, now: datetime) -> None:
        old = self.backoff.get(action.key)
        permanent = isinstance(e, PermanentError)
        self.totals.errors[type(action).__name__] += 1
        step = len(BACKOFF_S) - 1 if permanent else min((old.step + 1) if old else 0,
                                                        len(BACKOFF_S) - 1)
        self.backoff[action.key] = Backoff(t + BACKOFF_S[step], step, str(e), permanent)
        user = getattr(action, "user", None) or getattr(getattr(action, "spec", None), "user",
                                                         None)
        log.warning("%s failed (%s, retry in %ss): %s", action.key,
                    "permanent" if permanent else "temporary", BACKOFF_S[step], e)
        self.events.append(event("reconcile.error", when=now, user=user,
                                 details={"object": action.key, "action": type(action).__name__,
                                          "error": str(e), "permanent": permanent}))

    def _run(self, x: a.Action, now: datetime) -> None:
        handler = getattr(self, f"_do_{type(x).__name__}")
        handler(x, now)

    def _emit(self, kind: str, now: datetime, user: str | None, **details: Any) -> None:
        self.events.emit(event(kind, when=now, user=user, details=details))

    def _do_EnsureSlice(self, x: a.EnsureSlice, now: datetime) -> None:
        self.adapters.systemd.start_slice(x.name, x.properties)
        self._emit("slice.create", now, None, slice=x.name, properties=dict(x.properties))

    def _do_SetSliceProperties(self, x: a.SetSliceProperties, now: datetime) -> None:
        self.adapters.systemd.set_slice_properties(x.name, x.properties)
        self._emit("slice.update", now, None, slice=x.name, properties=dict(x.properties))

    def _do_StopSlice(self, x: a.StopSlice, now: datetime) -> None:
        self.adapters.systemd.stop_slice(x.name)
        self._emit("slice.stop", now, None, slice=x.name)

    def notify(self, notice: Notice, now: datetime, **details: Any) -> None:
        """Tell a user something: the one entry point for notices (``Warn`` actions come here,
        and so may anything else that concerns one user). The event (``notice.kind``, marked
        ``notice``) is what ``ds01 status`` shows; their terminals and the notice file in the
        container get it from a background sender."""
        self._emit(notice.kind, now, notice.user, container=notice.container,
                   **details, **_marked(notice))
        self._deliver(notice, now)

    def _deliver(self, notice: Notice | None, now: datetime) -> None:
        if notice is not None and self.tell is not None:
            self.tell(notice, now)

    def _served(self, user: str, name: str, devices: tuple[str, ...], now: datetime, *,
                kind: str, asked: datetime | None) -> Notice | None:
        """A want that had to wait (queued when last shown, or asked for a minute or more
        ago: also across a restart of ds01d) is served: its owner hears of it."""
        known = self.rendered.get((user, name))
        queued = known is not None and known[0].phase == "Pending" and bool(
            known[0].queue_position)
        if not queued and (asked is None or (now - asked).total_seconds() < WAITED_S):
            return None
        since = asked or (known[0].since if known is not None else None)
        waited = "" if since is None else f" after {_minutes(now - since)}"
        what = ", ".join(d[:12] for d in devices) or "no GPU"
        return Notice(user, name, f"{name} reached the front of the queue{waited}: it is "
                      f"starting with {what} (ds01 status {name})", kind)

    def _do_CreateContainer(self, x: a.CreateContainer, now: datetime) -> None:
        s = x.spec
        cid = self.adapters.docker.create_and_start(s)
        self.reasons.pop((s.user, s.want_name), None)
        self.started[cid] = now
        self.expected[(s.user, s.want_name)] = Expected(cid, tuple(s.devices), now)
        asked = s.labels.get("ds01.requested_at")
        served = self._served(s.user, s.want_name, s.devices, now, kind="container.create",
                              asked=parse_when(asked) if asked else None)
        waited = (now - parse_when(asked)).total_seconds() if asked else None
        self._emit("container.create", now, s.user, container=s.want_name, id=cid[:12],
                   image=s.image, devices=list(s.devices), group=s.labels.get("ds01.group"),
                   requested_at=asked, waited_s=waited, **_marked(served))
        self._deliver(served, now)
        if s.devices:
            self._emit("gpu.allocate", now, s.user, container=s.want_name,
                       devices=list(s.devices), gpu_equivalents=round(x.gpu_equivalents, 4))

    def _do_StartContainer(self, x: a.StartContainer, now: datetime) -> None:
        self.adapters.docker.start(x.container_id)
        self.reasons.pop((x.user, x.name), None)  # a new run: how the last one ended is past
        self.started[x.container_id] = now
        served = self._served(x.user, x.name, x.devices, now, kind="container.start",
                              asked=x.asked_at)
        self._emit("container.start", now, x.user, container=x.name, id=x.container_id[:12],
                   **_marked(served))
        self._deliver(served, now)
        if x.devices:
            self._emit("gpu.allocate", now, x.user, container=x.name, devices=list(x.devices),
                       gpu_equivalents=round(x.gpu_equivalents, 4))

    def _do_StopContainer(self, x: a.StopContainer, now: datetime) -> None:
        self.adapters.docker.stop(x.container_id, x.grace_s)
        if x.user:
            self.reasons[(x.user, x.name)] = x.reason
        kind = {"idle": "lifecycle.idle_stop", "runtime": "lifecycle.runtime_stop"}.get(
            x.reason, "container.stop")
        if x.reason in ("idle", "runtime"):
            self.totals.lifecycle[f"{x.reason}_stop"] += 1
        why = stopped_why(x) if x.user else None
        told = None if why is None or x.user is None else Notice(x.user, x.name, why, kind)
        self._emit(kind, now, x.user, container=x.name, id=x.container_id[:12], reason=x.reason,
                   devices=list(x.devices), idle_for_s=x.idle_for_s, **_marked(told))
        if x.devices:
            self._emit("gpu.release", now, x.user, container=x.name, devices=list(x.devices),
                       reason=x.reason)
        self._deliver(told, now)

    def _do_ReleaseDevices(self, x: a.ReleaseDevices, now: datetime) -> None:
        """Stamped when it stopped (``x.at``): reports count the devices held until then."""
        self.reasons[(x.user, x.name)] = x.reason
        self._emit("gpu.release", x.at, x.user, container=x.name, devices=list(x.devices),
                   reason="exited", how=x.reason, id=x.container_id[:12])

    def _do_RemoveContainer(self, x: a.RemoveContainer, now: datetime) -> None:
        self.adapters.docker.remove(x.container_id)
        self.totals.lifecycle["remove"] += 1
        self._emit("container.remove", now, x.user, container=x.name, id=x.container_id[:12],
                   reason=x.reason)

    def _do_RemoveWant(self, x: a.RemoveWant, now: datetime) -> None:
        remove_want(self.paths, x.user, x.name)
        self._emit("want.expire", now, x.user, container=x.name)

    def _do_Warn(self, x: a.Warn, now: datetime) -> None:
        kind, _, action = x.event_type.partition(".")
        if kind == "lifecycle":
            self.totals.lifecycle[action] += 1
        if x.user:
            self.notify(Notice(x.user, x.name, x.message, x.event_type, x.managed), now)
        else:
            self._emit(x.event_type, now, x.user, container=x.name, message=x.message)
        self.reported.add(x.report_key)
        if x.announces is not None:
            self.warned.setdefault(x.announces, now)

    def _do_Alert(self, x: a.Alert, now: datetime) -> None:
        self.events.emit(event(x.event_type, when=now, user=x.user,
                               details={**x.details, "message": x.message}), x.message)
        self.reported.add(x.report_key)

    def _do_SetMigMode(self, x: a.SetMigMode, now: datetime) -> None:
        self.adapters.nvml.set_mig_mode(x.gpu_uuid, x.enabled)
        self._emit("mig.mode", now, None, gpu=x.gpu_index, uuid=x.gpu_uuid,
                   enabled=x.enabled)

    def _do_DestroyMigInstance(self, x: a.DestroyMigInstance, now: datetime) -> None:
        self.adapters.nvml.destroy_instance(x.gpu_uuid, x.gpu_instance_id)
        self._emit("mig.destroy", now, None, gpu=x.gpu_index, gpu_instance=x.gpu_instance_id,
                   profile=x.profile, device=x.uuid or None)

    def _do_CreateMigInstance(self, x: a.CreateMigInstance, now: datetime) -> None:
        uuid = self.adapters.nvml.create_instance(x.gpu_uuid, x.profile_id, x.start)
        self._emit("mig.create", now, None, gpu=x.gpu_index, profile=x.profile,
                   placement=[x.start, x.size], device=uuid)

    def _do_MigEvent(self, x: a.MigEvent, now: datetime) -> None:
        self.events.emit(event(x.event_type, when=now, user=None,
                               details={**x.details, "message": x.message}), x.message)
        self.reported.add(x.report_key)

    def _do_FlagUntracked(self, x: a.FlagUntracked, now: datetime) -> None:
        told = None if x.user is None else Notice(x.user, x.container, untracked_words(x),
                                                  "gpu.untracked", managed=False)
        self._emit("gpu.untracked", now, x.user, pid=x.pid, device=x.device, gpu=x.gpu_index,
                   container=x.container, used_memory_mib=x.used_memory_mib, **x.details,
                   **_marked(told))
        self.reported.add(x.report_key)
        self.flagged[x.report_key] = x.user
        self._deliver(told, now)

    def forget_gone(self, plan: Plan, observed: Observed) -> None:
        """Stop reasons of containers that are gone, and the backoff of objects this pass no
        longer acts on, are forgotten: what is remembered stays as small as what runs."""
        kept = {(c.owner, c.want_name) for c in observed.containers if c.managed}
        self.reasons = {k: v for k, v in self.reasons.items() if k in kept}
        keys = {x.key for x in plan.actions}
        self.backoff = {k: b for k, b in self.backoff.items() if k in keys}

    def forget_reports(self, current: frozenset[str], now: datetime | None = None) -> None:
        """Conditions that ended may be reported again when they come back; the end of GPU
        use nobody was allocated is an event too (``gpu.untracked_end``: reports count its
        GPU-hours)."""
        for key in sorted(self.reported - set(current)):
            kind, _, rest = key.partition(":")
            if kind == "gpu.untracked" and now is not None:
                pid, _, device = rest.partition(":")  # the key names both: kept across restarts
                self._emit("gpu.untracked_end", now, self.flagged.pop(key, None),
                           pid=int(pid), device=device)
        self.reported &= set(current)
        for key in [k for k in self.warned if k not in current]:
            del self.warned[key]

    def write_statuses(self, statuses: tuple[WantStatus, ...], *,
                       keep: frozenset[str] = frozenset()) -> None:
        """Every status file, rewritten when its content changes (see ``userfiles``); the
        folders of users in ``keep`` (their wants unreadable this pass) lose nothing."""
        if self.files is None:
            return
        errors = {k.split("/", 1)[1]: b.message for k, b in self.backoff.items()
                  if b.permanent and k.startswith("container/")}
        last = self.files_of
        if last is not None and last[0] is statuses and last[1] == errors:
            out = last[2]  # the same statuses (a kept plan): the same files
        else:
            out = self._render(statuses, errors)
            self.files_of = (statuses, errors, out)
        self.files.sync(out, keep=keep)

    def _render(self, statuses: tuple[WantStatus, ...], errors: Mapping[str, str]
                ) -> dict[str, dict[str, str]]:
        """User -> status file name -> its text (texts of unchanged statuses kept)."""
        out: dict[str, dict[str, str]] = {}
        rendered: dict[tuple[str, str], tuple[WantStatus, str | None, str]] = {}
        for s in statuses:
            error = errors.get(f"{s.user}/{s.name}") if errors and s.phase in (
                "Running", "Pending") else None
            key = (s.user, s.name)
            known = self.rendered.get(key)
            if known is not None and known[0] == s and known[1] == error:
                text = known[2]
            else:
                body = s.to_json() | ({"phase": "Failed", "reason": error} if error else {})
                text = json.dumps(body, sort_keys=True) + "\n"  # one line: the C encoder
            rendered[key] = (s, error, text)
            out.setdefault(s.user, {})[status_file(s.name)] = text
        self.rendered = rendered
        return out


def _marked(notice: Notice | None) -> dict[str, Any]:
    """The fields that make an event a notice its user sees in ``ds01 status``."""
    return {} if notice is None else {"message": notice.message, "notice": True}


def _minutes(span: Any) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f}h"


_STOPPED = {"idle": "it was idle", "runtime": "it reached its runtime limit"}


def stopped_why(x: a.StopContainer) -> str | None:
    """What the owner of a container ds01d stopped is told (``None``: nothing; they asked)."""
    if x.reason in ("dropped", "duplicate", "user"):
        return None
    if x.reason == "replaced":
        return (f"{x.name} was stopped to be made anew with the settings you asked for; "
                "/workspace is kept")
    if x.reason == RELAYOUT:
        return (f"{x.name} was stopped and removed: its GPU's MIG layout changes. It is made "
                "again on the new layout when a device is free; /workspace is kept")
    why = _STOPPED.get(x.reason, x.reason)
    if x.reason == "idle" and x.idle_for_s:
        why += f" for {span(x.idle_for_s)}"
    return (f"{x.name} was stopped: {why}. Its devices are released; /workspace is kept. "
            f"To start it again: ds01 want container {x.name} with the same options "
            f"(ds01 status {x.name} shows them)")


def untracked_words(x: a.FlagUntracked) -> str:
    """What a user whose process uses a GPU nobody gave them is told."""
    return (f"a process of yours (pid {x.pid}) uses GPU {x.gpu_index} ({x.device[:12]}), "
            "which ds01 did not give you: it counts as busy for everyone and is reported to "
            "the admins. Run GPU work in a ds01 container instead (ds01 gpus; ds01 want "
            "container NAME --gpus 1 or --mig PROFILE)")


def remove_want(paths: Paths, user: str, name: str) -> None:
    """Delete a want file as root without following anything its owner controls: the
    user's folder is opened with ``O_NOFOLLOW`` and the file unlinked relative to it."""
    import os

    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        spool = os.open(paths.wants, flags)
    except FileNotFoundError:
        return
    try:
        try:
            folder = os.open(user, flags, dir_fd=spool)
        except FileNotFoundError:
            return
        try:
            os.unlink(f"{name}.yaml", dir_fd=folder)
        except FileNotFoundError:
            pass
        finally:
            os.close(folder)
    finally:
        os.close(spool)
