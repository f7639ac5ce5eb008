"""The MIG layout, applied on the testbed: ds01d (run by a real systemd from its unit file)
converges an edited mig-layout.yaml through the real nvidia-ml-py and the fake libnvidia-ml,
draining only what goes, with notice and deadline, while a real dockerd runs the containers.

Machine: GPU 0 an A100 40GB whole; GPU 1 an A100 40GB with two 3g.20gb (MIG_A at memory
slice 0, MIG_B at 4)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import BIN, GPU0, MIG_A, MIG_B, Lab, running_lab, unix_users, wait_for

USERS = ("dsmalice", "dsmbob")
LAYOUT = """\
version: 1
drain_deadline_h: {deadline}
gpus:
  "0": {{mig-enabled: false}}
  "1": {{mig-enabled: true, mig-devices: {devices}}}
"""


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    with unix_users(USERS) as made, running_lab(request.node.name, made, files={
            "mig-layout.yaml": LAYOUT.format(deadline=24, devices="{3g.20gb: 2}")}) as lab:
        yield lab


def mig(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    """``ds01 mig ...`` as the admin, reading the GPUs through the fake NVML."""
    env = {**os.environ, "DS01_FAKE_NVML": str(lab.nvml)}
    return subprocess.run([str(BIN / "ds01"), "--root", str(lab.root), "mig", *args],
                          capture_output=True, text=True, env=env, check=False)


def gpu1(lab: Lab) -> list[dict[str, object]]:
    instances: list[dict[str, object]] = json.loads(lab.nvml.read_text())["gpus"][1]["instances"]
    return instances


def test_an_edited_layout_drains_only_what_goes_and_converges(lab: Lab) -> None:
    assert mig(lab, "assert").returncode == 0
    lab.want("dsmalice", "a", "--mig", "3g.20gb")
    wait_for("alice on MIG_A", lambda: lab.running("dsmalice", "a"))
    assert lab.status("dsmalice", "a")["devices"] == [MIG_A]
    # the admin: one 3g.20gb and two 2g.10gb on GPU 1; the 3g.20gb kept is the free MIG_B,
    # since alice's (at 0) would leave no room for both 2g.10gb; 26 seconds' notice
    (lab.root / "etc/ds01/mig-layout.yaml").write_text(
        LAYOUT.format(deadline=0.0072, devices="{3g.20gb: 1, 2g.10gb: 2}"))
    lab.want("dsmbob", "b", "--mig", "2g.10gb")
    told = wait_for("alice told", lambda: lab.events("mig.drain_warning"))
    assert told[0]["user"] == "dsmalice"
    assert "will be stopped and removed at" in told[0]["details"]["message"]
    waiting = wait_for("bob waiting", lambda: lab.status("dsmbob", "b").get("reason", "")
                       .startswith("waiting for GPU 1's new layout (due ") and
                       lab.status("dsmbob", "b"))
    assert waiting["phase"] == "Pending"
    plan = mig(lab, "plan")
    assert plan.returncode == 0
    assert f"  in use by dsmalice/a on {MIG_A} (3g.20gb)" in plan.stdout.splitlines()
    assert mig(lab, "assert").returncode == 1
    # the deadline: alice stopped (mig-relayout), GPU 1 laid out, bob served, alice re-served
    wait_for("bob running", lambda: lab.running("dsmbob", "b"), timeout=90)
    wait_for("alice running again", lambda: lab.running("dsmalice", "a"), timeout=30)
    for kind in ("container.stop", "container.remove"):  # stopped and removed; her want stays
        hers = [e for e in lab.events(kind) if e["user"] == "dsmalice"]
        assert [e["details"]["reason"] for e in hers] == ["mig-relayout"], kind
    assert lab.status("dsmalice", "a")["devices"] == [MIG_B]
    info = lab.inspect("dsmalice", "a")
    assert [r["DeviceIDs"] for r in info["HostConfig"]["DeviceRequests"]] == [[MIG_B]]
    assert sorted(str(i["profile"]) for i in gpu1(lab)) == ["2g.10gb", "2g.10gb", "3g.20gb"]
    assert MIG_A not in {i.get("uuid") for i in gpu1(lab)}
    assert lab.status("dsmbob", "b")["devices"][0] not in (MIG_A, MIG_B, GPU0)
    done = mig(lab, "assert")
    assert (done.returncode, done.stdout) == (0, "every GPU matches mig-layout.yaml\n")
    applied = [e["details"]["gpu"] for e in lab.events("mig.create")]
    assert applied == [1, 1]  # GPU 0 never touched
