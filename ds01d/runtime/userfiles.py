"""What ds01d writes for each user: ``var/lib/ds01/status/<user>/``.

Each user's folder holds one ``<name>.json`` per want (its status) and ``events.jsonl`` (the
events about that user, the view ``ds01 events`` gives them). Modes say who may see what:

- ``status/`` is root's, 0711: users reach their own folder but cannot list anyone's.
- ``status/<user>/`` is the user's, 0700 (on a simulated root: no owners, same modes):
  only they (and root) read it.
- The files in it are root's, written fresh and renamed into place (``fsutil``), so nothing a
  user plants there redirects a write; ``events.jsonl`` is appended only when it is root's own
  regular file with one link, else replaced.

Derived files are rewritten when their content changes, and only then: what is on disk is
read once (the first pass, or when the folder changed behind ds01d's back: deleted, edited),
so a restart rewrites nothing that is already right, and a deleted folder heals on the next
pass. They are not fsynced: the next pass rebuilds them. An error writing one user's files
costs that user's files alone.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ds01d.core.model import Account
from ds01d.fsutil import write_atomic
from ds01d.names import INVALID, is_user_name, is_want_name

log = logging.getLogger("ds01d")
Key = tuple[str, str]
Stamp = tuple[int, int, int, int]
EVENTS = "events.jsonl"
EVENTS_KEPT = 256 << 10
"""A user's event file is rotated (to ``events.1.jsonl``) past this size."""
MAX_READ = 64 << 10
MAX_LISTED = 4096
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


