"""Operating ds01 on the simulated host: metrics over a real scrape, dcgm-exporter job-mapping
files, and usage reports, each against a scenario computed by hand."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ds01d.daemon import Daemon, PassResult, serve_metrics
from ds01d.paths import Paths
from ds01d.runtime.metrics import METRICS, Snapshot
from tests.conftest import REPO
from tests.unit.test_cli_scenario import Lab


@pytest.fixture
def scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Lab, dict[str, str]]:
    """09:00 alice 3g.20gb (idle), bob 3g.20gb, carol GPU 0 (both busy); frank queued for a
    3g.20gb; 11:05 alice idle-stopped, frank gets hers (and works); 11:05-12:05 dave runs a job
    on GPU 1 outside any container; then one more hour."""
    lab = Lab(tmp_path / "root", capsys)
    lab.ds01("sim", "init")
    host = json.loads(lab.ds01("sim", "show", "--json"))
    uuids = {"gpu0": host["gpus"][0]["uuid"], "gpu1": host["gpus"][1]["uuid"],
             "mig_a": host["gpus"][2]["instances"][0]["uuid"]}
    for user, args in (("alice", ["--mig", "3g.20gb"]), ("bob", ["--mig", "3g.20gb"]),
                       ("carol", ["--gpus", "1"])):
        lab.ds01("--as", user, "want", "container", "w", *args)
    lab.ds01d()
    lab.ds01("--as", "frank", "want", "container", "w", "--mig", "3g.20gb")
    lab.ds01("sim", "activity", "bob/w", "--gpu-util", "70")
    lab.ds01("sim", "activity", "carol/w", "--gpu-util", "95")
    lab.ds01d()
    lab.ds01("sim", "advance", "1h55m")
    lab.ds01d()  # alice is told: stopped at 11:05
    lab.ds01("sim", "advance", "10m")
    lab.ds01d()
    lab.ds01("sim", "activity", "frank/w", "--gpu-util", "60")
    out = lab.ds01("sim", "host-process", "add", "--gpu", uuids["gpu1"], "--user", "dave",
                   "--mem", "8000")
    uuids["pid"] = out.split()[2]
    lab.ds01d()
    lab.ds01("sim", "advance", "1h")
    lab.ds01("sim", "host-process", "remove", uuids["pid"])
    lab.ds01d()
    lab.ds01("sim", "advance", "1h")
    lab.ds01d()
    return lab, uuids


def test_report_matches_the_scenario_by_hand(scenario: tuple[Lab, dict[str, str]]) -> None:
    lab, _ = scenario  # now 13:05; the window is the last 24 h
    body = json.loads(lab.ds01("report", "--since", "24h", "--json"))
    u = body["users"]
    assert u["alice"]["gpu_hours"] == pytest.approx(125 / 60, abs=1e-3)  # 09:00-11:05
    assert u["alice"]["gpueq_hours"] == pytest.approx(125 / 60 * 3 / 7, abs=1e-3)
    assert u["alice"]["idle_reclaimed_gpu_hours"] == pytest.approx(125 / 60, abs=1e-3)
    assert u["bob"]["gpu_hours"] == pytest.approx(245 / 60, abs=1e-3)  # 09:00-13:05
    assert u["carol"]["gpueq_hours"] == pytest.approx(245 / 60, abs=1e-3)  # a whole GPU
    assert u["frank"]["gpu_hours"] == pytest.approx(2.0, abs=1e-3)  # 11:05-13:05
    assert u["dave"]["untracked_gpu_hours"] == pytest.approx(1.0, abs=1e-3)
    assert body["groups"]["student"]["gpu_hours"] == pytest.approx((125 + 245 + 120) / 60,
                                                                   abs=1e-3)
    assert body["queue_wait_seconds"] == {"median": 0.0, "p95": 7500.0}  # frank waited 2h05
    assert u["dave"]["group"] == "faculty"
    two = json.loads(lab.ds01("report", "--since", "1h", "--json"))["users"]
    assert two["frank"]["gpu_hours"] == pytest.approx(1.0, abs=1e-3)
    assert two["dave"]["untracked_gpu_hours"] == pytest.approx(0.0, abs=1e-3)


def test_the_daily_report_files(scenario: tuple[Lab, dict[str, str]]) -> None:
    lab, _ = scenario
    lab.ds01("report", "--since", "24h", "--output", "var/lib/ds01/reports")
    names = sorted(p.name for p in (lab.root / "var/lib/ds01/reports").iterdir())
    assert names == ["report-2026-01-05-24h.json", "report-2026-01-05-24h.md",
                     "report-2026-01-05-24h.svg"]
    md = (lab.root / "var/lib/ds01/reports" / names[1]).read_text()
    assert "| student | 8.17 |" in md
    assert (lab.root / "var/lib/ds01/reports" / names[2]).read_text().startswith("<svg")


def test_dcgm_job_mapping_files_name_the_users(scenario: tuple[Lab, dict[str, str]]) -> None:
    lab, _ = scenario
    folder = lab.root / "run/ds01/dcgm-job-map"
    files = {p.name: p.read_text() for p in folder.iterdir()}
    assert files == {"0": "carol/w\n", "2.1": "frank/w\n", "2.2": "bob/w\n"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(lab: Lab) -> str:
    d = Daemon(Paths(lab.root), simulate=True)
    d.run_pass()
    port = free_port()
    serve_metrics(d, port)
    assert d.metrics_served
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels}")


def test_a_scrape_shows_every_metric_with_the_right_values(
        scenario: tuple[Lab, dict[str, str]]) -> None:
    lab, uuids = scenario
    text = scrape(lab)
    for name in METRICS:
        assert f"# HELP {name.removesuffix('_total')}" in text or f"# HELP {name}" in text, name
    assert value(text, "ds01_gpu_allocated", user="frank", device="2.1", profile="3g.20gb") == 1
    assert value(text, "ds01_gpu_allocated", user="carol", device="0", profile="full") == 1
    assert value(text, "ds01_user_gpu_equivalents", user="bob") == pytest.approx(3 / 7)
    assert value(text, "ds01_device_info", uuid=uuids["mig_a"], device="2.1") == 1
    assert value(text, "ds01_queue_length") == 0
    assert value(text, "ds01_converged") == 1
    assert value(text, "ds01_drift_objects", kind="containers") == 0
    assert value(text, "ds01_lifecycle_actions_total", action="idle_stop") == 0  # a new daemon
    assert value(text, "ds01_adapter_up", adapter="docker") == 1
    assert value(text, "ds01_desired_state_valid") == 1
    assert value(text, "ds01_container_idle_seconds", user="frank", container="w") == 0
    assert value(text, "ds01_reconcile_duration_seconds_count") == 1


def test_untracked_use_in_the_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = Lab(tmp_path / "root", capsys)
    lab.ds01("sim", "init")
    gpu1 = json.loads(lab.ds01("sim", "show", "--json"))["gpus"][1]["uuid"]
    lab.ds01("sim", "host-process", "add", "--gpu", gpu1, "--user", "dave", "--mem", "8000")
    lab.ds01("--as", "frank", "want", "container", "w", "--mig", "3g.20gb")
    lab.ds01d()
    lab.ds01d()  # the container is there, and seen idle
    lab.ds01("sim", "advance", "1h")
    text = scrape(lab)
    assert value(text, "ds01_container_idle_seconds", user="frank", container="w") == 3600
    assert value(text, "ds01_untracked_gpu_processes", gpu="1", device="1", user="dave") == 1
    assert value(text, "ds01_untracked_gpu_memory_bytes", user="dave") == 8000 * 2**20
    assert value(text, "ds01_converged") == 1


def test_promtool_accepts_a_real_scrape(scenario: tuple[Lab, dict[str, str]]) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: make unit installs Debian's prometheus package"
    done = subprocess.run([promtool, "check", "metrics"], input=scrape(scenario[0]),
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_docs_list_exactly_the_served_metrics() -> None:
    text = (REPO / "docs/metrics.md").read_text()
    documented = set(re.findall(r"^\| `(ds01_[a-z_]+)`", text, re.M))
    assert documented == set(METRICS)
    for name, (_, _, labels) in METRICS.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}`"))
        assert all(f"`{label}`" in row for label in labels), name



def test_mig_layout_drift_drain_and_deadline_by_gpu(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    lab = Lab(tmp_path / "root", capsys)
    lab.ds01("sim", "init")  # the example layout matches the simulated host
    lab.ds01("--as", "bob", "want", "container", "b", "--mig", "2g.10gb")
    text = scrape(lab)
    assert value(text, "ds01_drift_objects", kind="mig_layout") == 0
    assert [value(text, "ds01_mig_layout_drift", gpu=str(i)) for i in range(4)] == [0] * 4
    lab.ds01("sim", "activity", "bob/b", "--cpu", "50")
    layout = lab.root / "etc/ds01/mig-layout.yaml"
    layout.write_text(layout.read_text().replace("{2g.10gb: 3}", "{1g.5gb: 7}")
                      .replace("version: 1", "version: 1\ndrain_deadline_h: 2"))
    text = scrape(lab)  # bob holds a 2g.10gb on GPU 3: it drains
    assert value(text, "ds01_drift_objects", kind="mig_layout") == 1
    assert [value(text, "ds01_mig_layout_drift", gpu=str(i)) for i in range(4)] == [0, 0, 0, 1]
    assert [value(text, "ds01_mig_draining", gpu=str(i)) for i in range(4)] == [0, 0, 0, 1]
    assert value(text, "ds01_mig_drain_deadline_timestamp_seconds", gpu="3") == \
        datetime(2026, 1, 5, 11, tzinfo=UTC).timestamp()
    assert "ds01_mig_drain_deadline_timestamp_seconds{gpu=\"2\"}" not in text
    lab.ds01("sim", "advance", "2h")
    for _ in range(2):
        scrape(lab)  # bob stopped at the deadline; GPU 3 laid out
    text = scrape(lab)
    assert value(text, "ds01_mig_layout_drift", gpu="3") == 0
    assert value(text, "ds01_mig_draining", gpu="3") == 0
    assert "ds01_mig_drain_deadline_timestamp_seconds{" not in text


def test_users_see_only_their_own_events(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from ds01d.core.model import Account
    from ds01d.runtime.events import EventLog, event
    from ds01d.runtime.userfiles import UserFiles
    from ds01d.units import parse_when

    root = tmp_path / "root"
    (root / "etc/ds01").mkdir(parents=True)
    files = UserFiles(root / "var/lib/ds01/status", account=lambda u: Account(None, None, "/"),
                      owned=False)
    log = EventLog(root / "var/log/ds01/events.jsonl", user_copy=files.append_event)
    when = parse_when("2026-01-05T09:00:00Z")
    for user in ("alice", "bob", None):
        log.append(event("container.create", when=when, user=user, details={}))
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr("ds01d.adapters.nss.user_name", lambda uid: "alice")
    from ds01d.cli import main

    assert main(["--root", str(root), "events", "--json"]) == 0
    mine = [json.loads(x)["user"] for x in capsys.readouterr().out.splitlines()]
    assert mine == ["alice"]
    assert main(["--root", str(root), "events", "--user", "bob"]) == 1
    assert "only your own events" in capsys.readouterr().err


def _served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Daemon:
    lab = Lab(tmp_path / "root", capsys)
    lab.ds01("sim", "init")
    lab.ds01("--as", "frank", "want", "container", "w", "--mig", "3g.20gb")
    d = Daemon(Paths(lab.root), simulate=True)
    d.metrics_served = True  # as serve_metrics leaves it
    d.run_pass()
    return d


def _ended(d: Daemon) -> float:
    snap = d.metrics
    assert snap is not None
    [(_, ended)] = snap.gauges["ds01_last_pass_timestamp_seconds"]
    return ended


def test_a_scrape_during_a_pass_shows_the_last_one_whose_plan_is_let_go(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import weakref

    d = _served(tmp_path, capsys)
    assert d.last is not None and d._metrics is None  # nobody scraped it
    first, ended = weakref.ref(d.last[0]), d.last[4]
    seen: list[object] = []
    real = d._pass

    def during() -> PassResult:
        seen.append(first())
        seen.append(d.metrics)
        return real()

    d._pass = during  # type: ignore[method-assign]
    d.run_pass()
    assert seen[0] is None  # the last pass's plan was not kept alive beside this one's
    snap = seen[1]
    assert isinstance(snap, Snapshot) and snap.gauges["ds01_gpu_allocated"]
    assert snap.gauges["ds01_last_pass_timestamp_seconds"] == [({}, ended)]
    assert d.last is not None and _ended(d) == d.last[4] > ended
    d.metrics_served = False  # not served: nothing is built for a scrape that never comes
    d.run_pass()
    d._pass = _broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        d.run_pass()
    assert d.metrics is None


def _broken() -> PassResult:
    raise RuntimeError("a pass that fails")


def test_after_a_failed_pass_the_metrics_are_the_last_good_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _served(tmp_path, capsys)
    assert d.last is not None
    ended = d.last[4]
    d._pass = _broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        d.run_pass()
    assert d.last is None and _ended(d) == ended
    assert d.metrics is not None and d.metrics.gauges["ds01_gpu_allocated"]


def test_a_scrape_that_a_pass_overtakes_keeps_no_stale_gauges(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ds01d import daemon
    from ds01d.runtime.metrics import build as real

    d = _served(tmp_path, capsys)
    calls: list[int] = []

    def slow(*args: Any, **kwargs: Any) -> Snapshot:
        calls.append(1)
        if len(calls) == 1:
            d.run_pass()  # a pass ends while this scrape builds the last one's gauges
        return real(*args, **kwargs)

    monkeypatch.setattr(daemon, "build_metrics", slow)
    assert d.last is not None
    old = d.last[4]
    assert _ended(d) == old  # the overtaken scrape answers with what it read
    assert d.last is not None and _ended(d) == d.last[4] > old  # the next, with the new pass
