"""ds01 attacked as a hostile local user would, on the real-host path (real Unix users, real
name service lookups, real file ownership; the simulated machine behind the adapters). Each
test is one finding: it fails while the hole is open.

Needs root (useradd, chown).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.unit.test_hostile import Host, as_user, make_host, unique_name
from tests.unixusers import passable_folder, run, unix_users

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: useradd and chown")

USERS = ("dsrmal", "dsrvic", "dsrold")
MAL, VIC, OLD = USERS


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """A world-traversable folder for this module's homes and roots."""
    with passable_folder("ds01-redteam-") as path:
        yield path


@pytest.fixture(scope="module")
def users(base: Path) -> Iterator[dict[str, tuple[int, int]]]:
    with unix_users(USERS, base / "home") as ids:
        yield ids


@pytest.fixture
def host(base: Path, users: dict[str, tuple[int, int]], request: pytest.FixtureRequest) -> Host:
    return make_host(base, users, unique_name(request.node.name))


# --- A user's own status folder: planted files ----------------------------------------------

def _plant(host: Host, user: str, files: dict[str, object], *, keep_mtime: bool) -> None:
    """As ``user``: put ``files`` in their status folder (theirs, 0700); with ``keep_mtime``,
    set the folder's mtime back as it was (an owner may: utimensat)."""
    folder = host.paths.status / user
    st = folder.stat()

    def plant() -> int:
        for name, body in files.items():
            (folder / name).write_text(json.dumps(body))
        if keep_mtime:
            os.utime(folder, ns=(st.st_atime_ns, st.st_mtime_ns))
        return 0

    assert as_user(*host.ids[user], plant) == 0


