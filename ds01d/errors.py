"""Error types shared by the loader, the CLI and the daemon."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem found in a desired-state file, pinned to a line.

    ``line`` is 1-based; 0 means "the whole file" (unreadable, empty, too large).
    """

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class UsageError(Exception):
    """The command line itself is wrong (exit status 2)."""


class InvalidInput(Exception):
    """Input that was understood but refused (exit status 1). The message is one line."""


class ConfigError(InvalidInput):
    """Desired state that does not validate; carries every diagnostic, not just the first."""

    def __init__(self, errors: list[Diagnostic]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))
