"""Users' want files (``var/lib/ds01/wants/<user>/<name>.yaml``), read as root, trusting nothing.

Every name, folder and file here is written by a user who may be hostile. So:

- The spool is opened once per pass; each user's folder is opened relative to it with
  ``O_NOFOLLOW | O_DIRECTORY`` and checked with ``fstat``; every file is opened relative to
  that folder with ``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat`` before it is read
  (a regular file, one link, owned by the folder's user or root, small). A folder swapped for a
  symlink mid-pass is refused, never followed.
- A folder belongs to a user only when that user (or root) owns it. A folder named after a
  user but owned by someone else is moved out of the spool (``var/lib/ds01/foreign``) with an
  event naming its owner, and nothing is written for the user it names.
- What one user's folder may cost a pass is bounded: :data:`MAX_ENTRIES` entries listed,
  :data:`MAX_WANTS` want files considered, :data:`BYTES_PER_PASS` of changed files read (the
  rest wait for the next pass), each file within ``yamlsrc.USER``. Files are parsed again only
  when they change.
- Whatever goes wrong with one user's files costs that user alone: their wants become Failed
  or *held* (their containers kept exactly as they are), never a failed pass. Only a want file
  that is gone (its owner dropped it) lets ds01d retire a container.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ds01d.config.want import Want, from_yaml
from ds01d.errors import ConfigError
from ds01d.names import INVALID, is_user_name, is_want_name, printable
from ds01d.yamlsrc import USER, open_error, read_fd

Key = tuple[str, str]
Stamp = tuple[int, ...]
Listings = dict[str, tuple[Stamp, tuple[list[str], list[str]]]]
"""User -> their folder's stamp, and (want file names to read, names ds01 cannot use)."""

MAX_ENTRIES = 1024
"""Entries listed in one user's folder at most; beyond that the folder is not read at all."""
MAX_WANTS = 64
"""Want files read per user; the ones after (by name) are held, not dropped."""
BYTES_PER_PASS = 256 << 10
"""Bytes of changed want files read per user per pass; the rest are read in later passes."""
MOVES_PER_PASS = 1024
"""Foreign spool entries moved aside per pass at most (each costs a rename): a flood of
``mkdir`` in the spool costs a pass a bounded time, and is cleared over a few passes."""
READS_PER_PASS = 8
"""Changed want files parsed per user per pass (each within ``yamlsrc.USER``): what one
user's folder costs a pass stays a few milliseconds, however many files they rewrite."""
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


@dataclass(frozen=True)
class Foreign:
    """Spool entries one uid made that are not theirs to make (named after another user, or
    after nobody): moved aside this pass, one record per uid."""

    owner_uid: int
    owner: str | None
    names: tuple[str, ...]
    """The first few, made safe to print."""
    moved: int
    """How many were moved aside (the rest wait for later passes)."""


@dataclass(frozen=True)
class WantsRead:
    """Every user's wants as read in one pass."""

    wants: tuple[Want, ...] = ()
    failed: Mapping[Key, str] = field(default_factory=dict)
    """(user, name) -> why the file was refused (shown as Failed; its container is held)."""
    held: frozenset[Key] = frozenset()
    """Wants that exist but could not be used this pass: their containers stay as they are."""
    held_users: Mapping[str, str] = field(default_factory=dict)
    """User -> why their folder could not be read: all their containers stay as they are."""
    foreign: tuple[Foreign, ...] = ()
    folders: tuple[str, ...] = ()
    """The users whose want folder was read (theirs, a folder): the ones to watch."""


@dataclass
class _Acc:
    wants: list[Want] = field(default_factory=list)
    failed: dict[Key, str] = field(default_factory=dict)
    held: set[Key] = field(default_factory=set)
    held_users: dict[str, str] = field(default_factory=dict)
    foreign: dict[int, tuple[str | None, list[str], int]] = field(default_factory=dict)
    moves_left: int = MOVES_PER_PASS
    folders: list[str] = field(default_factory=list)

    def fail(self, key: Key, why: str) -> None:
        self.failed[key] = why
        self.held.add(key)


