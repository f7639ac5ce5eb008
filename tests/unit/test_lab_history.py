"""A lab's real configuration, as it grew (tests/data/lab/): every version loads with exit 0
and warnings, or fails with its one real error; ``ds01 limits`` equals what the older scripts
computed, on every key whose meaning is the same.

The expected values are the older scripts' own rules applied by hand (not ds01's output):
- a user's group is the first group, in file order, whose members (inline or
  ``groups/<group>.members``) list the user; else ``default_group``;
- their limits are ``defaults`` updated with that group's keys; with an override,
  ``defaults`` updated with the override's keys (the group is skipped: ds01 differs here on
  purpose, an override adds to the group; those keys are left out below);
- priority was ``limits.get('priority', 10)``; idle thresholds: the global ``policies``,
  then the group's ``policies``; aggregate: the group's section, none for a group without one;
- GPU counts were MIG slots, ``gpu_allocation.mig_instances_per_gpu`` to a whole GPU.
Keys a version does not set take ds01's own defaults (docs/configuration.md, "Migrating").
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ds01d.cli import main
from ds01d.config.effective import NoNss, effective_json, resolve
from ds01d.config.loader import load_config
from ds01d.config.migrate import migrate
from ds01d.errors import ConfigError
from tests.conftest import REPO

LAB = REPO / "tests/data/lab"
GiB = 1024**3
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MEMBERS = ("groups/student.members", "groups/researcher.members", "groups/admin.members")
RUNTIME = (*MEMBERS, "groups/faculty.members", "groups/archived.members", "group-overrides.txt")
VERSIONS: dict[str, tuple[str, ...]] = {
    "01-first.yaml": (),
    "02-mig-gpus.yaml": (),
    "04-members-files.yaml": MEMBERS,
    "05-runtime.yaml": RUNTIME,
    "06-aggregate.yaml": RUNTIME,
    "07-lifecycle-policies.yaml": RUNTIME,
    "08-group-policies.yaml": RUNTIME,
    "09-hours-keys.yaml": RUNTIME,
}
"""Each earlier version with the members files the lab had beside it."""


def lab_root(tmp_path: Path, version: str | None, extra: tuple[str, ...] = ()) -> Path:
    """A root with ``current/`` (``version=None``) or one earlier version and ``extra``."""
    root = tmp_path / "root"
    etc = root / "etc/ds01"
    if version is None:
        shutil.copytree(LAB / "current", etc)
        return root
    (etc / "groups").mkdir(parents=True)
    shutil.copy(LAB / "history" / version, etc / "resource-limits.yaml")
    for name in extra:
        shutil.copy(LAB / "current" / name, etc / name)
    return root


def limits_json(root: Path, user: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["--root", str(root), "limits", user, "--json"]) == 0
    body: dict[str, Any] = json.loads(capsys.readouterr().out)
    return body


def flat(body: dict[str, Any]) -> dict[str, Any]:
    out = {"group": body["group"], "priority": body["priority"], **body["limits"]}
    out |= {f"aggregate.{k}": v for k, v in body["aggregate"].items()}
    out |= {f"policies.{k}": v for k, v in body["policies"].items()}
    return out


def check(root: Path, expected: dict[str, dict[str, Any]],
          capsys: pytest.CaptureFixture[str]) -> None:
    for user, want in expected.items():
        got = flat(limits_json(root, user, capsys))
        wrong = {k: (got[k], v) for k, v in want.items() if got[k] != pytest.approx(v)}
        assert not wrong, f"{user}: (ds01, older scripts) {wrong}"


STUDENT_04: dict[str, Any] = {"allow_full_gpu": False, "max_cpus": 32, "memory": 32 * GiB,
              "memory_swap": 32 * GiB, "shm_size": 16 * GiB, "pids_limit": 4096,
              "max_containers_per_user": 3, "max_runtime_h": 24, "idle_timeout_h": 0.5,
              "gpu_hold_after_stop_h": 0.25, "container_hold_after_stop_h": 0.5,
              "max_tasks": 32768, "priority": 10}
ADMIN_04: dict[str, Any] = {"group": "admin", "allow_full_gpu": True, "max_gpu_equivalents": None,
            "max_gpu_slots_per_container": None, "max_cpus": 64, "memory": 128 * GiB,
            "memory_swap": 128 * GiB, "shm_size": 64 * GiB, "idle_timeout_h": 1,
            "max_runtime_h": 24, "gpu_hold_after_stop_h": 1, "max_containers_per_user": 10,
            "max_tasks": None, "container_hold_after_stop_h": 0.5, "priority": 10}
RESEARCHER_05: dict[str, Any] = {"group": "researcher", "allow_full_gpu": True, "max_cpus": 48,
                 "memory": 64 * GiB, "memory_swap": 64 * GiB, "shm_size": 32 * GiB,
                 "max_runtime_h": 48, "idle_timeout_h": 1, "max_tasks": 65536,
                 "max_containers_per_user": 5, "gpu_hold_after_stop_h": 0.25,
                 # 6 MIG slots, 4 to a GPU: 1.5 GPUs' worth
                 "max_gpu_equivalents": 1.5, "max_gpu_slots_per_container": 4}
FACULTY_05: dict[str, Any] = {"group": "faculty", "allow_full_gpu": True, "max_cpus": 64,
              "memory": 128 * GiB, "memory_swap": 128 * GiB, "shm_size": 64 * GiB,
              "max_runtime_h": 72, "idle_timeout_h": 2, "max_tasks": 65536,
              "max_containers_per_user": 5, "max_gpu_equivalents": 2.0}
STUDENT_05: dict[str, Any] = STUDENT_04 | {"group": "student", "allow_full_gpu": True,
                           "max_gpu_equivalents": 0.75, "max_gpu_slots_per_container": 3}
AGGREGATES: dict[str, dict[str, Any]] = {
    "student": {"aggregate.cpu_quota": 9600, "aggregate.memory_max": 96 * GiB,
                "aggregate.memory_high": 86 * GiB, "aggregate.tasks_max": 12288,
                "aggregate.gpu_limit": 0.75},
    "researcher": {"aggregate.cpu_quota": 24000, "aggregate.memory_max": 320 * GiB,
                   "aggregate.memory_high": 288 * GiB, "aggregate.tasks_max": 327680,
                   "aggregate.gpu_limit": 1.5},
    "faculty": {"aggregate.cpu_quota": 32000, "aggregate.memory_max": 640 * GiB,
                "aggregate.memory_high": 576 * GiB, "aggregate.tasks_max": 327680,
                "aggregate.gpu_limit": 2.0},
    "admin": {"aggregate.cpu_quota": None, "aggregate.memory_max": None,
              "aggregate.memory_high": None, "aggregate.tasks_max": None,
              "aggregate.gpu_limit": None},
}
RUNTIME_USERS: dict[str, dict[str, Any]] = {"300101@school.example.lan": STUDENT_05,
                 "nobody@school.example.lan": STUDENT_05,
                 "m.okafor@school.example.lan": RESEARCHER_05,
                 # listed as a researcher, placed in admin by group-overrides.txt: the
                 # members list wins, as the older sync never moved a listed user
                 "p.lindqvist@school.example.lan": RESEARCHER_05,
                 "r.castellano@school.example.lan": FACULTY_05,
                 # only in group-overrides.txt: the sync put them in faculty.members
                 "s.haddad@school.example.lan": FACULTY_05,
                 "labadmin": ADMIN_04 | {"max_runtime_h": 24},
                 "j.moreau@school.example.lan": ADMIN_04}
GROUP_OF = {"300101@school.example.lan": "student", "nobody@school.example.lan": "student",
            "m.okafor@school.example.lan": "researcher",
            "p.lindqvist@school.example.lan": "researcher",
            "r.castellano@school.example.lan": "faculty", "s.haddad@school.example.lan": "faculty",
            "labadmin": "admin", "j.moreau@school.example.lan": "admin"}
POLICIES_08: dict[str, dict[str, Any]] = {  # the group's policies over the global ones; bytes per hourly check -> /s
    "student": {"policies.gpu_idle_threshold": 5, "policies.cpu_idle_threshold": 2.0,
                "policies.network_idle_threshold": 291, "policies.idle_detection_window": 3},
    "researcher": {"policies.gpu_idle_threshold": 5, "policies.cpu_idle_threshold": 3.0,
                   "policies.network_idle_threshold": 291, "policies.idle_detection_window": 4},
    "faculty": {"policies.gpu_idle_threshold": 5, "policies.cpu_idle_threshold": 3.0,
                "policies.network_idle_threshold": 291, "policies.idle_detection_window": 4},
    "admin": {"policies.gpu_idle_threshold": 5, "policies.cpu_idle_threshold": 2.0,
              "policies.network_idle_threshold": 291, "policies.idle_detection_window": 3},
}


def with_aggregates(users: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {u: v | AGGREGATES[GROUP_OF[u]] for u, v in users.items()}


EXPECTED: dict[str, dict[str, dict[str, Any]]] = {
    "01-first.yaml": {
        "newuser": {"group": "student", "priority": 10, "max_cpus": 16, "memory": 32 * GiB,
                    "memory_swap": 32 * GiB, "shm_size": 16 * GiB, "pids_limit": 4096,
                    "max_containers_per_user": 3, "idle_timeout_h": 24, "max_runtime_h": None,
                    "gpu_hold_after_stop_h": 1, "max_tasks": 512, "storage_tmp": 50 * GiB,
                    "max_gpu_equivalents": 2},
        "labadmin": {"group": "admin", "priority": 90, "max_cpus": 64, "memory": 128 * GiB,
                     "memory_swap": 128 * GiB, "shm_size": 64 * GiB, "pids_limit": 4096,
                     "max_containers_per_user": 10, "idle_timeout_h": None,
                     "max_runtime_h": None, "gpu_hold_after_stop_h": 1, "max_tasks": None,
                     "storage_tmp": 50 * GiB, "max_gpu_equivalents": None},
    },
    "02-mig-gpus.yaml": {
        "newuser": {"group": "student", "priority": 10, "max_cpus": 16, "idle_timeout_h": 1.5,
                    "max_runtime_h": 12, "gpu_hold_after_stop_h": 0.5, "max_tasks": 512,
                    "storage_tmp": 50 * GiB},
        # the admin's lifecycle keys are commented out: the defaults apply
        "labadmin": {"group": "admin", "priority": 90, "idle_timeout_h": 1.5,
                     "max_runtime_h": 12, "gpu_hold_after_stop_h": 0.5,
                     "max_containers_per_user": 10, "max_tasks": None},
    },
    "04-members-files.yaml": {
        "300101@school.example.lan": STUDENT_04 | {"group": "student",
                                                   # 3 MIG slots, 4 to a GPU
                                                   "max_gpu_equivalents": 0.75},
        "m.okafor@school.example.lan": STUDENT_04 | {
            "group": "researcher", "allow_full_gpu": True, "max_gpu_equivalents": 2.0,
            "max_cpus": 64, "memory": 128 * GiB, "memory_swap": 128 * GiB,
            "shm_size": 32 * GiB, "max_runtime_h": 24, "idle_timeout_h": 1,
            "max_tasks": 65536, "max_containers_per_user": 5},
        "labadmin": ADMIN_04,
        "j.moreau@school.example.lan": ADMIN_04,
    },
    "05-runtime.yaml": RUNTIME_USERS,
    "06-aggregate.yaml": with_aggregates(RUNTIME_USERS),
    "07-lifecycle-policies.yaml": with_aggregates(RUNTIME_USERS),
    "08-group-policies.yaml": {u: v | POLICIES_08[GROUP_OF[u]]
                               for u, v in with_aggregates(RUNTIME_USERS).items()},
    "09-hours-keys.yaml": {u: v | POLICIES_08[GROUP_OF[u]]
                           for u, v in with_aggregates(RUNTIME_USERS).items()},
}


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_every_earlier_version_loads_with_warnings_and_limits_as_before(
        version: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = lab_root(tmp_path, version, VERSIONS[version])
    assert main(["--root", str(root), "check-config"]) == 0
    err = capsys.readouterr().err
    assert "warning: resource-limits.yaml:" in err
    check(root, EXPECTED[version], capsys)


CURRENT: dict[str, dict[str, Any]] = {
    "300999@school.example.lan": STUDENT_04 | {
        "group": "student", "allow_full_gpu": True, "max_gpu_equivalents": 3,
        "max_gpu_slots_per_container": 3, **AGGREGATES["student"],
        "aggregate.gpu_limit": 2.0,  # "gpu_limit: 2.0  # gpueq"
        **POLICIES_08["student"]},
    # a student with an override: the older scripts left the group out (allow_full_gpu
    # false from defaults); ds01 adds the override to the group: compared where equal
    "300245@school.example.lan": {"group": "student", "max_runtime_h": 48,
                                  "idle_timeout_h": 0.5, "max_cpus": 32},
    # researcher with an override and a permanent exemption from both stops
    "200345@school.example.lan": {"group": "researcher", "idle_timeout_h": None,
                                  "max_runtime_h": None, "container_hold_after_stop_h": None,
                                  "pids_limit": 4096},
    "m.okafor@school.example.lan": RESEARCHER_05 | {
        "max_gpu_equivalents": 6, **AGGREGATES["researcher"], "aggregate.gpu_limit": 6.0,
        **POLICIES_08["researcher"]},
    "s.haddad@school.example.lan": FACULTY_05 | {
        "max_gpu_equivalents": 8, **AGGREGATES["faculty"], "aggregate.gpu_limit": 8.0,
        **POLICIES_08["faculty"]},
    "labadmin": ADMIN_04 | AGGREGATES["admin"] | POLICIES_08["admin"],
    # archived, and still listed as a student: the older scripts' limits were a student's
    "300177@school.example.lan": {"group": "student", "max_cpus": 32},
}


def test_the_current_file_set_loads_and_limits_are_as_before(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = lab_root(tmp_path, None)
    assert main(["--root", str(root), "check-config"]) == 0
    err = capsys.readouterr().err
    assert ("resource-limits.yaml:180: policies.gpu_hold_after_manual_stop_m: deprecated name: "
            "write 'gpu_hold_after_stop_h: 0.25' under defaults instead") in err
    assert ("resource-limits.yaml:84: groups.student.policies.idle_detection_window: older "
            "form, consecutive checks, one an hour: write 'idle_detection_window: 3h' instead"
            ) in err
    assert ("group-overrides.txt:25: p.lindqvist@school.example.lan is placed in admin, but the "
            "members list of researcher names them already, and wins; remove one") in err
    check(root, CURRENT, capsys)
    archived = limits_json(root, "300177@school.example.lan", capsys)
    assert archived["archived"] is True
    assert any("archived.members" in n for n in archived["notes"])


@pytest.mark.parametrize(("version", "line", "message"), [
    ("03-inline-members.yaml", 49, "groups.researcher.members[2]: 200345 is not a user name"),
    ("06-aggregate-duplicate-key.yaml", 91, "key 'max_runtime' appears twice"),
])
def test_real_errors_stay_errors(version: str, line: int, message: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    root = lab_root(tmp_path, version)
    assert main(["--root", str(root), "check-config"]) == 1
    out = capsys.readouterr().out
    assert f"resource-limits.yaml:{line}: {message}" in out


def test_errors_never_hide_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = lab_root(tmp_path, "03-inline-members.yaml")
    with pytest.raises(ConfigError) as err:
        load_config(root / "etc/ds01")
    assert len(err.value.errors) == 1
    shown = [str(w) for w in err.value.warnings]
    assert ("resource-limits.yaml:9: defaults.max_mig_instances: deprecated name: write "
            "'max_gpu_equivalents: 0.5' instead") in "\n".join(shown)
    assert any("defaults.io_read_bps: ignored: ds01 sets no I/O bandwidth limits" in w
               for w in shown)
    assert main(["--root", str(root), "check-config"]) == 1
    assert "warning: resource-limits.yaml:24: defaults.ulimit_nofile: ignored" in \
        capsys.readouterr().err


def test_older_exemption_names_exempt_as_before(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    root = lab_root(tmp_path, "08-group-policies.yaml", RUNTIME)
    shutil.copy(LAB / "history/exemptions-older.yaml", root / "etc/ds01/lifecycle-exemptions.yaml")
    assert main(["--root", str(root), "check-config"]) == 0
    assert ("lifecycle-exemptions.yaml:20: exemptions[0].exempt_from[0]: deprecated name: "
            "write 'idle_timeout_h' instead") in capsys.readouterr().err
    got = flat(limits_json(root, "200345@school.example.lan", capsys))
    assert got["idle_timeout_h"] is None and got["max_runtime_h"] is None


USERS = ["nobody@school.example.lan", "labadmin", "200345@school.example.lan",
            "m.okafor@school.example.lan", "300245@school.example.lan",
         "s.haddad@school.example.lan", "p.lindqvist", "newuser"]


@pytest.mark.parametrize("version", [None, *sorted(VERSIONS)])
def test_migrated_files_load_without_warnings_and_mean_the_same(version: str | None,
                                                                tmp_path: Path) -> None:
    root = lab_root(tmp_path, version, VERSIONS.get(version or "", ()))
    etc = root / "etc/ds01"
    config = load_config(etc)
    before = {u: effective_json(resolve(config, u, now=NOW, nss=NoNss())) for u in USERS}
    for name in ("resource-limits.yaml", "user-overrides.yaml", "lifecycle-exemptions.yaml"):
        if (etc / name).exists():
            text = (etc / name).read_text()
            (etc / name).write_text(migrate(text, [r for r in config.rewrites if r.file == name]))
    again = load_config(etc)
    assert [str(w) for w in again.warnings if not w.file.startswith("group")] == []
    for user, body in before.items():
        after = effective_json(resolve(again, user, now=NOW, nss=NoNss()))
        for part in ("group", "priority", "limits", "aggregate", "policies"):
            assert after[part] == body[part], (user, part)


def test_migrate_keeps_comments_and_order(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = lab_root(tmp_path, "08-group-policies.yaml", RUNTIME)
    assert main(["--root", str(root), "check-config", "--migrate"]) == 0
    out = capsys.readouterr().out.splitlines()
    text = "\n".join(out)
    assert "  max_runtime_h: 24               # walltime (null = none)" in out
    assert "  grace_period_m: 30                # grace after start before idle detection" in out
    assert "      idle_detection_window: 3h      # consecutive idle checks before acting" in out
    assert "    sigterm_grace_s: 30" in out
    assert "# ignored by ds01: ds01 does not wrap the Docker CLI" in out
    assert "# access_control:" in out
    assert "  # ds01: now defaults.gpu_hold_after_stop_h" in out
    # the lab's header comment and section order are kept
    original = (LAB / "history/08-group-policies.yaml").read_text().splitlines()
    assert out[:20] == original[:20]
    assert text.index("defaults:") < text.index("groups:") < text.index("container_types:")
    assert len(out) > len(original)


def test_a_local_name_matched_to_a_domain_entry_is_said_and_can_be_turned_off(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = lab_root(tmp_path, None)
    body = limits_json(root, "m.okafor", capsys)  # listed as m.okafor@school.example.lan
    assert body["group"] == "researcher"
    assert body["notes"] == [
        "m.okafor is matched to the entry 'm.okafor@school.example.lan' of group researcher: "
        "names match with or without @domain (match_without_domain: false turns this off)"]
    limits = root / "etc/ds01/resource-limits.yaml"
    limits.write_text(limits.read_text() + "match_without_domain: false\n")
    strict = limits_json(root, "m.okafor", capsys)
    assert strict["group"] == "student" and strict["notes"] == []
    assert limits_json(root, "m.okafor@school.example.lan", capsys)["group"] == "researcher"


def test_known_but_ignored_keys_warn_and_typos_stay_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    etc = tmp_path / "etc/ds01"
    etc.mkdir(parents=True)
    (etc / "resource-limits.yaml").write_text(
        "defaults:\n  gpu_memory: null\n  storage_data: 200G\n  storage_tpm: 4g\n"
        "gpu_allocation:\n  # every key commented out\nuser_overrides:\n"
        "policies:\n  auto_stop_idle: true\n  grace_priod: 30m\n")
    with pytest.raises(ConfigError) as err:
        load_config(etc)
    assert [str(e) for e in err.value.errors] == [
        "resource-limits.yaml:4: defaults.storage_tpm: unknown key (did you mean 'storage_tmp'?)",
        "resource-limits.yaml:10: policies.grace_priod: unknown key (did you mean "
        "'grace_period_m'?)"]
    warned = "\n".join(str(w) for w in err.value.warnings)
    assert "resource-limits.yaml:2: defaults.gpu_memory: ignored: a MIG instance's memory" in warned
    assert "resource-limits.yaml:3: defaults.storage_data: ignored: ds01 sets no disk quotas" \
        in warned
    assert "resource-limits.yaml:9: policies.auto_stop_idle: ignored:" in warned
    assert "resource-limits.yaml:5: gpu_allocation: ignored:" in warned


def test_group_overrides_errors_name_their_line(tmp_path: Path) -> None:
    root = lab_root(tmp_path, None)
    (root / "etc/ds01/group-overrides.txt").write_text(
        "# header\nx@school.example.lan:visitors\nnot a line\n")
    with pytest.raises(ConfigError) as err:
        load_config(root / "etc/ds01")
    assert [str(e) for e in err.value.errors] == [
        "group-overrides.txt:2: 'visitors' is not a group defined under groups (known: admin, "
        "faculty, researcher, student)",
        "group-overrides.txt:3: 'not a line' is not user:group (one a line; # starts a comment)"]


def test_defaults_priority_is_every_group_s_that_sets_none(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    root = lab_root(tmp_path, "01-first.yaml")
    limits = root / "etc/ds01/resource-limits.yaml"
    limits.write_text(limits.read_text().replace("    priority: 10                    # low\n",
                                                 ""))
    body = limits_json(root, "newuser", capsys)
    assert (body["priority"], body["sources"]["priority"]) == (1, "defaults")
    assert limits_json(root, "labadmin", capsys)["sources"]["priority"] == "group:admin"
