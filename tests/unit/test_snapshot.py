"""The limits snapshot answers only while it is current and trusted, and then exactly as the
configuration does."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ds01d import snapshot
from ds01d.cli.limits import effective_of
from ds01d.config.effective import FakeNss, effective_json, resolve
from ds01d.config.loader import load_config
from ds01d.paths import Paths
from ds01d.units import iso
from tests.conftest import MakeRoot
from tests.unit.test_loader import LAB_FILES

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def root(make_root: MakeRoot) -> Paths:
    return Paths(make_root(LAB_FILES))


def lookup(p: Paths, user: str, when: datetime = NOW) -> dict[str, object] | None:
    return snapshot.lookup(p.top, p.under("etc/ds01"), user, iso(when))


@pytest.mark.parametrize("user", ["carol", "204214@lab.example.lan", "zoe", "dave"])
def test_the_snapshot_answers_as_the_configuration_does(root: Paths, user: str) -> None:
    assert lookup(root, user) is None  # no snapshot yet
    slow = effective_of(root, user, NOW)  # loads the config and writes the snapshot
    fast = lookup(root, user)
    expected = effective_json(resolve(load_config(root.etc), user, now=NOW, nss=FakeNss()))
    assert slow == expected
    assert fast == json.loads(json.dumps(expected))


def test_an_edit_makes_it_stale(root: Paths) -> None:
    effective_of(root, "zoe", NOW)
    limits = root.etc / "resource-limits.yaml"
    limits.write_text(limits.read_text().replace("max_cpus: 32", "max_cpus: 16"))
    assert lookup(root, "zoe") is None
    assert effective_of(root, "zoe", NOW)["limits"]["max_cpus"] == 16.0


def test_a_new_members_file_makes_it_stale(root: Paths) -> None:
    effective_of(root, "zoe", NOW)
    (root.etc / "groups/admin.members").write_text("zoe\n")
    assert lookup(root, "zoe") is None


def test_it_expires_when_an_exemption_ends(root: Paths) -> None:
    effective_of(root, "carol", NOW)
    assert lookup(root, "carol", datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) is not None
    assert lookup(root, "carol", datetime(2027, 1, 1, 0, 0, tzinfo=UTC)) is None


def test_other_spellings_and_unix_groups_go_to_the_configuration(root: Paths) -> None:
    effective_of(root, "carol", NOW)
    assert lookup(root, "carol@lab.example.lan") is not None  # spelled so in the exemptions
    assert lookup(root, "carol@other.example") is None  # named, but spelled otherwise
    assert lookup(root, "204214") is None
    limits = root.etc / "resource-limits.yaml"
    text = limits.read_text().replace("  admin:\n", "  admin:\n    unix_groups: [wheel]\n")
    limits.write_text(text)
    effective_of(root, "carol", NOW)
    assert lookup(root, "zoe") is None  # NSS decides for unlisted users


def test_a_snapshot_others_may_write_is_ignored(root: Paths) -> None:
    effective_of(root, "zoe", NOW)
    path = Path(root.top) / snapshot.RELATIVE
    os.chmod(path, 0o666)
    assert lookup(root, "zoe") is None
    os.chmod(path, 0o644)
    assert lookup(root, "zoe") is not None


def test_users_with_equal_limits_share_one_body(root: Paths) -> None:
    effective_of(root, "zoe", NOW)
    lines = (Path(root.top) / snapshot.RELATIVE).read_text().splitlines()
    bodies = [x for x in lines if x.startswith("B ")]
    users = [x for x in lines if x.startswith("U ")]
    assert len(bodies) < len(users) + 1


@pytest.mark.parametrize("name", ["zoe\nB 0", "zoe 0", "../zoe", "", "zo e"])
def test_names_that_are_not_user_names_are_not_looked_up(root: Paths, name: str) -> None:
    effective_of(root, "zoe", NOW)
    assert lookup(root, name) is None


def test_an_edit_during_the_load_leaves_it_stale_not_wrong(
        root: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    from ds01d.cli import common

    real_load = common.load
    limits = root.etc / "resource-limits.yaml"

    def load_then_edit(p: Paths) -> object:
        config = real_load(p)  # the old file is loaded...
        limits.write_text(limits.read_text().replace("max_cpus: 32", "max_cpus: 16"))
        return config  # ...and edited before the snapshot is written

    monkeypatch.setattr(common, "load", load_then_edit)
    assert effective_of(root, "zoe", NOW)["limits"]["max_cpus"] == 32.0
    monkeypatch.setattr(common, "load", real_load)
    assert lookup(root, "zoe") is None  # stale: the old answer is never served
    assert effective_of(root, "zoe", NOW)["limits"]["max_cpus"] == 16.0


def test_every_named_user_gets_their_own_limits(root: Paths) -> None:
    """Bodies are shared by users whose limits come out the same (computed once per group,
    override, lifted limits and notes); every user's answer is still theirs exactly."""
    config = load_config(root.etc)
    effective_of(root, "zoe", NOW)  # writes the snapshot
    named = {e for g in config.groups.values() for e in g.members} | set(config.overrides)
    named |= {e.username for e in config.exemptions}
    assert len(named) >= 5
    for user in [*sorted(named), "nobody-listed", "zoe"]:
        expected = effective_json(resolve(config, user, now=NOW, nss=FakeNss()))
        assert lookup(root, user) == json.loads(json.dumps(expected)), user