class _Refused(Exception):
    """One file or folder refused; the message is for its owner."""


def _stamp(st: os.stat_result) -> Stamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_uid,
            st.st_mode, st.st_nlink)


def _bad_names(user: str, bad: list[str], acc: _Acc) -> None:
    """The files of a folder whose names ds01 cannot use: one error for them all."""
    if bad:
        shown = ", ".join(printable(b, 40) for b in bad[:3]) + (" ..." * (len(bad) > 3))
        acc.failed[(user, INVALID)] = (
            f"{len(bad)} want file(s) with names ds01 cannot use ({shown}): names are a-z, "
            "0-9, . _ -, start with a letter or digit, at most 63 characters")


def _too_many(user: str, name: str, acc: _Acc) -> None:
    acc.fail((user, name[:-5]), f"more than {MAX_WANTS} want files: this one is not read "
             "(ds01 drop container the ones you no longer need)")


@dataclass
class WantSource:
    """Reads the spool; each file is parsed again only when its ``stat`` changed.

    ``user_name``: uid -> user name through NSS, to check that a folder is owned by the user it
    is named after; ``None`` on a simulated host (no ownership there: any name is a user).
    ``uid_of``: user name -> uid, only needed for folders root made for a user.
    """

    wants_dir: Path
    user_name: Callable[[int], str | None] | None = None
    uid_of: Callable[[str], int | None] | None = None
    foreign_dir: Path | None = None
    cache: dict[Key, tuple[Stamp, Want | str]] = field(default_factory=dict)
    listings: Listings = field(default_factory=dict)
    saved: Path | None = None
    """Where the parsed wants are kept across restarts (root's file), so that a new ds01d
    parses only the files that changed meanwhile; ``None``: not kept."""
    saved_cache: dict[Key, tuple[Stamp, Want | str]] | None = None

    def __post_init__(self) -> None:
        if self.saved is not None:
            self.cache, self.listings = load_cache(self.saved)
            self.saved_cache = dict(self.cache)

    def save(self) -> None:
        """Keep the parsed wants (and the folders' listings) for the next ds01d, when the wants
        changed (errors are said). A listing kept from before a later change no longer
        matches its folder's stamp: that folder is read through a descriptor as always."""
        if self.saved is None or self.cache == self.saved_cache:
            return
        if save_cache(self.saved, self.cache, self.listings):
            self.saved_cache = dict(self.cache)

    def load(self) -> WantsRead:
        acc = _Acc()
        try:
            spool = os.open(self.wants_dir, _DIR)
        except OSError:
            self.cache.clear()
            return WantsRead()
        try:
            names = self._entries(spool)
            owners: dict[int, str | None] = {}
            for user in names:
                self._user(spool, user, owners, acc)
        finally:
            os.close(spool)
        users = set(names)
        self.cache = {k: v for k, v in self.cache.items() if k[0] in users}
        self.listings = {k: v for k, v in self.listings.items() if k in users}
        foreign = tuple(Foreign(uid, owner, tuple(names[:5]), moved)
                        for uid, (owner, names, moved) in sorted(acc.foreign.items()))
        return WantsRead(tuple(acc.wants), acc.failed, frozenset(acc.held), acc.held_users,
                         foreign, tuple(acc.folders))

    @staticmethod
    def _entries(spool: int) -> list[str]:
        with os.scandir(spool) as it:
            return [e.name for e in it]

    def _user(self, spool: int, user: str, owners: dict[int, str | None], acc: _Acc) -> None:
        """One user's folder; nothing that goes wrong here leaves this function."""
        try:
            self._folder(spool, user, owners, acc)
        except _Refused as e:
            acc.held_users[user] = str(e)
        except Exception as e:
            acc.held_users[user] = f"ds01d could not read your want folder ({type(e).__name__})"

    def _owner_of(self, user: str, st: os.stat_result, owners: dict[int, str | None]
                  ) -> int | None:
        """The uid the folder's wants belong to; ``None``: not this user's (moved aside)."""
        if self.user_name is None:
            return st.st_uid
        if st.st_uid == 0:
            uid = self.uid_of(user) if self.uid_of is not None else None
            if uid is None:
                raise _Refused(f"{user} cannot be looked up (is the name service up?)")
            return uid
        if st.st_uid not in owners:
            owners[st.st_uid] = self.user_name(st.st_uid)
        owner = owners[st.st_uid]
        if owner == user:
            return st.st_uid
        if owner is None:
            raise _Refused(f"the owner of wants/{user} (uid {st.st_uid}) cannot be looked up")
        return None

    def _folder(self, spool: int, user: str, owners: dict[int, str | None], acc: _Acc) -> None:
        if not is_user_name(user):
            if self.user_name is not None:
                self._move_aside(spool, user, os.stat(user, dir_fd=spool,
                                                      follow_symlinks=False), owners, acc)
            return
        st = os.stat(user, dir_fd=spool, follow_symlinks=False)
        uid = self._owner_of(user, st, owners)
        if uid is None:
            self._move_aside(spool, user, st, owners, acc)
            return
        if not stat.S_ISDIR(st.st_mode):
            raise _Refused(f"wants/{user} is not a folder")
        if self._unchanged(spool, user, st, uid, acc):
            return
        try:
            fd = os.open(user, _DIR, dir_fd=spool)
        except OSError as e:
            raise _Refused(f"wants/{user}: {open_error(e, follow_symlinks=False)}") from None
        try:
            here = os.fstat(fd)
            if (here.st_dev, here.st_ino) != (st.st_dev, st.st_ino):
                raise _Refused(f"wants/{user} changed while it was read; read again next pass")
            acc.folders.append(user)
            self._wants(fd, user, uid, _stamp(here), acc)
        finally:
            os.close(fd)

    def _unchanged(self, spool: int, user: str, st: os.stat_result, uid: int, acc: _Acc
                   ) -> bool:
        """Nothing in the folder changed since it was last read through a descriptor: the
        folder's stamp, and each want file's, as then (``lstat`` by name, no open). A name that
        now leads elsewhere (the folder swapped for a link) gives another file's stamp, never
        the one kept (the inode, link count and times are in it): then the folder is read
        through a descriptor as always."""
        known = self.listings.get(user)
        if known is None or known[0] != _stamp(st):
            return False
        good, bad = known[1]
        found: list[tuple[Key, Want | str]] = []
        for name in good[:MAX_WANTS]:
            key = (user, name[:-5])
            cached = self.cache.get(key)
            try:
                here = os.stat(f"{user}/{name}", dir_fd=spool, follow_symlinks=False)
            except OSError:
                return False
            if cached is None or cached[0] != _stamp(here):
                return False
            found.append((key, cached[1]))
        acc.folders.append(user)
        _bad_names(user, bad, acc)
        for key, result in found:
            if isinstance(result, str):
                acc.fail(key, result)
            else:
                acc.wants.append(result)
        for name in good[MAX_WANTS:]:
            _too_many(user, name, acc)
        return True

    def _listing(self, fd: int, user: str, stamp: Stamp) -> tuple[list[str], list[str]]:
        """(want names to read, file names ds01 cannot use), cached by the folder's stamp."""
        known = self.listings.get(user)
        if known is not None and known[0] == stamp:
            return known[1]
        good: list[str] = []
        bad: list[str] = []
        for n, name in enumerate(_names(fd)):
            if n >= MAX_ENTRIES:
                raise _Refused(f"your want folder holds more than {MAX_ENTRIES} entries: "
                               "remove some (ds01 drop container NAME)")
            if name.startswith(".") or not name.endswith(".yaml"):
                continue
            (good if is_want_name(name[:-5]) else bad).append(name)
        result = (sorted(good), sorted(bad))
        self.listings[user] = (stamp, result)
        return result

    def _wants(self, fd: int, user: str, uid: int, stamp: Stamp, acc: _Acc) -> None:
        """Every want file of the folder ``fd``."""
        good, bad = self._listing(fd, user, stamp)
        _bad_names(user, bad, acc)
        budget = [BYTES_PER_PASS, READS_PER_PASS]
        for name in good[:MAX_WANTS]:
            budget = self._one(fd, name, (user, name[:-5]), acc, uid=uid, budget=budget)
        for name in good[MAX_WANTS:]:
            _too_many(user, name, acc)

    def _one(self, fd: int, name: str, key: Key, acc: _Acc, *, uid: int, budget: list[int]
             ) -> list[int]:
        """Read one want file (if changed and within the budget: bytes, files); what is left."""
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return budget  # dropped meanwhile
        stamp = _stamp(st)
        cached = self.cache.get(key)
        if cached is None or cached[0] != stamp:
            if budget[0] <= 0 or budget[1] <= 0:
                acc.held.add(key)  # read in a later pass; its container stays as it is
                return budget
            budget = [budget[0] - max(st.st_size, 1), budget[1] - 1]
            cached = (stamp, self._read(fd, name, key, uid))
            self.cache[key] = cached
        result = cached[1]
        if isinstance(result, str):
            acc.fail(key, result)
        else:
            acc.wants.append(result)
        return budget

    def _read(self, fd: int, name: str, key: Key, uid: int) -> Want | str:
        display = f"{key[0]}/{printable(name)}"
        try:
            ffd = os.open(name, _FILE, dir_fd=fd)
        except OSError as e:
            return f"{display}: cannot read: {open_error(e, follow_symlinks=False)}"
        try:
            st = os.fstat(ffd)
            if not stat.S_ISREG(st.st_mode):
                return f"{display}: not a regular file"
            if st.st_nlink != 1:
                return f"{display}: has {st.st_nlink} hard links; a want file has one"
            if self.user_name is not None and st.st_uid not in (uid, 0):
                return f"{display}: owned by uid {st.st_uid}, not by {key[0]}"
            want = from_yaml(read_fd(ffd, display=display, bounds=USER), user=key[0],
                             file=display)
        except ConfigError as e:
            return str(e.errors[0])
        except OSError as e:
            return f"{display}: cannot read: {e.strerror or e}"
        finally:
            os.close(ffd)
        if want.name != key[1]:
            return f"{display}: name {want.name!r} differs from the file name"
        return want

    def _move_aside(self, spool: int, name: str, st: os.stat_result,
                    owners: dict[int, str | None], acc: _Acc) -> None:
        """A spool entry that is not its name's: moved out of the spool, never followed; the
        folder of the user it names is then made (theirs), so the name cannot be taken again."""
        if st.st_uid == 0:
            return  # root's own entry: left as it is
        if st.st_uid not in owners and self.user_name is not None:
            owners[st.st_uid] = self.user_name(st.st_uid)
        owner, names, moved = acc.foreign.get(st.st_uid, (owners.get(st.st_uid), [], 0))
        names.append(printable(name, 64))
        if acc.moves_left > 0 and self.foreign_dir is not None:
            held = self._swap_in_theirs(spool, name)  # the name is the user's at once
            if self._move(spool, held or name, st):
                acc.moves_left -= 1
                moved += 1
        acc.foreign[st.st_uid] = (owner, names, moved)

    def _move(self, spool: int, name: str, st: os.stat_result) -> bool:
        assert self.foreign_dir is not None
        target = f"{st.st_uid}-{st.st_ino}-{os.urandom(4).hex()}"
        try:
            self.foreign_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            dst = os.open(self.foreign_dir, _DIR)
            try:
                os.rename(name, target, src_dir_fd=spool, dst_dir_fd=dst)
            finally:
                os.close(dst)
        except OSError:
            return False
        return True

    def _swap_in_theirs(self, spool: int, name: str) -> str | None:
        """Put a folder made for the user ``name`` names where the squatter's entry is, in one
        atomic exchange (so the squatter cannot take the name back in between); the name the
        squatter's entry now has, or ``None`` (no such user, or no exchange here)."""
        uid = self.uid_of(name) if self.uid_of is not None and is_user_name(name) else None
        if uid is None or uid == 0:
            return None
        spare = f".ds01-{os.urandom(6).hex()}"
        try:
            os.mkdir(spare, 0o700, dir_fd=spool)
        except OSError:
            return None
        try:
            fd = os.open(spare, _DIR, dir_fd=spool)
            try:
                os.fchown(fd, uid, -1)
            finally:
                os.close(fd)
            if exchange(spool, spare, name):
                return spare
        except OSError:
            pass
        os.rmdir(spare, dir_fd=spool)
        return None


