"""What one pass of ds01d carries to the next, and across restarts: one value, saved whole.

Everything else ds01d holds between passes is a cache, rebuilt from the machine and the files
after a restart. This is not: it is what ds01d has *seen over time* and cannot read back from
anywhere. It is saved after every pass that changed it (``var/lib/ds01/ds01d-state.json``,
root's, 0600) and read back whole at start.

- ``asks``: when ds01d first saw each want version and keepalive (queue order, "asked again",
  keepalive caps; see :mod:`ds01d.core.asks`). Always trusted: a time seen stays seen.
- ``reasons``: why ds01d stopped each stopped container (shown while it stays stopped).
- ``flagged``: GPU use nobody was allocated that was reported, and whose it was.
- ``mig_drain_since``: when each GPU's MIG layout drain began (the deadline its holders were
  told counts from then). Always trusted: the change was seen then, whatever came after.
- ``idle_since``, ``reported`` (warnings given) and ``warned`` (when each coming stop was
  first told): trusted only when the state is fresh (at
  most ``max_age_s`` old: three resync periods on a real host), since what happened while no
  ds01d watched is unknown; stale, they start again, which can delay a stop, never cause one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ds01d.core.asks import Ask
from ds01d.core.asks import from_json as ask_from_json
from ds01d.core.model import Expected
from ds01d.fsutil import write_atomic
from ds01d.paths import STATE_FILE
from ds01d.units import iso, parse_when

Key = tuple[str, str]
FILE = STATE_FILE
EXPECT_S = 60.0
"""How long a created container ds01d does not see listed still counts as made."""
VERSION = 1


@dataclass(frozen=True)
class Carry:
    idle_since: Mapping[str, datetime] = field(default_factory=dict)
    """Container id -> when it was first seen idle."""
    reported: frozenset[str] = frozenset()
    """Keys of warnings and flags given while their condition lasts."""
    reasons: Mapping[Key, str] = field(default_factory=dict)
    """(user, name) -> why ds01d stopped it."""
    flagged: Mapping[str, str | None] = field(default_factory=dict)
    """Report key of a GPU-use flag -> its user (for the event when it ends)."""
    asks: Mapping[Key, Ask] = field(default_factory=dict)
    """(user, name) -> the want version ds01d saw, and when."""
    started: Mapping[str, datetime] = field(default_factory=dict)
    """Container id -> when ds01d started it (its runtime limit counts from then)."""
    expected: Mapping[Key, Expected] = field(default_factory=dict)
    """(user, name) -> a container ds01d created and has not seen listed yet (kept at most
    :data:`EXPECT_S`: never made twice meanwhile)."""
    mig_drain_since: Mapping[str, datetime] = field(default_factory=dict)
    """GPU uuid -> when ds01d first saw its MIG layout differ from ``mig-layout.yaml``."""
    warned: Mapping[str, datetime] = field(default_factory=dict)
    """A coming stop -> when its owner was first told (the stop waits ``stop_notice_m``)."""

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION,
                "idle_since": {k: iso(v) for k, v in sorted(self.idle_since.items())},
                "reported": sorted(self.reported),
                "reasons": [[u, n, r] for (u, n), r in sorted(self.reasons.items())],
                "flagged": dict(sorted(self.flagged.items())),
                "asks": [[u, n, *a.to_json()] for (u, n), a in sorted(self.asks.items())],
                "started": {k: iso(v) for k, v in sorted(self.started.items())},
                "expected": [[u, n, e.container_id, list(e.devices), iso(e.at)]
                             for (u, n), e in sorted(self.expected.items())],
                "mig_drain_since": {k: iso(v) for k, v in sorted(self.mig_drain_since.items())},
                "warned": {k: iso(v) for k, v in sorted(self.warned.items())}}

    @classmethod
    def from_json(cls, body: Mapping[str, Any], *, fresh: bool) -> Carry:
        """The value saved by :meth:`to_json`; damaged entries are left out, one by one."""
        asks = {}
        for row in _rows(body.get("asks"), 6):
            ask = ask_from_json(row[2:])
            if ask is not None:
                asks[(str(row[0]), str(row[1]))] = ask
        reasons = {(str(u), str(n)): str(r) for u, n, r in _rows(body.get("reasons"), 3)}
        flagged = body.get("flagged")
        expected = {}
        for u, n, cid, devices, at in _rows(body.get("expected"), 5):
            try:
                expected[(str(u), str(n))] = Expected(str(cid), tuple(map(str, devices)),
                                                      parse_when(str(at)))
            except (ValueError, TypeError):
                continue
        out = cls(reasons=reasons, asks=asks, started=_times(body.get("started")),
                  expected=expected,
                  flagged={str(k): None if v is None else str(v)
                           for k, v in (flagged.items() if isinstance(flagged, dict) else ())},
                  mig_drain_since=_times(body.get("mig_drain_since")))
        if not fresh:
            return out
        reported = body.get("reported")
        return cls(_times(body.get("idle_since")),
                   frozenset(str(r) for r in reported) if isinstance(reported, list)
                   else frozenset(), out.reasons, out.flagged, out.asks, out.started,
                   out.expected, out.mig_drain_since, warned=_times(body.get("warned")))


def _times(raw: object) -> dict[str, datetime]:
    """``{key: ISO time}`` as saved; damaged entries left out."""
    out = {}
    for k, v in (raw.items() if isinstance(raw, dict) else ()):
        try:
            out[str(k)] = parse_when(str(v))
        except ValueError:
            continue
    return out


def _rows(raw: object, width: int) -> list[list[Any]]:
    if not isinstance(raw, list):
        return []
    return [r for r in raw if isinstance(r, list) and len(r) == width]


def load(folder: Path, *, max_age_s: float | None) -> Carry:
    """The carried state saved in ``folder``, or an empty one (first start, or unreadable)."""
    try:
        path = folder / FILE
        body = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(body, dict) or body.get("version") != VERSION:
            return Carry()
        saved_at = max(float(body.get("saved_at", 0)), path.stat().st_mtime)
    except (OSError, ValueError, TypeError):
        return Carry()
    fresh = max_age_s is None or time.time() - saved_at <= max_age_s
    return Carry.from_json(body, fresh=fresh)


@dataclass
class Saver:
    """Writes the carried state when it changed; marks it alive (``utime``) when it would
    otherwise look stale."""

    folder: Path
    refresh_s: float
    """Touched at least this often while unchanged, so that its age says ds01d was alive."""
    last: Carry | None = None
    at: float = 0.0

    def adopt(self, carry: Carry) -> None:
        """``carry`` is what the file on disk holds (read at start), marked alive when it was
        last written or touched."""
        self.last = carry
        try:
            self.at = (self.folder / FILE).stat().st_mtime
        except OSError:
            self.at = 0.0

    def save(self, carry: Carry) -> bool:
        """Write the state when it changed; otherwise only mark it alive (its time) once a
        period, which writes no data. ``True`` when the file was written."""
        now = time.time()
        if carry == self.last:
            if now - self.at < self.refresh_s:
                return False
            try:
                os.utime(self.folder / FILE)
                self.at = now
                return False
            except FileNotFoundError:
                pass  # never written yet (or removed): write it
        self.folder.mkdir(parents=True, exist_ok=True)
        # one line, by the C encoder: with indent, json encodes in Python and joins a list
        # of every piece (5 MiB more at the peak at 20,000 users, for a 1.5 MB file)
        body = json.dumps({"saved_at": now, **carry.to_json()}, sort_keys=True,
                          separators=(",", ":"))
        write_atomic(self.folder / FILE, body + "\n", mode=0o600, durable=True)
        self.last, self.at = carry, now
        return True



def pending(expected: Mapping[Key, Expected], seen: set[str], now: datetime
            ) -> dict[Key, Expected]:
    """The creations still to be seen: not listed yet, and recent."""
    return {k: e for k, e in expected.items()
            if e.container_id not in seen and (now - e.at).total_seconds() < EXPECT_S}
