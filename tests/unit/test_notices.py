"""Notices reach users where they are, alerts reach admins: real pseudo-terminals and a utmp
file written here, the notice file in a workspace, a local webhook receiver.

Needs root where a terminal must belong to another uid (chown), as CI runs."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ds01d.adapters.sim import SimHost
from ds01d.adapters.tty import USER_PROCESS, Terminals, sessions, utmp_entry
from ds01d.config.model import Alerts
from ds01d.core.model import Account
from ds01d.daemon import Daemon
from ds01d.paths import Paths
from ds01d.runtime.notices import Alerter, Notice, UserNotices
from ds01d.runtime.outbox import Outbox
from ds01d.runtime.simroot import init_sim_root

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chown of a terminal")
ME, OTHER = 54321, 54322
NOW = datetime(2026, 1, 5, 11, 0, tzinfo=UTC)


class Pty:
    """A real pseudo-terminal, its slave given to ``uid`` with ``mode``."""

    def __init__(self, uid: int, mode: int = 0o620) -> None:
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)
        os.chown(self.path, uid, -1)
        os.chmod(self.path, mode)
        os.set_blocking(self.master, False)

    @property
    def line(self) -> str:
        return self.path.removeprefix("/dev/")

    def read(self) -> str:
        out = b""
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            try:
                out += os.read(self.master, 65536)
            except BlockingIOError:
                time.sleep(0.01)
        return out.decode(errors="replace")

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def ptys() -> Iterator[list[Pty]]:
    made: list[Pty] = []
    yield made
    for p in made:
        p.close()


def utmp(path: Path, *entries: tuple[str, str] | tuple[str, str, int]) -> str:
    path.write_bytes(b"".join(utmp_entry(e[0], e[1], kind=e[2] if len(e) > 2 else USER_PROCESS)
                             for e in entries))
    return str(path)


@root_only
def test_a_notice_reaches_every_terminal_of_its_user_and_no_one_else(
        tmp_path: Path, ptys: list[Pty]) -> None:
    mine, also_mine, theirs, claimed, closed = (Pty(u) for u in (ME, ME, OTHER, OTHER, ME))
    ptys += [mine, also_mine, theirs, claimed, closed]
    file = utmp(tmp_path / "utmp", ("dsnme", mine.line), ("dsnme", also_mine.line),
                ("dsnother", theirs.line),
                ("dsnme", claimed.line),  # utmp says it is mine; the terminal says otherwise
                ("dsnme", closed.line, 8))  # DEAD_PROCESS: a session that ended
    terms = Terminals(utmp=file)
    assert terms.write("dsnme", ME, "t will be stopped at 11:10\x1b[2J", when="11:00 UTC") == 2
    for p in (mine, also_mine):
        text = p.read()
        assert "ds01 notice (11:00 UTC)" in text and "t will be stopped at 11:10" in text
        assert "\x1b" not in text and "\\x1b[2J" in text  # escape sequences shown, not run
    assert theirs.read() == claimed.read() == closed.read() == ""


@root_only
def test_mesg_n_is_respected(tmp_path: Path, ptys: list[Pty]) -> None:
    quiet = Pty(ME, mode=0o600)
    ptys.append(quiet)
    terms = Terminals(utmp=utmp(tmp_path / "utmp", ("dsnme", quiet.line)))
    assert terms.write("dsnme", ME, "hello", when="now") == 0
    assert quiet.read() == ""


@root_only
def test_nothing_but_the_users_own_terminal_device_is_opened(tmp_path: Path,
                                                             ptys: list[Pty]) -> None:
    """utmp lines are not trusted: a link, a FIFO, a plain file or a path out of /dev named
    there is never written (and a FIFO never blocks)."""
    real = Pty(ME)
    ptys.append(real)
    dev = tmp_path / "dev"
    (dev / "pts").mkdir(parents=True)
    (dev / "pts" / "1").symlink_to(real.path)
    os.mkfifo(dev / "pts" / "2")
    (dev / "pts" / "3").write_text("")
    for name in ("1", "2", "3"):
        os.chown(dev / "pts" / name, ME, 0, follow_symlinks=False)
    (dev / "pts" / "4").symlink_to(dev / "pts")  # a folder link
    file = utmp(tmp_path / "utmp", ("dsnme", "pts/1"), ("dsnme", "pts/2"), ("dsnme", "pts/3"),
                ("dsnme", "pts/4/1"), ("dsnme", "../etc/passwd"), ("dsnme", "ttyS0"))
    assert sessions(file, "dsnme") == ["pts/1", "pts/2", "pts/3", "ttyS0"]
    started = time.monotonic()
    assert Terminals(utmp=file, dev=str(dev)).write("dsnme", ME, "x", when="now") == 0
    assert time.monotonic() - started < 1
    assert real.read() == "" and (dev / "pts" / "3").read_text() == ""


@root_only
def test_terminal_notices_are_rate_limited_per_user(tmp_path: Path, ptys: list[Pty]) -> None:
    p = Pty(ME)
    ptys.append(p)
    clock = [0.0]
    terms = Terminals(utmp=utmp(tmp_path / "utmp", ("dsnme", p.line)), per_user=4,
                      window_s=600, clock=lambda: clock[0])
    sent = [terms.write("dsnme", ME, f"notice {i}", when="now") for i in range(6)]
    assert sent == [1, 1, 1, 1, 0, 0]
    clock[0] = 601
    assert terms.write("dsnme", ME, "later", when="now") == 1
    assert p.read().count("ds01 notice") == 5


def test_a_broken_utmp_gives_no_sessions(tmp_path: Path) -> None:
    (tmp_path / "short").write_bytes(b"\x07" * 100)
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    for name in ("short", "dir", "fifo", "missing"):
        assert sessions(str(tmp_path / name), "dsnme") == []


@root_only
def test_user_notices_go_to_the_terminal_and_the_notice_file(tmp_path: Path,
                                                             ptys: list[Pty]) -> None:
    p = Pty(ME)
    ptys.append(p)
    home = tmp_path / "home"
    (home / "workspace" / "t").mkdir(parents=True)
    notices = UserNotices(Outbox("test-notices"), lambda u: Account(ME, ME, str(home)),
                          Terminals(utmp=utmp(tmp_path / "utmp", ("dsnme", p.line))),
                          as_user=False)
    notices.tell(Notice("dsnme", "t", "t will be stopped at 11:10 UTC", "lifecycle.idle_warning"),
                 NOW)
    notices.tell(Notice("dsnme", "pid 7", "a process of yours ...", "gpu.untracked",
                        managed=False), NOW)
    assert notices.outbox.drain()
    assert "t will be stopped at 11:10 UTC" in p.read()
    assert (home / "workspace/t/.ds01/notices").read_text() == \
        "[2026-01-05 11:00 UTC] t will be stopped at 11:10 UTC\n"
    assert not (home / "workspace/pid 7").exists()


def test_a_full_outbox_drops_instead_of_waiting() -> None:
    box = Outbox("test-full", size=2)
    gate = threading.Event()

    def stuck() -> None:
        gate.wait()

    box.put(stuck)  # the worker is now stuck on this one
    time.sleep(0.05)
    started = time.monotonic()
    results = [box.put(lambda: None) for _ in range(5)]
    assert time.monotonic() - started < 0.1
    assert results == [True, True, False, False, False] and box.dropped == 3
    gate.set()
    assert box.drain()


# --- the alert webhook -------------------------------------------------------------------

class Receiver:
    """A local webhook: records each JSON body; answers with the codes given, then 200."""

    def __init__(self, codes: list[int] | None = None, delay: float = 0.0) -> None:
        self.bodies: list[Any] = []
        self.codes = list(codes or [])
        self.delay = delay
        me = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                me.bodies.append((self.headers.get("Content-Type"),
                                  json.loads(self.rfile.read(length))))
                time.sleep(me.delay)
                code = me.codes.pop(0) if me.codes else 200
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                del args

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


CONFIG = """\
version: 1
defaults: {{allow_full_gpu: true, max_gpu_equivalents: 2}}
alerts:
  {where}
  timeout_s: 0.5
  retries: 2
