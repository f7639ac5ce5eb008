"""Read what ds01d writes for each user: ``var/lib/ds01/status/<user>/<name>.json`` (one
status per want) and ``events.jsonl`` (the events about them).

A user's folder is theirs: they may plant anything in it, so each file is opened without
following links or blocking, and read only when it is a small regular file (``ds01 status
--all`` run by root must not hang on a FIFO or read a link to ``/etc/shadow``).

Standard library only: ``ds01 status`` is a command users type, and its start-up is measured.
"""

from __future__ import annotations

import json
import os

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
                body = json.loads(raw) if raw is not None else None
            except ValueError:
                continue
            if isinstance(body, dict):
                out.append(body)
    return out


def read_user_events(status_dir: str, user: str) -> list[dict[str, Any]]:
    """The events about ``user`` that ds01d keeps in their folder, oldest first."""
    out = []
    for name in ("events.1.jsonl", "events.jsonl"):
        raw = read_small(os.path.join(status_dir, user, name), MAX_EVENTS)
        for line in (raw or b"").decode("utf-8", errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and "event_type" in ev:
                out.append(ev)
    return out
