"""The loader on the lab's own format: legacy keys, members files, overrides, exemptions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ds01d.config.effective import FakeNss, resolve
from ds01d.config.loader import load_config
from ds01d.errors import ConfigError
from tests.conftest import MakeRoot

GiB = 1024**3
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

LAB = """\
defaults:
  max_mig_instances: 3
  max_mig_per_container: 3
  allow_full_gpu: false
  max_cpus: 32
  memory: 32g
  memory_swap: 32g
  shm_size: 16g
  pids_limit: 4096
  max_containers_per_user: 3
  max_runtime: 24h
  idle_timeout: 0.5h
  gpu_hold_after_stop: 0.25h
  container_hold_after_stop: 0.5h
  max_tasks: 32768
default_group: student
enforcement:
  aggregate_limits: true
groups:
  student:
    allow_full_gpu: true
    aggregate:
      cpu_quota: "9600%"
      memory_max: "96G"
      memory_high: "86G"
      tasks_max: 12288
      gpu_limit: 3
  researcher:
    priority: 50
    max_mig_instances: 6
    memory: 64g
    idle_timeout: 1h
    aggregate:
      memory_max: "320G"
  admin:
    priority: 100
    max_mig_instances: null
policies:
  high_demand_threshold: 0.8
  high_demand_idle_reduction: 0.5
container_types:
  devcontainer:
    idle_timeout: 30m
    max_runtime: 168h
    default_mig_count: {student: 1}
"""
OVERRIDES = """\
"204214@lab.example.lan":
  idle_timeout_h: null
  max_runtime_h: 48
  aggregate: {gpu_limit: 4}
  reason: pre-existing workflow
"""
EXEMPTIONS = """\
exemptions:
  - username: "carol@lab.example.lan"
    category: waiver
    exempt_from: [max_runtime_h]
    reason: continuous training
    approved_by: admin
    approved_on: "2026-02-14"
    expires_on: "2026-12-31"
  - username: dave
    exempt_from: [idle_timeout_h]
    reason: expired long ago
    approved_by: admin
    expires_on: 2026-01-31
