"""Structured journal entries for ds01's events (pystemd's sd_journal_sendv).

Each entry has a ``MESSAGE_ID`` per event type, ``DS01_USER``, ``DS01_CONTAINER``,
``DS01_DEVICE``, ``DS01_ACTION`` and a priority by severity, so that
``journalctl -u ds01d DS01_USER=alice`` lists what happened to alice. Where there is no
journald (the simulated host in a terminal) nothing is sent: the log lines on stderr stay.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import Any

_NAMESPACE = uuid.UUID("7a3d51f0-5b8e-4c1e-9d0a-0d5e01d5e010")
JOURNAL_SOCKET = "/run/systemd/journal/socket"
ERR, WARNING, NOTICE, INFO = 3, 4, 5, 6
SEVERITY = {"reconcile.error": ERR, "adapter.down": ERR, "config.invalid": ERR,
            "gpu.untracked": WARNING, "lifecycle.idle_warning": WARNING,
            "lifecycle.runtime_warning": WARNING, "lifecycle.idle_stop": NOTICE,
            "lifecycle.runtime_stop": NOTICE, "gpu.reject": NOTICE, "socket.refuse": NOTICE}


def message_id(event_type: str) -> str:
    """A stable 128-bit id per event type (journalctl MESSAGE_ID=...)."""
    return uuid.uuid5(_NAMESPACE, event_type).hex


def available() -> bool:
    return os.path.exists(JOURNAL_SOCKET)


def fields(ev: Mapping[str, Any]) -> dict[str, str]:
    details = ev.get("details") or {}
    devices = details.get("devices") or ([details["device"]] if "device" in details else [])
    out = {"MESSAGE_ID": message_id(ev["event_type"]), "DS01_ACTION": ev["event_type"],
           "PRIORITY": str(SEVERITY.get(ev["event_type"], INFO))}
    if ev.get("user"):
        out["DS01_USER"] = str(ev["user"])
    if details.get("container"):
        out["DS01_CONTAINER"] = str(details["container"])
    if devices:
        out["DS01_DEVICE"] = ",".join(map(str, devices))
    if details.get("reason") and ev["event_type"] == "socket.refuse":
        out["DS01_REASON"] = str(details["reason"])
    return out


def send(ev: Mapping[str, Any], message: str, *, identifier: str = "ds01d") -> None:
    """One journal entry for an event; failures are ignored (the event log has it)."""
    if not available():
        return
    from pystemd.journal import sendv

    f = fields(ev)
    try:
        sendv(f"PRIORITY={f.pop('PRIORITY')}", MESSAGE=message, SYSLOG_IDENTIFIER=identifier,
              **f)
    except Exception:  # the event is in events.jsonl whatever happens here
        return
