"""Assemble desired state: the admin's config (the last valid one on error) and every want."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ds01d import snapshot
from ds01d.config.effective import Nss, resolve
from ds01d.config.loader import load_config
from ds01d.config.model import DesiredConfig, Effective
from ds01d.config.want import Want, from_yaml
from ds01d.core.model import Account, Desired
from ds01d.errors import ConfigError, Diagnostic
from ds01d.yamlsrc import read_text

MAX_WANTS_PER_USER = 64
"""More want files than this from one user are refused (they would only slow every pass)."""


@dataclass
class ConfigSource:
    """The admin's configuration; an invalid edit keeps the last valid one, and says so.

    Files are parsed again only when one of them changed (their fingerprint), so a pass
    with nothing new costs a few ``stat`` calls.
    """

    etc: Path
    last: DesiredConfig | None = None
    errors: list[Diagnostic] = field(default_factory=list)
    seen: list[list[Any]] | None = None

    def load(self) -> DesiredConfig | None:
        now = snapshot.fingerprint(snapshot.config_files(str(self.etc)))
        if now == self.seen:
            return self.last
        self.seen = now
        try:
            self.last = load_config(self.etc)
            self.errors = []
        except ConfigError as e:
            self.errors = e.errors
        return self.last


def _owner_problem(path: Path, folder: Path, uid: int | None) -> str | None:
    """A want belongs to the uid owning the file and its folder (root may write for anyone)."""
    if uid is None:
        return f"{folder.name} is not a user on this host"
    d, f = folder.lstat(), path.lstat()
    if d.st_uid != uid:
        return f"the folder {folder} is owned by uid {d.st_uid}, not {folder.name}"
    if f.st_uid not in (uid, 0):
        return f"the file is owned by uid {f.st_uid}, not {folder.name}"
    return None


Parsed = Want | str
"""A want file read: the want, or why it was refused."""


@dataclass
class WantSource:
    """Every user's want files; each is parsed again only when its fingerprint changed.

    ``uid_of=None``: any user name is valid and ownership is not checked (simulated host).
    """

    wants_dir: Path
    uid_of: Callable[[str], int | None] | None
    cache: dict[str, tuple[tuple[int, int, int, int, int], Parsed]] = field(default_factory=dict)
    listing: dict[str, tuple[tuple[int, int], list[str]]] = field(default_factory=dict)
    """Folder -> (its mtime and inode, its ``*.yaml`` names): a folder's mtime changes whenever
    a file in it is created, removed or renamed over (as atomic writes do)."""

    def load(self) -> tuple[list[Want], dict[tuple[str, str], str]]:
        wants: list[Want] = []
        invalid: dict[tuple[str, str], str] = {}
        seen: set[str] = set()
        try:
            folders = sorted(os.scandir(self.wants_dir), key=lambda e: e.name)
        except OSError:
            folders = []
        visited = set()
        for folder in folders:
            if folder.name.startswith(".") or not folder.is_dir(follow_symlinks=False):
                continue
            visited.add(folder.path)
            self._folder(folder.path, folder.name, seen, wants, invalid)
        for gone in set(self.cache) - seen:
            del self.cache[gone]
        for gone in set(self.listing) - visited:
            del self.listing[gone]
        return wants, invalid

    def _names(self, folder: str) -> list[str]:
        st = os.stat(folder, follow_symlinks=False)
        stamp = (st.st_mtime_ns, st.st_ino)
        known = self.listing.get(folder)
        if known is not None and known[0] == stamp:
            return known[1]
        names = sorted(e.name for e in os.scandir(folder)
                       if e.name.endswith(".yaml") and not e.name.startswith("."))
        self.listing[folder] = (stamp, names)
        return names

    def _folder(self, folder: str, user: str, seen: set[str], wants: list[Want],
                invalid: dict[tuple[str, str], str]) -> None:
        uid = None if self.uid_of is None else self.uid_of(user)
        try:
            names = self._names(folder)
        except OSError:
            return
        for n, name in enumerate(names):
            path = os.path.join(folder, name)
            seen.add(path)
            key = (user, name[:-5])
            if n >= MAX_WANTS_PER_USER:
                invalid[key] = f"more than {MAX_WANTS_PER_USER} want files; ignored"
                continue
            why = (None if self.uid_of is None
                   else _owner_problem(Path(path), Path(folder), uid))
            result = why if why is not None else self._parse(path, user)
            if isinstance(result, str):
                invalid[key] = result
            else:
                wants.append(result)

    def _parse(self, path: str, user: str) -> Parsed:
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError as e:
            return f"cannot read: {e.strerror}"
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_uid, st.st_mode)
        cached = self.cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        result = read_want(Path(path), user, self.wants_dir)
        self.cache[path] = (stamp, result)
        return result


def read_want(path: Path, user: str, wants_dir: Path) -> Parsed:
    display = str(path.relative_to(wants_dir))
    try:
        want = from_yaml(read_text(path, display=display, follow_symlinks=False), user=user,
                         file=display)
    except ConfigError as e:
        return str(e.errors[0])
    if want.name != path.stem:
        return f"{display}: name {want.name!r} differs from the file name"
    return want


@dataclass
class EffectiveCache:
    """Effective limits per user, kept while the configuration object and the set of the
    user's active exemptions stay the same (the only way time changes them)."""

    config: DesiredConfig | None = None
    table: dict[tuple[str, frozenset[int]], Effective] = field(default_factory=dict)

    def get(self, config: DesiredConfig, user: str, *, now: datetime, nss: Nss) -> Effective:
        if config is not self.config:
            self.config, self.table = config, {}
        active = frozenset(i for i, e in enumerate(config.exemptions) if e.active(now))
        key = (user, active)
        if key not in self.table:
            self.table[key] = resolve(config, user, now=now, nss=nss)
        return self.table[key]


def assemble(config: DesiredConfig, wants: list[Want], invalid: dict[tuple[str, str], str], *,
             users: Iterable[str], nss: Nss, account: Callable[[str], Account | None],
             now: datetime, cache: EffectiveCache | None = None) -> Desired:
    """Desired state for one pass: effective limits for every user who wants or holds."""
    everyone = sorted({w.user for w in wants} | set(users) | {u for u, _ in invalid})
    lookup = cache or EffectiveCache()
    effective = {u: lookup.get(config, u, now=now, nss=nss) for u in everyone}
    accounts = {u: acct for u in everyone if (acct := account(u)) is not None}
    return Desired(config, tuple(wants), effective, accounts, invalid)