"""


LAB_FILES = {
    "resource-limits.yaml": LAB,
    "user-overrides.yaml": OVERRIDES,
    "lifecycle-exemptions.yaml": EXEMPTIONS,
    "groups/researcher.members": "# researchers\ncarol\n\n204214@lab.example.lan  # staff\n",
    "groups/admin.members": "erin\n",
}
"""A lab in the older format: legacy keys, members files, an override and exemptions."""


@pytest.fixture
def lab(make_root: MakeRoot) -> Path:
    return make_root(LAB_FILES) / "etc/ds01"


def test_lab_format_loads_with_deprecation_warnings(lab: Path) -> None:
    config = load_config(lab)
    text = "\n".join(str(w) for w in config.warnings)
    assert "resource-limits.yaml:2: defaults.max_mig_instances: deprecated name: write " \
           "'max_gpu_equivalents: 3' instead" in text
    assert "defaults.idle_timeout: deprecated name: write 'idle_timeout_h: 0.5' instead" in text
    assert "defaults.gpu_hold_after_stop: deprecated name: write 'gpu_hold_after_stop_h: 0.25'" \
           in text
    assert "resource-limits.yaml:17: enforcement: ignored:" in text
    assert "container_types.devcontainer.idle_timeout: deprecated name: write " \
           "'idle_timeout_h: 0.5' instead" in text
    assert "container_types.devcontainer.default_mig_count: ignored" in text
    assert config.container_types["devcontainer"] == {"idle_timeout_h": 0.5,
                                                      "max_runtime_h": 168.0}


def test_effective_limits_of_a_researcher_with_override(lab: Path) -> None:
    config = load_config(lab)
    eff = resolve(config, "204214", now=NOW, nss=FakeNss())
    assert eff.group == "researcher"  # listed as 204214@lab.example.lan
    lim = eff.limits
    assert lim.max_gpu_equivalents == 6.0 and eff.sources["max_gpu_equivalents"] == "group:researcher"
    assert lim.max_gpu_slots_per_container == 3 and eff.sources["max_gpu_slots_per_container"] == "defaults"
    assert lim.memory == 64 * GiB and eff.sources["memory"] == "group:researcher"
    assert lim.memory_swap == 32 * GiB and eff.sources["memory_swap"] == "defaults"
    assert lim.idle_timeout_h is None and eff.sources["idle_timeout_h"] == "override"
    assert lim.max_runtime_h == 48.0 and eff.sources["max_runtime_h"] == "override"
    assert lim.container_hold_after_stop_h == 0.5
    assert eff.aggregate.memory_max == 320 * GiB
    assert eff.aggregate.gpu_limit == 4 and eff.sources["aggregate.gpu_limit"] == "override"
    assert eff.aggregate.cpu_quota is None and "aggregate.cpu_quota" not in eff.sources
    assert eff.reason == "pre-existing workflow"


def test_unlisted_user_gets_default_group(lab: Path) -> None:
    eff = resolve(load_config(lab), "zoe", now=NOW, nss=FakeNss())
    assert eff.group == "student"
    assert eff.limits.allow_full_gpu is True
    assert eff.aggregate.cpu_quota == 9600.0
    assert eff.limits.idle_timeout_h == 0.5 and eff.sources["idle_timeout_h"] == "defaults"
    assert eff.policies.gpu_idle_threshold == 5 and eff.sources["policies.gpu_idle_threshold"] == "builtin"


def test_exemption_applies_until_it_expires(lab: Path) -> None:
    config = load_config(lab)
    eff = resolve(config, "carol", now=NOW, nss=FakeNss())
    assert eff.limits.max_runtime_h is None and eff.sources["max_runtime_h"] == "exemption"
    later = resolve(config, "carol", now=datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC), nss=FakeNss())
    assert later.limits.max_runtime_h == 24.0 and later.sources["max_runtime_h"] == "defaults"
    expired = resolve(config, "dave", now=NOW, nss=FakeNss())
    assert expired.limits.idle_timeout_h == 0.5


def test_expiry_date_lasts_the_whole_day(lab: Path) -> None:
    config = load_config(lab)
    last_minute = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert resolve(config, "carol", now=last_minute, nss=FakeNss()).limits.max_runtime_h is None


def test_unix_group_members_and_priority_conflict(make_root: MakeRoot) -> None:
    etc = make_root({"resource-limits.yaml": """\
default_group: student
groups:
  student: {members: [amy]}
  researcher: {priority: 50, unix_groups: [phd], max_cpus: 16}
"""}) / "etc/ds01"
    config = load_config(etc)
    nss = FakeNss(groups={"phd": frozenset({"amy@uni.example"})})
    eff = resolve(config, "amy", now=NOW, nss=nss)
    assert eff.group == "researcher" and eff.limits.max_cpus == 16
    assert eff.warnings and "several groups" in eff.warnings[0]
    primary = FakeNss(primary={"ben": "phd"})
    assert resolve(config, "ben", now=NOW, nss=primary).group == "researcher"


def test_misspelt_key_names_its_line_and_the_likely_key(make_root: MakeRoot) -> None:
    etc = make_root({"resource-limits.yaml": "defaults:\n  max_cpus: 4\n  memroy: 32g\n"})
    with pytest.raises(ConfigError) as err:
        load_config(etc / "etc/ds01")
    assert [str(e) for e in err.value.errors] == [
        "resource-limits.yaml:3: defaults.memroy: unknown key (did you mean 'memory'?)"]


def test_every_error_is_reported_not_just_the_first(make_root: MakeRoot) -> None:
    etc = make_root({
        "resource-limits.yaml": """\
defaults:
  memory: 32gb
groups:
  student:
    max_cpu: 4
    aggregate: {cpu_quota: 800}
