"""The simulated host's clock, read without importing the simulator (``ds01`` start-up is
measured). The host's state is ``var/lib/ds01/sim/host.json``; its ``now`` is epoch seconds."""

from __future__ import annotations

import os

HOST_FILE = "host.json"
CLOCK_FILE = "clock"
"""The simulated time alone (epoch seconds as text), beside the host: what every ``ds01``
command on a simulated root reads, without parsing the whole simulated machine."""


def read_now(sim_dir: str) -> float:
    """Epoch seconds of simulated time; ``ValueError`` when unreadable."""
    try:
        with open(os.path.join(sim_dir, CLOCK_FILE), encoding="ascii") as f:
            return float(f.read())
    except (OSError, ValueError):
        pass  # a host made before the clock had a file of its own
    try:
        with open(os.path.join(sim_dir, HOST_FILE), encoding="utf-8") as f:
            from ds01d.jsonfast import loads

            now = loads(f.read())["now"]
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"unreadable simulated host: {e}") from None
    if not isinstance(now, int | float):
        raise ValueError("unreadable simulated host: 'now' is not a number")
    return float(now)


def write_now(sim_dir: str, now: float) -> None:
    """Keep the clock file in step with the host (written by whoever saves the host)."""
    tmp = os.path.join(sim_dir, f".{CLOCK_FILE}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(repr(float(now)))
    os.replace(tmp, os.path.join(sim_dir, CLOCK_FILE))
