"""Names ds01 gives to systemd slices and Docker containers."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache

ROOT_SLICE = "ds01.slice"
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_RUNS = re.compile(r"_+")
MAX_PART = 32
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


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


@lru_cache(maxsize=65536)
def short_part(name: str) -> str:
    """A user name as the older scripts named its slice: ``@domain`` stripped, every other
    character but letters, digits and ``_`` made ``_``, runs of ``_`` folded, none at either
    end (``h.dang@lab.example`` -> ``h_dang``); a name longer than 32 then is hashed."""
    if 0 < len(name) <= MAX_PART and _PLAIN.issuperset(name) and "__" not in name \
            and name[:1] != "_" and name[-1:] != "_":
        return name  # its own short form (most names: without the two substitutions)
    short = _RUNS.sub("_", _UNSAFE.sub("_", name.split("@", 1)[0])).strip("_")
    return short if short and len(short) <= MAX_PART else unit_part(name)


def hashed_part(name: str) -> str:
    """The short form with a hash of the whole name: two accounts never share it."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{short_part(name)[:MAX_PART - 7]}_{digest}"


def user_parts(users: Iterable[str], known: Mapping[str, tuple[str, ...]],
               same: Callable[[str, str], bool]) -> dict[str, str]:
    """Each user's part of their slice name: the short form where no other user on the host
    has it, a hashed one on a collision (a name that is its own short form keeps it).

    ``users``: the accounts of this pass, each distinct (``dsrcol`` and ``dsrcol@lab`` are
    two accounts, and never share a slice); ``known``: short form -> the names the files
    list, which collide only with a user they do not name (``same``: whether an entry names
    a user)."""
    wanted = list(users)
    index: dict[str, list[str]] = {}
    for user in wanted:
        index.setdefault(short_part(user), []).append(user)
    out = {}
    for user in wanted:
        short = short_part(user)
        clash = any(o != user for o in index[short]) or \
            any(not same(o, user) for o in known.get(short, ()))
        out[user] = short if not clash or user == short else hashed_part(user)
    return out


def group_slice(group: str) -> str:
    return f"ds01-{unit_part(group)}.slice"


def user_slice(group: str, user: str, part: str | None = None) -> str:
    """``ds01-<group>-<user>.slice``: systemd nests it in ``ds01-<group>.slice``. ``part``:
    the user's part (:func:`user_parts`); by default the hashed form of a changed name."""
    return f"ds01-{unit_part(group)}-{part or unit_part(user)}.slice"


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