default_group: students
""",
        "lifecycle-exemptions.yaml": "exemptions:\n  - username: a\n",
        "groups/student.members": "ok\nnot a user!\n",
    }) / "etc/ds01"
    with pytest.raises(ConfigError) as err:
        load_config(etc)
    got = [str(e) for e in err.value.errors]
    assert "resource-limits.yaml:2: defaults.memory: '32gb' is not a size (use 32g or 32G)" in got
    assert "resource-limits.yaml:5: groups.student.max_cpu: unknown key (did you mean 'max_cpus'?)" in got
    assert ("resource-limits.yaml:6: groups.student.aggregate.cpu_quota: 800 is not a CPU quota "
            "(use 800% for 8 CPUs)") in got
    assert any(g.startswith("lifecycle-exemptions.yaml:2: exemptions[0]: missing required key 'exempt_from'") for g in got)
    assert "groups/student.members:2: 'not a user!' is not a user name (one user a line; # starts a comment)" in got
    assert len(got) >= 6


def test_semantic_errors_with_lines(make_root: MakeRoot) -> None:
    etc = make_root({
        "resource-limits.yaml": "default_group: nobody\ngroups:\n  a: {}\ndefaults:\n  idle_timeout: 1h\n  idle_timeout_h: 2\n",
        "mig-layout.yaml": "version: 1\ngpus:\n  '0': {mig-enabled: false, mig-devices: {1g.5gb: 1}}\n"
                           "  '1': {mig-enabled: true, mig-devices: {3g.20gb: 2, 2g.10gb: 1}}\n",
        "lifecycle-exemptions.yaml": "exemptions:\n- {username: a, exempt_from: [idle_timeout_h], "
                                     "reason: r, approved_by: b, expires_on: '2026-13-01'}\n",
    }) / "etc/ds01"
    with pytest.raises(ConfigError) as err:
        load_config(etc)
    got = [str(e) for e in err.value.errors]
    assert "resource-limits.yaml:1: default_group: 'nobody' is not a group defined under groups (known: a)" in got
    assert "resource-limits.yaml:5: defaults.idle_timeout: both idle_timeout and idle_timeout_h are set: keep only idle_timeout_h" in got
    assert "mig-layout.yaml:3: gpus.0.mig-devices: mig-devices given but mig-enabled is false" in got
    assert "mig-layout.yaml:4: gpus.1.mig-devices: needs 8 compute slices; a GPU has 7" in got
    assert any(g.startswith("lifecycle-exemptions.yaml:2: exemptions[0].expires_on: '2026-13-01' is not a real date") for g in got)


def test_missing_file_and_broken_yaml(make_root: MakeRoot, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nowhere")
    assert "resource-limits.yaml: missing" in str(err.value)
    etc = make_root({"resource-limits.yaml": "defaults:\n  memory: [32g\n"}) / "etc/ds01"
    with pytest.raises(ConfigError) as err:
        load_config(etc)
    assert str(err.value.errors[0]).startswith("resource-limits.yaml:3: not valid YAML")


def test_stray_members_file_is_a_warning(make_root: MakeRoot) -> None:
    etc = make_root({"resource-limits.yaml": "groups: {a: {}}\n", "groups/b.members": "x\n"})
    config = load_config(etc / "etc/ds01")
    assert [str(w) for w in config.warnings] == [
        "groups/b.members: no group 'b' in resource-limits.yaml: this file is ignored"]


def test_overrides_in_both_files_merge(make_root: MakeRoot) -> None:
    etc = make_root({
        "resource-limits.yaml": "user_overrides:\n  bob: {max_cpus: 4, memory: 8g}\n",
        "user-overrides.yaml": "bob: {max_cpus: 6}\n",
    }) / "etc/ds01"
    config = load_config(etc)
    eff = resolve(config, "bob", now=NOW, nss=FakeNss())
    assert eff.limits.max_cpus == 6 and eff.limits.memory == 8 * GiB
    assert any("also has an override" in str(w) for w in config.warnings)
