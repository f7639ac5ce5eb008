"""``var/log/ds01/events.jsonl``: one JSON event a line, appended atomically."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ds01d.units import iso

SCHEMA_VERSION = "1"
MAX_LINE = 4096
"""An event line is one ``write()`` of at most 4 KiB: appends of that size do not interleave."""


def event(event_type: str, *, when: datetime, user: str | None, details: Mapping[str, Any],
          source: str = "ds01d") -> dict[str, Any]:
    return {"timestamp": iso(when), "event_type": event_type,
            "schema_version": SCHEMA_VERSION, "user": user, "source": source,
            "details": dict(details)}


def encode(ev: Mapping[str, Any]) -> bytes:
    """One line; details are cut (and marked) when the line would pass :data:`MAX_LINE`."""
    line = json.dumps(ev, sort_keys=True, default=str)
    if len(line.encode()) >= MAX_LINE:
        cut = {**ev, "details": {"truncated": True,
                                 "summary": json.dumps(ev.get("details"), default=str)[:2000]}}
        line = json.dumps(cut, sort_keys=True, default=str)
    return (line + "\n").encode()


log = logging.getLogger("ds01d")


MODE = 0o640
"""The event log is root's and the admins' (``adm``-style group) to read: users see their
own events through ``ds01 events`` (their copy in ``status/<user>/events.jsonl``)."""


class EventLog:
    """The event log, the journal and each user's own copy.

    Writing an event never fails what it reports: a full disk or a read-only log costs the
    line (counted in :attr:`lost` and said in the journal), not the action that happened.
    """

    def __init__(self, path: Path,
                 user_copy: Callable[[str, bytes], None] | None = None,
                 on_event: Callable[[Mapping[str, Any]], None] | None = None) -> None:
        self.path = path
        self.user_copy = user_copy
        self.on_event = on_event
        """Told of every event recorded (the admin alerts); it must not wait."""
        self.lost = 0

    def emit(self, ev: Mapping[str, Any], message: str | None = None) -> None:
        """Record an event everywhere it belongs: the event log, the user's copy, and the
        journal with its DS01_* fields (or, without journald, a log line at its severity)."""
        from ds01d.adapters import journal

        self.append(ev)
        line = message or (f"{ev['event_type']} {ev.get('user') or '-'} "
                           f"{json.dumps(ev.get('details'), default=str)}")
        if journal.available():
            journal.send(ev, line)
        else:
            level = {journal.ERR: logging.ERROR, journal.WARNING: logging.WARNING}.get(
                journal.SEVERITY.get(str(ev["event_type"]), journal.INFO), logging.INFO)
            log.log(level, "%s", line)

    def append(self, ev: Mapping[str, Any]) -> None:
        line = encode(ev)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                         | os.O_NOFOLLOW, MODE)
            try:
                if os.fstat(fd).st_mode & 0o777 != MODE:
                    os.fchmod(fd, MODE)
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as e:
            self.lost += 1
            log.error("event not recorded in %s (%s): %s", self.path, e.strerror or e,
                      line.decode(errors="replace").strip())
        user = ev.get("user")
        if self.user_copy is not None and isinstance(user, str) and user:
            self.user_copy(user, line)
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception as e:  # an alert that cannot be queued costs the alert alone
                log.error("event not passed on for alerting: %s", e)

    def read(self) -> list[dict[str, Any]]:
        """Every readable event (a damaged line is skipped, not fatal)."""
        if not self.path.exists():
            return []
        out = []
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if isinstance(ev, dict) and "event_type" in ev:
                    out.append(ev)
        return out


class Unrecorded(EventLog):
    """Events that go nowhere: ``ds01 plan`` runs the daemon's first half and must write
    nothing."""

    def __init__(self) -> None:
        super().__init__(Path("/dev/null"))

    def emit(self, ev: Mapping[str, Any], message: str | None = None) -> None:
        del ev, message

    def append(self, ev: Mapping[str, Any]) -> None:
        del ev