"""


def sim_daemon(tmp_path: Path, where: str) -> Daemon:
    paths = Paths(tmp_path / "root")
    init_sim_root(paths)
    (paths.etc / "resource-limits.yaml").write_text(CONFIG.format(where=where))
    for name in ("user-overrides.yaml", "lifecycle-exemptions.yaml"):
        (paths.etc / name).unlink(missing_ok=True)
    return Daemon(paths, simulate=True, host=SimHost(), read_memory=False)


def test_an_admin_webhook_receives_an_untracked_use_alert(tmp_path: Path,
                                                           receiver: Receiver) -> None:
    d = sim_daemon(tmp_path, f"webhook_url: {receiver.url}")
    pid = d.host.add_process(d.host.gpus[1]["uuid"], uid=d.host.uid_of("dsnbob"),
                             container_id=None, mem_mib=200)
    d.run_pass()
    assert d.alerter.outbox.drain()
    (kind, body), = receiver.bodies
    assert kind == "application/json" and list(body) == ["text"]
    assert body["text"] == (f"ds01 on {os.uname().nodename}: GPU use nobody was allocated: pid "
                            f"{pid} of dsnbob on GPU 1 ({d.host.gpus[1]['uuid']}), host, 200 MiB")
    d.run_pass()
    assert d.alerter.outbox.drain() and len(receiver.bodies) == 1  # once while it lasts


def test_the_url_can_live_in_a_root_only_file(tmp_path: Path, receiver: Receiver) -> None:
    secret = tmp_path / "hook.url"
    secret.write_text(receiver.url + "\n")
    secret.chmod(0o600)
    d = sim_daemon(tmp_path, f"webhook_url_file: {secret}")
    d.host.add_process(d.host.gpus[0]["uuid"], uid=None, container_id=None, mem_mib=1)
    d.run_pass()
    assert d.alerter.outbox.drain() and len(receiver.bodies) == 1


def alerter(url: str, *, retries: int = 3, timeout: float = 0.5) -> tuple[Alerter, list[float]]:
    slept: list[float] = []
    a = Alerter(Outbox("test-alerts"), Alerts(url, None, ("gpu.untracked",), timeout, retries),
                host="h", sleep=slept.append)
    return a, slept


UNTRACKED = {"event_type": "gpu.untracked", "user": "dsnbob",
             "details": {"pid": 4242, "gpu": 0, "device": "GPU-1", "where": "host",
                         "used_memory_mib": 10}}


def test_a_failing_webhook_is_retried_with_backoff() -> None:
    r = Receiver(codes=[500, 503])
    try:
        a, slept = alerter(r.url)
        a.consider(UNTRACKED)
        a.consider({"event_type": "container.create", "user": "x", "details": {}})  # not wanted
        assert a.outbox.drain()
        assert len(r.bodies) == 3 and a.sent == 1 and slept == [1.0, 2.0]
    finally:
        r.close()


def test_a_refusing_webhook_is_not_retried_and_said(caplog: pytest.LogCaptureFixture) -> None:
    r = Receiver(codes=[404])
    try:
        a, slept = alerter(r.url)
        a.consider(UNTRACKED)
        assert a.outbox.drain()
        assert len(r.bodies) == 1 and a.lost == 1 and slept == []
        assert "alert not delivered (webhook answered 404" in caplog.text
    finally:
        r.close()


def test_a_hanging_webhook_never_holds_up_a_pass(tmp_path: Path) -> None:
    r = Receiver(delay=3.0)
    try:
        d = sim_daemon(tmp_path, f"webhook_url: {r.url}")
        for gpu in (0, 1):
            d.host.add_process(d.host.gpus[gpu]["uuid"], uid=None, container_id=None,
                               mem_mib=1)
        started = time.monotonic()
        d.run_pass()
        assert time.monotonic() - started < 1.0
    finally:
        r.close()


def test_alerts_are_rate_limited_and_the_rest_counted() -> None:
    clock = [0.0]
    a, _ = alerter("http://127.0.0.1:9/none", retries=0)
    a.clock = lambda: clock[0]
    sent: list[Any] = []

    def put(job: Any) -> bool:
        sent.append(job)
        return True

    a.outbox.put = put  # type: ignore[method-assign]
    for _ in range(35):
        a.consider(UNTRACKED)
    assert len(sent) == 30 and a.held_back == 5
    clock[0] = 601.0
    a.consider(UNTRACKED)
    assert len(sent) == 31 and a.held_back == 0


# --- the notice file, written as its owner ---------------------------------------------------

@pytest.fixture(scope="module")
def owner() -> Iterator[tuple[str, int, int, Path]]:
    """A real user (dsnnote) with a home in a folder everyone may pass through."""
    from tests.unixusers import passable_folder, unix_users

    if os.geteuid() != 0:
        pytest.skip("needs root: useradd")
    with passable_folder("ds01-notices-") as base, unix_users(("dsnnote",), base) as made:
        uid, gid = made["dsnnote"]
        home = base / "dsnnote"
        (home / "workspace" / "t").mkdir(parents=True)
        for p in (home / "workspace", home / "workspace" / "t"):
            os.chown(p, uid, gid)
        yield "dsnnote", uid, gid, home


def test_the_notice_file_is_written_as_its_owner(owner: tuple[str, int, int, Path]) -> None:
    from ds01d.adapters.asuser import append_notice

    _, uid, gid, home = owner
    workspace = home / "workspace" / "t"
    append_notice(uid, gid, str(workspace), "one\n")
    append_notice(uid, gid, str(workspace), "two\n")
    file = workspace / ".ds01" / "notices"
    st = file.stat()
    assert file.read_text() == "one\ntwo\n"
    assert (st.st_uid, st.st_mode & 0o777) == (uid, 0o600)


def test_a_notice_file_pointing_elsewhere_gets_root_nothing(
        owner: tuple[str, int, int, Path]) -> None:
    """The owner's links are followed with their rights alone: a .ds01 link into a folder of
    root's fails as they would; a FIFO fails at once instead of making the sender wait."""
    from ds01d.adapters.asuser import append_notice
    from ds01d.adapters.base import PermanentError

    _, uid, gid, home = owner
    roots = home.parent / "roots"  # root's, and the user may look in
    roots.mkdir()
    roots.chmod(0o755)
    links = home / "workspace" / "links"
    links.mkdir()
    os.chown(links, uid, gid)
    (links / ".ds01").symlink_to(roots)
    os.lchown(links / ".ds01", uid, gid)
    with pytest.raises(PermanentError, match="Permission denied"):
        append_notice(uid, gid, str(links), "x\n")
    assert list(roots.iterdir()) == []
    fifo = home / "workspace" / "fifo"
    (fifo / ".ds01").mkdir(parents=True)
    os.mkfifo(fifo / ".ds01" / "notices")
    for p in (fifo, fifo / ".ds01", fifo / ".ds01" / "notices"):
        os.chown(p, uid, gid)
    started = time.monotonic()
    with pytest.raises(PermanentError):
        append_notice(uid, gid, str(fifo), "x\n")
    assert time.monotonic() - started < 2


