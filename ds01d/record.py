"""Immutable value classes without ``dataclasses``, for the values the ``ds01`` commands
users type create (``Want``, ``Limits``): importing ``dataclasses`` pulls in ``inspect`` and
costs more than the rest of such a command (see ``bench/``).

A subclass lists its fields in ``__slots__`` and writes its ``__init__`` with a typed
signature that calls :meth:`Record._set`; equality, hashing, ``repr``, :meth:`replace` and
:meth:`as_dict` come from here. Instances cannot be changed after ``__init__``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy reads this name as True; importing typing costs ~3 ms
if TYPE_CHECKING:
    from typing import Any, Self


class Record:
    __slots__: tuple[str, ...] = ("_hash",)

    def _set(self, values: dict[str, Any]) -> None:
        """Set every field from ``values`` (the caller's ``locals()``)."""
        for name in self.__slots__:
            object.__setattr__(self, name, values[name])

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        """Computed once (the value cannot change): records key caches pass after pass."""
        try:
            return int(object.__getattribute__(self, "_hash"))
        except AttributeError:
            h = hash((type(self).__name__, self._values()))
            object.__setattr__(self, "_hash", h)
            return h

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.as_dict()))

    def as_dict(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self.__slots__}

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes``; an unknown field is an error."""
        unknown = set(changes) - set(self.__slots__)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        return type(self)(**{**self.as_dict(), **changes})


def _rebuild(cls: type[Record], values: dict[str, Any]) -> Record:
    return cls(**values)
