"""When each want was asked for, as ds01d saw it: a user states what they want; ds01d alone
decides times.

A want file carries ``requested_at`` and ``keepalive_until`` as written by ``ds01 want`` and
``ds01 keepalive``, but a user can write anything there (2000-01-01 to jump the queue, 2099 to
escape idle stops). So the file's ``requested_at`` is only a version mark: a new value means
"asked again". The time that counts (queue order, "asked again after the stop?") is when ds01d
first saw that version, kept across restarts in the daemon's carried state. A keepalive counts
from when ds01d first saw it, capped at ``keepalive_max_duration_h`` from then.

Without a record (the carried state lost), a want whose container already exists is not taken
as asked again: it is dated from its container, so a restart never starts what was stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache

from ds01d.config.want import Want, spec_hash
from ds01d.core.model import Container
from ds01d.units import iso

Key = tuple[str, str]


@dataclass(frozen=True)
class Ask:
    """One version of a want, as ds01d first saw it."""

    token: str
    """The file's ``requested_at`` and what it asks for: a change is asking again."""
    seen_at: datetime
    keepalive: str | None = None
    """The file's ``keepalive_until`` as written (``None``: none)."""
    keepalive_seen_at: datetime | None = None

    def to_json(self) -> list[str | None]:
        return [self.token, iso(self.seen_at), self.keepalive,
                None if self.keepalive_seen_at is None else iso(self.keepalive_seen_at)]


_SPECS: dict[int, tuple[Want, str]] = {}


def spec_of(want: Want) -> str:
    """``spec_hash``, remembered by the want object itself (the same objects pass after pass:
    looking them up by identity spares hashing every field each time)."""
    known = _SPECS.get(id(want))
    if known is not None and known[0] is want:
        return known[1]
    if len(_SPECS) >= 65536:
        _SPECS.clear()
    spec = spec_hash(want)
    _SPECS[id(want)] = (want, spec)
    return spec


def respecified(want: Want, spec: str | None) -> bool:
    """Whether ``want`` asks for something else than the container made from ``spec`` (its
    ``ds01.spec`` label): such a container is replaced."""
    return spec is not None and spec != spec_of(want)


@lru_cache(maxsize=65536)
def token_of(want: Want) -> str:
    """The version mark of a want file as read: its stated time and what it asks for."""
    return f"{iso(want.requested_at)}|{spec_hash(want)}"


def _first_seen(key: Key, now: datetime, containers: Mapping[Key, Container]) -> datetime:
    """When a want ds01d has no record of counts as asked: now, unless its container exists
    (then never after that container's last start or stop: not "asked again")."""
    c = containers.get(key)
    if c is None:
        return now
    return min(now, c.finished_at or c.started_at or c.created_at)


def settle(wants: Iterable[Want], previous: Mapping[Key, Ask], *, now: datetime,
           containers: Mapping[Key, Container], keepalive_max_h: float,
           keep: Iterable[Key] = ()) -> tuple[list[Want], dict[Key, Ask]]:
    """The wants with ds01d's times, and the records to carry to the next pass.

    ``containers``: the ds01 container of each want (the one kept); ``keep``: wants that could
    not be read this pass, whose records are carried unchanged.
    """
    out: list[Want] = []
    records = {k: previous[k] for k in keep if k in previous}
    for want in wants:
        key = (want.user, want.name)
        token = token_of(want)
        old = previous.get(key)
        if old is None:  # never seen, or the carried state was lost
            ask = Ask(token, _first_seen(key, now, containers))
        else:  # a new version is asked now; the same version keeps its time
            ask = old if old.token == token else Ask(token, now)
        ask = _keepalive(ask, want, now)
        records[key] = ask
        out.append(_settled(want, ask, keepalive_max_h))
    return out, records


@lru_cache(maxsize=65536)
def _settled(want: Want, ask: Ask, cap_h: float) -> Want:
    """``want`` with ds01d's times (the same objects pass after pass while nothing changes)."""
    return want.replace(requested_at=ask.seen_at, keepalive_until=_kept_until(ask, want, cap_h))


def _keepalive(ask: Ask, want: Want, now: datetime) -> Ask:
    claim = None if want.keepalive_until is None else iso(want.keepalive_until)
    if claim == ask.keepalive:
        return ask
    return replace(ask, keepalive=claim, keepalive_seen_at=None if claim is None else now)


def _kept_until(ask: Ask, want: Want, cap_h: float) -> datetime | None:
    if want.keepalive_until is None or ask.keepalive_seen_at is None:
        return None
    return min(want.keepalive_until, ask.keepalive_seen_at + timedelta(hours=cap_h))


def from_json(raw: object) -> Ask | None:
    """An :class:`Ask` as saved by :meth:`Ask.to_json`; ``None`` when damaged."""
    from ds01d.units import parse_when

    if not isinstance(raw, list) or len(raw) != 4:
        return None
    token, seen, keep, keep_seen = raw
    try:
        return Ask(str(token), parse_when(str(seen)), None if keep is None else str(keep),
                   None if keep_seen is None else parse_when(str(keep_seen)))
    except ValueError:
        return None
