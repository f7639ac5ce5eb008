"""``var/cache/ds01/limits.json``: every known user's effective limits, as ``ds01 limits --json``
prints them, so the commands users type need not parse YAML (their start-up is measured).

Written by whoever loads a valid configuration and may write there (ds01d; the CLI on a
simulated root). It is used only while (a) the configuration files still have the
fingerprint it was made from, (b) no lifecycle exemption has started or ended since
(``valid_until``), and (c) it is owned by root or the caller and writable by no one else.
Anything else falls back to loading the configuration. Standard library only.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # mypy reads this name as True; importing typing costs ~3 ms
if TYPE_CHECKING:
    from typing import Any

RELATIVE = "var/cache/ds01/limits.json"
CONFIG_FILES = ("resource-limits.yaml", "user-overrides.yaml", "lifecycle-exemptions.yaml",
                "mig-layout.yaml")
VERSION = 1


def config_files(etc: str) -> list[str]:
    """Every file whose change changes desired state: the YAML files and members files."""
    groups = os.path.join(etc, "groups")
    try:
        members = sorted(n for n in os.listdir(groups) if n.endswith(".members"))
    except OSError:
        members = []
    return ([os.path.join(etc, n) for n in CONFIG_FILES] + [groups]
            + [os.path.join(groups, n) for n in members])


def fingerprint(paths: list[str]) -> list[list[Any]]:
    """What changes when a file is edited, replaced or re-owned (a ``stat`` each)."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        out.append([p, st.st_mtime_ns, st.st_size, st.st_ino, st.st_uid])
    return out


def _trusted(fd: int) -> bool:
    st = os.fstat(fd)
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & 0o022


def lookup(root: str, etc: str, user: str, now_iso: str) -> dict[str, Any] | None:
    """``user``'s limits from the snapshot, or ``None`` when it cannot answer for sure."""
    try:
        fd = os.open(os.path.join(root, RELATIVE), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not _trusted(fd):
            return None
        with os.fdopen(fd, encoding="utf-8") as f:
            fd = -1
            body = json.load(f)
    except (OSError, ValueError):
        return None
    finally:
        if fd >= 0:
            os.close(fd)
    if not isinstance(body, dict) or body.get("version") != VERSION:
        return None
    until = body.get("valid_until")
    if body.get("fingerprint") != fingerprint(config_files(etc)) or (until and now_iso >= until):
        return None
    return _answer(body, user)


def _answer(body: dict[str, Any], user: str) -> dict[str, Any] | None:
    """``users`` and ``unlisted`` index ``bodies`` (users with equal limits share one)."""
    number = body["users"].get(user)
    if number is None:
        if user.split("@", 1)[0] in body["named"] or body.get("unlisted") is None:
            return None  # named with another spelling, or Unix groups decide: ask the config
        number = body["unlisted"]
    return {"user": user, **body["bodies"][number]}


def write(root: str, body: dict[str, Any]) -> bool:
    """Replace the snapshot atomically; ``False`` when this caller may not write there."""
    path = os.path.join(root, RELATIVE)
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, mode=0o755, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": VERSION, **body}, f, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError:
        return False
    return True
