"""Where ds01's files live under a root prefix (``--root``, ``DS01_ROOT``, default ``/``).

Imported by every ``ds01`` command: a plain class, not a dataclass (see ``errors.py``).
"""

from __future__ import annotations

import os

ROOT_ENV = "DS01_ROOT"
STATE_FILE = "ds01d-state.json"
"""ds01d's carried state, in :attr:`Paths.state` (``runtime/carry.py``)."""
TYPE_CHECKING = False  # mypy reads this name as True; see ds01d/errors.py on start-up cost
if TYPE_CHECKING:
    from pathlib import Path


class Paths:
    """Every path ds01 reads or writes, under one root (tests and the simulator use a temp dir)."""

    __slots__ = ("top",)
    top: str
    """The root as a string; :attr:`root` and the other properties give :class:`Path` objects
    (``pathlib`` is imported only when one is asked for: ``ds01 status`` never does)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "top", os.fspath(root))

    @property
    def root(self) -> Path:
        from pathlib import Path

        return Path(self.top)

    def under(self, *parts: str) -> str:
        """A path under the root, as a string."""
        return os.path.join(self.top, *parts)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Paths is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Paths) and other.top == self.top

    def __hash__(self) -> int:
        return hash(self.top)

    def __repr__(self) -> str:
        return f"Paths({self.top!r})"

    @classmethod
    def from_option(cls, root: str | None) -> Paths:
        return cls(root or os.environ.get(ROOT_ENV) or "/")

    @property
    def etc(self) -> Path:
        return self.root / "etc/ds01"

    @property
    def state(self) -> Path:
        return self.root / "var/lib/ds01"

    @property
    def wants(self) -> Path:
        return self.state / "wants"

    @property
    def status(self) -> Path:
        return self.state / "status"

    @property
    def sim(self) -> Path:
        """The simulated host's state; its presence marks a simulated root."""
        return self.state / "sim"

    @property
    def events(self) -> Path:
        return self.root / "var/log/ds01/events.jsonl"

    @property
    def run(self) -> Path:
        return self.root / "run/ds01"

    def want_file(self, user: str, name: str) -> Path:
        return self.wants / user / f"{name}.yaml"

    def is_simulated(self) -> bool:
        return os.path.isdir(self.under("var/lib/ds01/sim"))
