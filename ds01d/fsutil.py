"""Small file-system helpers: atomic writes that never follow a link.

ds01d runs as root and writes into folders users can see and, for their status folder, own;
so every write here creates a fresh file with ``O_EXCL | O_NOFOLLOW`` (a name planted in
advance cannot redirect it), sets its owner and mode through the descriptor, and renames it
into place (a rename replaces a planted symlink; it never writes through it).
"""

from __future__ import annotations

import os


def write_atomic(path: str | os.PathLike[str], text: str, *, mode: int = 0o644,
                 durable: bool = True, dir_fd: int | None = None,
                 owner: tuple[int, int] | None = None) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), mode=mode, durable=durable, dir_fd=dir_fd,
                       owner=owner)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644,
                       durable: bool = True, dir_fd: int | None = None,
                       owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with ``data`` atomically: a new temp file in the same folder, then a
    rename. A reader sees the old file or the new one, never a half-written one.

    ``durable``: fsync the file and its folder (for what cannot be rebuilt); files ds01d
    derives again on every pass skip it. ``dir_fd``: ``path`` is a name in that open folder.
    ``owner``: (uid, gid) given to the file before it appears.
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    if dir_fd is not None and folder:
        raise ValueError("with dir_fd, path is a name in that folder")
    tmp = f".{name[:200]}.{os.urandom(6).hex()}.tmp"
    fd = os.open(os.path.join(folder, tmp) if dir_fd is None else tmp,
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                 dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            if owner is not None:
                os.fchown(f.fileno(), *owner)
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if dir_fd is None:
            os.replace(os.path.join(folder, tmp), path)
        else:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:  # noqa: SIM105 - contextlib costs ds01 want its start-up budget
            os.unlink(os.path.join(folder, tmp) if dir_fd is None else tmp, dir_fd=dir_fd)
        except OSError:
            pass  # the error being raised is the one to report
        raise
    if durable:
        _fsync_dir(folder or ".", dir_fd)


def _fsync_dir(folder: str, dir_fd: int | None) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY) if dir_fd is None else os.dup(dir_fd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def signature(path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """The file as it is now (inode, size, modification time), or None when it is not there:
    enough to know that nobody replaced or removed a file ds01d wrote."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def holds(path: str | os.PathLike[str], text: str) -> bool:
    """Whether the file already reads ``text`` (a file ds01d derives, found right at start)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(text.encode()) + 1) == text.encode()
    except OSError:
        return False


def load_kept(path: str | os.PathLike[str], tag: str) -> object | None:
    """What :func:`save_kept` kept in ``path`` under ``tag`` (a file of ds01d's own: root's,
    unreadable by others, never through a link); ``None`` when missing, damaged, another's, or
    kept under another tag (made by other code): what it held is then worked out again."""
    import pickle

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        with os.fdopen(fd, "rb") as f:
            fd = -1
            kept_tag, body = pickle.load(f)
    except Exception:  # a damaged file only costs working it out again
        return None
    finally:
        if fd >= 0:
            os.close(fd)
    return body if kept_tag == tag else None


def save_kept(path: str | os.PathLike[str], tag: str, body: object) -> bool:
    """Keep ``body`` for a later ds01d (derived state: not fsynced, worked out again without
    it); False when it could not be written (said in the log: nothing else is lost)."""
    import pickle

    try:
        write_bytes_atomic(path, pickle.dumps((tag, body), protocol=5), mode=0o600,
                           durable=False)
    except OSError as e:
        import logging

        logging.getLogger("ds01d").warning("%s not saved: %s", os.fspath(path),
                                           e.strerror or e)
        return False
    return True


def code_tag(parts: list[str]) -> str:
    """This ds01's version and a digest of its files ``parts`` (paths in the package; one
    ending in ``/``: every file of that folder): what a kept result must have been made by
    (any change to them and it is worked out again)."""
    import hashlib

    import ds01d

    top = os.path.dirname(os.path.abspath(ds01d.__file__))
    files: list[str] = []
    for part in parts:
        path = os.path.join(top, *part.rstrip("/").split("/"))
        if part.endswith("/"):
            files += [os.path.join(path, n) for n in sorted(os.listdir(path))
                      if os.path.isfile(os.path.join(path, n))]
        else:
            files.append(path)
    digest = hashlib.sha256()
    for path in files:
        try:
            with open(path, "rb") as f:
                digest.update(f.read())
        except OSError:
            digest.update(path.encode())
    return f"{ds01d.__version__}/{digest.hexdigest()[:16]}"
