"""The schema patterns a ``ds01 want`` checks, matched without ``re``.

Importing ``re`` costs the commands users type a large share of their start-up budget (see
``bench/``), and a want is judged by five patterns only. Each function here answers exactly
what ``re.search(pattern, value)`` answers for a value that does not end in a newline (in JSON
Schema, as in ECMA-262, ``$`` is the end of the text; Python's ``re`` also lets it match before
a final newline, which ds01 does not: see :func:`ds01d.schema.pattern_matches`);
``tests/unit/test_patterns.py`` checks that on random strings. Any other pattern goes to
``re``.
"""

from __future__ import annotations

from ds01d.names import is_user_name, is_want_name

TYPE_CHECKING = False  # mypy reads this name as True; importing typing costs ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable

_DIGITS = frozenset("0123456789")
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_ALNUM = _DIGITS | _LOWER | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _digits(text: str, at: int, least: int, most: int) -> int:
    """Where a run of ``least``-``most`` digits starting at ``at`` ends, or -1."""
    end = at
    while end < len(text) and end - at < most and text[end] in _DIGITS:
        end += 1
    return end if end - at >= least else -1


def image(value: str) -> bool:
    """``^[A-Za-z0-9][A-Za-z0-9._/:@-]*$``"""
    v = value
    return bool(v) and v[0] in _ALNUM and all(c in _ALNUM or c in "._/:@-" for c in v[1:])


def mig(value: str) -> bool:
    r"""``^[1-7]g\.[0-9]+gb(\+me|\+gfx|\+me\.all)?$``"""
    v = value
    if len(v) < 6 or v[0] not in "1234567" or v[1:3] != "g.":
        return False
    end = _digits(v, 3, 1, len(v))
    if end < 0 or v[end:end + 2] != "gb":
        return False
    return v[end + 2:] in ("", "+me", "+gfx", "+me.all")


def size(value: str) -> bool:
    r"""``^[0-9]{1,16}(\.[0-9]{1,6})?[kKmMgGtT]?$``"""
    v = value
    end = _digits(v, 0, 1, 16)
    if end < 0:
        return False
    if v[end:end + 1] == ".":
        end = _digits(v, end + 1, 1, 6)
        if end < 0:
            return False
    return v[end:] == "" or (len(v) - end == 1 and v[end] in "kKmMgGtT")


def date_time(value: str) -> bool:
    r"""``^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?``
    ``(Z|[+-][0-9]{2}:?[0-9]{2})?)?$``"""
    v = value
    at = 0
    for n, sep in ((4, "-"), (2, "-"), (2, "")):
        at = _digits(v, at, n, n)
        if at < 0 or v[at:at + len(sep)] != sep:
            return False
        at += len(sep)
    if at == len(v):
        return True
    if v[at] not in "T ":
        return False
    at = _digits(v, at + 1, 2, 2)
    if at < 0 or v[at:at + 1] != ":":
        return False
    at = _digits(v, at + 1, 2, 2)
    if at < 0:
        return False
    if v[at:at + 1] == ":" and _digits(v, at + 1, 2, 2) > 0:
        at = _digits(v, at + 1, 2, 2)
        if v[at:at + 1] == "." and _digits(v, at + 1, 1, len(v)) > 0:
            at = _digits(v, at + 1, 1, len(v))
    return _zone(v, at)


def _zone(v: str, at: int) -> bool:
    rest = v[at:]
    if rest in ("", "Z"):
        return True
    if rest[:1] not in "+-" or len(rest) < 5:
        return False
    mid = 4 if rest[3:4] == ":" else 3
    return (_digits(rest, 1, 2, 2) == 3 and _digits(rest, mid, 2, 2) == mid + 2
            and mid + 2 == len(rest))


CHECKS: dict[str, Callable[[str], bool]] = {  # want and user names: ds01d.names
    "^[a-z0-9][a-z0-9_.-]{0,62}$": is_want_name,
    "^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}$": is_user_name,
    "^[A-Za-z0-9][A-Za-z0-9._/:@-]*$": image,
    "^[1-7]g\\.[0-9]+gb(\\+me|\\+gfx|\\+me\\.all)?$": mig,
    "^[0-9]{1,16}(\\.[0-9]{1,6})?[kKmMgGtT]?$": size,
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]+)?)?"
    "(Z|[+-][0-9]{2}:?[0-9]{2})?)?$": date_time,
}
