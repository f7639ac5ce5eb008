"""Fuzzing the entry points users and admins feed: any input gives a value or ds01's own error.

Each entry point gets ``DS01_FUZZ_EXAMPLES`` cases (20,000 in ``make test``, 100,000 in
``make fuzz``), none slower than 2 s; the inputs are YAML documents built from ds01's own keys
and the values that broke it before (dates at the calendar's ends, huge numbers, ``!!int``
tags, merge keys, aliases, deep nesting), then mutated. ``ds01 check-config`` and ``ds01 want``
also run as processes on a few hundred of them: exit status 0, 1 or 2, never a traceback.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ds01d.config.loader import load_config
from ds01d.config.want import Want, from_data, from_yaml, to_yaml
from ds01d.errors import ConfigError
from ds01d.units import iso

EXAMPLES = int(os.environ.get("DS01_FUZZ_EXAMPLES", "20000"))
PROCESS_EXAMPLES = int(os.environ.get("DS01_FUZZ_PROCESSES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=2), derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

LIMIT_KEYS = ["max_gpu_equivalents", "max_gpu_slots_per_container", "allow_full_gpu",
              "max_cpus", "memory", "memory_swap", "shm_size", "pids_limit",
              "max_containers_per_user", "max_runtime_h", "idle_timeout_h",
              "gpu_hold_after_stop_h", "container_hold_after_stop_h", "max_tasks",
              "max_mig_instances", "idle_timeout", "max_runtime", "gpu_hold_after_stop"]
WANT_KEYS = ["version", "kind", "name", "image", "gpus", "mig", "cpus", "memory", "shm",
             "requested_at", "keepalive_until"]
OTHER_KEYS = ["defaults", "default_group", "groups", "user_overrides", "policies",
              "container_types", "aggregate", "members", "priority", "unix_groups",
              "cpu_quota", "memory_max", "memory_high", "tasks_max", "gpu_limit",
              "gpu_idle_threshold", "grace_period_m", "keepalive_max_duration_h",
              "sigterm_grace_s", "high_demand_threshold", "student", "alice", "docker",
              "exemptions", "username", "exempt_from", "reason", "approved_by", "expires_on",
              "gpus", "mig-enabled", "mig-devices", "all", "0", "<<", "version"]
VALUES: list[object] = [
    None, True, False, 0, 1, -1, 2, 7, 64, 1000, 87600, 87601, 99999999, 2**63, 10**400,
    0.0, 0.005, 0.01, 1e-10, 0.5, 1.5, 1e308, -0.0, "", "x", "alice", "student", "1", "0",
    "32g", "32gb", "0g", "6m", "1P", "99999999999999999g", "1.5T", "800%", "0%",
    "99999999999%", "48h", "30m", "999999w", "0s", "2026-06-30", "9999-12-31", "0001-01-01",
    "2026-06-30T18:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00",
    "2026-13-45", "3g.20gb", "1g.5gb", "7g.80gb", "container", "img:1", "../x", "a" * 300,
    "\x1b[31mred", "line\nbreak", "idle_timeout_h", "max_runtime_h", ["idle_timeout_h"], [],
    {}, ["a", "b"], {"a": 1}]
TOKENS = ["!!int ", "!!float ", "!!bool ", "!!str ", "!!binary ", "!!python/object:os.system ",
          "&a ", "*a", "<<: *a\n", "<<: [*a, *a]\n", "[", "]", "{", "}", "? ", "- ", ": ",
          "\t", "'", '"', "#", "\n", "\n  ", "---\n", "...\n", "%YAML 1.1\n", "|\n", ">-\n",
          "\x00", "\x85", "\ufeff", "\udcff", "[" * 70, "- " * 40, "a:\n" + " " * 80 + "b: 1\n",
          "0x" + "f" * 40, "1" * 5000, ".inf", ".nan", "~", "=", "!custom "]


def _tree(keys: list[str]) -> st.SearchStrategy[object]:
    leaves = st.sampled_from(VALUES)
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(keys), inner, max_size=5),
        max_leaves=25)


def _doc(keys: list[str]) -> st.SearchStrategy[str]:
    """A YAML document over ``keys``, with a few tokens spliced in at random places."""
    base = _tree(keys).map(lambda v: yaml.safe_dump(v, default_flow_style=None, width=60))
    splices = st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(TOKENS)), max_size=4)

    def splice(text: str, cuts: list[tuple[int, str]]) -> str:
        for at, token in cuts:
            i = at % (len(text) + 1)
            text = text[:i] + token + text[i:]
        return text

    return st.one_of(st.builds(splice, base, splices),
                     st.lists(st.sampled_from(TOKENS + [f"{k}: " for k in keys]),
                              max_size=12).map("".join),
                     st.binary(max_size=200).map(lambda b: b.decode("utf-8", "replace")))


@pytest.fixture(scope="module")
def etc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("etc")


@FUZZ
@given(st.sampled_from(["resource-limits.yaml", "user-overrides.yaml",
                        "lifecycle-exemptions.yaml", "mig-layout.yaml"]),
       _doc(LIMIT_KEYS + OTHER_KEYS))
def test_config_loader_gives_a_config_or_config_errors(etc: Path, name: str, text: str) -> None:
    for old in etc.glob("*.yaml"):
        old.unlink()
    (etc / "resource-limits.yaml").write_text("version: 1\n")
    (etc / name).write_text(text, errors="surrogatepass")
    try:
        load_config(etc)
    except ConfigError as e:
        assert e.errors and all(str(d) for d in e.errors)


@FUZZ
@given(_doc(WANT_KEYS + OTHER_KEYS))
def test_want_reader_gives_a_want_or_config_errors(text: str) -> None:
    try:
        want = from_yaml(text, user="alice", file="alice/w.yaml")
    except ConfigError as e:
        assert e.errors and all(str(d).startswith("alice/w.yaml") for d in e.errors)
    else:
        assert want.user == "alice"


raw_wants = st.fixed_dictionaries(
    {"version": st.just(1), "kind": st.just("container"),
     "name": st.from_regex(r"\A[a-z0-9][a-z0-9_.-]{0,8}\Z") | st.sampled_from(["", "A", "-x"]),
     "image": st.sampled_from(["img:1", "pytorch/pytorch:2.3", "x@sha256:ab", "bad image"]),
     "requested_at": st.sampled_from(["2026-06-30T18:00:00Z", "9999-12-31", "0001-01-01",
                                      "2000-01-01T00:00:00+05:00", "2026-02-30"])},
    optional={"gpus": st.integers(-1, 70), "mig": st.sampled_from(["3g.20gb", "1g.5gb", "8g.1gb"]),
              "cpus": st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
                  [0.01, 0.009, 1e-10, 1024.0, 4096.5]),
              "memory": st.sampled_from(["0", "5m", "6m", "6M", "1.5g", "1P", "2P", "32gb"])
              | st.integers(-1, 2**52),
              "shm": st.sampled_from(["0", "1m", "64m", "1023k"]) | st.integers(0, 2**21),
              "keepalive_until": st.sampled_from(["2099-01-01", "9999-12-31T23:59:59Z", "x"])})


@FUZZ
@given(raw_wants)
def test_ds01_want_and_ds01d_accept_the_same_wants(raw: dict[str, object]) -> None:
    """What ``ds01 want`` accepts, ds01d reads back as the same want; what it refuses, ds01d
    refuses too when the same values are written by hand."""
    try:
        want = from_data(raw, user="alice", file="command line")
    except ConfigError:
        by_hand = "".join(f"{k}: {_literal(v)}\n" for k, v in raw.items())
        with pytest.raises(ConfigError):
            from_yaml(by_hand, user="alice", file="w.yaml")
        return
    assert from_yaml(to_yaml(want), user="alice", file="w.yaml") == want


def _literal(value: object) -> str:
    if isinstance(value, float) and math.isfinite(value):
        text = repr(value)
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    if isinstance(value, float):
        return {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}[str(value)]
    return json.dumps(value)


def test_want_round_trip_keeps_every_field() -> None:
    from datetime import UTC, datetime

    w = Want("alice", "t", "img:1", datetime(2026, 6, 30, 18, tzinfo=UTC), gpus=None,
             mig="3g.20gb", cpus=0.01, memory=6 << 20, shm=1 << 20,
             keepalive_until=datetime(2026, 7, 1, tzinfo=UTC))
    assert from_yaml(to_yaml(w), user="alice", file="w") == w
    assert "requested_at: \"2026-06-30T18:00:00Z\"" in to_yaml(w)
    assert iso(w.requested_at) == "2026-06-30T18:00:00Z"


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sim")
    init = _run("--root", str(root), "sim", "init", cwd=root)
    assert init.returncode == 0, init.stderr
    return root


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "ds01"
    return subprocess.run([str(exe), *argv], capture_output=True, text=True, cwd=cwd,
                          timeout=60, check=False)


@settings(max_examples=PROCESS_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(_doc(LIMIT_KEYS + OTHER_KEYS))
def test_check_config_as_a_process(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    root = tmp_path_factory.mktemp("root")
    (root / "etc/ds01").mkdir(parents=True)
    (root / "etc/ds01/resource-limits.yaml").write_text(text, errors="surrogatepass")
    done = _run("--root", str(root), "check-config", cwd=root)
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


@settings(max_examples=PROCESS_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["--gpus", "--mig", "--cpus", "--memory", "--shm", "--image",
                                 "1", "0", "-1", "1e-10", "nan", "inf", "0.01", "3g.20gb",
                                 "0", "6m", "99999999999999999g", "img:1", "a" * 300,
                                 "\x1b[2J", "../x", "--", "-x"]), max_size=6),
       st.sampled_from(["t", "T", "../bob/t", "a" * 70, "x\ny", "ok.1"]))
def test_want_as_a_process(sim_root: Path, argv: list[str], name: str) -> None:
    root = sim_root
    for old in (root / "var/lib/ds01/wants/alice").glob("*"):
        old.unlink()
    done = _run("--root", str(root), "--as", "alice", "want", "container", name, *argv,
                cwd=root)
    assert done.returncode in (0, 1, 2), done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    if done.returncode == 0:
        files = list((root / "var/lib/ds01/wants/alice").glob("*.yaml"))
        assert len(files) == 1
        from_yaml(files[0].read_text(), user="alice", file=files[0].name)  # ds01d reads it
