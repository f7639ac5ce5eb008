"""Notices on a user's open terminals, as ``write(1)`` gives them: the user's sessions are read
from utmp, and each terminal is written only when it is theirs.

utmp is written by login, sshd and terminal multiplexers (group ``utmp``), so its lines are
not trusted: a line must name a terminal (``pts/N``, ``ttyX``); the device is looked up
relative to ``/dev`` without following links, must be a character device owned by the user
before it is opened, is opened ``O_NOCTTY | O_NONBLOCK | O_NOFOLLOW`` (never becoming ds01d's
controlling terminal, never waiting on a full one), and must still be the user's terminal
after the open (``fstat``, ``isatty``). A terminal whose owner turned messages off
(``mesg n``: no group write) is left alone. Each user gets at most ``per_user`` notices on
their terminals per ``window_s``; the rest reach them through the notice file and
``ds01 status``.

ref: utmp(5) (``struct utmp``, ``USER_PROCESS``), write(1), mesg(1).
"""

from __future__ import annotations

import os
import re
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

UTMP = "/var/run/utmp"
DEV = "/dev"
ENTRY = struct.Struct("<hxxi32s4s32s256shhiii4i20x")
"""glibc's ``struct utmp`` on Linux (384 bytes): type, pid, line, id, user, host, exit,
session, time, address."""
USER_PROCESS = 7
MAX_ENTRIES = 8192
MAX_TERMINALS = 16
"""Terminals of one user written per notice."""
MAX_TEXT = 2000
_LINE = re.compile(r"(pts/[0-9]{1,7}|tty[A-Za-z0-9]{1,8})")
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_TTY = os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


def utmp_entry(user: str, line: str, *, kind: int = USER_PROCESS, pid: int = 1) -> bytes:
    """One utmp record (for tests, and to document the layout)."""
    return ENTRY.pack(kind, pid, line.encode(), line[-4:].encode(), user.encode(), b"",
                      0, 0, 0, 0, 0, 0, 0, 0, 0)


def sessions(utmp: str, user: str) -> list[str]:
    """The terminal lines (``pts/3``) of ``user``'s login sessions, as utmp lists them."""
    try:
        fd = os.open(utmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        raw = os.read(fd, ENTRY.size * MAX_ENTRIES)
    except OSError:
        return []
    finally:
        os.close(fd)
    name = user.encode()
    out: list[str] = []
    for off in range(0, len(raw) - ENTRY.size + 1, ENTRY.size):
        kind, _, line, _, who, *_ = ENTRY.unpack_from(raw, off)
        if kind != USER_PROCESS or who.split(b"\0", 1)[0] != name:
            continue
        text = line.split(b"\0", 1)[0].decode("ascii", errors="replace")
        if _LINE.fullmatch(text) and text not in out:
            out.append(text)
    return out


def framed(text: str, when: str) -> bytes:
    """What a terminal is sent: the notice, control characters shown as ``\\xNN``, with its
    own line endings (the terminal may be in raw mode)."""
    safe = "".join(c if c.isprintable() or c == "\n" else f"\\x{ord(c):02x}"
                   for c in text[:MAX_TEXT])
    body = "\r\n".join(safe.splitlines())
    return f"\r\n*** ds01 notice ({when}) ***\r\n{body}\r\n".encode()


@dataclass
class Terminals:
    """A user's open terminals. ``utmp`` and ``dev`` are parameters so that tests use real
    pseudo-terminals and a utmp file they write."""

    utmp: str = UTMP
    dev: str = DEV
    per_user: int = 4
    window_s: float = 600.0
    clock: Callable[[], float] = time.monotonic
    sent: dict[str, list[float]] = field(default_factory=dict)
    """User -> when their terminals were last written (within the window)."""

    def write(self, user: str, uid: int, text: str, *, when: str) -> int:
        """Write ``text`` to each terminal of ``user`` that is theirs (uid ``uid``); how many
        were written (0 also when the user's notices are over the rate limit)."""
        if not self._allowed(user):
            return 0
        payload = framed(text, when)
        return sum(self._write_one(line, uid, payload)
                   for line in sessions(self.utmp, user)[:MAX_TERMINALS])

    def _allowed(self, user: str) -> bool:
        now = self.clock()
        recent = [t for t in self.sent.get(user, []) if now - t < self.window_s]
        if len(recent) >= self.per_user:
            self.sent[user] = recent
            return False
        self.sent[user] = [*recent, now]
        return True

    def _write_one(self, line: str, uid: int, payload: bytes) -> bool:
        *folders, name = line.split("/")
        try:
            fd = os.open(self.dev, _DIR)
        except OSError:
            return False
        try:
            for folder in folders:
                sub = os.open(folder, _DIR | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = sub
            if not _theirs(os.stat(name, dir_fd=fd, follow_symlinks=False), uid):
                return False
            tty = os.open(name, _TTY, dir_fd=fd)
        except OSError:
            return False
        finally:
            os.close(fd)
        try:
            if not _theirs(os.fstat(tty), uid) or not os.isatty(tty):
                return False
            return os.write(tty, payload) > 0
        except OSError:  # full (O_NONBLOCK), hung up, gone
            return False
        finally:
            os.close(tty)


def _theirs(st: os.stat_result, uid: int) -> bool:
    """A character device of the user's that takes messages (``mesg y``: group-writable)."""
    return stat.S_ISCHR(st.st_mode) and st.st_uid == uid and bool(st.st_mode & stat.S_IWGRP)
