"""The ds01 CLI as a new student meets it, on the simulated host (GPUs 0-1 whole, GPU 2
3g.20gb x2, GPU 3 2g.10gb x3; students: 0.5 GPU-equivalents, MIG only, 2 containers, idle 2h):
find a free GPU, ask for it, hear clearly why not, see what ds01d will do."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ds01d import daemon
from ds01d.cli import main
from tests.conftest import REPO


class Lab:
    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root, self.capsys = root, capsys

    def run(self, *argv: str) -> tuple[int, str, str]:
        code = main(["--root", str(self.root), *argv])
        out, err = self.capsys.readouterr()
        return code, out, err

    def ds01(self, *argv: str) -> str:
        code, out, err = self.run(*argv)
        assert code == 0, err
        return out

    def refused(self, *argv: str) -> str:
        code, _, err = self.run(*argv)
        assert code == 1, err
        return err

    def ds01d(self) -> None:
        assert daemon.main(["--root", str(self.root), "--simulate", "--once"]) == 0
        self.capsys.readouterr()

    def status(self, user: str) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in json.loads(self.ds01("--as", user, "status", "--json"))}


@pytest.fixture
def lab(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Lab:
    lab = Lab(tmp_path / "root", capsys)
    lab.ds01("sim", "init")
    return lab


def help_text(lab: Lab, *argv: str) -> str:
    with pytest.raises(SystemExit):
        main(["--root", str(lab.root), *argv, "--help"])
    return " ".join(lab.capsys.readouterr().out.split())


def test_the_help_examples_use_profiles_this_host_has(lab: Lab) -> None:
    before = help_text(lab)
    assert "ds01 want container train --mig PROFILE" in before and "ds01 gpus" in before
    lab.ds01d()
    after = help_text(lab)
    assert "ds01 want container train --mig 2g.10gb" in after and "3g.40gb" not in after
    assert "this host has 2g.10gb, 3g.20gb" in help_text(lab, "want", "container")


def test_gpus_shows_free_and_in_use_naming_nobody_and_the_users_room(lab: Lab) -> None:
    lab.ds01("--as", "bob", "want", "container", "x", "--mig", "3g.20gb")
    lab.ds01("--as", "carol", "want", "container", "big", "--gpus", "1")
    lab.ds01d()
    lab.ds01("--as", "frank", "want", "container", "q", "--mig", "3g.20gb")
    lab.ds01("--as", "dave", "want", "container", "q", "--mig", "3g.20gb")
    lab.ds01d()
    path = lab.root / "var/lib/ds01/gpus.json"
    assert path.stat().st_mode & 0o777 == 0o644
    text = path.read_text()
    assert not [u for u in ("bob", "carol", "frank", "dave") if u in text]

    out = lab.ds01("--as", "alice", "gpus")
    rows = [line.split() for line in out.splitlines()]
    # carol's GPU 0, unnamed; free by her runtime limit (168 h) at the latest
    assert [rows[1][0], *rows[1][4:]] == ["0", "1.00", "in", "use", "2026-01-12", "09:00", "UTC"]
    assert rows[2][:5] == ["1", rows[2][1], "whole", "GPU", "1.00"] and rows[2][5] == "free"
    assert "3g.20gb    0 of 2 free, 1 queued" in out  # dave (faculty) got the second one
    assert "you (alice): 0 of 0.5 GPU-equivalents in use" in out
    assert "you may ask for one of: 2g.10gb, 3g.20gb" in out
    assert "e.g. ds01 want container NAME --mig 2g.10gb" in out
    assert "whole GPUs are not for your group" in out

    mine = json.loads(lab.ds01("--as", "alice", "gpus", "--json"))
    assert "holders" not in mine and mine["you"]["fits"] == ["2g.10gb", "3g.20gb"]
    assert mine["profiles"]["3g.20gb"] == {"total": 2, "free": 0, "queued": 1, "coming": 0,
                                           "gpu_equivalents": 0.4286}
    admin = json.loads(lab.ds01("gpus", "--json"))  # root (a simulated root, no --as)
    assert set(admin["holders"].values()) == {"bob/x", "carol/big", "dave/q"}
    assert "in use: carol/big" in lab.ds01("gpus")


def test_gpus_table_shows_no_control_character_and_cuts_long_text() -> None:
    from ds01d.cli.gpus import table

    def row(uuid: str, profile: str) -> str:
        device = {"uuid": uuid, "profile": profile, "gpu_equivalents": 0.5, "state": "free"}
        return table({"gpus": [{"index": 0, "devices": [device]}], "profiles": {}},
                     None).splitlines()[1]

    shown = row("MIG-\x1b]0;owned\x07", "1g.5gb")
    assert "\x1b" not in shown and "\x07" not in shown and "MIG-\\x1b]0;owned\\" in shown
    shown = row("MIG-1", "p" * 300)
    assert "p" * 120 + "..." in shown and "p" * 121 not in shown
    assert row("MIG-1", "1g.5gb").split() == ["0", "MIG-1", "1g.5gb", "0.50", "free", "-"]


def test_the_usual_commands_import_only_what_they_use(lab: Lab) -> None:
    """Start-up is measured (bench/): on a served root, the commands users type most import
    neither argparse, re, json nor importlib, nor NSS when --as names the user, nor the want
    module where no want is written."""
    lab.ds01("--as", "bob", "want", "container", "x", "--mig", "3g.20gb")
    lab.ds01d()
    heavy = ("argparse", "re", "json", "importlib", "dataclasses", "ds01d.adapters.nss",
             "ds01d.config.want")
    for argv in (["status"], ["gpus"], ["limits"]):
        code = ("import sys; from ds01d.cli import main; "
                f"code = main(['--root', {str(lab.root)!r}, '--as', 'bob', *{argv!r}]); "
                f"print(code, *[m for m in {heavy!r} if m in sys.modules])")
        out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True,
                             text=True, check=True, cwd=REPO).stdout.splitlines()
        assert out[-1] == "0", (argv, out[-1])


def test_want_refuses_at_once_what_can_never_be_served(lab: Lab) -> None:
    lab.ds01d()
    err = lab.refused("--as", "alice", "want", "container", "t", "--mig", "1g.5gb")
    assert "this server has no 1g.5gb MIG instances (it has: 2g.10gb, 3g.20gb)" in err
    err = lab.refused("--as", "carol", "want", "container", "t", "--gpus", "3")
    assert "asking for 3 devices is over your limit of 2 (max_gpu_slots_per_container)" in err
    assert "this server has 2 whole GPUs (MIG off); 3 asked" in err
    assert not (lab.root / "var/lib/ds01/wants/carol/t.yaml").exists()


def test_over_ones_own_quota_is_drop_one_first_not_a_queue_place(lab: Lab) -> None:
    lab.ds01("--as", "alice", "want", "container", "a", "--mig", "3g.20gb")
    lab.ds01d()
    err = lab.refused("--as", "alice", "want", "container", "b", "--mig", "2g.10gb")
    assert err == ("ds01: cannot want container 'b' now: you hold 0.429 of your 0.5 "
                   "GPU-equivalents (a) and b needs 0.286 more (max_gpu_equivalents): drop one "
                   "first (ds01 drop container NAME), then ask again\n")
    lab.ds01("--as", "alice", "want", "container", "cpu-only")  # no GPU: fine


def test_failed_wants_do_not_count_toward_the_container_cap(lab: Lab) -> None:
    folder = lab.root / "var/lib/ds01/wants/alice"
    lab.ds01("--as", "alice", "want", "container", "a")
    (folder / "broken.yaml").write_text("version: 1\nkind: nonsense\n")
    lab.ds01d()
    assert lab.status("alice")["broken"]["phase"] == "Failed"
    lab.ds01("--as", "alice", "want", "container", "b")
    err = lab.refused("--as", "alice", "want", "container", "c")
    assert "you already want 2 containers (a, b)" in err


def test_asking_again_while_running_says_what_happens(lab: Lab) -> None:
    lab.ds01("--as", "alice", "want", "container", "t", "--mig", "3g.20gb")
    lab.ds01d()
    want = lab.root / "var/lib/ds01/wants/alice/t.yaml"
    before = want.read_text()
    assert lab.ds01("--as", "alice", "want", "container", "t", "--mig", "3g.20gb") == \
        "t already runs with these settings: nothing changes\n"
    assert want.read_text() == before
    err = lab.refused("--as", "alice", "want", "container", "t", "--mig", "2g.10gb")
    assert "t runs with other settings" in err and "--replace" in err
    assert "/workspace (~/workspace/t) is kept" in err and want.read_text() == before
    out = lab.ds01("--as", "alice", "want", "container", "t", "--mig", "2g.10gb", "--replace")
    assert "replacing t: ds01d stops it within seconds" in out
    lab.ds01d()
    s = lab.status("alice")["t"]
    host = json.loads(lab.ds01("sim", "show", "--json"))
    assert (s["phase"], s["devices"]) == ("Running", [host["gpus"][3]["instances"][0]["uuid"]])
    evs = [json.loads(x) for x in lab.ds01("--as", "alice", "events", "--json").splitlines()]
    stop = next(e for e in evs if e["event_type"] == "container.stop")
    assert stop["details"]["reason"] == "replaced" and stop["details"]["notice"] is True


def test_status_right_after_want_shows_it_pending_waiting_for_ds01d(lab: Lab) -> None:
    lab.ds01("--as", "alice", "want", "container", "t", "--mig", "3g.20gb")
    out = lab.ds01("--as", "alice", "status")
    assert "no wanted containers" not in out
    row = out.splitlines()[1].split()
    assert row[:3] == ["alice", "t", "Pending"]
    assert "2026-01-05 09:00 UTC" in out and "waiting for ds01d to read it" in out
    assert "SINCE: when it entered its phase. Times are UTC." in out
    reason = lab.status("alice")["t"]["reason"]
    assert reason.startswith("waiting for ds01d") and "ds01d has not run here yet" in reason


def test_a_want_waiting_says_whether_ds01d_runs(lab: Lab) -> None:
    lab.ds01("--as", "bob", "want", "container", "x", "--mig", "3g.20gb")
    lab.ds01d()
    lab.ds01("--as", "alice", "want", "container", "t", "--mig", "3g.20gb")
    assert lab.status("alice")["t"]["reason"] == \
        "waiting for ds01d to read it (within seconds while ds01d runs)"
    state = lab.root / "var/lib/ds01/ds01d-state.json"
    old = state.stat().st_mtime - 20 * 60
    os.utime(state, (old, old))  # ds01d stopped 20 minutes ago
    reason = lab.status("alice")["t"]["reason"]
    assert "ds01d has not passed for 20 min: is it running? systemctl status ds01d" in reason


def test_stopped_rows_say_how_to_start_again_and_notices_are_shown(lab: Lab) -> None:
    lab.ds01("--as", "alice", "want", "container", "t", "--mig", "3g.20gb", "--cpus", "2")
    lab.ds01d()
    lab.ds01d()
    lab.ds01("sim", "advance", "1h40m")
    lab.ds01d()
    out = lab.ds01("--as", "alice", "status")
    assert "your notices in the last 24 hours:" in out
    assert "t has been idle for 1.7h and will be stopped at 2026-01-05 11:00 UTC" in out
    lab.ds01("sim", "advance", "30m")
    lab.ds01d()
    out = lab.ds01("--as", "alice", "status")
    assert "start it again: ds01 want container t --image ubuntu:24.04 --mig 3g.20gb " \
           "--cpus 2.0" in out
    assert "t was stopped: it was idle for 2.2h. Its devices are released; /workspace is " \
           "kept." in out
    notice = (lab.root / "home/alice/workspace/t/.ds01/notices").read_text()
    assert notice.count("\n") == 2 and "will be stopped at 2026-01-05 11:00 UTC" in notice
    stopped = lab.status("alice")["t"]
    assert stopped["busy"] is None and stopped["spec"] and "busy" not in out
    lab.ds01("sim", "advance", "1m")
    again = lab.ds01("--as", "alice", "want", "container", "t", "--image", "ubuntu:24.04",
                     "--mig", "3g.20gb", "--cpus", "2.0")
    assert "asked again: ds01d starts t again" in again, again


def test_a_pending_row_says_what_holds_its_device(lab: Lab) -> None:
    host = json.loads(lab.ds01("sim", "show", "--json"))
    out = lab.ds01("sim", "host-process", "add", "--gpu", host["gpus"][0]["uuid"], "--user",
                   "carol")
    pid = int(out.split()[2])
    lab.ds01("sim", "host-process", "add", "--gpu", host["gpus"][1]["uuid"], "--user", "dave")
    lab.ds01("--as", "carol", "want", "container", "big", "--gpus", "1")
    lab.ds01d()
    reason = lab.status("carol")["big"]["reason"]
    assert reason == (f"queued for 1 free whole GPU (GPU 0 busy: a process of yours outside "
                      f"containers (pid {pid}); GPU 1 busy: a process outside ds01 containers)")


def test_events_since_counts_from_now(lab: Lab) -> None:
    lab.ds01("--as", "alice", "want", "container", "t", "--mig", "3g.20gb")
    lab.ds01d()
    assert lab.ds01("--as", "alice", "events", "--since", "1h")
    lab.ds01("sim", "advance", "2h")
    assert lab.ds01("--as", "alice", "events", "--since", "1h") == ""


def test_profiles_a_layout_change_brings_can_be_asked_for(lab: Lab) -> None:
    lab.ds01("--as", "bob", "want", "container", "x", "--mig", "3g.20gb")
    lab.ds01d()
    (lab.root / "etc/ds01/mig-layout.yaml").write_text(
        "version: 1\ndrain_deadline_h: 2\ngpus:\n  all: {mig-enabled: false}\n  '2': "
        "{mig-enabled: true, mig-devices: {1g.5gb: 7}}\n  '3': {mig-enabled: "
        "true, mig-devices: {2g.10gb: 3}}\n")
    lab.ds01d()  # GPU 2 drains: bob's 3g.20gb goes at the deadline
    assert "1g.5gb     0 of 0 free, 0 queued, 7 coming" in lab.ds01("--as", "alice", "gpus")
    body = json.loads(lab.ds01("--as", "alice", "gpus", "--json"))
    assert (body["profiles"]["2g.10gb"]["coming"], body["profiles"]["3g.20gb"]["coming"]) == \
        (0, 0)
    out = lab.ds01("--as", "alice", "want", "container", "t", "--mig", "1g.5gb")
    assert out.startswith("wanted container 't'")
    err = lab.refused("--as", "alice", "want", "container", "u", "--mig", "4g.20gb")
    assert "(it has: 1g.5gb, 2g.10gb, 3g.20gb)" in err


def test_a_layout_edited_during_a_pass_is_left_to_ds01d(lab: Lab) -> None:
    from ds01d.paths import Paths

    d = daemon.Daemon(Paths(lab.root), simulate=True)
    d.run_pass()
    load = d.config.load

    def edited_meanwhile() -> Any:  # the admin saves the file just after ds01d read it
        config = load()
        (lab.root / "etc/ds01/mig-layout.yaml").write_text(
            "version: 1\ngpus:\n  all: {mig-enabled: false}\n  '2': {mig-enabled: true, "
            "mig-devices: {1g.5gb: 7}}\n  '3': {mig-enabled: true, mig-devices: {2g.10gb: 3}}\n")
        return config

    d.config.load = edited_meanwhile  # type: ignore[method-assign]
    d.run_pass()
    out = lab.ds01("--as", "alice", "want", "container", "t", "--mig", "1g.5gb")
    assert out.startswith("wanted container 't'")


def test_a_layout_ds01d_has_not_read_yet_is_left_to_ds01d(lab: Lab) -> None:
    lab.ds01d()
    assert lab.refused("--as", "alice", "want", "container", "t", "--mig", "1g.5gb")
    (lab.root / "etc/ds01/mig-layout.yaml").write_text(
        "version: 1\ngpus:\n  all: {mig-enabled: false}\n  '2': {mig-enabled: true, "
        "mig-devices: {1g.5gb: 7}}\n  '3': {mig-enabled: true, mig-devices: {2g.10gb: 3}}\n")
    out = lab.ds01("--as", "alice", "want", "container", "t", "--mig", "1g.5gb")
    assert out.startswith("wanted container 't'")


def test_plan_shows_mig_drift(lab: Lab) -> None:
    (lab.root / "etc/ds01/mig-layout.yaml").write_text(
        "version: 1\ngpus:\n  all: {mig-enabled: false}\n  '2': {mig-enabled: true, "
        "mig-devices: {1g.5gb: 7}}\n  '3': {mig-enabled: true, mig-devices: {2g.10gb: 3}}\n")
    out = lab.ds01("plan")
    assert "MIG layout drift: GPU 2 has MIG 3g.20gb x2; mig-layout.yaml wants MIG 1g.5gb x7" \
        in out


@pytest.mark.skipif(os.geteuid() != 0, reason="ds01 plan on a real host is for root")
def test_plan_on_a_real_root_writes_nothing_and_says_what_it_cannot_reach(
        make_root: Any, tmp_path: Path) -> None:
    root = make_root({"resource-limits.yaml": "version: 1\n"})
    wants = root / "var/lib/ds01/wants/nobody"
    wants.mkdir(parents=True)
    (wants / "t.yaml").write_text("version: 1\nkind: container\nname: t\nimage: i\n"
                                  "requested_at: '2026-01-05T09:00:00Z'\n")

    def tree() -> dict[str, tuple[int, int, float]]:
        return {str(p): (p.stat().st_mode, p.stat().st_size, p.stat().st_mtime)
                for p in root.rglob("*")}

    before = tree()
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
           "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus", "DS01_FAKE_NVML": "",
           "LD_LIBRARY_PATH": str(REPO / "build/fakenvml")}
    done = subprocess.run([Path(sys.executable).parent / "ds01", "--root", str(root), "plan"],
                          capture_output=True, text=True, env=env, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "could not read docker:" in done.stdout and "could not read nvml:" in done.stdout
    assert "could not read systemd:" in done.stdout
    assert tree() == before


def test_a_dropped_want_leaves_no_status_behind_across_restarts(lab: Lab) -> None:
    lab.ds01("--as", "alice", "want", "container", "t", "--mig", "3g.20gb")
    lab.ds01d()
    lab.ds01d()
    assert lab.status("alice")["t"]["phase"] == "Running"
    lab.ds01("--as", "alice", "drop", "container", "t")
    lab.ds01d()  # a new ds01d each time: it knows the folder only from the disk
    lab.ds01d()
    assert "t" not in lab.status("alice")
    assert not list((lab.root / "var/lib/ds01/status/alice").glob("*.json"))
    out = lab.ds01("--as", "alice", "want", "container", "t2", "--mig", "3g.20gb")
    assert "drop one first" not in out


def test_as_user_acts_as_that_user_for_events_status_and_limits(lab: Lab) -> None:
    lab.ds01("--as", "alice", "want", "container", "t", "--mig", "2g.10gb")
    lab.ds01("--as", "dave", "want", "container", "big", "--gpus", "1")
    lab.ds01d()
    mine = lab.ds01("--as", "dave", "events", "--since", "1h")
    assert "dave" in mine and "alice" not in mine and "ds01-student" not in mine
    assert "only your own events" in lab.refused("--as", "dave", "events", "--user", "alice")
    assert "--all is for root" in lab.refused("--as", "dave", "status", "--all")
    err = lab.refused("--as", "alice", "limits", "bob")
    assert "only your own limits" in err and "thesis" not in err
    assert "user alice" in lab.ds01("--as", "alice", "limits", "alice")
    assert "override reason: thesis" in lab.ds01("limits", "bob")  # an admin sees anyone's


def test_a_plain_user_sees_only_their_own_limits(lab: Lab, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    lab.ds01d()  # the snapshot every user may read
    (lab.root / "var/lib/ds01/sim").rename(lab.root / "var/lib/ds01/sim.off")  # a real root
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr("ds01d.adapters.nss.user_name", lambda uid: "alice")
    err = lab.refused("limits", "bob")
    assert "only your own limits" in err and "thesis" not in err
    assert "user alice" in lab.ds01("limits", "alice")


def test_limits_of_a_bad_or_unknown_name_say_so(lab: Lab) -> None:
    code, out, err = lab.run("limits", "nosuch_user!")
    assert code == 2 and "not a user name" in err and not out
    out = lab.ds01("limits", "zed")
    assert out.startswith("zed is not a known user: these are the limits it would get\n")
    assert "not a known user" not in lab.ds01("limits", "alice")


def _keys(table: str) -> list[str]:
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("KEY "))
    return [line.split()[0] for line in lines[start + 1:-1]]


def test_limits_keys_print_in_one_order_for_every_group(lab: Lab) -> None:
    for user in ("carol", "erin", "alice", "zed"):
        (lab.root / "var/cache/ds01/limits.snapshot").unlink(missing_ok=True)
        loaded = _keys(lab.ds01("limits", user))
        assert loaded == _keys(lab.ds01("limits", user))  # from the snapshot just written
        sections = [[k for k in loaded if k.startswith(p)] for p in ("aggregate.", "policies.")]
        plain = [k for k in loaded if "." not in k]
        assert [plain, *sections] == [sorted(plain), *map(sorted, sections)]


def test_limits_footer_says_how_durations_are_written(lab: Lab) -> None:
    out = lab.ds01("limits", "alice")
    assert "policies.idle_detection_window   10m" in out
    assert "keys ending _h in hours" in out.splitlines()[-1]


def test_keepalive_of_a_stopped_container_says_how_to_start_it(lab: Lab) -> None:
    lab.ds01("--as", "alice", "want", "container", "t", "--mig", "2g.10gb")
    lab.ds01d()
    lab.ds01d()
    lab.ds01("sim", "advance", "1h40m")
    lab.ds01d()
    lab.ds01("sim", "advance", "30m")
    lab.ds01d()
    assert lab.status("alice")["t"]["phase"] == "Stopped"
    out = lab.ds01("--as", "alice", "keepalive", "t", "--for", "400h")
    assert "t is stopped: a keepalive counts only while it runs" in out
    assert "start it again: ds01 want container t --image ubuntu:24.04 --mig 2g.10gb" in out


def test_a_refused_replacement_names_what_differs(lab: Lab) -> None:
    lab.ds01("--as", "alice", "want", "container", "t", "--image", "pytorch:2", "--mig",
             "2g.10gb")
    lab.ds01d()
    err = lab.refused("--as", "alice", "want", "container", "t", "--mig", "3g.20gb")
    assert "t runs with other settings (image: pytorch:2 now, ubuntu:24.04 asked; mig: " \
           "2g.10gb now, 3g.20gb asked)." in err


def test_the_help_examples_are_granted_to_a_default_student(lab: Lab) -> None:
    lab.ds01d()
    text = help_text(lab)
    assert "--gpus 1 --memory 64g" not in text
    lines = [line.split("   ")[0].strip() for line in main_help_lines(lab)
             if line.strip().startswith("ds01 want container ")]
    assert len(lines) == 2
    for line in lines:  # zed: a student nobody listed, holding nothing yet
        lab.ds01("--as", "zed", *shlex.split(line)[1:])


def main_help_lines(lab: Lab) -> list[str]:
    with pytest.raises(SystemExit):
        main(["--root", str(lab.root), "--help"])
    return lab.capsys.readouterr().out.splitlines()


def test_events_print_plain_values(lab: Lab) -> None:
    lab.ds01("--as", "alice", "want", "container", "t", "--mig", "2g.10gb")
    lab.ds01d()
    lab.ds01("--as", "alice", "want", "container", "t", "--mig", "3g.20gb", "--replace")
    lab.ds01d()
    out = lab.ds01("events")
    assert "=None" not in out and "True" not in out and "{'" not in out and "['" not in out
    assert "properties={CPUQuotaPerSecUSec=16000000, MemoryHigh=60129542144," in out
    assert "notice=yes" in out and "properties=none slice=ds01.slice" in out


def test_counts_are_singular_or_plural(lab: Lab) -> None:
    lab.ds01d()
    assert "(1 GPU-equivalent each)" in lab.ds01("--as", "alice", "gpus")
    assert "(1 GPU, image" in lab.ds01("--as", "carol", "want", "container", "b", "--gpus", "1")
    assert "(2 GPUs, image" in lab.ds01("--as", "dave", "want", "container", "b", "--gpus", "2")
    err = lab.refused("--as", "alice", "want", "container", "x", "--gpus", "1")
    assert "asking for 1 GPU-equivalent is over" in err


def test_gpus_offers_only_what_want_would_take_under_the_aggregate_limit(lab: Lab) -> None:
    config = lab.root / "etc/ds01/resource-limits.yaml"
    text = config.read_text()
    config.write_text(text.replace("      gpu_limit: 0.5 ", "      gpu_limit: 0.3 ", 1))
    lab.ds01d()
    mine = json.loads(lab.ds01("--as", "alice", "gpus", "--json"))["you"]
    assert mine["gpu_equivalents_cap"] == 0.3 and "3g.20gb" not in mine["fits"]
    assert "2g.10gb" in mine["fits"]
    assert "of 0.3 GPU-equivalents in use" in lab.ds01("--as", "alice", "gpus")
    lab.refused("--as", "alice", "want", "container", "t", "--mig", "3g.20gb")
