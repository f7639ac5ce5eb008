"""What admins install: the alert rules (promtool), the dashboard, the systemd units."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ds01d.runtime.metrics import METRICS
from tests.conftest import REPO

PROMETHEUS = REPO / "etc-mirror/prometheus"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: make unit installs it from Debian"
    return path


def test_every_alert_rule_passes_its_promtool_tests() -> None:
    done = subprocess.run([tool("promtool"), "test", "rules", "ds01-rules.test.yml"],
                          cwd=PROMETHEUS, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_test_a_summary_and_a_runbook() -> None:
    rules = (PROMETHEUS / "ds01-rules.yml").read_text()
    tests = (PROMETHEUS / "ds01-rules.test.yml").read_text()
    alerts = re.findall(r"- alert: (\w+)", rules)
    assert len(alerts) == 8
    for alert in alerts:
        assert f"alertname: {alert}" in tests, alert
    assert rules.count("summary:") == rules.count("runbook:") == len(alerts)


def test_rules_and_dashboard_use_only_served_metrics() -> None:
    served = set(METRICS) | {f"{m}_bucket" for m in METRICS} | {"up"}
    rules = set(re.findall(r"\b(ds01_[a-z_]+)", (PROMETHEUS / "ds01-rules.yml").read_text()))
    dash = json.loads((REPO / "etc-mirror/grafana/ds01.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    used = rules | set(re.findall(r"\b(ds01_[a-z_]+)", exprs))
    assert used - served == set()
    assert {"Devices held, by user", "Queue", "GPU use nobody was allocated"} <= {
        p["title"] for p in dash["panels"]}


UNITS = ["ds01d.service", "ds01.slice", "ds01-report.service", "ds01-report.timer",
         "ds01-docker.socket", "ds01-docker.service"]


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify(tmp_path: Path, unit: str) -> None:
    """Each unit as installed, with its binaries pointed at this checkout's venv."""
    bindir = Path(sys.executable).parent
    for name in UNITS:
        text = (REPO / "units" / name).read_text().replace("/usr/local/bin/", f"{bindir}/")
        (tmp_path / name).write_text(text)
    done = subprocess.run([tool("systemd-analyze"), "verify", str(tmp_path / unit)],
                          capture_output=True, text=True, check=False)
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if "docker.service" not in line and "dbus.service" not in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr
