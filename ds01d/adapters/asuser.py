"""Work on a user's behalf in their home, done as them: never root following their links.

A user's home is theirs to arrange: ``~/workspace`` may be a symlink to ``/etc`` or swapped for
one between two system calls. So what ds01 makes there is made by a child process that runs
with the user's uid and gid only (no supplementary groups, no capabilities): it can do exactly
what the user could do by hand. What ds01 then hands to Docker is checked as it is: each
component opened relative to the last with ``O_NOFOLLOW``, owned by the user, and named by
the real path of the final descriptor.
"""

from __future__ import annotations

import os
import stat
import subprocess

from ds01d.adapters.base import PermanentError, TemporaryError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_TOOLS = "/usr/bin:/bin"
TIMEOUT_S = 10.0


def run_as(uid: int, gid: int, argv: list[str], *, stdin: bytes = b"",
           timeout: float = TIMEOUT_S) -> None:
    """Run ``argv`` as uid:gid (from root; as oneself when already that uid); raise
    :class:`PermanentError` with what it said when it fails, :class:`TemporaryError` when it
    takes more than ``timeout`` seconds."""
    me = os.geteuid()
    if me not in (0, uid):
        raise PermanentError(f"cannot act as uid {uid} without root")
    switch = {"user": uid, "group": gid, "extra_groups": []} if me == 0 else {}
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout,
                              env={"PATH": _TOOLS, "LC_ALL": "C"}, cwd="/", check=False,
                              **switch)  # type: ignore[call-overload]
    except subprocess.TimeoutExpired:
        raise TemporaryError(f"{argv[0]} as uid {uid} took more than {timeout:g}s") from None
    except OSError as e:
        raise PermanentError(f"cannot run {argv[0]} as uid {uid}: {e.strerror}") from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise PermanentError(said[-1] if said else f"{argv[0]} failed as uid {uid}")


def make_dirs(uid: int, gid: int, path: str, *, mode: int = 0o750) -> None:
    """``mkdir -p`` as the user (their permissions, their links)."""
    run_as(uid, gid, ["mkdir", "-p", "-m", f"{mode:o}", "--", path])


Ident = tuple[int, int]
"""A folder as the kernel knows it: (device, inode)."""


def owned_dir(home: str, parts: list[str], uid: int) -> tuple[str, Ident]:
    """The real path and identity of ``home/parts...`` when every part under ``home`` is a
    folder and no link, the last one owned by ``uid`` and those above by ``uid`` or root
    (``home`` itself, named by the admin's user database, may be reached through links and be
    root's); :class:`PermanentError` otherwise."""
    fd = os.open(home, _DIR)
    try:
        _check(fd, home, uid, allow_root=True)
        for i, part in enumerate(parts):
            if not part or part in (".", "..") or "/" in part:
                raise PermanentError(f"{part!r} cannot be a folder name")
            try:
                nxt = os.open(part, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                where = os.path.join(home, *parts[: i + 1])
                why = "a symlink" if e.errno in (40, 20) else e.strerror
                raise PermanentError(f"{where} is {why}, not a folder of yours") from None
            os.close(fd)
            fd = nxt
            last = i == len(parts) - 1  # above the workspace, root's folders are fine too
            _check(fd, os.path.join(home, *parts[: i + 1]), uid, allow_root=not last)
        st = os.fstat(fd)
        return os.readlink(f"/proc/self/fd/{fd}"), (st.st_dev, st.st_ino)
    finally:
        os.close(fd)


def walk_real_path(path: str, uid: int) -> Ident:
    """The identity of ``path`` (a real path, as :func:`owned_dir` gave it) when no part of it
    is a link now and the last is a folder of ``uid``'s: checked again before each start, since
    Docker resolves the bind source by its name."""
    parts = [p for p in path.split("/") if p]
    fd = os.open("/", _DIR)
    try:
        for part in parts:
            try:
                nxt = os.open(part, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                raise PermanentError(f"{path} changed: {part} is "
                                     f"{'a symlink' if e.errno in (40, 20) else e.strerror}"
                                     ) from None
            os.close(fd)
            fd = nxt
        _check(fd, path, uid, allow_root=False)
        st = os.fstat(fd)
        return st.st_dev, st.st_ino
    finally:
        os.close(fd)


def mounted_ident(pid: int, target: str) -> Ident | None:
    """The identity of what is mounted at ``target`` in the container whose first process is
    ``pid`` (``None``: gone already). Raises ``PermissionError`` when ds01d may not look into
    the container (no CAP_SYS_PTRACE): the check before the start is then all there is."""
    try:
        st = os.stat(f"/proc/{pid}/root{target}")
    except PermissionError:
        raise
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _check(fd: int, where: str, uid: int, *, allow_root: bool) -> None:
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        raise PermanentError(f"{where} is not a folder")
    if st.st_uid != uid and not (allow_root and st.st_uid == 0):
        raise PermanentError(f"{where} is owned by uid {st.st_uid}, not by its user ({uid})")


NOTICES = ".ds01/notices"
"""The notice file in a container's ``/workspace`` (the workspace folder on the host)."""
NOTICES_KEPT = 64 << 10
"""Past this size the file is moved to ``notices.1`` and started again."""
_APPEND = r"""set -e
umask 077
d="$1/.ds01"
[ -d "$d" ] || mkdir -- "$d"
f="$d/notices"
if [ -e "$f" ] && [ ! -f "$f" ]; then echo "$f is not a file" >&2; exit 3; fi
if [ -f "$f" ] && [ "$(wc -c < "$f")" -gt "$2" ]; then mv -f -- "$f" "$f.1"; fi
exec dd of="$f" oflag=append,nonblock conv=notrunc status=none
"""
NOTICE_TIMEOUT_S = 2.0
"""A notice file that makes its writer wait costs its owner's notice, and the others' at most
this long."""


def append_notice(uid: int, gid: int, workspace: str, text: str) -> None:
    """Add ``text`` to ``<workspace>/.ds01/notices``, as the workspace's owner: whatever links
    they made there are followed with their rights alone."""
    run_as(uid, gid, ["sh", "-c", _APPEND, "sh", workspace, str(NOTICES_KEPT)],
           stdin=text.encode(), timeout=NOTICE_TIMEOUT_S)


def append_plain(workspace: str, text: str) -> None:
    """The same on a simulated root (no users to act as): no link is followed."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    folder = os.path.join(workspace, ".ds01")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(folder, "notices"), flags, 0o600)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PermanentError(f"{folder}/notices is not a file")
        os.write(fd, text.encode())
    finally:
        os.close(fd)
