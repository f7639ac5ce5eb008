"""The lab scenario of `make demo`, through the ds01 CLI and `ds01d --once` alone, asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ds01d import daemon
from ds01d.cli import main


class Lab:
    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root, self.capsys = root, capsys

    def ds01(self, *argv: str) -> str:
        code = main(["--root", str(self.root), *argv])
        out, err = self.capsys.readouterr()
        assert code == 0, err
        return out

    def ds01d(self) -> None:
        assert daemon.main(["--root", str(self.root), "--simulate", "--once"]) == 0
        self.capsys.readouterr()

    def status(self) -> dict[str, dict[str, Any]]:
        rows = json.loads(self.ds01("status", "--all", "--json"))
        return {f"{r['user']}/{r['name']}": r for r in rows}

    def events(self, since: str) -> list[dict[str, Any]]:
        out = self.ds01("events", "--since", since, "--json")
        return [json.loads(line) for line in out.splitlines()]


def test_the_demo_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = Lab(tmp_path / "root", capsys)
    lab.ds01("sim", "init")
    host = json.loads(lab.ds01("sim", "show", "--json"))
    mig3 = [i["uuid"] for i in host["gpus"][2]["instances"]]
    gpu0, gpu1 = host["gpus"][0]["uuid"], host["gpus"][1]["uuid"]

    lab.ds01("--as", "alice", "want", "container", "train", "--mig", "3g.20gb")
    lab.ds01("--as", "bob", "want", "container", "thesis", "--mig", "3g.20gb")
    lab.ds01("--as", "carol", "want", "container", "big", "--gpus", "1")
    lab.ds01d()
    lab.ds01("--as", "frank", "want", "container", "nlp", "--mig", "3g.20gb")
    lab.ds01d()
    s = lab.status()
    assert [s[k]["devices"] for k in ("alice/train", "bob/thesis", "carol/big")] == \
        [[mig3[0]], [mig3[1]], [gpu0]]
    assert all(s[k]["phase"] == "Running" for k in ("alice/train", "bob/thesis", "carol/big"))
    assert (s["frank/nlp"]["phase"], s["frank/nlp"]["queue_position"]) == ("Pending", 1)

    lab.ds01("sim", "activity", "bob/thesis", "--gpu-util", "70")
    lab.ds01("sim", "activity", "carol/big", "--gpu-util", "95")
    lab.ds01("sim", "advance", "1h40m")
    lab.ds01d()
    lab.ds01("sim", "advance", "15m")
    lab.ds01d()
    warnings = [e for e in lab.events("20m") if e["event_type"] == "lifecycle.idle_warning"]
    assert [(e["user"], e["details"]["container"]) for e in warnings] == \
        [("alice", "train"), ("alice", "train")]

    lab.ds01("sim", "advance", "10m")
    lab.ds01d()
    s = lab.status()
    assert (s["alice/train"]["phase"], s["alice/train"]["reason"]) == ("Stopped", "idle")
    assert (s["frank/nlp"]["phase"], s["frank/nlp"]["devices"]) == ("Running", [mig3[0]])
    kinds = [e["event_type"] for e in lab.events("1m")]
    assert kinds[:2] == ["lifecycle.idle_stop", "gpu.release"]

    out = lab.ds01("sim", "host-process", "add", "--gpu", gpu1, "--user", "dave", "--mem", "8000")
    pid = int(out.split()[2])
    lab.ds01d()
    flags = [e for e in lab.events("1m") if e["event_type"] == "gpu.untracked"]
    assert [(e["user"], e["details"]["pid"], e["details"]["device"]) for e in flags] == \
        [("dave", pid, gpu1)]
    lab.ds01d()
    assert not [e for e in lab.events("1m") if e["event_type"] == "gpu.untracked"][1:]

    lab.ds01("sim", "advance", "1m")
    lab.ds01("--as", "alice", "want", "container", "train", "--mig", "3g.20gb")
    lab.ds01d()
    s = lab.status()
    assert (s["alice/train"]["phase"], s["alice/train"]["queue_position"]) == ("Pending", 1)


def test_keepalive_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = Lab(tmp_path / "root", capsys)
    lab.ds01("sim", "init")
    lab.ds01("--as", "alice", "want", "container", "t", "--mig", "2g.10gb")
    lab.ds01d()
    lab.ds01d()
    out = lab.ds01("--as", "alice", "keepalive", "t", "--for", "30h")
    assert "capped at keepalive_max_duration_h = 24h" in out
    lab.ds01("sim", "advance", "23h")
    lab.ds01d()
    assert lab.status()["alice/t"]["phase"] == "Running"
    lab.ds01("sim", "advance", "50m")  # 10 minutes (stop_notice_m) before the keepalive ends
    lab.ds01d()
    (told,) = [e for e in lab.events("1m") if e["event_type"] == "lifecycle.keepalive_warning"]
    assert told["details"]["message"] == (
        "the keepalive of t ends at 2026-01-06 09:00 UTC; it has been idle for 23.8h and will "
        "be stopped at 2026-01-06 09:00 UTC unless it is used (or: ds01 keepalive t --for 2h)")
    lab.ds01("sim", "advance", "10m")
    lab.ds01d()
    assert lab.status()["alice/t"]["reason"] == "idle"


def test_plan_shows_without_doing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = Lab(tmp_path / "root", capsys)
    lab.ds01("sim", "init")
    lab.ds01("--as", "alice", "want", "container", "t", "--mig", "2g.10gb")
    assert "CreateContainer      container/alice/t" in lab.ds01("plan")
    assert lab.ds01("plan") == lab.ds01("plan")
    lab.ds01d()
    assert lab.ds01("plan").startswith("nothing to do")
