"""PID -> cgroup -> container, or -> host user, from ``/proc`` (its root is a parameter).

cgroup layouts read (``/proc/<pid>/cgroup``):
- cgroup v2: ``0::/ds01.slice/ds01-student.slice/ds01-student-alice.slice/docker-<id>.scope``
- cgroup v1: one line per hierarchy, e.g. ``4:memory:/.../docker-<id>.scope``
- Docker's systemd driver: ``docker-<64 hex>.scope``; its cgroupfs driver: ``/docker/<64 hex>``.
A process outside any container is attributed to a host user: its login uid
(``/proc/<pid>/loginuid``, who logged in, surviving ``sudo``) when set, else its real uid
(``/proc/<pid>/status``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ds01d.core.model import ProcOwner

_CONTAINER = re.compile(r"(?:/docker-|/docker/)([0-9a-f]{64})(?:\.scope)?(?:/|\Z)")
UNSET_LOGINUID = 4294967295


def container_of_cgroup(text: str) -> str | None:
    """The Docker container id in a ``/proc/<pid>/cgroup`` text, if any.

    Only where Docker puts containers: a user may make cgroups of any name in the part of the
    tree systemd delegates to them (``user.slice/user-<uid>.slice/user@<uid>.service/...``),
    such as a scope named after another user's container (``systemd-run --user --scope
    --unit=docker-<id>``); a name found there is never taken for a container.
    """
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        if _delegated(path):
            continue
        found = _CONTAINER.search(path)
        if found:
            return found.group(1)
    return None


def _delegated(path: str) -> bool:
    """Whether a cgroup path lies in a part of the tree users may shape themselves."""
    return any(part == "user.slice" or part.startswith("user@") for part in path.split("/"))


def real_uid(status: str) -> int | None:
    """The real uid from a ``/proc/<pid>/status`` text (``Uid: real effective saved fs``)."""
    for line in status.splitlines():
        if line.startswith("Uid:"):
            fields = line.split()
            return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
    return None


class ProcfsAdapter:
    """The :class:`ds01d.adapters.base.Procfs` protocol over a ``/proc`` tree."""

    def __init__(self, proc: Path = Path("/proc"), *,
                 user_name: Callable[[int], str | None] | None = None) -> None:
        from ds01d.adapters.nss import user_name as nss_user_name

        self.proc = proc
        self.user_name = user_name or nss_user_name

    def _read(self, pid: int, name: str) -> str | None:
        try:
            return (self.proc / str(pid) / name).read_text(errors="replace")
        except OSError:  # gone, or not ours to read
            return None

    def owner(self, pid: int) -> ProcOwner:
        cgroup = self._read(pid, "cgroup")
        container = container_of_cgroup(cgroup) if cgroup else None
        status = self._read(pid, "status")
        uid = real_uid(status) if status else None
        login = (self._read(pid, "loginuid") or "").strip()
        who = int(login) if login.isdigit() and int(login) != UNSET_LOGINUID else uid
        return ProcOwner(pid, container, uid, None if who is None else self.user_name(who))


def tcp_peer_uid(client_port: int, server_port: int, proc: Path = Path("/proc")) -> int | None:
    """The uid owning the local end (port ``client_port``) of a TCP connection to our
    ``server_port`` on this host: the kernel lists each socket with its owner in
    ``/proc/net/tcp`` and ``tcp6``. ``None`` when not found (not a local connection)."""
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 8:
                continue
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == client_port and \
                    int(remote.rsplit(":", 1)[1], 16) == server_port:
                return int(fields[7])
    return None
