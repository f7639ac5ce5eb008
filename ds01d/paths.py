"""Where ds01's files live under a root prefix (``--root``, ``DS01_ROOT``, default ``/``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT_ENV = "DS01_ROOT"


@dataclass(frozen=True)
class Paths:
    """Every path ds01 reads or writes, under one root (tests and the simulator use a temp dir)."""

    root: Path

    @classmethod
    def from_option(cls, root: str | None) -> Paths:
        return cls(Path(root or os.environ.get(ROOT_ENV) or "/"))

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
        return self.sim.is_dir()
