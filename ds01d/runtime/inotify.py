"""Many folders watched one level deep through one inotify instance and one thread (Linux
``inotify(7)``, through libc): the users' want folders, of which a lab has thousands.

watchdog gives each watched folder a thread of its own (an emitter): at 2,000 users with
wants that was 500 threads, half a second of CPU in a new ds01d's first pass to set them up,
and about 20 KiB each of memory. Here a folder costs one watch descriptor.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
import threading
from collections.abc import Callable

log = logging.getLogger("ds01d")

IN_MODIFY = 0x2
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x1000000
IN_DONT_FOLLOW = 0x2000000
IN_EXCL_UNLINK = 0x4000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

MASK = (IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
        | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
"""Changes only (not opens, reads or closes), on the folder itself, never through a link."""
_HEADER = struct.Struct("iIII")
KINDS = ((IN_CREATE, "created"), (IN_DELETE, "deleted"), (IN_MODIFY, "modified"),
         (IN_MOVED_FROM, "moved"), (IN_MOVED_TO, "moved"), (IN_DELETE_SELF, "deleted"),
         (IN_MOVE_SELF, "moved"))
"""An event's kind, as watchdog names it (what ``daemon.wakes`` judges)."""


def kind_of(mask: int) -> str | None:
    return next((kind for bit, kind in KINDS if mask & bit), None)


def parse(buffer: bytes) -> list[tuple[int, int, str]]:
    """The events in what one ``read`` gave: (watch descriptor, mask, name)."""
    out = []
    at = 0
    while at + _HEADER.size <= len(buffer):
        wd, mask, _cookie, size = _HEADER.unpack_from(buffer, at)
        at += _HEADER.size
        name = buffer[at:at + size].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        at += size
        out.append((wd, mask, name))
    return out


class FolderWatch:
    """Watches folders one level deep; ``on_event(kind, path, is_folder)`` is called from
    its thread for each change (``("overflow", "", False)`` when the kernel's queue
    overflowed and events were lost: everything may have changed)."""

    def __init__(self, on_event: Callable[[str, str, bool], None]) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        self.fd = fd
        self.on_event = on_event
        self.paths: dict[int, str] = {}
        """Watch descriptor -> the folder it watches."""
        self._lock = threading.Lock()
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="inotify-folders", daemon=True)
        self._thread.start()

    def add(self, path: str) -> int:
        """Watch ``path`` (a folder, not followed if a link); its watch descriptor."""
        wd = int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), MASK))
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
        with self._lock:
            self.paths[wd] = path
        return wd

    def remove(self, wd: int) -> None:
        with self._lock:
            if self.paths.pop(wd, None) is None:
                return
        self._libc.inotify_rm_watch(self.fd, wd)  # gone already: EINVAL, nothing to do

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self.fd, self._stop_r, self._stop_w):
            os.close(fd)

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._stop_r in ready:
                return
            try:
                buffer = os.read(self.fd, 64 << 10)
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                log.error("inotify read failed: %s", e)
                return
            self._deliver(parse(buffer))

    def _deliver(self, events: list[tuple[int, int, str]]) -> None:
        for wd, mask, name in events:
            if mask & IN_Q_OVERFLOW:
                self.on_event("overflow", "", False)
                continue
            gone = mask & (IN_IGNORED | IN_MOVE_SELF)  # moved: it no longer is that folder
            with self._lock:
                folder = self.paths.pop(wd, None) if gone else self.paths.get(wd)
            if mask & IN_MOVE_SELF and folder is not None:
                self._libc.inotify_rm_watch(self.fd, wd)  # watched again where it was
            kind = kind_of(mask)
            if folder is None or kind is None:
                continue
            path = os.path.join(folder, name) if name else folder
            self.on_event(kind, path, bool(mask & IN_ISDIR))
