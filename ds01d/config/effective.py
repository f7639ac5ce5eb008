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
from ds01d.names import local_part
from ds01d.units import iso


class Nss(Protocol):
    """Name service lookups (``/etc/group``, LDAP, ...)."""

    def unix_group_members(self, name: str) -> frozenset[str] | None:
        """Members of a Unix group, primary members included; ``None``: no such group."""

    def primary_group(self, user: str) -> str | None:
        """The name of the user's primary Unix group; ``None``: unknown user."""

    def state(self, groups: tuple[str, ...]) -> object:
        """A value that changes whenever membership of ``groups`` or a user's primary group
        may have changed (compared pass to pass: group changes are seen within a pass)."""


class NoNss:
    """No Unix groups at all (the simulated host, and tests)."""

    def unix_group_members(self, name: str) -> frozenset[str] | None:
        return None

    def primary_group(self, user: str) -> str | None:
        return None

    def state(self, groups: tuple[str, ...]) -> object:
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

    def state(self, groups: tuple[str, ...]) -> object:
        return (sorted((g, sorted(self.groups.get(g, ()))) for g in groups),
                sorted(self.primary.items()))


def same_user(entry: str, user: str, *, loose: bool = True) -> bool:
    """Whether a list entry names ``user``. Domains compare case-insensitively.

    ``loose`` (``match_without_domain``, the default): a name without ``@domain`` also matches
    the same name with one, either way round; two names that both carry a domain must match
    whole. Not loose: both must be written alike.
    """
    if entry == user:
        return True
    e_local, e_at, e_dom = entry.partition("@")
    u_local, u_at, u_dom = user.partition("@")
    if e_at and u_at:
        return e_local == u_local and e_dom.lower() == u_dom.lower()
    return loose and e_local == u_local and bool(e_at) != bool(u_at)


def _named_in(entries: frozenset[str] | None, user: str, loose: bool) -> bool:
    return any(same_user(e, user, loose=loose) for e in entries or ())


def unix_groups_named(config: DesiredConfig) -> tuple[str, ...]:
    """Every Unix group some group's ``unix_groups`` names."""
    return tuple(sorted({u for g in config.groups.values() for u in g.unix_groups}))


def listed_as(config: DesiredConfig, user: str) -> dict[str, str]:
    """Group -> the entry naming ``user`` in its members (inline, file or placement)."""
    loose = config.match_without_domain
    out: dict[str, str] = {}
    for entry, g in config.member_index.get(local_part(user), ()):
        if same_user(entry, user, loose=loose) and (g not in out or entry == user):
            out[g] = entry
    return out


def groups_of(config: DesiredConfig, user: str, nss: Nss) -> list[str]:
    """Every group that lists ``user``: inline, members file or one of its Unix groups."""
    listed = listed_as(config, user)
    loose = config.match_without_domain
    return [g.name for g in config.groups.values()
            if g.name in listed
            or (g.unix_groups and _in_unix_groups(g.unix_groups, user, nss, loose))]


def _in_unix_groups(names: tuple[str, ...], user: str, nss: Nss, loose: bool) -> bool:
    for name in names:
        if _named_in(nss.unix_group_members(name), user, loose):
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


def find_override(overrides: Mapping[str, object], user: str, *, loose: bool = True
                  ) -> str | None:
    """The override key naming ``user`` (exact spelling first)."""
    if user in overrides:
        return user
    return next((k for k in overrides if same_user(k, user, loose=loose)), None)


def _exemption_layer(config: DesiredConfig, user: str, now: datetime) -> Layer | None:
    loose = config.match_without_domain
    lifted = {k for e in config.exemptions
              if same_user(e.username, user, loose=loose) and e.active(now)
              for k in e.exempt_from}
    if not lifted:
        return None
    return Layer("exemption", {k: None for k in EXEMPTIBLE if k in lifted})


def layers_for(config: DesiredConfig, user: str, group: str | None,
               now: datetime) -> list[Layer]:
    """The layers that apply to ``user``, least specific first."""
    layers = [config.builtin, config.lab_defaults, config.defaults]
    if group is not None and group in config.groups:
        layers.append(config.groups[group].layer)
    key = find_override(config.overrides, user, loose=config.match_without_domain)
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


def _priority(layers: list[Layer], sources: dict[str, str]) -> int:
    """The most specific ``priority``: an override's, the group's, ``defaults``', builtin."""
    value, source = 0, "builtin"
    for layer in layers:
        if layer.priority is not None:
            value, source = layer.priority, layer.source
    sources["priority"] = source
    return value


