"""Docker's answers, shown with the names the caller gave (pure).

Containers and volumes are ``ds01-<user>-<name>`` on the Docker side; the caller sees
``<name>``. Listings were already narrowed to the caller's by a label filter; the names are
all that changes here.
"""

from __future__ import annotations

import json
from typing import Any

from ds01d.core.naming import shown_name


def _names(item: dict[str, Any], user: str) -> None:
    names = item.get("Names")
    if isinstance(names, list):
        item["Names"] = ["/" + shown_name(str(n).lstrip("/"), user) for n in names]


def _name(item: dict[str, Any], key: str, user: str, slash: bool) -> None:
    value = item.get(key)
    if isinstance(value, str):
        item[key] = ("/" if slash else "") + shown_name(value.lstrip("/"), user)


def rewrite(kind: str, body: bytes, user: str) -> bytes:
    """A whole JSON answer, its names shown as the caller gave them."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if kind == "containers" and isinstance(data, list):
        for item in data:
            if isinstance(item, dict):
                _names(item, user)
    elif kind == "container" and isinstance(data, dict):
        _name(data, "Name", user, slash=True)
    elif kind == "volumes" and isinstance(data, dict):
        for item in data.get("Volumes") or []:
            if isinstance(item, dict):
                _name(item, "Name", user, slash=False)
    elif kind == "volume" and isinstance(data, dict):
        _name(data, "Name", user, slash=False)
    elif kind == "network" and isinstance(data, dict):
        data["Containers"] = {}  # everyone's containers on it: none of the caller's business
    else:
        return body
    return json.dumps(data).encode() + b"\n"


def stream_line(kind: str, line: bytes, user: str) -> bytes:
    """One JSON line of a stream (``events``: its actor's name; ``stats``: its ``name``), as
    the caller named it."""
    try:
        ev = json.loads(line)
    except ValueError:
        return line + b"\n"
    if not isinstance(ev, dict):
        return line + b"\n"
    if kind == "stats":
        _name(ev, "name", user, slash=True)
    attrs = (ev.get("Actor") or {}).get("Attributes")
    if kind == "events" and isinstance(attrs, dict):
        _name(attrs, "name", user, slash=False)
    return json.dumps(ev).encode() + b"\n"