def _stamp(st: os.stat_result) -> Stamp:
    """A folder as ds01d left it: its owner may set its mtime back, never its ctime."""
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class UserFiles:
    """Status and event files per user. ``account``: the user's uid/gid (``None`` for a user
    the name service does not know: nothing is written for them); ``owned=False`` on a
    simulated root (no owners are set)."""

    top: Path
    account: Callable[[str], Account | None]
    owned: bool = True
    written: dict[str, dict[str, str]] = field(default_factory=dict)
    """User -> file name -> the content on disk (as last written or read)."""
    stamps: dict[str, Stamp] = field(default_factory=dict)
    """User -> their folder's stamp after ds01d last touched it."""
    errors: int = 0
    usable: tuple[Mapping[str, Mapping[str, str]], dict[str, dict[str, str]]] | None = None
    listed: bool = False
    """Whether the folders already on disk were listed (once per ds01d): a user whose wants
    all went while no ds01d ran loses their statuses too."""
    saved: Path | None = None
    """Where :attr:`written` and :attr:`stamps` are kept across restarts (root's file): a new
    ds01d reads back only the folders whose stamp is not as kept (files in them are root's:
    their owner can add, remove or rename, which moves the folder's stamp, but not rewrite
    one); ``None``: not kept."""
    dirty: bool = False
    """Whether :attr:`written` or :attr:`stamps` changed since they were last kept."""

    def __post_init__(self) -> None:
        if self.saved is not None:
            self.stamps, self.written = _load(self.saved)

    def save(self) -> None:
        """Keep what is on disk for the next ds01d, when it changed (kept from before a later
        change, a folder's stamp no longer matches it: that folder is read back, as without
        it). A pass that changes no status writes nothing."""
        if self.saved is None or not self.dirty:
            return
        from ds01d.fsutil import save_kept

        if save_kept(self.saved, STATUS_TAG, (self.stamps, self.written)):
            self.dirty = False

    @contextlib.contextmanager
    def _top(self) -> Iterator[int]:
        self.top.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.top, _DIR)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != 0o711:
                os.fchmod(fd, 0o711)
            yield fd
        finally:
            os.close(fd)

    def _open_user(self, top: int, user: str) -> int | None:
        """The user's folder, made and given to them when missing; ``None``: not writable."""
        acct = self.account(user)
        if acct is None or (self.owned and (acct.uid is None or acct.gid is None)):
            return None
        try:
            fd = os.open(user, _DIR, dir_fd=top)  # there already, as a rule
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):
                os.mkdir(user, 0o700, dir_fd=top)
            return self._open_user(top, user)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):  # only root can plant these here
                os.unlink(user, dir_fd=top)
                return self._open_user(top, user)
            raise
        st = os.fstat(fd)
        if self.owned and (st.st_uid, st.st_gid) != (acct.uid, acct.gid):
            os.fchown(fd, acct.uid, acct.gid)  # type: ignore[arg-type]
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
        return fd

    def sync(self, files: Mapping[str, Mapping[str, str]], *, keep: Iterable[str] = ()) -> None:
        """Make each user's folder hold exactly ``files`` (user -> name -> content), apart from
        their event files; users in ``keep`` (their wants unreadable this pass) keep theirs."""
        keep = set(keep)
        files = self._usable(files)
        try:
            with self._top() as top:
                if not self.listed:
                    self._list_existing(top)
                for user in set(files) | (set(self.written) - keep):
                    if user in keep and user not in files:
                        continue
                    try:
                        self._sync_user(top, user, files.get(user, {}), partial=user in keep)
                    except OSError as e:
                        self._failed(user, e)
        except OSError as e:
            self._failed("(all)", e)

    def _usable(self, files: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
        """``files`` without the names ds01d never writes (the last answer, for the same
        ``files`` object)."""
        if self.usable is not None and self.usable[0] is files:
            return self.usable[1]
        usable = {u: {n: t for n, t in names.items() if _file_name_ok(n)}
                  for u, names in files.items() if is_user_name(u)}
        self.usable = (files, usable)
        return usable

    def _list_existing(self, top: int) -> None:
        """The users with a folder on disk, to be synced (their content read back) like
        those ds01d wrote itself."""
        with os.scandir(top) as it:
            names = [e.name for _, e in zip(range(1 << 20), it, strict=False)]
        for user in names:
            if is_user_name(user):
                self.written.setdefault(user, {})
        self.listed = True

    def _failed(self, user: str, e: OSError) -> None:
        self.errors += 1
        self.dirty = True
        self.stamps.pop(user, None)  # look at the disk again next time
        log.warning("status files of %s: %s (retried next pass)", user, e.strerror or e)

    def _sync_user(self, top: int, user: str, want: Mapping[str, str], *, partial: bool
                   ) -> None:
        if self._unchanged(top, user, want, partial=partial):
            return
        self.dirty = True
        fd = self._open_user(top, user)
        if fd is None:
            if not want:
                self.written.pop(user, None)  # nobody to write for: not tried every pass
            return
        try:
            if self.stamps.get(user) != _stamp(os.fstat(fd)):
                self.written[user] = _read_back(fd)
            have = self.written.setdefault(user, {})
            for name, text in want.items():
                if have.get(name) != text:
                    write_atomic(name, text, dir_fd=fd, durable=False)
                    have[name] = text
            for name in sorted(set(have) - set(want)) if not partial else ():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
                del have[name]
            self.stamps[user] = _stamp(os.fstat(fd))
            if not have and not want:
                self.written.pop(user, None)
        finally:
            os.close(fd)

    def _unchanged(self, top: int, user: str, want: Mapping[str, str], *, partial: bool
                   ) -> bool:
        """Nothing to write: the folder is as ds01d left it, holding exactly ``want``, and
        still its user's (one ``lstat``; ``status/`` is root's, so no user can swap the
        folder's name; an account made again under another uid gets the folder given to it)."""
        have = self.written.get(user)
        stamp = self.stamps.get(user)
        if have is None or stamp is None or (have != want and not partial):
            return False
        if partial and any(have.get(n) != t for n, t in want.items()):
            return False
        try:
            st = os.stat(user, dir_fd=top, follow_symlinks=False)
        except OSError:
            return False
        if not stat.S_ISDIR(st.st_mode) or _stamp(st) != stamp:
            return False
        if self.owned:
            acct = self.account(user)
            return acct is not None and (st.st_uid, st.st_gid) == (acct.uid, acct.gid)
        return True

    def append_event(self, user: str, line: bytes) -> None:
        """Add one event line to the user's own event file (their ``ds01 events`` view)."""
        if not is_user_name(user):
            return
        try:
            with self._top() as top:
                fd = self._open_user(top, user)
                if fd is None:
                    return
                try:
                    _append(fd, line)
                    if self.stamps.get(user) is not None:
                        self.stamps[user] = _stamp(os.fstat(fd))
                        self.dirty = True
                finally:
                    os.close(fd)
        except OSError as e:
            self._failed(user, e)


STATUS_TAG = "status-files/1"


def _load(path: Path) -> tuple[dict[str, Stamp], dict[str, dict[str, str]]]:
    """The stamps and contents of the status folders as a previous ds01d kept them (nothing
    when the file is not ds01d's own, or damaged). A folder without a stamp is read back."""
    from ds01d.fsutil import load_kept

    body = load_kept(path, STATUS_TAG)
    if not isinstance(body, tuple) or len(body) != 2 \
            or not all(isinstance(x, dict) for x in body):
        return {}, {}
    return body[0], body[1]


def status_file(name: str) -> str:
    """The file of a want's status: ``<name>.json``."""
    return f"{name}.json"


def _file_name_ok(file: str) -> bool:
    stem = file.removesuffix(".json")
    return file.endswith(".json") and (stem == INVALID or is_want_name(stem))


def _read_back(fd: int) -> dict[str, str]:
    """The status files in a user's folder as they are (regular, small, root's)."""
    out: dict[str, str] = {}
    with os.scandir(fd) as it:
        names = [e.name for _, e in zip(range(MAX_LISTED), it, strict=False)]
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        text = _read_small(fd, name)
        out[name] = text if text is not None else "\0"  # not ours: rewritten or removed
    return out


def _read_small(fd: int, name: str) -> str | None:
    try:
        ffd = os.open(name, _READ, dir_fd=fd)
    except OSError:
        return None
    try:
        st = os.fstat(ffd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > MAX_READ:
            return None
        return os.read(ffd, MAX_READ).decode("utf-8", errors="replace")
    finally:
        os.close(ffd)


def _append(fd: int, line: bytes) -> None:
    """Append to ``events.jsonl`` in the open folder ``fd``, rotating it when large; a file
    that is not root's own plain file (a planted link) is replaced, never written through."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        efd = os.open(EVENTS, flags, 0o644, dir_fd=fd)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise
        _remove(fd, EVENTS)
        efd = os.open(EVENTS, flags | os.O_EXCL, 0o644, dir_fd=fd)
    try:
        st = os.fstat(efd)
        own = st.st_uid == os.geteuid()
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or not own:
            os.close(efd)
            efd = -1
            _remove(fd, EVENTS)
            efd = os.open(EVENTS, flags | os.O_EXCL, 0o644, dir_fd=fd)
        elif st.st_size > EVENTS_KEPT:
            os.replace(EVENTS, "events.1.jsonl", src_dir_fd=fd, dst_dir_fd=fd)
            os.close(efd)
            efd = -1
            efd = os.open(EVENTS, flags | os.O_EXCL, 0o644, dir_fd=fd)
        os.write(efd, line)
    finally:
        if efd >= 0:
            os.close(efd)


def _remove(fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=fd)
    except IsADirectoryError:
        os.rename(name, f".removed-{os.getpid()}-{name}", src_dir_fd=fd, dst_dir_fd=fd)
    except FileNotFoundError:
        pass
