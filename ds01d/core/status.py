"""What ``ds01 status`` shows for each want."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ds01d.units import iso

PHASES = ("Pending", "Running", "Stopped", "Failed")


@dataclass(frozen=True)
class WantStatus:
    user: str
    name: str
    phase: str
    reason: str
    devices: tuple[str, ...] = ()
    gpu_equivalents: float = 0.0
    queue_position: int | None = None
    since: datetime | None = None
    idle_since: datetime | None = None
    """When the container was first seen idle (a fact that changes with events: readers
    compute "idle for" from it, so the file is not rewritten as time passes)."""
    stops_at: datetime | None = None
    container: str | None = None
    busy: str | None = None
    """The signal that kept a running container busy at the last sample (``None``: idle)."""
    spec: str | None = None
    """What the want asks for (``config.want.spec_hash``): ``ds01 want`` compares a new
    request with it to say what asking again will do."""

    def to_json(self) -> dict[str, Any]:
        """The ``status --json`` shape of DESIGN.md (plus idle_since, stops_at, container,
        busy, spec)."""
        def when(t: datetime | None) -> str | None:
            return None if t is None else iso(t)

        return {"user": self.user, "name": self.name, "phase": self.phase,
                "reason": self.reason, "devices": list(self.devices),
                "gpu_equivalents": round(self.gpu_equivalents, 4),
                "queue_position": self.queue_position, "since": when(self.since),
                "idle_since": when(self.idle_since),
                "stops_at": when(self.stops_at), "container": self.container,
                "busy": self.busy, "spec": self.spec}
