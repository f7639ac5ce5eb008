"""Error types shared by the loader, the CLI and the daemon.

Every ``ds01`` command imports this module, so it stays free of ``dataclasses`` (whose import
pulls in ``inspect``: ~8 ms of a ~35 ms budget); :class:`Diagnostic` is a small immutable
value class written out by hand.
"""

from __future__ import annotations

KeyPath = tuple[str | int, ...]
"""Where a value sits in a parsed file: keys and list indexes from the top."""


class Diagnostic:
    """One problem found in a desired-state file, pinned to a line (immutable, ordered).

    ``line`` is 1-based; 0 means "the whole file" (unreadable, empty, too large).
    """

    __slots__ = ("file", "key", "line", "message")
    file: str
    line: int
    key: str
    message: str

    def __init__(self, file: str, line: int, key: str, message: str) -> None:
        for name, value in (("file", file), ("line", line), ("key", key), ("message", message)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Diagnostic is immutable")

    def _fields(self) -> tuple[str, int, str, str]:
        return (self.file, self.line, self.key, self.message)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Diagnostic) and self._fields() == other._fields()

    def __lt__(self, other: Diagnostic) -> bool:
        return self._fields() < other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"Diagnostic{self._fields()!r}"

    def __str__(self) -> str:
        """``FILE:LINE: KEY: message``, every part made safe to print (a key or file name
        may hold escape sequences: it comes from a file someone wrote)."""
        from ds01d.names import printable

        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        return printable(text, 2000)


class UsageError(Exception):
    """The command line itself is wrong (exit status 2)."""


class InvalidInput(Exception):
    """Input that was understood but refused (exit status 1). The message is one line."""


class ConfigError(InvalidInput):
    """Desired state that does not validate; carries every diagnostic, not just the first,
    and the warnings found in the same run (errors never hide them)."""

    def __init__(self, errors: list[Diagnostic], warnings: list[Diagnostic] | None = None
                 ) -> None:
        self.errors = errors
        self.warnings = warnings or []
        super().__init__("\n".join(str(e) for e in errors))
