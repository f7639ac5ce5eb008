"""A new student on the testbed, with only `ds01 --help`: finds a free GPU, asks for it, is
told clearly what cannot be had and why, hears on their terminal (a real pty, listed in a
utmp file ds01d reads) before their idle container stops, and finds the notice file in the
container; an admin's webhook (a local HTTP receiver) gets the untracked-use alert.

Real systemd, real dockerd, the fake NVML; ds01 is run as root for the student (``--as``):
the test's interpreter lives where other users cannot reach it."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ds01d.adapters.tty import utmp_entry
from tests.conftest import REPO
from tests.e2e.conftest import BIN, GPU0, Lab, docker, run, tb, wait_for

STUDENT = "dsnstu"


@pytest.fixture(scope="module")
def student() -> Iterator[tuple[int, int]]:
    home = REPO / "build/e2e-home" / STUDENT
    made = run("id", STUDENT, check=False).returncode != 0
    if made:
        run("useradd", "--no-create-home", "--no-user-group", "--shell", "/usr/sbin/nologin",
            "--home-dir", str(home), STUDENT)
    uid, gid = int(run("id", "-u", STUDENT).stdout), int(run("id", "-g", STUDENT).stdout)
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, uid, gid)
    home.chmod(0o750)
    try:
        yield uid, gid
    finally:
        if made:
            run("userdel", STUDENT, check=False)
        shutil.rmtree(home, ignore_errors=True)


class Terminal:
    """The student's login terminal: a real pty, theirs, listed in the utmp file."""

    def __init__(self, uid: int, utmp: Path) -> None:
        self.master, self.slave = os.openpty()
        path = os.ttyname(self.slave)
        os.chown(path, uid, -1)
        os.chmod(path, 0o620)
        os.set_blocking(self.master, False)
        utmp.write_bytes(utmp_entry(STUDENT, path.removeprefix("/dev/")))
        self.seen = ""

    def read(self) -> str:
        with contextlib.suppress(BlockingIOError):
            self.seen += os.read(self.master, 65536).decode(errors="replace")
        return self.seen

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        me = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                me.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                del args

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"


def ds01(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return run(BIN / "ds01", "--root", str(lab.root), *args, check=False)


@pytest.mark.parametrize("lab", ["0.01"], indirect=True)  # idle_timeout_h: 36 s
def test_a_new_student_finds_asks_is_told_and_hears_before_the_stop(
        lab: Lab, student: tuple[int, int]) -> None:
    uid, _ = student
    terminal = Terminal(uid, lab.root / "utmp")
    receiver = Receiver()
    try:
        _scenario(lab, terminal, receiver)
    finally:
        terminal.close()
        receiver.server.shutdown()


def _scenario(lab: Lab, terminal: Terminal, receiver: Receiver) -> None:
    config = lab.root / "etc/ds01/resource-limits.yaml"
    config.write_text(config.read_text() + f"alerts: {{webhook_url: '{receiver.url}'}}\n")
    wait_for("gpus.json", (lab.root / "var/lib/ds01/gpus.json").exists)

    helped = ds01(lab, "--help").stdout
    assert "ds01 gpus" in helped and "ds01 want container train --mig 3g.20gb" in helped

    # find a free GPU: the table, and what the student may ask for
    shown = ds01(lab, "--as", STUDENT, "gpus").stdout
    assert "3g.20gb    2 of 2 free" in shown and "you may ask for one of:" in shown

    # told clearly, at once, what can never be had
    refused = ds01(lab, "--as", STUDENT, "want", "container", "big", "--mig", "7g.40gb")
    assert refused.returncode == 1
    assert "this server has no 7g.40gb MIG instances (it has: 3g.20gb)" in refused.stderr
    refused = ds01(lab, "--as", STUDENT, "want", "container", "two", "--gpus", "2")
    assert refused.returncode == 1 and "max_gpu_slots_per_container" in refused.stderr

    # ask for it; it runs as the student
    asked = ds01(lab, "--as", STUDENT, "want", "container", "study", "--mig", "3g.20gb",
                 "--image", "ds01-test:1")
    assert asked.returncode == 0, asked.stderr
    wait_for("running", lambda: lab.running(STUDENT, "study"))

    # heard on the terminal before the idle stop, and the notice file is in the container
    told = wait_for("a notice on the terminal",
                    lambda: "will be stopped at" in terminal.read() and terminal.seen, 60)
    assert "ds01 notice" in told and "study has been idle for" in told
    assert lab.running(STUDENT, "study"), "the notice came after the stop"
    cid = lab.inspect(STUDENT, "study")["Id"]
    inside = docker("exec", cid, "cat", "/workspace/.ds01/notices")
    assert "study has been idle for" in inside and "will be stopped at" in inside
    stopped = wait_for("the idle stop", lambda: lab.status(STUDENT, "study").get("phase")
                       == "Stopped" and lab.status(STUDENT, "study"), 60)
    assert stopped["reason"] == "idle"
    try:
        wait_for("the stop on the terminal", lambda: "study was stopped" in terminal.read(), 20)
    except AssertionError:
        print("TERMINAL", repr(terminal.seen))
        print("EVENTS", (lab.root / f"var/lib/ds01/status/{STUDENT}/events.jsonl").read_text())
        print(tb("journalctl", "-u", "ds01d", "--no-pager", "-n", "60"))
        raise
    status = ds01(lab, "--as", STUDENT, "status").stdout
    assert "start it again: ds01 want container study --image ds01-test:1 --mig 3g.20gb" \
        in status and "your notices in the last 24 hours:" in status

    # an admin's webhook gets the alert on GPU use nobody was allocated
    other = lab.users["dsbob"][0]
    tb("systemd-run", f"--uid={other}", "--unit=ds01e2e-notices-job", "sleep", "300")
    pid = int(tb("systemctl", "show", "-p", "MainPID", "--value", "ds01e2e-notices-job"))
    try:
        lab.machine({GPU0: [{"pid": pid, "used_mib": 300}]})
        (body,) = wait_for("the alert", lambda: receiver.bodies, 30)
    finally:
        tb("systemctl", "stop", "ds01e2e-notices-job")
    assert list(body) == ["text"]
    assert f"GPU use nobody was allocated: pid {pid} of dsbob on GPU 0 ({GPU0}), host" \
        in body["text"]