# --- which happenings are notices, and to whom (the executor on the simulated host) ---------

def test_warnings_stops_a_served_queue_and_untracked_use_are_told(tmp_path: Path) -> None:
    from tests.harness import Lab

    lab = Lab(tmp_path)
    told: list[Notice] = []
    lab.want("alice", "t", mig="3g.20gb")
    lab.want("bob", "b", mig="3g.20gb")
    lab.apply()
    assert lab.executor is not None
    lab.executor.tell = lambda n, _now: told.append(n)
    lab.apply()  # idle from here
    lab.want("frank", "q", mig="3g.20gb")
    lab.activity("bob", "b", cpu=50)
    lab.apply()
    lab.advance(hours=2)
    lab.apply()  # alice is warned
    lab.advance(minutes=10)
    lab.restart()  # a new ds01d: frank's wait is known from when his want was first seen
    lab.apply()  # no idle timer yet after the restart: nothing stops
    lab.executor.tell = lambda n, _now: told.append(n)
    lab.advance(hours=2)
    lab.apply()
    lab.advance(minutes=10)
    lab.apply()  # alice stopped, frank served
    pid = lab.host.add_process(lab.uuid(0), uid=lab.host.uid_of("dave"), container_id=None,
                               mem_mib=10)
    lab.apply()
    seen = [(n.user, n.kind, n.managed, n.message.split(":")[0]) for n in told]
    assert seen == [
        ("alice", "lifecycle.idle_warning", True, "t has been idle for 2.0h and will be "
         "stopped at 2026-01-05 11"),
        ("alice", "lifecycle.idle_warning", True, "t has been idle for 2.0h and will be "
         "stopped at 2026-01-05 13"),
        ("alice", "lifecycle.idle_stop", True, "t was stopped"),
        ("frank", "container.create", True, "q reached the front of the queue after 4.3h"),
        ("dave", "gpu.untracked", False, f"a process of yours (pid {pid}) uses GPU 0 "
         "(GPU-87bb7b7c), which ds01 did not give you"),
    ]


