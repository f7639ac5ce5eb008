"""Parsing and printing of sizes, durations, CPU quotas and MIG profiles.

Pure functions, no imports beyond the standard library's cheapest modules: the CLI pays for
every import (see ``bench/``), so the patterns are compiled on first use, not at import.
"""

from __future__ import annotations

from ds01d.dt import UTC, datetime, time, timedelta

TYPE_CHECKING = False  # mypy reads this name as True; importing typing costs ~3 ms
if TYPE_CHECKING:
    import re

_SIZE_MULT = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_DURATION_H = {"s": 1 / 3600, "m": 1 / 60, "h": 1.0, "d": 24.0, "w": 168.0}
_PATTERNS = {
    "duration": r"^([0-9]+(?:\.[0-9]+)?)\s*([smhdw])$",
    "part": r"([0-9]+(?:\.[0-9]+)?)([smhdw])",
    "percent": r"^([0-9]+(?:\.[0-9]+)?)%$",
    "rate": r"^([0-9]+(?:\.[0-9]+)?)([kKmMgG]?)/s$",
}
COMPUTE_SLICES_PER_GPU = 7


_COMPILED: dict[str, re.Pattern[str]] = {}


def _re(name: str) -> re.Pattern[str]:
    """A pattern, compiled (and ``re`` imported) on first use only."""
    found = _COMPILED.get(name)
    if found is None:
        import re

        found = _COMPILED[name] = re.compile(_PATTERNS[name])
    return found


SIZE_KEYS = frozenset({"memory", "memory_swap", "shm_size", "memory_max", "memory_high",
                       "storage_tmp"})
"""Settings that are sizes (bytes)."""
MAX_SIZE = 1 << 50
"""The largest size ds01 reads anywhere: 1 PiB (far below what Docker's and systemd's 64-bit
fields hold)."""
MIN_SIZE = {"memory": 6 << 20, "memory_swap": 6 << 20, "memory_max": 6 << 20,
            "memory_high": 6 << 20, "shm_size": 1 << 20, "shm": 1 << 20,
            "storage_tmp": 1 << 20}
"""The smallest value of each size setting: 6 MiB is the least memory Docker accepts, and 0
would mean "no limit" to Docker and systemd (``null`` is how ds01 says unlimited)."""
MAX_PERCENT = 100_000.0
"""The largest CPU quota read: 1,000 CPUs."""
MAX_DURATION_H = 87_600.0
"""The longest duration ds01 reads anywhere: ten years (times stay far from the calendar's
end, so every sum of a time and a duration can be computed)."""


def show_value(value: int | float | bool | None, key: str) -> str:
    """A setting's value as it would be written in the YAML file: ``32G``, ``"800%"``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if key in SIZE_KEYS and isinstance(value, int):
        return format_size(value)
    if key == "cpu_quota":
        return f'"{value:g}%"'
    if key == "network_idle_threshold":
        return format_rate(float(value))
    if key == "idle_detection_window":
        return format_duration(float(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_size(value: int | float | str) -> int:
    """Bytes from an int or a Docker/systemd-style size: ``32g``, ``512M``, ``1.5T``.

    Suffixes are powers of 1024 and case-insensitive. ``32gb`` is refused on purpose: Docker
    would read it as 32 bytes-of-something-else, systemd refuses it.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 34359738368.0: a whole number of bytes written as a float
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        from ds01d.patterns import size

        text = value.strip()
        if not size(text):
            raise ValueError(f"{value[:32]!r} is not a size (use 32g or 32G)")
        suffix = text[-1].lower() if text[-1] in "kKmMgGtT" else ""
        n = int(float(text[:len(text) - len(suffix)]) * _SIZE_MULT[suffix])
    else:
        raise ValueError(f"{value!r} is not a size (use 32g or 32G)")
    if n < 0:
        raise ValueError(f"{value} is not a size (must be >= 0)")
    if n > MAX_SIZE:
        raise ValueError(f"{value} is more than 1P (the largest size ds01 reads)")
    return n


def check_size(key: str, n: int) -> int:
    """``n`` bytes, or ``ValueError`` when below the smallest value of setting ``key``."""
    least = MIN_SIZE.get(key, 0)
    if n < least:
        raise ValueError(f"{format_size(n)} is too small for {key}: the smallest is "
                         f"{format_size(least)} (null means no limit)")
    return n


def format_size(n: int) -> str:
    """The shortest exact suffix form of ``n`` bytes: 34359738368 -> ``32G``."""
    for suffix, mult in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n and n % mult == 0:
            return f"{n // mult}{suffix}"
    return str(n)


def parse_duration_h(value: str) -> float:
    """Hours from a legacy duration string: ``48h``, ``0.5h``, ``30m``, ``2d``, ``90s``."""
    m = _re("duration").match(value.strip()) if len(value) <= 32 else None
    if not m:
        raise ValueError(f"{value[:32]!r} is not a duration (use 30m, 2h, 1.5h or 7d)")
    hours = float(m.group(1)) * _DURATION_H[m.group(2)]
    if hours > MAX_DURATION_H:
        raise ValueError(f"{value!r} is longer than ten years (the longest ds01 reads)")
    return hours


