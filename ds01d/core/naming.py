"""Names ds01 gives to systemd slices and Docker containers."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

ROOT_SLICE = "ds01.slice"
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
MAX_PART = 32


@lru_cache(maxsize=65536)
def unit_part(name: str) -> str:
    """A user or group name as one part of a slice name.

    ``@domain`` is stripped; characters other than letters, digits and ``_`` become ``_``
    (a ``-`` would start a deeper slice level); long names are cut. Whenever the name had to be
    changed, a short hash of the original keeps two users apart (``mary-jane`` and
    ``mary_jane`` must not share a slice).
    """
    local = name.split("@", 1)[0]
    safe = _UNSAFE.sub("_", local)[:MAX_PART]
    if safe == local and safe:
        return safe
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{safe or 'u'}_{digest}"


def group_slice(group: str) -> str:
    return f"ds01-{unit_part(group)}.slice"


def user_slice(group: str, user: str) -> str:
    """``ds01-<group>-<user>.slice``: systemd nests it in ``ds01-<group>.slice``."""
    return f"ds01-{unit_part(group)}-{unit_part(user)}.slice"


def docker_name(user: str, name: str) -> str:
    """The Docker name of a user's container: ``ds01-<user>-<name>``, unique per user: a name
    that is not plain lower-case letters, digits and ``_`` (a domain, capitals, dots) carries a
    short hash of itself, so ``bob``, ``Bob`` and ``bob@lab`` never share a name."""
    local = user.split("@", 1)[0]
    if user == local and local == local.lower() and unit_part(user) == local:
        return f"ds01-{local}-{name}"
    digest = hashlib.sha256(user.encode()).hexdigest()[:6]
    return f"ds01-{_UNSAFE.sub('_', local)[:MAX_PART]}_{digest}-{name}"


def docker_volume(user: str, name: str) -> str:
    """The Docker name of a user's named volume: ``ds01-<user>-<name>`` (two users may both
    have ``data``)."""
    return docker_name(user, name)


def user_prefix(user: str) -> str:
    """What ds01 puts before the names a user gives (containers and volumes)."""
    return docker_name(user, "")


def shown_name(docker: str, user: str) -> str:
    """The name the user gave: ``ds01-alice-train`` -> ``train`` (others unchanged)."""
    prefix = user_prefix(user)
    return docker[len(prefix):] if docker.startswith(prefix) and len(docker) > len(prefix) \
        else docker
