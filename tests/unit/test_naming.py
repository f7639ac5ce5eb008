"""Slice names: the short form the lab's drop-ins and dashboards use, unless it collides."""

from __future__ import annotations

from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from ds01d.config.effective import same_user
from ds01d.core import actions as a
from ds01d.core.naming import short_part, user_parts, user_slice
from tests.harness import Lab, config_from


def parts(users: list[str], known: dict[str, tuple[str, ...]] | None = None) -> dict[str, str]:
    return user_parts(users, known or {}, same_user)


def test_short_form_as_the_older_scripts_named_slices() -> None:
    assert short_part("h.dang@lab.example.lan") == "h_dang"
    assert short_part("o'brien..x@lab") == "o_brien_x"
    assert short_part("200345@lab.example.lan") == "200345"
    assert short_part("a" * 40).startswith("a" * 32 + "_")  # too long: hashed


@given(st.text(alphabet="ab_Z9.@-é", max_size=40))
@example("a__b")
@example("_a")
@example("a_")
@example("")
@example("a" * 33)
def test_a_name_that_is_its_own_short_form_is_kept_as_the_long_way_would(name: str) -> None:
    """The short form is the one the substitutions give, names that are already their own
    short form (returned as they are) included."""
    from ds01d.core import naming

    short = naming._RUNS.sub("_", naming._UNSAFE.sub("_", name.split("@", 1)[0])).strip("_")
    expected = short if short and len(short) <= naming.MAX_PART else naming.unit_part(name)
    assert short_part.__wrapped__(name) == expected


def test_short_when_unique_hashed_on_a_collision() -> None:
    assert parts(["h.dang@lab.example.lan"]) == {"h.dang@lab.example.lan": "h_dang"}
    got = parts(["h.dang@lab.example.lan", "h_dang"])
    assert got["h_dang"] == "h_dang"  # already its own short form
    assert got["h.dang@lab.example.lan"].startswith("h_dang_")
    clash = parts(["mary-jane"], {"mary_jane": ("mary_jane",)})  # a member not here now
    assert clash["mary-jane"] != "mary_jane"
    # an entry that names the user is not a collision: a login and its members-file entry
    assert parts(["alice@lab.example.lan"], {"alice": ("alice",)}) == \
        {"alice@lab.example.lan": "alice"}
    # two accounts are: alice and alice@lab never share a slice
    two = parts(["alice", "alice@lab.example.lan"])
    assert two["alice"] == "alice" and two["alice@lab.example.lan"].startswith("alice_")


def test_the_slice_and_the_container_use_the_short_name(tmp_path: Path) -> None:
    lab = Lab(tmp_path, config=config_from(
        "groups:\n  admin: {members: [h.dang@lab.example.lan]}\n  student: {}\n"
        "default_group: student\n"))
    lab.want("h.dang@lab.example.lan", "t")
    actions = lab.plan().actions
    slices = [x.name for x in actions if isinstance(x, a.EnsureSlice)]
    assert "ds01-admin-h_dang.slice" in slices
    (create,) = [x for x in actions if isinstance(x, a.CreateContainer)]
    assert create.spec.cgroup_parent == "ds01-admin-h_dang.slice"
    assert user_slice("admin", "h.dang@lab.example.lan") != "ds01-admin-h_dang.slice"
    # ds01's Docker socket puts that user's own containers in the same slice
    from ds01d.dockersock.main import slice_of
    from ds01d.runtime.desired import EffectiveCache

    config = lab.config
    assert slice_of(EffectiveCache(), config, "h.dang@lab.example.lan", "admin") == \
        "ds01-admin-h_dang.slice"
