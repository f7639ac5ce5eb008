"""The simulated host's clock, read without importing the simulator (``ds01`` start-up is
measured). The host's state is ``var/lib/ds01/sim/host.json``; its ``now`` is epoch seconds."""

from __future__ import annotations

import json
import os

HOST_FILE = "host.json"


def read_now(sim_dir: str) -> float:
    """Epoch seconds of simulated time; ``ValueError`` when the file is unreadable."""
    try:
        with open(os.path.join(sim_dir, HOST_FILE), encoding="utf-8") as f:
            now = json.load(f)["now"]
    except (OSError, KeyError, TypeError) as e:
        raise ValueError(f"unreadable simulated host: {e}") from None
    if not isinstance(now, int | float):
        raise ValueError("unreadable simulated host: 'now' is not a number")
    return float(now)
