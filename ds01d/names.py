"""The names users choose (user folders, want names) and how they are shown.

Standard library only, patterns compiled on first use: the ``ds01`` commands import this.
"""

from __future__ import annotations

import re
from functools import cache

USER_PATTERN = r"\A[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}\Z"
"""A user name as a folder of the spool: letters, digits, ``_ . - @``, at most 128."""
WANT_PATTERN = r"\A[a-z0-9][a-z0-9_.-]{0,62}\Z"
"""A want (container) name: as the want schema says."""
INVALID = "_invalid"
"""The status name of want files ds01 cannot use (no want name starts with ``_``)."""


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def is_user_name(name: str) -> bool:
    return _compiled(USER_PATTERN).match(name) is not None and name not in (".", "..")


def is_want_name(name: str) -> bool:
    return _compiled(WANT_PATTERN).match(name) is not None


def printable(text: object, limit: int = 200) -> str:
    """Any user-chosen text made safe for a terminal or a log line: control characters
    (escape sequences, newlines) shown as ``\\xNN``, long text cut."""
    s = str(text)
    safe = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in s[:limit])
    return safe + ("..." if len(s) > limit else "")
