"""Unix users and groups through the C library's name service (``/etc/group``, LDAP, SSSD)."""

from __future__ import annotations

import grp
import os
import pwd

TYPE_CHECKING = False  # mypy reads this name as True; every ds01 command imports this module
if TYPE_CHECKING:
    from ds01d.core.model import Account


class SystemNss:
    """:class:`ds01d.config.effective.Nss` over ``grp``/``pwd``; answers are kept for the
    life of the instance (ds01d makes a new one each pass, so changes are seen)."""

    def __init__(self) -> None:
        self._members: dict[str, frozenset[str] | None] = {}
        self._primary: dict[str, str | None] = {}

    def unix_group_members(self, name: str) -> frozenset[str] | None:
        if name not in self._members:
            try:
                self._members[name] = frozenset(grp.getgrnam(name).gr_mem)
            except KeyError:
                self._members[name] = None
        return self._members[name]

    def primary_group(self, user: str) -> str | None:
        if user not in self._primary:
            try:
                self._primary[user] = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
            except KeyError:
                self._primary[user] = None
        return self._primary[user]

    def state(self, groups: tuple[str, ...]) -> object:
        """The members of ``groups`` (LDAP/SSSD answers too) and the local user and group
        files as they are now: a change to either shows in the next pass."""
        files = []
        for path in ("/etc/group", "/etc/passwd"):
            try:
                st = os.stat(path)
                files.append((path, st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                files.append((path, 0, 0, 0))
        return ([(g, sorted(self.unix_group_members(g) or ())) for g in groups], files)


def account(user: str) -> Account | None:
    """uid, gid and home of a user, or ``None`` when the name service does not know it."""
    from ds01d.core.model import Account

    try:
        p = pwd.getpwnam(user)
    except KeyError:
        return None
    return Account(p.pw_uid, p.pw_gid, p.pw_dir)


def ids_of(user: str) -> tuple[int, int] | None:
    """uid and primary gid of a user, or ``None`` (without the model: for the commands)."""
    try:
        p = pwd.getpwnam(user)
    except KeyError:
        return None
    return p.pw_uid, p.pw_gid


def uid_of(user: str) -> int | None:
    found = account(user)
    return None if found is None else found.uid


def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None
