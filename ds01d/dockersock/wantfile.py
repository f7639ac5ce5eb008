"""The caller's want file, written or dropped by the Docker socket for them.

The work is done with the caller's file-system identity (``setfsuid``/``setfsgid``, which
apply to the calling thread alone), so the kernel checks it as theirs: their folder
``wants/<user>/`` is made by them when missing, and nothing of anyone else's can be touched.
Every step is also taken relative to a folder opened without following links
(``O_NOFOLLOW``, ``dir_fd``), and the file is written under a fresh name and renamed into
place, so no link a user plants is ever followed.

A want already there with the same settings is kept as it is (its place in the queue too).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator

from ds01d.config.want import Want, to_yaml
from ds01d.errors import InvalidInput

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


_LIBC = ctypes.CDLL(None, use_errno=True)
_AS_USER = threading.Lock()


@contextlib.contextmanager
def as_user(uid: int, gid: int) -> Iterator[None]:
    """This thread's file accesses are ``uid``:``gid``'s until the block ends."""
    with _AS_USER:
        old_uid, old_gid = _LIBC.setfsuid(-1), _LIBC.setfsgid(-1)
        _LIBC.setfsgid(gid)
        _LIBC.setfsuid(uid)
        try:
            if (_LIBC.setfsuid(-1), _LIBC.setfsgid(-1)) != (uid, gid):
                raise InvalidInput("cannot act as you (setfsuid refused)")
            yield
        finally:
            _LIBC.setfsuid(old_uid)
            _LIBC.setfsgid(old_gid)


def _user_dir(wants: str, user: str, uid: int, *, create: bool) -> int:
    if "/" in user or user.startswith("."):
        raise InvalidInput(f"{user!r} cannot be a folder name")
    top = os.open(wants, DIR_FLAGS)
    try:
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(user, 0o700, dir_fd=top)  # as ds01 want makes it
        try:
            fd = os.open(user, DIR_FLAGS, dir_fd=top)
        except OSError as e:
            raise InvalidInput(f"your want folder {wants}/{user} is not a folder "
                               f"({e.strerror}): ask an admin to remove it") from None
    finally:
        os.close(top)
    st = os.fstat(fd)
    if st.st_uid != uid:
        os.close(fd)
        raise InvalidInput(f"{wants}/{user} is not yours (owner uid {st.st_uid}): ask an "
                           "admin to remove it")
    return fd


def write(wants: str, want: Want, *, uid: int, gid: int, again: bool = False) -> None:
    """Write ``want`` into ``wants/<user>/<name>.yaml`` as the user ``uid``:``gid``: kept
    when the same is there, unless asked for ``again`` (a new version)."""
    with as_user(uid, gid):
        _write(wants, want, uid, again=again)


def _write(wants: str, want: Want, uid: int, *, again: bool = False) -> None:
    from ds01d.config.want import read_want, spec_hash
    from ds01d.errors import ConfigError
    from ds01d.fsutil import write_atomic

    fd = _user_dir(wants, want.user, uid, create=True)
    try:
        if not again:
            with contextlib.suppress(OSError, ConfigError):  # none, a FIFO, invalid: written
                if spec_hash(read_want(fd, want.user, want.name)) == spec_hash(want):
                    return
        write_atomic(f"{want.name}.yaml", to_yaml(want), dir_fd=fd)
    finally:
        os.close(fd)


def drop(wants: str, user: str, name: str, *, uid: int, gid: int) -> None:
    """Remove the user's want ``name`` (as ``ds01 drop container`` would)."""
    with as_user(uid, gid):
        try:
            fd = _user_dir(wants, user, uid, create=False)
        except (InvalidInput, FileNotFoundError):
            return
        try:
            os.unlink(f"{name}.yaml", dir_fd=fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
