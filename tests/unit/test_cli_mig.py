"""``ds01 mig plan | assert | export | import``, and ds01d --simulate converging an edited
mig-layout.yaml on the simulated host (4x A100 40GB: GPUs 0-1 whole, GPU 2 3g.20gb x2,
GPU 3 2g.10gb x3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ds01d.adapters.sim import SimHost, locked
from ds01d.cli import main
from ds01d.daemon import Daemon
from ds01d.paths import Paths
from ds01d.runtime.simroot import init_sim_root
from tests.conftest import REPO

MIG_PARTED = REPO / "tests/data/mig-parted/config.yaml"
Run = tuple[int, str, str]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    init_sim_root(Paths(tmp_path))
    return tmp_path


def ds01(root: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    code = main(["--root", str(root), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def host(root: Path) -> SimHost:
    with locked(Paths(root).sim) as h:
        return h


def bob_on_gpu_3(root: Path, capsys: pytest.CaptureFixture[str], top: str = "") -> Path:
    """bob busy on a 2g.10gb of GPU 3; then GPU 3 is to become seven 1g.5gb (``top``: more
    top-level keys of mig-layout.yaml)."""
    ds01(root, capsys, "--as", "bob", "want", "container", "b", "--mig", "2g.10gb")
    passes(root)
    ds01(root, capsys, "sim", "activity", "bob/b", "--cpu", "50")  # busy: never idle-stopped
    layout = root / "etc/ds01/mig-layout.yaml"
    layout.write_text(layout.read_text().replace("{2g.10gb: 3}", "{1g.5gb: 7}")
                      .replace("version: 1", f"version: 1\n{top}"))
    return layout


def passes(root: Path, n: int = 1, daemon: Daemon | None = None) -> Daemon:
    d = daemon or Daemon(Paths(root), simulate=True)
    for _ in range(n):
        d.run_pass()
    return d


def test_the_example_matches_and_its_export_is_the_example(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ds01(root, capsys, "mig", "assert") == (0, "every GPU matches mig-layout.yaml\n", "")
    assert ds01(root, capsys, "mig", "plan")[1] == \
        "nothing to do: every GPU matches mig-layout.yaml\n"
    code, out, _ = ds01(root, capsys, "mig", "export")
    assert code == 0
    assert out.splitlines()[1:] == [
        "version: 1", "gpus:", '  "0": {mig-enabled: false}', '  "1": {mig-enabled: false}',
        '  "2":', "    mig-enabled: true", "    mig-devices: {3g.20gb: 2}",
        '  "3":', "    mig-enabled: true", "    mig-devices: {2g.10gb: 3}"]
    (root / "etc/ds01/mig-layout.yaml").write_text(out)
    assert ds01(root, capsys, "check-config")[0] == 0
    assert ds01(root, capsys, "mig", "assert")[0] == 0


def test_an_edited_layout_is_planned_with_who_it_affects_then_converged_by_ds01d(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bob_on_gpu_3(root, capsys, "drain_deadline_h: 2")
    code, _, err = ds01(root, capsys, "mig", "assert")
    assert code == 1
    assert err == "GPU 3: MIG 2g.10gb x3; mig-layout.yaml: MIG 1g.5gb x7\n"
    bob = host(root).gpus[3]["instances"][0]["uuid"]
    code, out, _ = ds01(root, capsys, "mig", "plan")
    assert out.splitlines() == [
        "GPU 3 (NVIDIA A100-PCIE-40GB): MIG 2g.10gb x3 -> MIG 1g.5gb x7",
        *(f"  destroy 2g.10gb (GPU instance {gi}, {i['uuid']})"
          for gi, i in zip((1, 2, 3), host(root).gpus[3]["instances"], strict=True)),
        *(f"  create 1g.5gb at memory slice {s}" for s in range(7)),
        f"  in use by bob/b on {bob} (2g.10gb)",
        "  draining since 2026-01-05 09:00 UTC; deadline 2026-01-05 11:00 UTC, when its "
        "containers are stopped and removed"]
    d = passes(root)  # the drain begins: bob is told
    status = json.loads(ds01(root, capsys, "--as", "bob", "status", "--json")[1])[0]
    assert (status["reason"], status["stops_at"]) == (
        "running; GPU 3's MIG layout changes (mig-relayout)", "2026-01-05T11:00:00Z")
    [told] = [e for e in d.events.read() if e["event_type"] == "mig.drain_warning"]
    assert told["user"] == "bob"
    assert ds01(root, capsys, "plan")[1] == \
        "MigLayout            mig/3 waits: its instances that go are in use (ds01 mig plan)\n"
    ds01(root, capsys, "sim", "advance", "2h")
    d = passes(root, 3)  # stopped; laid out; bob's want queued again (no 2g.10gb left: Failed)
    [stop] = [e for e in d.events.read() if e["event_type"] == "container.stop"]
    assert (stop["user"], stop["details"]["reason"]) == ("bob", "mig-relayout")
    assert ds01(root, capsys, "mig", "assert")[0] == 0
    assert sorted(i["profile"] for i in host(root).gpus[3]["instances"]) == ["1g.5gb"] * 7
    assert [g["instances"] for g in host(root).gpus[:3]] == \
        [g["instances"] for g in SimHost().gpus[:3]]  # the other GPUs untouched


def test_the_drain_start_survives_a_restart_of_ds01d(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bob_on_gpu_3(root, capsys)
    passes(root)
    ds01(root, capsys, "sim", "advance", "23h")
    passes(root)  # a new ds01d: the deadline still counts from the first pass that saw it
    assert json.loads(ds01(root, capsys, "mig", "plan", "--json")[1])[0]["deadline"] == \
        "2026-01-06T09:00:00Z"
    ds01(root, capsys, "sim", "advance", "1h")
    d = passes(root)
    [stop] = [e for e in d.events.read() if e["event_type"] == "container.stop"]
    assert (stop["user"], stop["details"]["reason"]) == ("bob", "mig-relayout")
    assert host(root).containers == {}  # removed; bob's want stays


def test_a_mig_parted_config_imports_and_ds01d_applies_it(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = ds01(root, capsys, "mig", "import", str(MIG_PARTED), "-c", "term-start")
    assert (code, err) == (0, "")
    assert out.splitlines()[1:] == [
        "version: 1", "gpus:", '  "0": {mig-enabled: false}', '  "1": {mig-enabled: false}',
        '  "2":', "    mig-enabled: true", "    mig-devices: {3g.20gb: 2}",
        '  "3":', "    mig-enabled: true", "    mig-devices: {1g.5gb: 7}"]
    code, out, _ = ds01(root, capsys, "mig", "import", str(MIG_PARTED), "-c", "all-balanced")
    assert out.splitlines()[1:] == ["version: 1", "gpus:", "  all:", "    mig-enabled: true",
                                    "    mig-devices: {1g.5gb: 2, 2g.10gb: 1, 3g.20gb: 1}"]
    (root / "etc/ds01/mig-layout.yaml").write_text(out)
    assert ds01(root, capsys, "check-config")[0] == 0
    passes(root)
    assert ds01(root, capsys, "mig", "assert")[0] == 0
    for g in host(root).gpus:
        assert sorted(i["profile"] for i in g["instances"]) == \
            ["1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"]


@pytest.mark.parametrize(("config", "error"), [
    ("all-enabled", ":12: mig-configs.all-enabled.0.mig-devices: ds01 cannot express MIG on "
     "with no instances"),
    ("shared-compute", ":44: mig-configs.shared-compute.0.mig-devices.1c.2g.10gb: ds01 cannot "
     "express compute-instance profiles: it gives each GPU instance one compute instance "
     "filling it (write 2g.10gb)"),
    ("a100-only", ":48: mig-configs.a100-only.0.device-filter: ds01 cannot express "
     "device-filter: it lays out GPUs by index"),
    ("overlapping", ":57: mig-configs.overlapping.1.devices: GPU 1 is also in another entry"),
    ("no-such", ":4: mig-configs: no config 'no-such' (there are: a100-only, all-1g.5gb, "),
])
def test_what_ds01_cannot_express_is_refused_with_line_and_reason(
        root: Path, capsys: pytest.CaptureFixture[str], config: str, error: str) -> None:
    code, out, err = ds01(root, capsys, "mig", "import", str(MIG_PARTED), "-c", config)
    assert (code, out) == (1, "")
    assert f"{MIG_PARTED}{error}" in err


def test_an_import_ds01_s_own_checks_refuse_is_refused(
        tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "too-many.yaml"
    bad.write_text("version: v1\nmig-configs:\n  big:\n    - devices: all\n      mig-enabled: "
                   "true\n      mig-devices: {4g.20gb: 1, 7g.40gb: 1}\n")
    code, _, err = ds01(root, capsys, "mig", "import", str(bad), "-c", "big")
    assert code == 1
    assert "gpus.all.mig-devices: needs 11 compute slices; a GPU has 7" in err


def test_the_drain_start_is_carried_even_in_a_stale_state() -> None:
    """Idle timers are dropped when ds01d was away too long; a drain start never is (the
    deadline its holders were told counts from it)."""
    from datetime import UTC, datetime

    from ds01d.runtime.carry import Carry

    t = datetime(2026, 1, 5, 9, tzinfo=UTC)
    saved = Carry(idle_since={"c1": t}, mig_drain_since={"GPU-x": t}).to_json()
    back = Carry.from_json(json.loads(json.dumps(saved)), fresh=False)
    assert (back.mig_drain_since, back.idle_since) == ({"GPU-x": t}, {})
    assert Carry.from_json({**saved, "mig_drain_since": {"GPU-y": "soon"}},
                           fresh=True).mig_drain_since == {}


def test_mig_plan_names_users_for_root_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"
    (real / "etc/ds01").mkdir(parents=True)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    code, _, err = ds01(real, capsys, "mig", "plan")
    assert (code, err) == (1, "ds01: ds01 mig plan names the users a change affects: it is "
                           "for root\n")


def test_plan_exits_1_on_a_layout_no_gpu_can_take(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = root / "etc/ds01/mig-layout.yaml"
    layout.write_text(layout.read_text().replace("{2g.10gb: 3}", "{3g.40gb: 2}"))
    code, out, _ = ds01(root, capsys, "mig", "plan")
    assert code == 1 and "cannot be applied" in out and "3g.40gb" in out
    layout.write_text(layout.read_text().replace("{3g.40gb: 2}", "{1g.5gb: 7}"))
    code, out, _ = ds01(root, capsys, "mig", "plan")
    assert code == 0 and "cannot be applied" not in out


def test_the_drift_is_said_before_what_the_pass_does_about_it(root: Path) -> None:
    layout = root / "etc/ds01/mig-layout.yaml"
    layout.write_text(layout.read_text().replace("{2g.10gb: 3}", "{1g.5gb: 7}"))
    passes(root, 2)
    kinds = [json.loads(line)["event_type"]
             for line in (root / "var/log/ds01/events.jsonl").read_text().splitlines()]
    mig = [k for k in kinds if k.startswith("mig.")]
    assert mig[0] == "mig.drift" and "mig.create" in mig and mig[-1] == "mig.converged", mig
