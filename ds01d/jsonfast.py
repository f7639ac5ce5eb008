"""Read JSON without importing the ``json`` package.

``json`` imports ``re`` (for its decoder's whitespace and number patterns, and its encoder's
escapes): together a large share of what a ``ds01`` command may cost (see ``bench/``). The
parsing itself is CPython's own C scanner (``_json.make_scanner``, the one ``json.loads``
uses); this module only skips the whitespace around the document, which is what the ``json``
package needs ``re`` for. Anything that is not one JSON document is ``ValueError``.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # mypy reads this name as True; importing typing costs ~3 ms
if TYPE_CHECKING:
    from typing import Any, ClassVar

_WHITESPACE = " \t\n\r"


def _constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


class _Context:
    """What the C scanner reads from a decoder: the same settings as ``json.loads``, except
    that NaN and Infinity are refused (they are not JSON)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: ClassVar[dict[str, str]] = {}


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # the stub wants a decoder; it reads only these attributes


def loads(text: str | bytes) -> Any:
    """The value of one JSON document (``ValueError`` for anything else)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration:
        raise ValueError("not a JSON document") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    finally:
        _Context.memo.clear()
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"extra data after the JSON document (at {end})")
    return value
