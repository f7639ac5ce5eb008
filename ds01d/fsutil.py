"""Small file-system helpers: atomic writes, safe folder creation."""

from __future__ import annotations

import contextlib
import os


def write_atomic(path: str | os.PathLike[str], text: str, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` atomically: temp file in the same folder, fsync, rename.

    A reader sees the old file or the new one, never a half-written one; a crash leaves at
    most a ``.tmp`` file behind, which nothing reads.
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