# --- the alerts section of resource-limits.yaml ----------------------------------------------

@pytest.mark.parametrize(("alerts", "error"), [
    ("{webhook_url: 'https://hooks.example/x', webhook_url_file: /etc/ds01/hook.url}",
     "resource-limits.yaml:2: alerts.webhook_url_file: both webhook_url and webhook_url_file "
     "are set: keep only one"),
    ("{events: [gpu]}", "resource-limits.yaml:2: alerts: give webhook_url_file (or "
     "webhook_url): where alerts go"),
    ("{webhook_url: 'ftp://hooks.example/x'}", "resource-limits.yaml:2: alerts.webhook_url:"),
    ("{webhook_url_file: relative/path}", "resource-limits.yaml:2: alerts.webhook_url_file:"),
    ("{webhook_url: 'https://h/x', retries: 11}", "resource-limits.yaml:2: alerts.retries:"),
])
def test_a_wrong_alerts_section_is_a_clear_error(tmp_path: Path, alerts: str, error: str) -> None:
    from ds01d.config.loader import load_config
    from ds01d.errors import ConfigError

    (tmp_path / "resource-limits.yaml").write_text(f"version: 1\nalerts: {alerts}\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert str(e.value.errors[0]).startswith(error), e.value.errors


def test_alerts_default_to_what_an_admin_needs(tmp_path: Path) -> None:
    from ds01d.config.loader import load_config

    (tmp_path / "resource-limits.yaml").write_text(
        "version: 1\nalerts: {webhook_url_file: /etc/ds01/hook.url}\n")
    alerts = load_config(tmp_path).alerts
    assert alerts == Alerts(None, "/etc/ds01/hook.url", (
        "gpu.untracked", "quota.over", "slice.update", "mig.drift", "mig.layout_invalid",
        "config.invalid", "adapter.down", "reconcile.error"), 5.0, 3)
