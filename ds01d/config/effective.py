"""Effective limits: builtin -> defaults -> group -> user override -> active exemption.

Pure: group membership through Unix groups comes from an injected :class:`Nss`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ds01d.config.model import (
    AGGREGATE_KEYS,
    EXEMPTIBLE,
    LIMIT_KEYS,
    POLICY_KEYS,
    Aggregate,
    DesiredConfig,
    Effective,
    IdlePolicy,
    Layer,
    Limits,
    Value,
)
from ds01d.units import iso


class Nss(Protocol):
    """Name service lookups (``/etc/group``, LDAP, ...)."""

    def unix_group_members(self, name: str) -> frozenset[str] | None:
        """Members of a Unix group, primary members included; ``None``: no such group."""

    def primary_group(self, user: str) -> str | None:
        """The name of the user's primary Unix group; ``None``: unknown user."""


class NoNss:
    """No Unix groups at all (the simulated host, and tests)."""

    def unix_group_members(self, name: str) -> frozenset[str] | None:
        return None

    def primary_group(self, user: str) -> str | None:
        return None


@dataclass
class FakeNss:
    """A fixed table of Unix groups, for tests."""

    groups: dict[str, frozenset[str]] = field(default_factory=dict)
    primary: dict[str, str] = field(default_factory=dict)

    def unix_group_members(self, name: str) -> frozenset[str] | None:
        return self.groups.get(name)

    def primary_group(self, user: str) -> str | None:
        return self.primary.get(user)


def local_part(name: str) -> str:
    """``alice@lab.example`` -> ``alice``."""
    return name.split("@", 1)[0]


def same_user(entry: str, user: str) -> bool:
    """Whether a list entry names ``user``: with or without ``@domain`` on either side.

    Two names that both carry a domain must match whole (domain case-insensitive).
    """
    if "@" in entry and "@" in user:
        e_local, e_dom = entry.split("@", 1)
        u_local, u_dom = user.split("@", 1)
        return e_local == u_local and e_dom.lower() == u_dom.lower()
    return local_part(entry) == local_part(user)


def _named_in(entries: frozenset[str] | None, user: str) -> bool:
    return any(same_user(e, user) for e in entries or ())


def groups_of(config: DesiredConfig, user: str, nss: Nss) -> list[str]:
    """Every group that lists ``user``: inline, members file or one of its Unix groups."""
    listed = {g for entry, g in config.member_index.get(local_part(user), ())
              if same_user(entry, user)}
    return [g.name for g in config.groups.values()
            if g.name in listed or (g.unix_groups and _in_unix_groups(g.unix_groups, user, nss))]


def _in_unix_groups(names: tuple[str, ...], user: str, nss: Nss) -> bool:
    for name in names:
        if _named_in(nss.unix_group_members(name), user):
            return True
        primary = nss.primary_group(user)
        if primary is not None and primary == name:
            return True
    return False


def choose_group(config: DesiredConfig, user: str, nss: Nss) -> tuple[str | None, list[str]]:
    """The user's group and any warning: highest ``priority`` wins; else ``default_group``."""
    found = groups_of(config, user, nss)
    if not found:
        return config.default_group, []
    best = max(found, key=lambda g: (config.groups[g].priority, [-ord(c) for c in g]))
    if len(found) == 1:
        return best, []
    others = ", ".join(g for g in found if g != best)
    return best, [f"{user} is in several groups ({best}, {others}); using {best} "
                  "(highest priority)"]


def find_override(overrides: Mapping[str, object], user: str) -> str | None:
    """The override key naming ``user`` (exact spelling first)."""
    if user in overrides:
        return user
    return next((k for k in overrides if same_user(k, user)), None)


def _exemption_layer(config: DesiredConfig, user: str, now: datetime) -> Layer | None:
    lifted = {k for e in config.exemptions if same_user(e.username, user) and e.active(now)
              for k in e.exempt_from}
    if not lifted:
        return None
    return Layer("exemption", {k: None for k in EXEMPTIBLE if k in lifted})


def layers_for(config: DesiredConfig, user: str, group: str | None,
               now: datetime) -> list[Layer]:
    """The layers that apply to ``user``, least specific first."""
    layers = [config.builtin, config.defaults]
    if group is not None and group in config.groups:
        layers.append(config.groups[group].layer)
    key = find_override(config.overrides, user)
    if key is not None:
        layers.append(config.overrides[key].layer)
    exemption = _exemption_layer(config, user, now)
    if exemption is not None:
        layers.append(exemption)
    return layers