def parse_duration_s(value: str) -> float:
    """Seconds from a duration typed on the command line: ``4h``, ``90m``, ``1h40m``, ``2d``.

    Raises ``ValueError`` with a message for people (also beyond :data:`MAX_DURATION_H`).
    """
    text = value.strip().replace(" ", "")
    parts = _re("part").findall(text) if len(text) <= 64 else []
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{value[:64]!r} is not a duration (use 30m, 2h, 1h40m or 7d)")
    hours = sum(float(n) * _DURATION_H[u] for n, u in parts)
    if hours > MAX_DURATION_H:
        raise ValueError(f"{value!r} is longer than ten years")
    return hours * 3600.0


def parse_rate(value: str) -> float:
    """Bytes per second from ``1k/s``, ``512/s``, ``2.5M/s`` (powers of 1024)."""
    m = _re("rate").match(value.strip()) if len(value) <= 32 else None
    if not m:
        raise ValueError(f"{value[:32]!r} is not a rate (use 1k/s)")
    bps = float(m.group(1)) * _SIZE_MULT[m.group(2).lower()]
    if bps > MAX_SIZE:
        raise ValueError(f"{value!r} is more than 1P/s (the most ds01 reads)")
    return bps


def round_rate(bps: float) -> float:
    """A rate rounded the way :func:`format_rate` writes it (whole bytes from 10/s on)."""
    return float(round(bps)) if bps >= 10 else float(f"{bps:.3g}")


def format_rate(bps: float) -> str:
    """A rate as it is written: 1024.0 -> ``1K/s``, 291.27 -> ``291/s``."""
    for suffix, mult in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if bps >= mult and (bps / mult).is_integer():
            return f"{int(bps // mult)}{suffix}/s"
    return f"{bps:.0f}/s" if bps >= 10 else f"{bps:.3g}/s"


def format_duration(h: float) -> str:
    """A duration string as a config file takes it: 0.5 -> ``30m``, 3 -> ``3h``, 0.01 -> ``36s``."""
    for unit, per_h in (("h", 1.0), ("m", 60.0), ("s", 3600.0)):
        n = h * per_h
        if abs(n - round(n)) < 1e-9 and round(n) > 0:
            return f"{round(n)}{unit}"
    return f"{h:g}h"


def quantity(n: float, noun: str, fmt: str = "g") -> str:
    """``1 GPU``, ``2 GPUs``, ``0.5 GPU-equivalents``: ``n`` as ``fmt`` shows it, with the
    noun singular only for exactly one."""
    shown = format(n, fmt)
    return f"{shown} {noun}" if shown == "1" else f"{shown} {noun}s"


def format_hours(h: float) -> str:
    """A readable duration: 0.25 -> ``15m``, 48 -> ``48h``, 1.5 -> ``1.5h``."""
    if h < 1 and (h * 60).is_integer():
        return f"{int(h * 60)}m"
    return f"{h:g}h"


def parse_percent(value: str | int | float) -> float:
    """A CPU quota in percent of one CPU: ``"800%"`` -> 800.0 (systemd's CPUQuota=)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a percentage")
    if isinstance(value, int | float):
        pct = float(value)
    else:
        m = _re("percent").match(value.strip()) if len(value) <= 32 else None
        if not m:
            raise ValueError(f"{value[:32]!r} is not a percentage (use 800% for 8 CPUs)")
        pct = float(m.group(1))
    if not 0 < pct <= MAX_PERCENT:
        raise ValueError(f"{value} is not a CPU quota between 0% and {MAX_PERCENT:g}%")
    return pct


def mig_compute_slices(profile: str) -> int:
    """Compute slices of a MIG profile name: ``3g.20gb`` -> 3."""
    from ds01d.patterns import mig

    if not mig(profile):
        raise ValueError(f"{profile!r} is not a MIG profile (e.g. 1g.10gb, 3g.40gb)")
    return int(profile[0])


_GPUEQ: dict[str, float] = {}


def mig_gpu_equivalents(profile: str) -> float:
    """GPU-equivalents of one instance of a MIG profile: compute slices / 7."""
    known = _GPUEQ.get(profile)
    if known is None:
        known = mig_compute_slices(profile) / COMPUTE_SLICES_PER_GPU
        if len(_GPUEQ) < 256:  # the profiles a host has: a handful
            _GPUEQ[profile] = known
    return known


ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
"""How ds01 writes a time everywhere (want files, events, status, reports, labels)."""


def iso(when: datetime) -> str:
    """UTC ISO 8601 with a Z: ``2026-11-22T18:00:00Z`` (read back by :func:`parse_when`)."""
    utc = when.astimezone(UTC) if when.tzinfo is not None else when
    return utc.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def parse_when(text: str) -> datetime:
    """An ISO 8601 date or date-time as aware UTC; a bare date means the end of that day.

    Raises ``ValueError`` for anything else, a time outside the calendar included. The last
    day of the calendar (``9999-12-31``, "forever") ends at its last second.
    """
    value = text.strip().replace(" ", "T", 1)
    try:
        if "T" not in value:
            day = datetime.fromisoformat(value).date()
            if day == datetime.max.date():
                return datetime.max.replace(microsecond=0, tzinfo=UTC)
            return datetime.combine(day + timedelta(days=1), time(), UTC)
        when = datetime.fromisoformat(value)
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is outside the calendar") from None