def _spelling_notes(config: DesiredConfig, user: str, group: str | None) -> list[str]:
    """Say when ``user`` was found under another spelling (with or without ``@domain``)."""
    if not config.match_without_domain:
        return []
    found = []
    entry = listed_as(config, user).get(group or "")
    if entry is not None and entry != user:
        found.append(f"the entry {entry!r} of group {group}")
    key = find_override(config.overrides, user)
    if key is not None and key != user:
        found.append(f"the override {key!r}")
    found += [f"the exemption for {e.username!r}" for e in config.exemptions
              if e.username != user and same_user(e.username, user)]
    return [f"{user} is matched to {what}: names match with or without @domain "
            "(match_without_domain: false turns this off)" for what in found]


Signature = tuple[str | None, str | None, frozenset[str], tuple[str, ...]]


def signature(config: DesiredConfig, user: str, *, now: datetime, nss: Nss) -> Signature:
    """What decides a user's limits: their group, their override, the limits an exemption
    lifts, and any note. Users with the same signature have the same limits (and sources):
    the limits of a lab's 2,000 users come from a handful of computations."""
    group, warnings = choose_group(config, user, nss)
    loose = config.match_without_domain
    lifted = frozenset(k for e in config.exemptions if same_user(e.username, user, loose=loose)
                       and e.active(now) for k in e.exempt_from)
    notes, _ = _notes(config, user, group, warnings)
    return group, find_override(config.overrides, user, loose=loose), lifted, tuple(notes)


def _notes(config: DesiredConfig, user: str, group: str | None, warnings: list[str]
           ) -> tuple[list[str], bool]:
    """What ``ds01 limits`` notes for ``user`` (several groups, access ended, another
    spelling matched), and whether their access has ended."""
    archived = _named_in(config.archived, user, config.match_without_domain)
    ended = [f"{user} is listed in groups/archived.members: access has ended, ds01 gives "
             "them no container"] if archived else []
    return [*warnings, *ended, *_spelling_notes(config, user, group)], archived


def resolve(config: DesiredConfig, user: str, *, now: datetime, nss: Nss) -> Effective:
    """The effective limits of ``user`` at ``now``: the most specific layer setting a key wins."""
    group, warnings = choose_group(config, user, nss)
    layers = layers_for(config, user, group, now)
    sources: dict[str, str] = {}
    limits = _merge(layers, "limits", LIMIT_KEYS, "", sources)
    aggregate = _merge(layers, "aggregate", AGGREGATE_KEYS, "aggregate.", sources)
    policies = _merge(layers, "policies", POLICY_KEYS, "policies.", sources)
    key = find_override(config.overrides, user, loose=config.match_without_domain)
    notes, archived = _notes(config, user, group, warnings)
    return Effective(
        user=user,
        group=group,
        priority=_priority(layers, sources),
        limits=Limits(**limits),  # type: ignore[arg-type]
        aggregate=Aggregate(**aggregate),  # type: ignore[arg-type]
        policies=IdlePolicy(**policies),  # type: ignore[arg-type]
        sources=sources,
        reason=config.overrides[key].reason if key is not None else None,
        warnings=tuple(notes),
        archived=archived,
    )


def effective_json(eff: Effective) -> dict[str, Any]:
    """The ``ds01 limits --json`` shape of DESIGN.md: bytes, hours, ``null`` = unlimited
    (plus ``priority``, ``reason`` and ``notes``)."""
    return {"user": eff.user, "group": eff.group, "limits": eff.limits.as_dict(),
            "aggregate": asdict(eff.aggregate), "policies": asdict(eff.policies),
            "sources": dict(eff.sources), "priority": eff.priority, "reason": eff.reason,
            "notes": list(eff.warnings), "archived": eff.archived}


def named_users(config: DesiredConfig) -> set[str]:
    """Every user name the configuration lists: members, overrides, exemptions, archived."""
    return set(config.named)


def is_listed(config: DesiredConfig, user: str) -> bool:
    """Whether the configuration names ``user`` anywhere (in any spelling it accepts)."""
    loose = config.match_without_domain
    return any(same_user(n, user, loose=loose) for n in named_users(config))


UNLISTED = " unlisted"
"""A name no entry can match (user names have no spaces): stands for every unlisted user."""


def snapshot_body(config: DesiredConfig, *, fingerprint: object, now: datetime,
                  nss: Nss) -> dict[str, Any]:
    """Every named user's limits, and those of any unlisted user (see ``ds01d/snapshot.py``).

    ``fingerprint``: of the configuration files, taken *before* ``config`` was loaded, so an
    edit made meanwhile leaves the snapshot stale (unused), never wrong.
    """
    names = named_users(config)

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
    from ds01d import __version__

    return {"fingerprint": fingerprint, "made_by": __version__,
            "users": {u: number(u) for u in sorted(names)},
            "named": sorted({local_part(u) for u in names}),
            "unlisted": None if uses_nss else number(UNLISTED),
            "bodies": bodies,
            "valid_until": iso(min(ends)) if ends else None}
