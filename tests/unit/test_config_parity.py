"""Whatever ``ds01 check-config`` accepts, a pass of ds01d runs with; what it refuses is exit 1
with FILE:LINE, a ``config.invalid`` event and the metric at 0, and ``config.valid`` follows
the fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ds01d.adapters.sim import locked
from ds01d.config.loader import load_config
from ds01d.daemon import Daemon
from ds01d.errors import ConfigError
from ds01d.paths import Paths
from ds01d.runtime.simroot import init_sim_root

EXTREMES: dict[str, list[Any]] = {
    "hours": [None, 0, 0.001, 1, 2, 87600],
    "size": [None, "6m", 6 << 20, "1P", 1 << 50, "32g"],
    "count": [None, 1, 2, 1_000_000_000],
    "gpueq": [None, 0, 0.2, 1, 1024],
    "cpus": [None, 0.01, 1, 4096],
}
KINDS = {"max_gpu_equivalents": "gpueq", "max_gpu_slots_per_container": "count",
         "max_cpus": "cpus", "memory": "size", "memory_swap": "size", "shm_size": "size",
         "pids_limit": "count", "max_containers_per_user": "count", "max_runtime_h": "hours",
         "idle_timeout_h": "hours", "gpu_hold_after_stop_h": "hours",
         "container_hold_after_stop_h": "hours", "max_tasks": "count"}


def _limits() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={
        k: st.sampled_from(EXTREMES[kind]) for k, kind in KINDS.items()}) | st.just({})


configs = st.fixed_dictionaries({
    "version": st.just(1),
    "defaults": _limits().map(lambda d: {**d, "allow_full_gpu": True}),
    "default_group": st.just("student"),
    "groups": st.fixed_dictionaries({"student": st.fixed_dictionaries({
        "priority": st.sampled_from([0, 1000]),
        "aggregate": st.fixed_dictionaries({}, optional={
            "cpu_quota": st.sampled_from([None, "0.000001%", "100000%", 100000]),
            "memory_max": st.sampled_from(EXTREMES["size"]),
            "memory_high": st.sampled_from(EXTREMES["size"]),
            "tasks_max": st.sampled_from(EXTREMES["count"]),
            "gpu_limit": st.sampled_from(EXTREMES["count"])}),
        "policies": st.fixed_dictionaries({}, optional={
            "gpu_idle_threshold": st.sampled_from([0, 100]),
            "cpu_idle_threshold": st.sampled_from([0, 409600]),
            "idle_detection_window": st.sampled_from([0.001, 525600])}),
    })}),
    "policies": st.fixed_dictionaries({}, optional={
        "high_demand_threshold": st.sampled_from([0, 1]),
        "high_demand_idle_reduction": st.sampled_from([0, 1]),
        "grace_period_m": st.sampled_from([0, 525600]),
        "keepalive_max_duration_h": st.sampled_from([0, 87600]),
        "sigterm_grace_s": st.sampled_from([0, 86400]),
        "created_container_timeout_m": st.sampled_from([0, 525600])}),
})
exemptions = st.lists(st.fixed_dictionaries({
    "username": st.sampled_from(["alice", "bob"]),
    "exempt_from": st.just(["idle_timeout_h", "max_runtime_h"]),
    "reason": st.just("thesis"), "approved_by": st.just("erin"),
    "expires_on": st.sampled_from(["9999-12-31", "1970-01-01", "2026-01-06", None])}),
    max_size=2)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    paths = Paths(tmp_path_factory.mktemp("parity"))
    init_sim_root(paths)
    for name in ("mig-layout.yaml", "user-overrides.yaml"):
        (paths.etc / name).unlink(missing_ok=True)
    for user, kind in (("alice", "mig: 3g.20gb"), ("bob", "gpus: 1"), ("carol", "")):
        folder = paths.wants / user
        folder.mkdir(exist_ok=True)
        (folder / "w.yaml").write_text(f"version: 1\nkind: container\nname: w\nimage: i\n"
                                       f"requested_at: '2026-01-05'\n{kind}\n")
    return paths


@settings(max_examples=300, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(configs, exemptions)
def test_what_check_config_accepts_a_pass_runs_with(sim: Paths, config: dict[str, Any],
                                                    exempt: list[dict[str, Any]]) -> None:
    (sim.etc / "resource-limits.yaml").write_text(yaml.safe_dump(config))
    (sim.etc / "lifecycle-exemptions.yaml").write_text(yaml.safe_dump({"exemptions": exempt}))
    try:
        load_config(sim.etc)
    except ConfigError:
        return  # refused: ds01d keeps its last valid configuration (tested below)
    d = Daemon(sim, simulate=True, read_memory=False)
    for step in (0, 3600, 87600 * 3600):  # now, an hour on, ten years on
        with locked(sim.sim) as host:
            host.now = 1767603600 + step
        result = d.run_pass()
        assert result.plan is not None


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "ds01"
    return subprocess.run([str(exe), "--root", str(root), "check-config"], capture_output=True,
                          text=True, check=False)


@pytest.mark.parametrize(("text", "where"), [
    ("defaults:\n  max_runtime_h: 99999999\n", "resource-limits.yaml:3: defaults.max_runtime_h"),
    ("defaults:\n  memory: 99999999999999g\n", "resource-limits.yaml:3: defaults.memory"),
    ("defaults:\n  idle_timeout: 99999w\n", "resource-limits.yaml:3: defaults.idle_timeout"),
    ("defaults:\n  max_tasks: !!int \n", "resource-limits.yaml:3"),
    ("defaults:\n  max_cpus: 99999999999999999999999\n", "resource-limits.yaml:3"),
    ("groups:\n  s:\n    aggregate: {cpu_quota: 99999999%}\n", "resource-limits.yaml:4"),
    ("defaults: " + "[" * 5000 + "\n", "resource-limits.yaml"),
])
def test_what_a_pass_cannot_run_with_check_config_refuses(
        tmp_path: Path, text: str, where: str) -> None:
    etc = tmp_path / "etc/ds01"
    etc.mkdir(parents=True)
    (etc / "resource-limits.yaml").write_text("version: 1\n" + text)
    done = _check(tmp_path)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert where in done.stdout, done.stdout


def test_far_dates_and_deep_mig_layouts(tmp_path: Path) -> None:
    etc = tmp_path / "etc/ds01"
    etc.mkdir(parents=True)
    (etc / "resource-limits.yaml").write_text("version: 1\n")
    (etc / "lifecycle-exemptions.yaml").write_text(
        "exemptions:\n- {username: alice, exempt_from: [idle_timeout_h], reason: r, "
        "approved_by: e, expires_on: 9999-12-31}\n")
    assert _check(tmp_path).returncode == 0
    (etc / "mig-layout.yaml").write_text("version: v1\ngpus: " + "{a: " * 3000 + "\n")
    done = _check(tmp_path)
    assert done.returncode == 1 and "mig-layout.yaml" in done.stdout
    (etc / "mig-layout.yaml").unlink()
    (etc / "loop.yaml").symlink_to(etc / "mig-layout.yaml")
    (etc / "mig-layout.yaml").symlink_to(etc / "loop.yaml")
    done = _check(tmp_path)
    assert done.returncode == 1 and "symlink loop" in done.stdout, done.stdout


def test_a_configuration_never_valid_is_in_the_metrics(tmp_path: Path) -> None:
    """A new ds01d whose configuration was never valid plans nothing, but says so in the
    metrics (the alerts on an invalid configuration and on a stalled ds01d read them)."""
    paths = Paths(tmp_path)
    init_sim_root(paths)
    limits = paths.etc / "resource-limits.yaml"
    good = limits.read_text()
    limits.write_text(good.replace("max_runtime_h: 72", "max_runtime_h: 99999999"))
    d = Daemon(paths, simulate=True, read_memory=False)
    assert d.run_pass().plan is None
    text = _scrape(d)
    assert "ds01_desired_state_valid 0.0" in text
    assert 'ds01_adapter_up{adapter="docker"} 1.0' in text
    assert any(line.startswith("ds01_last_pass_timestamp_seconds ") for line in text.splitlines())
    limits.write_text(good)
    d.run_pass()
    assert "ds01_desired_state_valid 1.0" in _scrape(d)


def test_an_invalid_edit_is_said_and_its_fix_too(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    init_sim_root(paths)
    d = Daemon(paths, simulate=True, read_memory=False)
    d.run_pass()
    assert d.metrics is not None
    limits = paths.etc / "resource-limits.yaml"
    good = limits.read_text()
    limits.write_text(good.replace("max_runtime_h: 72", "max_runtime_h: 99999999"))
    d.run_pass()
    text = _scrape(d)
    assert "ds01_desired_state_valid 0.0" in text
    limits.write_text(good)
    d.run_pass()
    assert "ds01_desired_state_valid 1.0" in _scrape(d)
    kinds = [json.loads(x)["event_type"] for x in paths.events.read_text().splitlines()]
    assert kinds.count("config.invalid") == 1 and kinds.count("config.valid") == 1
    assert kinds.index("config.invalid") < kinds.index("config.valid")


def _scrape(d: Daemon) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    from ds01d.runtime.metrics import Collector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(d))
    return generate_latest(registry).decode()