def exchange(dir_fd: int, a: str, b: str) -> bool:
    """Swap two names in one folder atomically (``renameat2(RENAME_EXCHANGE)``); ``False``
    where the kernel or file system cannot."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.renameat2
    except (OSError, AttributeError):
        return False
    rename_exchange = 2
    return int(call(dir_fd, a.encode(), dir_fd, b.encode(), rename_exchange)) == 0


SPOOL_MODE = 0o1733
"""The spool ``wants/``: anyone may make their own folder in it (write + search), nobody but
root may list it (no read), and only an entry's owner may rename or remove it (sticky)."""


def ensure_spool(wants_dir: Path) -> str | None:
    """Make the spool as ds01 needs it (root's, :data:`SPOOL_MODE`); what was fixed, if any."""
    wants_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(wants_dir, _DIR)
    try:
        st = os.fstat(fd)
        fixed = []
        if stat.S_IMODE(st.st_mode) != SPOOL_MODE:
            os.fchmod(fd, SPOOL_MODE)
            fixed.append(f"mode {stat.S_IMODE(st.st_mode):o} -> {SPOOL_MODE:o}")
        if os.geteuid() == 0 and st.st_uid != 0:
            os.fchown(fd, 0, 0)
            fixed.append(f"owner uid {st.st_uid} -> root")
        return f"{wants_dir}: {', '.join(fixed)}" if fixed else None
    finally:
        os.close(fd)


