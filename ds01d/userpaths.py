"""Paths a user names for their containers: under their home, theirs, no symbolic link.

ds01 runs as root, and Docker mounts a bind source as root, following links. A path a user
asks to mount is accepted only when, as it is at the time of the check, it lies under their
home, every folder from the home down and the path itself belong to them, and no part of it
is a symbolic link. Each step is opened relative to the one before with ``O_NOFOLLOW``
(``O_PATH``: nothing is read), so a link swapped in mid-check is refused, never followed.

Used by the Docker socket (binds and mounts of a create) and by ds01d (the containers it
creates from wants), so both apply one rule.
"""

from __future__ import annotations

import os
import posixpath
import stat

MAX_DEPTH = 64
"""Folders below the home a path may go down (deeper ones are refused, not walked)."""


def lexical_problem(path: str, home: str) -> str | None:
    """What is wrong with ``path`` before looking at the disk: relative, not normal (``..``,
    ``//``, ``.``), not under ``home``, or too deep."""
    if not path.startswith("/"):
        return f"{path!r} is not an absolute path"
    if "\0" in path or posixpath.normpath(path) != path or path.startswith("//"):
        return f"{path!r} is not a plain path (no '..', '.', '//' or trailing '/')"
    if not home.startswith("/") or home == "/" or posixpath.normpath(home) != home:
        return f"your home folder {home!r} cannot hold mounts"
    if path != home and not path.startswith(home + "/"):
        return f"{path} is outside your home folder {home}"
    if path.count("/") - home.count("/") > MAX_DEPTH:
        return f"{path} is more than {MAX_DEPTH} folders below your home"
    return None


def owned_path_problem(path: str, *, uid: int, home: str) -> str | None:
    """Why ``path`` may not be mounted for the user ``uid`` whose home is ``home`` (None: it
    may). The home and every part below it must exist, belong to ``uid`` and not be a link."""
    problem = lexical_problem(path, home)
    if problem is not None:
        return problem
    rest = [p for p in path[len(home):].split("/") if p]
    flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(home, flags | os.O_DIRECTORY)
    except OSError as e:
        return f"your home folder {home} cannot be opened ({e.strerror})"
    try:
        where = home
        for i, part in enumerate([None, *rest]):
            if part is not None:
                where = f"{where}/{part}"
                new = os.open(part, flags, dir_fd=fd)
                os.close(fd)
                fd = new
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                return f"{where} is a symbolic link"
            if st.st_uid != uid:
                return f"{where} is not yours (owner uid {st.st_uid})"
            if i < len(rest) and not stat.S_ISDIR(st.st_mode):
                return f"{where} is not a folder"
    except FileNotFoundError:
        return f"{where} does not exist"
    except OSError as e:
        return f"{where} cannot be opened ({e.strerror})"
    finally:
        os.close(fd)
    return None
