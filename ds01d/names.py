"""The names users choose (user folders, want names) and how they are shown.

Standard library only, and no ``re``: the ``ds01`` commands import this.
"""

from __future__ import annotations

USER_PATTERN = r"\A[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}\Z"
"""A user name as a folder of the spool: letters, digits, ``_ . - @``, at most 128."""
WANT_PATTERN = r"\A[a-z0-9][a-z0-9_.-]{0,62}\Z"
"""A want (container) name: as the want schema says."""
INVALID = "_invalid"
"""The status name of want files ds01 cannot use (no want name starts with ``_``)."""

_USER_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_USER_REST = _USER_FIRST | frozenset(".@-")
_WANT_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_WANT_REST = _WANT_FIRST | frozenset("_.-")


_USERS_SEEN: dict[str, bool] = {}
_WANTS_SEEN: dict[str, bool] = {}


def _matches(name: str, seen: dict[str, bool], most: int, first: frozenset[str],
             rest: frozenset[str]) -> bool:
    """``name`` is 1 to ``most`` characters, the first in ``first``, the others in ``rest``
    (answers kept in ``seen``: ds01d asks for every user and want every pass)."""
    known = seen.get(name)
    if known is None:
        known = 0 < len(name) <= most and name[0] in first and rest.issuperset(name)
        if len(seen) < 100_000:
            seen[name] = known
    return known


def is_user_name(name: str) -> bool:
    """Whether ``name`` matches :data:`USER_PATTERN` (checked without ``re``: the commands
    users type call this, and importing ``re`` costs more than they may)."""
    return _matches(name, _USERS_SEEN, 128, _USER_FIRST, _USER_REST)


def is_want_name(name: str) -> bool:
    """Whether ``name`` matches :data:`WANT_PATTERN` (see :func:`is_user_name`)."""
    return _matches(name, _WANTS_SEEN, 63, _WANT_FIRST, _WANT_REST)


def local_part(name: str) -> str:
    """``alice@lab.example`` -> ``alice``; a name without ``@`` is returned as it is (the
    same string: the configuration's member index holds one per member)."""
    return name.split("@", 1)[0] if "@" in name else name


def printable(text: object, limit: int = 200) -> str:
    """Any user-chosen text made safe for a terminal or a log line: control characters
    (escape sequences, newlines) shown as ``\\xNN``, long text cut."""
    s = str(text)
    head = s[:limit]
    safe = head if head.isprintable() else "".join(
        c if c.isprintable() else f"\\x{ord(c):02x}" for c in head)
    return safe + ("..." if len(s) > limit else "")
