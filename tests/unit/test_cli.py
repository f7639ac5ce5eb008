"""The ds01 command line, as a user and an admin meet it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ds01d.cli import main
from tests.conftest import REPO, MakeRoot
from tests.unit.test_loader import LAB_FILES

GiB = 1024**3


@pytest.fixture
def lab_root(make_root: MakeRoot) -> Path:
    return make_root(LAB_FILES, simulated=True)


def run(root: Path, *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--root", str(root), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_config_lab_format_valid_with_warnings(lab_root: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(lab_root, "check-config", capsys=capsys)
    assert code == 0
    assert "valid: 3 groups, 3 listed members, 1 overrides, 2 exemptions" in out
    assert "warning: resource-limits.yaml:2: defaults.max_mig_instances: deprecated name" in err


def test_limits_json_matches_hand_computation(lab_root: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(lab_root, "limits", "204214@lab.example.lan", "--json", capsys=capsys)
    assert code == 0
    got = json.loads(out)
    assert got["user"] == "204214@lab.example.lan" and got["group"] == "researcher"
    assert got["limits"] == {
        "max_gpu_equivalents": 6.0, "max_gpu_slots_per_container": 3, "allow_full_gpu": False,
        "max_cpus": 32.0, "memory": 64 * GiB, "memory_swap": 32 * GiB, "shm_size": 16 * GiB,
        "pids_limit": 4096, "max_containers_per_user": 3, "max_runtime_h": 48.0,
        "idle_timeout_h": None, "gpu_hold_after_stop_h": 0.25,
        "container_hold_after_stop_h": 0.5, "max_tasks": 32768, "storage_tmp": None}
    assert got["aggregate"] == {"cpu_quota": None, "memory_max": 320 * GiB, "memory_high": None,
                                "tasks_max": None, "gpu_limit": 4.0}
    assert got["sources"]["max_gpu_equivalents"] == "group:researcher"
    assert got["sources"]["memory_swap"] == "defaults"
    assert got["sources"]["idle_timeout_h"] == "override"
    assert got["sources"]["aggregate.gpu_limit"] == "override"
    assert got["sources"]["policies.gpu_idle_threshold"] == "builtin"


def test_limits_table_names_sources(lab_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(lab_root, "limits", "carol", capsys=capsys)
    assert code == 0
    assert "user carol  group researcher  priority 50" in out
    line = next(x for x in out.splitlines() if x.startswith("max_runtime_h"))
    assert line.split() == ["max_runtime_h", "null", "exemption"]


def test_misspelt_key_exits_1_with_line_and_guess(make_root: MakeRoot,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = make_root({"resource-limits.yaml": "defaults:\n  max_cpus: 4\n  idle_timout_h: 2\n"})
    code, out, _ = run(root, "check-config", capsys=capsys)
    assert code == 1
    assert out.splitlines() == [
        "resource-limits.yaml:3: defaults.idle_timout_h: unknown key (did you mean 'idle_timeout_h'?)"]
    code, _, err = run(root, "limits", "alice", capsys=capsys)
    assert code == 1 and "ds01 check-config" in err and err.count("\n") == 1


def test_want_writes_a_valid_file_and_drop_removes_it(lab_root: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(lab_root, "--as", "zoe", "want", "container", "train", "--image",
                       "pytorch/pytorch:2.3", "--gpus", "1", "--memory", "16g", capsys=capsys)
    assert code == 0, out
    path = lab_root / "var/lib/ds01/wants/zoe/train.yaml"
    text = path.read_text()
    assert 'name: "train"' in text and "gpus: 1" in text and 'memory: "16G"' in text
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]
    code, out, _ = run(lab_root, "--as", "zoe", "want", "container", "train", "--gpus", "1",
                       capsys=capsys)
    assert code == 0 and out.startswith("asked again for container 'train'")
    code, out, _ = run(lab_root, "--as", "zoe", "drop", "container", "train", capsys=capsys)
    assert code == 0 and not path.exists()
    code, _, err = run(lab_root, "--as", "zoe", "drop", "container", "train", capsys=capsys)
    assert code == 1 and "no wanted container named 'train'" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--gpus", "1", "--memory", "64g"], "--memory 64G is over your limit of 32G (memory)"),
    (["--memory", "32gb"], "--memory: '32gb' is not a size (use 32g or 32G)"),
    (["--mig", "3g.40GB"], "--mig: '3g.40GB' is not a MIG profile (e.g. 1g.10gb or 3g.40gb)"),
    (["--gpus", "4"], "asking for 4 devices is over your limit of 3 (max_gpu_slots_per_container)"),
])
def test_want_refused_with_precise_reason(lab_root: Path, capsys: pytest.CaptureFixture[str],
                                          argv: list[str], message: str) -> None:
    code, _, err = run(lab_root, "--as", "zoe", "want", "container", "t", *argv, capsys=capsys)
    assert code == 1
    assert message in err and err.count("\n") == 1
    assert not (lab_root / "var/lib/ds01/wants/zoe/t.yaml").exists()


def test_max_containers_per_user(lab_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a", "b", "c"):
        assert run(lab_root, "--as", "zoe", "want", "container", name, capsys=capsys)[0] == 0
    code, _, err = run(lab_root, "--as", "zoe", "want", "container", "d", capsys=capsys)
    assert code == 1 and "max_containers_per_user is 3" in err


def test_usage_errors_exit_2(lab_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(lab_root, capsys=capsys)[0] == 2
    assert run(lab_root, "frobnicate", capsys=capsys)[0] == 2
    code, _, err = run(lab_root, "want", "container", "x", "--gpus", "1", "--mig", "1g.5gb",
                       capsys=capsys)
    assert code == 2 and "not allowed with argument" in err


def test_as_is_refused_to_plain_users_on_a_real_root(make_root: MakeRoot,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_root({"resource-limits.yaml": "{}"})
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, _, err = run(root, "--as", "bob", "limits", capsys=capsys)
    assert code == 1 and "--as is only for root" in err


def test_console_script_help_and_version() -> None:
    ds01 = Path(sys.executable).parent / "ds01"
    help_text = subprocess.run([ds01, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("check-config", "limits", "want", "drop", "gpus", "getting started:"):
        assert command in help_text
    version = subprocess.run([ds01, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("ds01 0.")


def test_root_from_environment(lab_root: Path) -> None:
    ds01 = Path(sys.executable).parent / "ds01"
    env = {**os.environ, "DS01_ROOT": str(lab_root)}
    done = subprocess.run([ds01, "limits", "erin", "--json"], capture_output=True, text=True,
                          env=env, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["group"] == "admin"


def test_check_config_reports_every_warning_beside_errors(make_root: MakeRoot,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    root = make_root({"resource-limits.yaml": "version: 1\ngroups:\n  s:\n    unix_groups: "
                      "[ds01-no-such-group]\n    max_cpus: -3\n"})
    code, out, err = run(root, "check-config", capsys=capsys)
    assert code == 1 and "groups.s.max_cpus: -3 is below the minimum" in out
    assert "warning: groups.s.unix_groups: Unix group 'ds01-no-such-group' not found" in err
    assert err.splitlines()[-1] == f"1 error and 1 warning in {root / 'etc/ds01'}"
