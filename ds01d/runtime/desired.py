"""Assemble desired state: the admin's config (the last valid one on error) and every want."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ds01d.config.effective import Nss, resolve
from ds01d.config.loader import load_config
from ds01d.config.model import DesiredConfig
from ds01d.config.want import Want, from_yaml
from ds01d.core.model import Account, Desired
from ds01d.errors import ConfigError, Diagnostic
from ds01d.paths import Paths
from ds01d.yamlsrc import read_text

MAX_WANTS_PER_USER = 64
"""More want files than this from one user are refused (they would only slow every pass)."""


@dataclass
class ConfigSource:
    """The admin's configuration; an invalid edit keeps the last valid one, and says so."""

    etc: Path
    last: DesiredConfig | None = None
    errors: list[Diagnostic] = field(default_factory=list)

    def load(self) -> DesiredConfig | None:
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


def load_wants(paths: Paths, *, uid_of: Callable[[str], int | None] | None
               ) -> tuple[list[Want], dict[tuple[str, str], str]]:
    """Every valid want, and why each invalid one was refused. ``uid_of=None``: any user
    name is valid and ownership is not checked (the simulated host)."""
    wants: list[Want] = []
    invalid: dict[tuple[str, str], str] = {}
    if not paths.wants.is_dir():
        return wants, invalid
    for folder in sorted(paths.wants.iterdir()):
        if folder.is_symlink() or not folder.is_dir() or folder.name.startswith("."):
            continue
        for n, path in enumerate(sorted(folder.glob("*.yaml"))):
            key = (folder.name, path.stem)
            if n >= MAX_WANTS_PER_USER:
                invalid[key] = f"more than {MAX_WANTS_PER_USER} want files; ignored"
                continue
            why = None if uid_of is None else _owner_problem(path, folder, uid_of(folder.name))
            if why is not None:
                invalid[key] = why
                continue
            _read_want(path, folder.name, paths, wants, invalid)
    return wants, invalid


def _read_want(path: Path, user: str, paths: Paths, wants: list[Want],
               invalid: dict[tuple[str, str], str]) -> None:
    display = str(path.relative_to(paths.wants))
    try:
        want = from_yaml(read_text(path, display=display, follow_symlinks=False), user=user,
                         file=display)
    except ConfigError as e:
        invalid[(user, path.stem)] = str(e.errors[0])
        return
    if want.name != path.stem:
        invalid[(user, path.stem)] = f"{display}: name {want.name!r} differs from the file name"
        return
    wants.append(want)


def assemble(config: DesiredConfig, wants: list[Want], invalid: dict[tuple[str, str], str], *,
             users: Iterable[str], nss: Nss, account: Callable[[str], Account | None],
             now: datetime) -> Desired:
    """Desired state for one pass: effective limits for every user who wants or holds."""
    everyone = sorted({w.user for w in wants} | set(users) | {u for u, _ in invalid})
    effective = {u: resolve(config, u, now=now, nss=nss) for u in everyone}
    accounts = {u: acct for u in everyone if (acct := account(u)) is not None}
    return Desired(config, tuple(wants), effective, accounts, invalid)


def system_account(user: str) -> Account | None:
    import pwd

    try:
        p = pwd.getpwnam(user)
    except KeyError:
        return None
    return Account(p.pw_uid, p.pw_gid, p.pw_dir)


def system_uid(user: str) -> int | None:
    acct = system_account(user)
    return None if acct is None else acct.uid


def running_as_root() -> bool:
    return os.geteuid() == 0