def test_one_planted_status_file_does_not_break_status_all(
        host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    """``ds01 status --all`` (root's view of everyone) fails as a whole on one file a user
    planted in their own status folder with a value of the wrong type."""
    from ds01d.cli import main

    host.want(VIC, "v", extra="mig: 3g.20gb\n")
    host.want(MAL, "m", extra="mig: 3g.20gb\n")
    host.run()
    for body in ({"name": "a", "gpu_equivalents": "x"}, {"name": "b", "since": 5},
                 {"name": "c", "devices": 7}):
        _plant(host, MAL, {"z.json": body}, keep_mtime=False)
        assert main(["--root", str(host.root), "status", "--all"]) == 0, capsys.readouterr().err
        assert VIC in capsys.readouterr().out


def test_a_planted_status_file_is_healed_even_with_the_folder_mtime_set_back(
        host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    """ds01d notices a changed status folder by (dev, inode, mtime) alone; the owner can set
    the mtime back, and then what they planted stays for good (here: a row that claims to be
    another user's running container in root's ``ds01 status --all``)."""
    from ds01d.cli import main

    host.want(VIC, "v", extra="mig: 3g.20gb\n")
    host.want(MAL, "m", extra="mig: 3g.20gb\n")
    host.run()
    _plant(host, MAL, {"zz.json": {"user": VIC, "name": "fake", "phase": "Running",
                                   "gpu_equivalents": 1.0}}, keep_mtime=True)
    for _ in range(3):
        host.advance(30)
        host.run()
    assert main(["--root", str(host.root), "status", "--all"]) == 0
    assert "fake" not in capsys.readouterr().out
    assert not (host.paths.status / MAL / "zz.json").exists()


# --- Seeing others: the dcgm-exporter job map -----------------------------------------------

def test_a_user_cannot_see_who_holds_which_device(host: Host) -> None:
    """docs/security.md: a user sees how many devices are in use, "never by whom". The
    dcgm-exporter job-mapping files (``run/ds01/dcgm-job-map/<device>``, holding
    ``user/container``) are made 0644 in a 0755 folder (systemd's RuntimeDirectory default,
    UMask=0022): any local user reads who holds every device and their container names."""
    host.want(VIC, "secret-project", extra="mig: 3g.20gb\n")
    host.run()
    folder = host.root / "run/ds01/dcgm-job-map"
    assert any(f.read_text().startswith(f"{VIC}/") for f in folder.iterdir())
    (host.root / "run").chmod(0o755)
    (host.root / "run/ds01").chmod(0o755)  # as RuntimeDirectory= makes it

    def snoop() -> int:
        try:
            seen = [(folder / n).read_text() for n in os.listdir(folder)]
        except PermissionError:
            return 0
        return 1 if any(VIC in s for s in seen) else 0

    assert as_user(*host.ids[MAL], snoop) == 0


# --- Two users, one Docker name and one slice -----------------------------------------------

def test_users_with_the_same_local_part_get_their_own_containers(
        base: Path, users: dict[str, tuple[int, int]]) -> None:
    """``dsrcol`` and ``dsrcol@lab`` (two accounts, e.g. two sssd domains) once shared the
    Docker name ``ds01-dsrcol-<want>`` and the slice ``ds01-<group>-dsrcol.slice``: whoever
    came second never got a container, and both users' containers shared one slice's
    limits. Each now gets its own name and its own slice."""
    from ds01d.core.naming import docker_name

    pair = ("dsrcol", "dsrcol@lab")
    with unix_users(pair, base / "home", badname=True) as made:
        ids = dict(users) | made
        host = make_host(base, ids, "same-local-part")
        for u in pair:
            host.want(u, "train", extra="mig: 2g.10gb\n")
        for _ in range(3):
            host.run()
            host.advance(10)
        assert host.containers(pair[0]) == {"train": "running"}
        assert host.containers(pair[1]) == {"train": "running"}
        assert docker_name(pair[0], "train") != docker_name(pair[1], "train")
        parents = {c["labels"]["ds01.user"]: c["cgroup_parent"]
                   for c in host.machine.containers.values()}
        assert parents[pair[0]] != parents[pair[1]], parents
        assert all(p in host.machine.slices for p in parents.values())


# --- Policy: the runtime limit counts from Docker's last start ------------------------------

RUNTIME_CONFIG = """\
version: 1
defaults:
  max_gpu_equivalents: 2
  max_gpu_slots_per_container: 1
  allow_full_gpu: true
  max_containers_per_user: 3
  idle_timeout_h: 200
  max_runtime_h: 2
  container_hold_after_stop_h: 24
default_group: student
groups:
  student: {priority: 10}
policies: {grace_period_m: 0, keepalive_max_duration_h: 24}
"""


def test_a_container_that_restarts_itself_still_meets_its_runtime_limit(host: Host) -> None:
    """ds01 containers have Docker's ``unless-stopped`` restart policy, and the runtime limit
    counts from ``State.StartedAt``, which Docker moves at each of its own restarts. A
    container whose first process exits (an image whose CMD ends, the default ubuntu:24.04
    with no terminal, or a process that makes PID 1 exit) is restarted by Docker, keeps its
    device, and never reaches ``max_runtime_h``. Here Docker restarts it every hour (as it
    does with a CMD that ends after an hour) and it still holds its GPU after 6 h of a 2 h
    limit."""
    (host.paths.etc / "resource-limits.yaml").write_text(RUNTIME_CONFIG)
    host.want(MAL, "m", extra="gpus: 1\n")
    host.run()
    assert host.containers(MAL) == {"m": "running"}
    for half_hours in range(1, 13):
        host.advance(1800)
        if half_hours % 2 == 0:  # Docker restarts it: StartedAt moves, devices stay
            for c in host.machine.containers.values():
                if c["state"] == "running":
                    c["started_at"] = host.machine.now
        host.run()
    assert host.containers(MAL) == {"m": "exited"}
    assert host.status(MAL, "m")["reason"] == "runtime"


# --- Stalling: every change in one's own folder wakes a pass at once ------------------------

def _inotify_watches() -> int:
    """inotify watches this process holds."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                with open(f"/proc/self/fdinfo/{fd}") as f:
                    n += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            continue
    return n


def _serve_for(host: Host, seconds: float, attack: Callable[[], int], user: str
               ) -> tuple[int, int]:
    """(passes, most inotify watches) of ds01d's loop in ``seconds`` (resync every 10 s)
    while ``user`` ran ``attack``."""
    import signal
    import threading
    from types import SimpleNamespace

    from ds01d.daemon import Daemon, serve
    from ds01d.runtime.simroot import sim_adapters

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: ds01d's loop
        code = 1
        try:
            os.close(read)
            d = Daemon(host.paths, simulate=False, interval=10.0, read_memory=False,
                       machine_of=(sim_adapters(host.machine)[0], host.machine.clock))
            d.real = SimpleNamespace(docker=SimpleNamespace(  # type: ignore[assignment]
                wait_for_events=lambda wake, stop: None))
            most = [0]

            def watch() -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    most[0] = max(most[0], _inotify_watches())
                    time.sleep(0.2)
                os.kill(os.getpid(), signal.SIGTERM)

            threading.Thread(target=watch, daemon=True).start()
            serve(d, interval=10.0)
            os.write(write, f"{d.passes} {most[0]}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    time.sleep(0.5)
    assert as_user(*host.ids[user], attack) == 0
    os.waitpid(pid, 0)
    passes, watches = (int(x) for x in (os.read(read, 64) or b"-1 -1").split())
    os.close(read)
    return passes, watches


def test_a_user_cannot_make_ds01d_pass_without_pause(host: Host) -> None:
    """Every file event under ``wants/`` (recursive watch) wakes the loop, which starts a pass
    at once: no pause between passes. A user rewriting a file in their own folder in a loop
    keeps ds01d passing back to back (a core busy; with many users, every pass of everyone's
    folders), where the resync runs one pass in 10 s."""
    host.want(VIC, "v", extra="mig: 3g.20gb\n")
    host.want(MAL, "m", extra="mig: 3g.20gb\n")
    host.run()
    folder = host.paths.wants / MAL

    def touch_loop() -> int:
        end = time.monotonic() + 4
        while time.monotonic() < end:
            (folder / "x.yaml").write_text("x")
            time.sleep(0.002)
        return 0

    passes, _ = _serve_for(host, 5.0, touch_loop, MAL)
    assert 0 < passes <= 10, f"{passes} passes in 5 s"


def test_a_user_cannot_spend_roots_inotify_watches(host: Host) -> None:
    """ds01d watches ``wants/`` recursively (watchdog adds a watch for every folder under it,
    as it appears). Folders inside one's own want folder are never read by ds01d, and are not
    bounded: 5,000 of them cost ds01d 5,000 inotify watches, out of
    ``fs.inotify.max_user_watches`` (per uid: shared by every root process on the machine, and
    192k here). A few hundred thousand take them all: root's inotify users (systemd path
    units, other daemons, ds01d's own wake-ups) get ENOSPC."""
    host.want(MAL, "m", extra="mig: 3g.20gb\n")
    host.run()
    folder = host.paths.wants / MAL

    def folders() -> int:
        time.sleep(0.5)
        for i in range(25):
            sub = folder / f"d{i}"
            sub.mkdir()
            for j in range(200):
                (sub / f"{j}").mkdir()
        time.sleep(2)
        return 0

    _, watches = _serve_for(host, 8.0, folders, MAL)
    assert 0 < watches < 2000, f"ds01d held {watches} inotify watches"


# --- Stalling: entries in the spool itself are not bounded ---------------------------------

def test_entries_in_the_spool_cost_a_bounded_share_of_a_pass(host: Host) -> None:
    """One user's folder is bounded (1,024 entries, 64 wants, 256 KiB), but the spool
    ``wants/`` (1733: anyone may add entries) is listed whole, and every entry named like a
    user but not the maker's is moved aside with its own ``spool.foreign`` event (event log,
    journal, the maker's copy). 4,000 ``mkdir`` calls (a fraction of a second, repeatable
    after every pass) cost a pass seconds and the event log 4,000 lines. Entries starting with
    ``.`` are listed on every pass and never moved: 50,000 of them add ~0.1 s to every pass,
    for good."""
    host.want(VIC, "v", extra="mig: 3g.20gb\n")
    host.run()
    spool = host.paths.wants

    def flood() -> int:
        for i in range(4000):
            os.mkdir(spool / f"zz{i:05d}")
        return 0

    assert as_user(*host.ids[MAL], flood) == 0
    started = time.monotonic()
    host.run()
    took = time.monotonic() - started
    foreign = host.paths.events.read_text().count("spool.foreign")
    assert took < 1.0 and foreign <= 100, f"a pass took {took:.1f}s, {foreign} events"


# --- Another user's device: a cgroup named like their container -----------------------------

def _fake_proc(root: Path, pid: int, uid: int, cgroup: str) -> None:
    """``/proc/<pid>`` as the kernel shows a host process of ``uid`` in ``cgroup``."""
    d = root / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "cgroup").write_text(f"0::{cgroup}\n")
    (d / "status").write_text(f"Name:\tpython3\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    (d / "loginuid").write_text(str(uid))


@pytest.mark.parametrize("where", ["on-their-device", "on-a-free-device"])
def test_a_host_process_cannot_pass_for_another_users_container(
        host: Host, tmp_path: Path, where: str) -> None:
    """The procfs adapter takes ``/docker-<64 hex>.scope`` anywhere in a process's cgroup path
    as "in that container". Any user can put a process of theirs in such a cgroup:
    ``systemd-run --user --scope --unit=docker-<id> python3 train.py`` (their systemd user
    manager's subtree is delegated to them), and every container id is in
    ``/proc/*/cgroup``, world-readable. A host GPU process of MAL's, in a scope named after
    VIC's container, is then either not flagged at all (on VIC's own device: MAL shares it
    unseen) or flagged as VIC's untracked use (on a free device: VIC is blamed in the event and
    in ``ds01 report``)."""
    from ds01d.adapters.procfs import ProcfsAdapter
    from ds01d.core import actions as a
    from ds01d.daemon import Daemon
    from ds01d.runtime.observe import Adapters
    from ds01d.runtime.simroot import sim_adapters

    proc = tmp_path / "proc"
    sim, _ = sim_adapters(host.machine)
    adapters = Adapters(sim.systemd, sim.docker, sim.nvml,
                        ProcfsAdapter(proc, user_name={
                            v[0]: k for k, v in host.ids.items()}.get))
    d = Daemon(host.paths, simulate=False, read_memory=False,
               machine_of=(adapters, host.machine.clock))
    host.want(VIC, "v", extra="mig: 3g.20gb\n")
    d.run_pass()
    (vic,) = [c for c in host.machine.containers.values()
              if c["labels"].get("ds01.user") == VIC]
    in_use = set(vic["devices"])
    free = next(i["uuid"] for g in host.machine.gpus for i in g["instances"]
                if i["uuid"] not in in_use)
    device = vic["devices"][0] if where == "on-their-device" else free
    uid = host.ids[MAL][0]
    pid = host.machine.add_process(device, uid=uid, container_id=None, mem_mib=4096)
    _fake_proc(proc, pid, uid, f"/user.slice/user-{uid}.slice/user@{uid}.service/app.slice/"
               f"docker-{vic['id']}.scope")
    r = d.run_pass()
    assert r.plan is not None
    flags = [x for x in r.plan.actions if isinstance(x, a.FlagUntracked)]
    assert [(f.pid, f.user) for f in flags] == [(pid, MAL)]


# --- Escape sequences: a want file's keys reach root's terminal -----------------------------

def test_root_helping_a_user_sees_no_escape_sequence(
        host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    """Error messages name the key they are about (``FILE:LINE: KEY: message``) and the key is
    printed as written. Root running ``ds01 --as USER keepalive NAME`` on a want file the user
    gave an unknown key full of escape sequences gets them on their terminal raw (here: set
    the window title, clear the screen)."""
    from ds01d.cli import main

    host.want(MAL, "m", extra='"\\e]0;pwned\\a\\e[2J\\e[31mroot# ": 1\n')
    assert main(["--root", str(host.root), "--as", MAL, "keepalive", "m", "--for", "1h"]) == 1
    err = capsys.readouterr().err
    assert "unknown key" in err
    assert "\x1b" not in err and "\x07" not in err


# --- One small file takes every pass down ---------------------------------------------------

@pytest.mark.parametrize(("name", "extra"), [("f1", "gpus: 1.0\n"),
                                             ("f2", "gpus: 1.0e+0\n")])
def test_a_whole_number_written_as_a_float_costs_its_author_alone(host: Host, name: str,
                                                                   extra: str) -> None:
    """The schema's ``integer`` accepts 1.0 (as JSON Schema says), ``from_data`` keeps the
    float, and ``devices.choose`` slices a list with it: ``TypeError`` out of ``plan``, so
    every pass fails and nobody is served, for as long as the one-line want file is there.
    (A want equal to one settled before with ``gpus: 1`` is served: ``asks._settled`` is an
    ``lru_cache`` and ``1.0 == 1``, so it hands back the earlier want. Hence fresh names.)"""
    host.want(VIC, "v", extra="mig: 3g.20gb\n")
    host.want(MAL, name, extra=extra)
    r = host.run()
    assert r.plan is not None
    assert host.containers(VIC) == {"v": "running"}
    assert host.containers(MAL) in ({name: "running"}, {})


@pytest.mark.parametrize(("line", "key", "value"), [
    ("memory: 34359738368.0", "memory", 34359738368), ("shm_size: 1073741824.0", "shm_size",
                                                       1073741824),
    ("memory: 1.5", "memory", None)])
def test_check_config_names_the_line_of_a_size_written_as_a_float(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, key: str,
        value: int | None) -> None:
    """A size written as a whole float passes the schema (``integer``) and reached
    ``units.parse_size``, which took ``len()`` of it: ``ds01 check-config`` exited 70
    ("internal error"). A whole number of bytes written as a float is that number; any other
    float is refused with ``FILE:LINE: KEY: message``."""
    from ds01d.cli import main

    etc = tmp_path / "etc/ds01"
    etc.mkdir(parents=True)
    (etc / "resource-limits.yaml").write_text(
        "version: 1\ndefaults:\n  max_gpu_equivalents: 2\n  " + line + "\n"
        "default_group: student\ngroups:\n  student: {priority: 10}\n")
    code = main(["--root", str(tmp_path), "check-config"])
    out = capsys.readouterr()
    if value is None:
        assert code == 1 and "resource-limits.yaml:4:" in out.out + out.err
        return
    assert code == 0, out
    assert main(["--root", str(tmp_path), "limits", "alice", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["limits"][key] == value


# --- Stalling on one admin file: YAML 1.1 base-60 integers ----------------------------------

def test_check_config_reads_a_one_mib_file_in_bounded_time(tmp_path: Path) -> None:
    """YAML 1.1 reads ``1:0:0:...:0`` as a base-60 integer; PyYAML builds it digit by digit
    (``value += digit * base; base *= 60``), quadratic in the digits, and Python's limit on
    int() digits does not apply. The range check (< 2^63) comes after. One admin file of
    1 MiB (within ``yamlsrc.ADMIN``) holding one such number keeps ``ds01 check-config`` and a
    ds01d pass busy for tens of seconds (WatchdogSec=60). A 64 KiB want file costs ~0.1 s
    per file the same way."""
    etc = tmp_path / "etc/ds01"
    etc.mkdir(parents=True)
    number = "1" + ":0" * 450_000
    (etc / "resource-limits.yaml").write_text(
        "version: 1\ndefaults:\n  max_tasks: " + number + "\n"
        "default_group: student\ngroups:\n  student: {priority: 10}\n")
    started = time.monotonic()
    try:
        done = subprocess.run([str(Path(sys.executable).parent / "ds01"), "--root",
                               str(tmp_path), "check-config"], capture_output=True, text=True,
                              timeout=10, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("check-config still running after 10 s")
    took = time.monotonic() - started
    assert done.returncode == 1 and "too long to be a number" in done.stdout + done.stderr
    assert took < 2, f"check-config took {took:.1f}s on one 0.9 MiB file"


# --- Another user's folder: squatting again at once -----------------------------------------

def test_a_squatter_in_a_loop_does_not_keep_a_user_from_their_folder(host: Host) -> None:
    """ds01d moves a folder named after VIC but owned by MAL out of the spool, and leaves the
    name free "for the user it names". MAL makes it again in a loop (one ``mkdir`` each time
    the name is free): VIC's ``ds01 want`` finds MAL's folder there nearly every time and is
    refused ("not yours"), however many passes ds01d runs."""
    import signal

    from ds01d.cli import main

    host.paths.wants.mkdir(parents=True, exist_ok=True)
    host.run()  # the spool as ds01d makes it (1733)
    target = host.paths.wants / VIC
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the squatter
        os.setgroups([])
        os.setgid(host.ids[MAL][1])
        os.setuid(host.ids[MAL][0])
        end = time.monotonic() + 20
        while time.monotonic() < end:
            with contextlib.suppress(OSError):
                os.mkdir(target, 0o700)
        os._exit(0)
    try:
        time.sleep(0.2)
        served = 0
        for _ in range(5):
            host.run()

            def want() -> int:
                return main(["--root", str(host.root), "want", "container", "t", "--mig",
                             "3g.20gb"])

            served += as_user(*host.ids[VIC], want) == 0
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert served == 5, f"VIC's ds01 want worked {served} times of 5"


# --- Admin files: a members folder that cannot be read is said, not skipped -----------------

EXAMPLE = Path(__file__).resolve().parents[2] / "ds01d/example"


@pytest.mark.parametrize("how", ["symlink-loop", "a-file"])
def test_check_config_does_not_drop_every_members_file_in_silence(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str) -> None:
    """``groups/`` that is not a folder (a symlink loop, a file) is skipped
    by ``Path.is_dir()``: check-config says "valid" (exit 0) and every member listed in
    ``groups/*.members`` silently falls back to the default group (the example's faculty
    member dave becomes a student), in ds01d too."""
    from ds01d.cli import main

    etc = tmp_path / "etc/ds01"
    shutil.copytree(EXAMPLE, etc)
    shutil.rmtree(etc / "groups")
    if how == "symlink-loop":
        (etc / "groups").symlink_to("groups")
    else:
        (etc / "groups").write_text("faculty: dave\n")
    assert main(["--root", str(tmp_path), "check-config"]) == 1
    out = capsys.readouterr()
    assert "groups" in out.out + out.err


# --- ds01 want and ds01d disagree: "$" matches before a final newline -----------------------

@pytest.mark.parametrize("args", [["t\n"], ["t", "--image", "ubuntu:24.04\n"],
                                  ["t", "--mig", "3g.20gb\n"]])
def test_ds01_want_refuses_what_ds01d_cannot_serve(host: Host, args: list[str]) -> None:
    """The schema's patterns end in ``$`` and are matched with ``re.search``: ``$`` also
    matches before a final newline, so ``name``, ``image`` and ``mig`` may end in ``\\n``.
    ``ds01 want container $'t\\n'`` says "wanted" and writes ``t\\n.yaml``, a file name ds01d
    refuses (``is_want_name`` anchors with ``\\Z``); an image or profile with a newline is
    accepted by both and fails at Docker or as "no such MIG instances"."""
    from ds01d.cli import main

    host.paths.wants.mkdir(parents=True, exist_ok=True)
    host.run()

    def want() -> int:
        return main(["--root", str(host.root), "want", "container", *args])

    code = as_user(*host.ids[VIC], want)
    host.run()
    if "--image" in args:  # Docker refuses it ("invalid reference format"); the fake does not
        assert code == 1
    elif code == 0:  # accepted: then ds01d must serve it
        assert host.containers(VIC) == {"t": "running"}, host.status(VIC, "_invalid")


# --- The nesting pre-scan: closing brackets in a comment or a string ------------------------

@pytest.mark.parametrize("chunk", [
    "[" * 40 + " #[" + "]" * 41 + "\n",          # the comment "closes" what the line opened
    "[" * 40 + " '[" + "]" * 41 + "',\n",        # so does a quoted string
], ids=["comment", "string"])
def test_the_parser_never_sees_deep_nesting_behind_closing_brackets(
        monkeypatch: pytest.MonkeyPatch, chunk: str) -> None:
    """``nesting_estimate`` counts ``]`` and ``}`` wherever they are on a line that also
    opens one, quoted or commented out, so each line "closes" what it opened: 60 KiB of
    such lines nest ~28,000 levels while the estimate stays at 42 (USER's limit is 48). The
    parser gets the file; what stops it today is libyaml's own limit (1,000 levels, libyaml
    >= 0.2.5, and PyYAML's pure-Python parser recursing), the very dependence the pre-scan
    was made to remove (the original SIGSEGV)."""
    import yaml

    from ds01d.errors import ConfigError
    from ds01d.yamlsrc import USER, parse

    def no_parser(text: str) -> None:
        raise AssertionError("the parser was given a file nested too deeply")

    monkeypatch.setattr(yaml, "CSafeLoader", no_parser)
    text = "a: " + chunk * (60_000 // len(chunk))
    with pytest.raises(ConfigError, match="nested more than"):
        parse(text, "f", bounds=USER)


# --- The carried state grows with every container a user ever had stopped --------------------

def test_the_carried_state_forgets_stops_of_containers_that_are_gone(host: Host) -> None:
    """``Executor.reasons`` ((user, name) -> why ds01d stopped it) gains an entry at every
    stop and loses none: it is copied into every pass, saved (fsync'd) in
    ``ds01d-state.json`` and read back at start. A user who wants and drops containers under
    new names adds one entry per cycle, for good (here 30 cycles: 30 entries for containers
    long gone); over weeks every user's stops pile up the same way."""
    host.run()
    for i in range(30):
        host.want(MAL, f"c{i}")
        host.run()
        (host.paths.wants / MAL / f"c{i}.yaml").unlink()
        host.run()
    assert host.containers(MAL) == {}
    reasons = host.daemon.carry.reasons
    assert len(reasons) <= 3, f"{len(reasons)} stop reasons kept for containers that are gone"


# --- Seeing others: the metrics endpoint ----------------------------------------------------

def test_a_local_user_cannot_read_who_runs_what_from_the_metrics(host: Host) -> None:
    """docs/security.md: "Nothing by name". ds01d's metrics listen on 127.0.0.1:9101 by
    default, which keeps them from other machines but not from the users of this one (all of
    whom have a shell here): one HTTP GET lists every user's containers by name, their devices,
    groups, idle times and queue waits."""
    import socket
    import urllib.request

    from ds01d.daemon import serve_metrics

    host.want(VIC, "secret-project", extra="mig: 3g.20gb\n")
    host.run()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve_metrics(host.daemon, port)
    time.sleep(0.3)

    def scrape() -> int:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        except OSError:
            return 0
        return 1 if b"secret-project" in body or VIC.encode() in body else 0

    assert as_user(*host.ids[MAL], scrape) == 0


# --- Stale accounts: the name service is asked once per user for the daemon's lifetime -------

def test_a_changed_home_is_used_for_the_next_container(base: Path,
                                                       users: dict[str, tuple[int, int]]
                                                       ) -> None:
    """``Daemon.accounts`` caches uid, gid and home per user name and is never refreshed: after
    ``usermod -d`` (homes moved to another file system, an account re-provisioned), ds01d keeps
    making workspaces under the old home and bind-mounting them, until it is restarted."""
    from ds01d.core import actions as a

    user = "dsrmove"
    new = base / "home2" / user
    with unix_users((user,), base / "home") as made:
        ids = dict(users) | made
        new.mkdir(parents=True, exist_ok=True)
        os.chown(new, *ids[user])
        host = make_host(base, ids, "changed-home")
        host.want(user, "a")
        host.run()
        assert run("usermod", "--home", str(new), user).returncode == 0
        host.want(user, "b")
        r = host.run()
        assert r.plan is not None
        (spec,) = [x.spec for x in r.plan.actions if isinstance(x, a.CreateContainer)]
        assert spec.home == str(new)
