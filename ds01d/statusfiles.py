"""Read ``var/lib/ds01/status/<user>/<name>.json`` (what ds01d writes for every want).

Standard library only: ``ds01 status`` is a command users type, and its start-up is measured.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # mypy reads this name as True; importing typing costs ~3 ms
if TYPE_CHECKING:
    from typing import Any


def read_statuses(status_dir: str, user: str | None = None) -> list[dict[str, Any]]:
    """Every readable status file, or one user's; a damaged file is skipped."""
    try:
        folders = [user] if user is not None else sorted(os.listdir(status_dir))
    except OSError:
        return []
    out = []
    for folder in folders:
        path = os.path.join(status_dir, folder)
        try:
            names = sorted(n for n in os.listdir(path) if n.endswith(".json"))
        except OSError:
            continue
        for name in names:
            try:
                with open(os.path.join(path, name), encoding="utf-8") as f:
                    body = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(body, dict):
                out.append(body)
    return out
