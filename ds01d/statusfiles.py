"""Read what ds01d writes for each user: ``var/lib/ds01/status/<user>/<name>.json`` (one
status per want) and ``events.jsonl`` (the events about them).

A user's folder is theirs: they may plant anything in it, so each file is opened without
following links or blocking, and read only when it is a small regular file (``ds01 status
--all`` run by root must not hang on a FIFO or read a link to ``/etc/shadow``).

Standard library only: ``ds01 status`` is a command users type, and its start-up is measured.
"""

from __future__ import annotations

import os

from ds01d.jsonfast import loads

TYPE_CHECKING = False  # mypy reads this name as True; importing typing costs ~3 ms
if TYPE_CHECKING:
    from typing import Any

MAX_STATUS = 64 << 10
MAX_EVENTS = 1 << 20
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


def read_small(path: str, limit: int) -> bytes | None:
    """The bytes of a regular file of at most ``limit`` bytes; ``None`` for anything else."""
    import stat

    try:
        fd = os.open(path, _FLAGS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_statuses(status_dir: str, user: str | None = None) -> list[dict[str, Any]]:
    """Every readable status file, or one user's; a damaged or odd file is skipped."""
    try:
        folders = [user] if user is not None else sorted(os.listdir(status_dir))
    except OSError:
        return []
    out = []
    for folder in folders:
        path = os.path.join(status_dir, folder)
        try:
            names = sorted(n for n in os.listdir(path) if n.endswith(".json"))
        except OSError:
            continue
        for name in names[:4096]:
            raw = read_small(os.path.join(path, name), MAX_STATUS)
            try:
                body = loads(raw) if raw is not None else None
            except ValueError:
                continue
            row = _row(body, folder, name[:-5])
            if row is not None:
                out.append(row)
    return out


_KINDS = {"reason": (str,), "gpu_equivalents": (int, float), "since": (str, type(None)),
          "stops_at": (str, type(None)), "idle_since": (str, type(None)),
          "queue_position": (int, type(None)), "container": (str, type(None))}
PHASES = ("Pending", "Running", "Stopped", "Failed")


def _row(body: object, user: str, name: str) -> dict[str, Any] | None:
    """A status as ds01d writes it, or ``None``: a user's folder is theirs, and what they put
    there must not pass for anything else (the user is the folder's, the name the file's)."""
    if not isinstance(body, dict) or body.get("name") != name or \
            body.get("phase") not in PHASES:
        return None
    devices = body.get("devices", [])
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        return None
    for key, kinds in _KINDS.items():
        if key in body and (not isinstance(body[key], kinds) or isinstance(body[key], bool)):
            return None
    return {**body, "user": user, "devices": devices}


def read_user_events(status_dir: str, user: str) -> list[dict[str, Any]]:
    """The events about ``user`` that ds01d keeps in their folder, oldest first."""
    out = []
    for name in ("events.1.jsonl", "events.jsonl"):
        raw = read_small(os.path.join(status_dir, user, name), MAX_EVENTS)
        for line in (raw or b"").decode("utf-8", errors="replace").splitlines():
            try:
                ev = loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and "event_type" in ev:
                out.append(ev)
    return out


NOTICES_READ = 64 << 10
"""How much of the end of a user's event file ``ds01 status`` reads for their notices."""


def recent_notices(status_dir: str, user: str, since_iso: str) -> list[dict[str, Any]]:
    """The events marked ``notice`` about ``user`` since ``since_iso``, oldest first, from
    the end of their event file (the lines of notices only are parsed)."""
    import stat

    try:
        fd = os.open(os.path.join(status_dir, user, "events.jsonl"), _FLAGS)
    except OSError:
        return []
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return []
        start = max(0, st.st_size - NOTICES_READ)
        raw = os.pread(fd, NOTICES_READ, start)
    except OSError:
        return []
    finally:
        os.close(fd)
    out = []
    for line in raw.split(b"\n")[1 if start else 0:]:
        if b'"notice": true' not in line:
            continue
        try:
            ev = loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and isinstance(ev.get("details"), dict) \
                and str(ev.get("timestamp", "")) >= since_iso:
            out.append(ev)
    return out