def _merge(layers: list[Layer], part: str, keys: tuple[str, ...], prefix: str,
           sources: dict[str, str]) -> dict[str, Value]:
    values: dict[str, Value] = dict.fromkeys(keys)
    for layer in layers:
        table: Mapping[str, Value] = getattr(layer, part)
        for k in keys:
            if k in table:
                values[k] = table[k]
                sources[prefix + k] = layer.source
    return values


Signature = tuple[str | None, str | None, frozenset[str], tuple[str, ...]]


def signature(config: DesiredConfig, user: str, *, now: datetime, nss: Nss) -> Signature:
    """What decides a user's limits: their group, their override, the limits an exemption
    lifts, and any note. Users with the same signature have the same limits (and sources):
    the limits of a lab's 2,000 users come from a handful of computations."""
    group, warnings = choose_group(config, user, nss)
    lifted = frozenset(k for e in config.exemptions if same_user(e.username, user)
                       and e.active(now) for k in e.exempt_from)
    return group, find_override(config.overrides, user), lifted, tuple(warnings)


def resolve(config: DesiredConfig, user: str, *, now: datetime, nss: Nss) -> Effective:
    """The effective limits of ``user`` at ``now``: the most specific layer setting a key wins."""
    group, warnings = choose_group(config, user, nss)
    layers = layers_for(config, user, group, now)
    sources: dict[str, str] = {}
    limits = _merge(layers, "limits", LIMIT_KEYS, "", sources)
    aggregate = _merge(layers, "aggregate", AGGREGATE_KEYS, "aggregate.", sources)
    policies = _merge(layers, "policies", POLICY_KEYS, "policies.", sources)
    key = find_override(config.overrides, user)
    return Effective(
        user=user,
        group=group,
        priority=config.groups[group].priority if group is not None and group in config.groups
        else 0,
        limits=Limits(**limits),  # type: ignore[arg-type]
        aggregate=Aggregate(**aggregate),  # type: ignore[arg-type]
        policies=IdlePolicy(**policies),  # type: ignore[arg-type]
        sources=sources,
        reason=config.overrides[key].reason if key is not None else None,
        warnings=tuple(warnings),
    )


def effective_json(eff: Effective) -> dict[str, Any]:
    """The ``ds01 limits --json`` shape of DESIGN.md: bytes, hours, ``null`` = unlimited
    (plus ``priority``, ``reason`` and ``notes``)."""
    return {"user": eff.user, "group": eff.group, "limits": eff.limits.as_dict(),
            "aggregate": asdict(eff.aggregate), "policies": asdict(eff.policies),
            "sources": dict(eff.sources), "priority": eff.priority, "reason": eff.reason,
            "notes": list(eff.warnings)}


UNLISTED = " unlisted"
"""A name no entry can match (user names have no spaces): stands for every unlisted user."""


def snapshot_body(config: DesiredConfig, *, fingerprint: object, now: datetime,
                  nss: Nss) -> dict[str, Any]:
    """Every named user's limits, and those of any unlisted user (see ``ds01d/snapshot.py``).

    ``fingerprint``: of the configuration files, taken *before* ``config`` was loaded, so an
    edit made meanwhile leaves the snapshot stale (unused), never wrong.
    """
    names = {e for g in config.groups.values() for e in g.members} | set(config.overrides)
    names |= {e.username for e in config.exemptions}

    def entry(user: str) -> dict[str, Any]:
        body = effective_json(resolve(config, user, now=now, nss=nss))
        del body["user"]
        return body

    bodies: list[dict[str, Any]] = []
    index: dict[str, int] = {}

    by_signature: dict[Signature, int] = {}

    def number(user: str) -> int:
        """Users with the same limits share one body, computed once: the file stays small to
        read, and a lab's limits are a handful of computations, not one per user."""
        sig = signature(config, user, now=now, nss=nss)
        if sig not in by_signature:
            body = entry(user)
            key = repr(sorted(body.items()))
            if key not in index:
                index[key] = len(bodies)
                bodies.append(body)
            by_signature[sig] = index[key]
        return by_signature[sig]

    ends = [e.expires_at for e in config.exemptions if e.expires_at and e.expires_at > now]
    uses_nss = any(g.unix_groups for g in config.groups.values())
    return {"fingerprint": fingerprint,
            "users": {u: number(u) for u in sorted(names)},
            "named": sorted({local_part(u) for u in names}),
            "unlisted": None if uses_nss else number(UNLISTED),
            "bodies": bodies,
            "valid_until": iso(min(ends)) if ends else None}