def test_users_alike_but_for_an_override_or_an_exemption(make_root: MakeRoot) -> None:
    root = Paths(make_root({
        "resource-limits.yaml": "version: 1\ndefault_group: s\ngroups:\n  s:\n    members: "
                                "[ann, ben, cat, dan]\n    max_cpus: 4\n",
        "user-overrides.yaml": "ben: {max_cpus: 16, reason: thesis}\n",
        "lifecycle-exemptions.yaml": "exemptions:\n- {username: cat, exempt_from: "
                                     "[idle_timeout_h], reason: r, approved_by: e}\n"}))
    config = load_config(root.etc)
    effective_of(root, "ann", NOW)
    for user in ("ann", "ben", "cat", "dan", "eve"):
        expected = effective_json(resolve(config, user, now=NOW, nss=FakeNss()))
        assert lookup(root, user) == json.loads(json.dumps(expected)), user
    assert lookup(root, "ben")["limits"]["max_cpus"] == 16  # type: ignore[index]


def _new_daemon_pass(p: Paths) -> None:
    from ds01d.adapters.sim import SimHost, sim_gpu
    from ds01d.daemon import Daemon

    Daemon(p, simulate=True, host=SimHost(gpus=[sim_gpu(0)], now=NOW.timestamp())).run_pass()


def test_a_new_ds01d_keeps_a_snapshot_that_is_already_right(
        make_root: MakeRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    from ds01d import __version__
    from ds01d.config import effective

    p = Paths(make_root({k: v.replace(" unix_groups: [phd],", "") for k, v in LAB_FILES.items()}))
    assert "unix_groups" not in (p.etc / "resource-limits.yaml").read_text()
    made: list[int] = []
    real = effective.snapshot_body

    def counted(*a: Any, **k: Any) -> dict[str, Any]:
        made.append(1)
        return real(*a, **k)

    monkeypatch.setattr(effective, "snapshot_body", counted)
    _new_daemon_pass(p)
    assert made == [1]
    path = Path(p.top) / snapshot.RELATIVE
    before = path.stat()
    _new_daemon_pass(p)  # the same files, the same ds01: kept as it is
    assert made == [1] and path.stat().st_ino == before.st_ino
    assert lookup(p, "zoe") is not None
    text = path.read_text()
    path.write_text(text.replace(f'"made_by":"{__version__}"', '"made_by":"0.0.1"'))
    _new_daemon_pass(p)  # made by another version of ds01: made again
    assert made == [1, 1] and f'"made_by":"{__version__}"' in path.read_text()
    limits = p.etc / "resource-limits.yaml"
    limits.write_text(limits.read_text().replace("max_cpus: 32", "max_cpus: 16"))
    _new_daemon_pass(p)  # edited while no ds01d ran: made again
    assert made == [1, 1, 1]
