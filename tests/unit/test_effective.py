"""Layering: the most specific level that sets a key wins; names with and without @domain."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from ds01d.config.effective import FakeNss, resolve, same_user
from ds01d.config.loader import builtin_layer
from ds01d.config.model import (
    LIMIT_KEYS,
    DesiredConfig,
    Exemption,
    GlobalPolicies,
    Group,
    Layer,
    Override,
)

NOW = datetime(2026, 11, 22, tzinfo=UTC)
POLICIES = GlobalPolicies(0.8, 0.5, 30, 24, 10, 30, 10)
NUMERIC = [k for k in LIMIT_KEYS if k != "allow_full_gpu"]


def config(defaults: dict[str, float], group: dict[str, float], override: dict[str, float] | None,
           exempt: list[str]) -> DesiredConfig:
    return DesiredConfig(
        builtin=builtin_layer(), defaults=Layer("defaults", defaults), default_group=None,
        groups={"g": Group("g", 1, frozenset({"alice@uni.example"}), (), Layer("group:g", group))},
        overrides={} if override is None else {"alice": Override("alice", Layer("override", override), None)},
        exemptions=(Exemption("alice", frozenset(exempt), "r", "b", None),) if exempt else (),
        policies=POLICIES, container_types={}, mig_layout=None)


layer = st.dictionaries(st.sampled_from(NUMERIC), st.integers(1, 100).map(float), max_size=6)


@given(layer, layer, st.none() | layer, st.lists(st.sampled_from(["idle_timeout_h", "max_runtime_h"]), unique=True))
def test_most_specific_level_that_sets_a_key_wins(d: dict[str, float], g: dict[str, float],
                                                   o: dict[str, float] | None, ex: list[str]) -> None:
    eff = resolve(config(d, g, o, ex), "alice", now=NOW, nss=FakeNss())
    builtin = builtin_layer().limits
    for key in NUMERIC:
        expected, source = builtin.get(key), "builtin" if key in builtin else None
        for table, name in ((d, "defaults"), (g, "group:g"), (o or {}, "override")):
            if key in table:
                expected, source = table[key], name
        if key in ex:
            expected, source = None, "exemption"
        assert getattr(eff.limits, key) == expected, key
        assert eff.sources.get(key) == source


def test_same_user() -> None:
    assert same_user("alice", "alice@uni.example")
    assert same_user("alice@uni.example", "alice")
    assert same_user("alice@UNI.example", "alice@uni.example")
    assert not same_user("alice@a.example", "alice@b.example")
    assert not same_user("alice", "alicia")


def test_group_found_through_domain_entry() -> None:
    eff = resolve(config({}, {"max_cpus": 3.0}, None, []), "alice", now=NOW, nss=FakeNss())
    assert eff.group == "g" and eff.limits.max_cpus == 3.0
    assert resolve(config({}, {}, None, []), "bob", now=NOW, nss=FakeNss()).group is None


def test_limits_shared_by_signature_are_each_users_own() -> None:
    """ds01d computes the limits of users with the same signature once and gives each user a
    copy: every copy equals the user's own ``resolve``, on the lab's real configuration (groups,
    overrides, exemptions, archived members, names with and without @domain) and at two times
    (an exemption in force, then ended)."""
    from pathlib import Path

    from ds01d.config.effective import named_users
    from ds01d.config.loader import load_config
    from ds01d.runtime.desired import EffectiveCache

    config = load_config(Path(__file__).parent.parent / "data/lab/current")
    assert config.exemptions and config.overrides and config.archived
    users = sorted(named_users(config))
    users += [u.split("@")[0] for u in users if "@" in u] + ["nobody-listed", "zz@other.example"]
    for when in (NOW, *(e.expires_at for e in config.exemptions if e.expires_at)):
        cache = EffectiveCache()
        for user in users:
            assert cache.get(config, user, now=when, nss=FakeNss()) == \
                resolve(config, user, now=when, nss=FakeNss()), user
        assert len(cache.shared) < len(users)  # shared: computed fewer times than users