def _names(fd: int) -> Iterator[str]:
    with os.scandir(fd) as it:
        for entry in it:
            yield entry.name



CACHE_VERSION = 1


@functools.cache
def _cache_tag() -> str:
    """What a saved cache must have been made by: this ds01, these schemas and this code
    that judges want files (any change to them and every file is read again). Taken once:
    the code that runs is the code this ds01d started with, whatever is installed since."""
    from ds01d.fsutil import code_tag

    return f"{CACHE_VERSION}/" + code_tag([
        "schemas/", "config/want.py", "config/settings.py", "yamlsrc.py", "schema.py",
        "patterns.py", "units.py", "names.py", "runtime/wantfiles.py"])


def load_cache(path: Path) -> tuple[dict[Key, tuple[Stamp, Want | str]], Listings]:
    """The parsed wants and folder listings a previous ds01d kept (root's own file, made by
    this version of ds01 with these schemas; anything else is ignored and the files are
    parsed again)."""
    from ds01d.fsutil import load_kept

    body = load_kept(path, _cache_tag())
    if not isinstance(body, tuple) or len(body) != 2:
        return {}, {}
    cache, listings = body
    if not isinstance(cache, dict) or not isinstance(listings, dict):
        return {}, {}
    return cache, listings


def save_cache(path: Path, cache: dict[Key, tuple[Stamp, Want | str]],
               listings: Listings) -> bool:
    from ds01d.fsutil import save_kept

    return save_kept(path, _cache_tag(), (cache, listings))
