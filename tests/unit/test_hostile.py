"""ds01d against hostile users, on the real-host path: real Unix users (made with useradd),
real name service lookups and real file ownership; the machine behind the adapters is the
simulated one. One test (or table of attacks) per class of attack in docs/security.md.

Needs root (useradd, chown): CI runs as root.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ds01d.adapters import asuser
from ds01d.adapters.base import PermanentError
from ds01d.adapters.sim import SimHost
from ds01d.core import actions as a
from ds01d.daemon import Daemon, PassResult
from ds01d.paths import Paths
from ds01d.runtime.simroot import sim_adapters
from ds01d.runtime.wantfiles import WantSource
from tests.unixusers import passable_folder, unix_users

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: useradd and chown")

USERS = ("dshmal", "dshvic", "dshold", "dshgone")
MAL, VIC, OLD, GONE = USERS
CONFIG = """\
version: 1
defaults:
  max_gpu_equivalents: 2
  max_gpu_slots_per_container: 1
  allow_full_gpu: true
  max_containers_per_user: 3
  idle_timeout_h: 2
  max_runtime_h: 200
  container_hold_after_stop_h: 24
default_group: student
groups:
  student: {priority: 10}
policies: {grace_period_m: 0, keepalive_max_duration_h: 24}
"""
WANT = """\
version: 1
kind: container
name: {name}
image: img:1
{extra}requested_at: "{at}"
"""


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """A world-traversable folder for this module's homes and roots."""
    with passable_folder("ds01-hostile-") as path:
        yield path


@pytest.fixture(scope="module")
def users(base: Path) -> Iterator[dict[str, tuple[int, int]]]:
    with unix_users(USERS, base / "home") as ids:
        yield ids


@dataclass
class Host:
    """One real root (real NSS, real files) with a simulated machine behind the adapters."""

    root: Path
    paths: Paths
    machine: SimHost
    daemon: Daemon
    ids: dict[str, tuple[int, int]]

    def folder(self, user: str, *, owner: str | None = None) -> Path:
        folder = self.paths.wants / user
        if not folder.exists():
            folder.mkdir(mode=0o700)
            uid, gid = self.ids[owner or user]
            os.chown(folder, uid, gid)
        return folder

    def put(self, user: str, name: str, text: str | bytes, *, owner: str | None = None) -> Path:
        """A file in ``user``'s want folder, owned by ``owner`` (default: the user)."""
        path = self.folder(user) / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        uid, gid = self.ids[owner or user]
        os.chown(path, uid, gid, follow_symlinks=False)
        return path

    def want(self, user: str, name: str, extra: str = "", at: str = "2026-01-05T09:00:00Z"
             ) -> Path:
        return self.put(user, f"{name}.yaml", WANT.format(name=name, extra=extra, at=at))

    def run(self) -> PassResult:
        return self.daemon.run_pass()

    def status(self, user: str, name: str) -> dict[str, object]:
        path = self.paths.status / user / f"{name}.json"
        body: dict[str, object] = json.loads(path.read_text()) if path.exists() else {}
        return body

    def containers(self, user: str) -> dict[str, str]:
        """Want name -> Docker state of ``user``'s ds01 containers."""
        return {c["labels"]["ds01.name"]: c["state"] for c in self.machine.containers.values()
                if c["labels"].get("ds01.user") == user}

    def advance(self, seconds: float) -> None:
        self.machine.now += seconds


def unique_name(test: str) -> str:
    """A folder name for one test (parametrized ones differ only at the end of their names)."""
    import hashlib

    digest = hashlib.sha1(test.encode()).hexdigest()[:8]
    return "".join(c if c.isalnum() else "_" for c in test[:40]) + "-" + digest


def make_host(base: Path, ids: dict[str, tuple[int, int]], name: str) -> Host:
    root = base / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "etc/ds01").mkdir(parents=True)
    (root / "etc/ds01/resource-limits.yaml").write_text(CONFIG)
    root.chmod(0o755)
    machine = SimHost()
    paths = Paths(root)
    daemon = Daemon(paths, simulate=False, read_memory=True,
                    machine_of=(sim_adapters(machine)[0], machine.clock))
    return Host(root, paths, machine, daemon, ids)


@pytest.fixture
def host(base: Path, users: dict[str, tuple[int, int]], request: pytest.FixtureRequest) -> Host:
    return make_host(base, users, unique_name(request.node.name))


def as_user(uid: int, gid: int, fn: Callable[[], int]) -> int:
    """Run ``fn`` in a child process with the user's uid and gid; its return is the exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            code = fn()
        except BaseException as e:
            print(f"as uid {uid}: {type(e).__name__}: {e}", flush=True)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


# --- 2. One small file must not take the daemon down -------------------------------------

def _nested(h: Host) -> None:
    h.put(MAL, "a.yaml", "[" * 60_000)


def _int_tag(h: Host) -> None:
    h.put(MAL, "a.yaml", "!!int ")
    h.put(MAL, "b.yaml", "!!float ")


def _far_date(h: Host) -> None:
    h.want(MAL, "a", at="9999-12-31")
    h.want(MAL, "b", at="0001-01-01T00:00:00+14:00")
    h.want(MAL, "c", extra='keepalive_until: "9999-12-31"\n')


def _long_name(h: Host) -> None:
    h.put(MAL, "a" * 250 + ".yaml", WANT.format(name="a", extra="", at="2026-01-05"))
    h.put(MAL, "\x1b[2J\nx.yaml", "x")


def _merge_bomb(h: Host) -> None:
    lines = ["a0: &a0 {k0: 0, j0: 1}"]
    lines += [f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], k{i}: {i}}}" for i in range(1, 24)]
    h.put(MAL, "a.yaml", "\n".join(lines) + "\n")


def _laughs(h: Host) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    h.put(MAL, "a.yaml", "\n".join(lines) + "\n")


def _many_files(h: Host) -> None:
    folder = h.folder(MAL)
    for i in range(10_000):
        (folder / f"w{i:05d}.yaml").write_text("x")


def _many_keys(h: Host) -> None:
    body = "".join(f"k{i}: 1\n" for i in range(110_000))
    for i in range(9):
        h.put(MAL, f"k{i}.yaml", body)


def _odd_files(h: Host) -> None:
    folder = h.folder(MAL)
    os.mkfifo(folder / "fifo.yaml")
    (folder / "shadow.yaml").symlink_to("/etc/shadow")
    secret = h.root / "secret.yaml"  # a root file on the same file system
    secret.write_text(WANT.format(name="hard", extra="", at="2026-01-05"))
    os.link(secret, folder / "hard.yaml")
    h.put(MAL, "big.yaml", b"#" * (2 << 20))
    h.put(MAL, "latin.yaml", b"name: caf\xe9\n")
    h.put(MAL, "nul.yaml", b"name: a\x00\n")
    h.put(MAL, "int.yaml", "gpus: " + "9" * 5000 + "\n")
    h.put(MAL, "deep.yaml", "".join(" " * i + f"k{i}:\n" for i in range(400)))
    (folder / "dir.yaml").mkdir()


def _folder_is_a_link(h: Host) -> None:
    hidden = h.root / "root-only"
    hidden.mkdir(mode=0o700)
    (hidden / "secret.yaml").write_text(WANT.format(name="secret", extra="", at="2026-01-05"))
    (h.paths.wants / MAL).symlink_to(hidden)
    os.lchown(h.paths.wants / MAL, *h.ids[MAL])


def _folder_is_a_file(h: Host) -> None:
    (h.paths.wants / MAL).write_text("x")
    os.chown(h.paths.wants / MAL, *h.ids[MAL])


def _merge_bomb_two_chains(h: Host) -> None:
    """Merges of two chains of distinct mappings: each level doubles (no key is shared)."""
    lines = ["a0: &a0 {k: 0}", "b0: &b0 {k: 0}"]
    for i in range(1, 26):
        lines.append(f"a{i}: &a{i} {{<<: [*a{i - 1}, *b{i - 1}]}}")
        lines.append(f"b{i}: &b{i} {{<<: [*b{i - 1}, *a{i - 1}]}}")
    h.put(MAL, "a.yaml", "\n".join(lines) + "\n")


ATTACKS: dict[str, Callable[[Host], None]] = {
    "nested-brackets": _nested, "int-float-tags": _int_tag, "dates": _far_date,
    "long-odd-names": _long_name, "merge-bomb": _merge_bomb,
    "merge-bomb-two-chains": _merge_bomb_two_chains, "billion-laughs": _laughs,
    "many-files": _many_files, "many-keys": _many_keys, "fifo-links-big-binary": _odd_files,
    "folder-symlink": _folder_is_a_link, "folder-file": _folder_is_a_file,
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_an_attack_costs_its_author_alone(host: Host, attack: str) -> None:
    host.want(VIC, "train", extra="mig: 3g.20gb\n")
    host.paths.wants.mkdir(parents=True, exist_ok=True)
    ATTACKS[attack](host)
    started = time.monotonic()
    first = host.run()
    took = time.monotonic() - started
    assert first.plan is not None
    assert host.containers(VIC) == {"train": "running"}
    assert host.status(VIC, "train")["phase"] == "Running"
    if attack != "dates":  # dates in a want are only a version mark: those wants are fine
        assert host.containers(MAL) == {}
    assert took < 5, f"a pass took {took:.1f}s with {attack}"  # the benchmark holds it < 1 s
    again = host.run()
    assert again.plan is not None and again.plan.changes == ()
    mine = [p.name for p in (host.paths.status / MAL).glob("*.json")] \
        if (host.paths.status / MAL).is_dir() else []
    assert len(mine) <= 65  # at most one status per readable want, plus one for the rest
    assert all(b"secret" not in p.read_bytes().lower() for p in
               (host.paths.status / MAL).glob("*.json")) if mine else True


# --- 3. Swapping one's own folder for a link while ds01d reads it ---------------------------

RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    return int(libc.renameat2(at_fdcwd, str(a).encode(), at_fdcwd, str(b).encode(),
                              RENAME_EXCHANGE))


def test_a_folder_swapped_for_a_link_is_never_followed(host: Host) -> None:
    hidden = host.root / "root-only"
    hidden.mkdir(mode=0o700)
    (hidden / "secret.yaml").write_text(WANT.format(name="secret", extra="", at="2026-01-05"))
    host.want(MAL, "mine", extra="mig: 2g.10gb\n")
    link = host.paths.wants / f".{MAL}"
    link.symlink_to(hidden)
    os.lchown(link, *host.ids[MAL])
    source = WantSource(host.paths.wants, user_name=_user_name, uid_of=_uid_of)
    stop = threading.Event()
    swaps = [0]

    def swap() -> None:
        while not stop.is_set():
            if _exchange(host.paths.wants / MAL, link) == 0:
                swaps[0] += 1

    thread = threading.Thread(target=swap)
    thread.start()
    seen: set[str] = set()
    try:
        for _ in range(2000):
            read = source.load()  # never raises
            seen |= {w.name for w in read.wants} | {n for _, n in read.failed}
            assert "secret" not in seen
            assert all("secret" not in why for why in read.failed.values())
    finally:
        stop.set()
        thread.join()
    assert swaps[0] > 100 and "mine" in seen


def _user_name(uid: int) -> str | None:
    from ds01d.adapters.nss import user_name

    return user_name(uid)


def _uid_of(user: str) -> int | None:
    from ds01d.adapters.nss import uid_of

    return uid_of(user)


# --- 4. A user states what they want; ds01d decides times, caps and order -------------------

def test_a_backdated_want_does_not_jump_the_queue(host: Host) -> None:
    host.want(OLD, "a", extra="gpus: 1\n")
    host.want(OLD, "b", extra="gpus: 1\n")
    host.run()
    assert host.containers(OLD) == {"a": "running", "b": "running"}
    host.advance(60)
    host.want(VIC, "v", extra="gpus: 1\n")
    host.run()
    host.advance(60)
    host.want(MAL, "m", extra="gpus: 1\n", at="2000-01-01T00:00:00Z")
    host.run()
    assert host.status(MAL, "m")["queue_position"] == 2
    (host.paths.wants / OLD / "a.yaml").unlink()
    host.run()
    host.run()
    assert host.containers(VIC) == {"v": "running"}
    assert host.status(MAL, "m")["phase"] == "Pending"


def test_keepalive_is_capped_whatever_the_file_says(host: Host) -> None:
    host.want(MAL, "m", extra="mig: 2g.10gb\n")
    host.run()
    host.want(MAL, "m", extra='mig: 2g.10gb\nkeepalive_until: "2099-01-01T00:00:00Z"\n')
    host.run()
    for _ in range(5):
        host.advance(6 * 3600)  # 30 h: past the 24 h cap, and idle all along
        host.run()
    assert host.containers(MAL) == {"m": "exited"}
    assert host.status(MAL, "m")["reason"] == "idle"


@pytest.mark.parametrize(("extra", "message"), [
    ("cpus: 0.0000000001\n", "below the minimum 0.01"),
    ("cpus: 1e-10\n", "is not a number"),
    ('memory: "0"\n', "too small for memory"),
    ("memory: 0\n", "too small for memory"),
    ('shm: "0"\n', "too small for shm"),
])
def test_no_want_removes_a_limit(host: Host, extra: str, message: str) -> None:
    host.want(MAL, "m", extra=extra)
    host.run()
    status = host.status(MAL, "m")
    assert status["phase"] == "Failed" and message in str(status["reason"])
    assert host.containers(MAL) == {}


# --- 5. Only a deliberate drop retires a container -----------------------------------------

def test_a_lookup_failure_or_an_invalid_want_keeps_the_container(host: Host) -> None:
    host.want(VIC, "v", extra="mig: 3g.20gb\n")
    host.run()
    assert host.containers(VIC) == {"v": "running"}
    real = host.daemon.want_files.user_name
    host.daemon.want_files.user_name = lambda uid: None  # the name service does not answer
    try:
        r = host.run()
    finally:
        host.daemon.want_files.user_name = real
    assert r.plan is not None
    assert not [x for x in r.plan.actions if isinstance(x, a.StopContainer | a.RemoveContainer)]
    assert host.containers(VIC) == {"v": "running"}
    host.put(VIC, "v.yaml", "gpus: lots\n")  # the want turns invalid
    r = host.run()
    assert host.containers(VIC) == {"v": "running"}
    assert "kept as it is" in str(host.status(VIC, "v")["reason"])
    host.want(VIC, "v", extra="mig: 3g.20gb\n")  # valid again: as before
    host.run()
    assert host.status(VIC, "v")["phase"] == "Running"
    (host.paths.wants / VIC / "v.yaml").unlink()  # a deliberate drop
    host.run()
    assert host.containers(VIC) == {}


def test_a_user_gone_from_the_name_service_keeps_their_container(host: Host) -> None:
    host.want(GONE, "g", extra="mig: 3g.20gb\n")
    host.run()
    assert host.containers(GONE) == {"g": "running"}
    uid = host.ids[GONE][0]
    real = host.daemon.want_files.user_name
    assert real is not None
    host.daemon.want_files.user_name = lambda u: None if u == uid else real(u)
    host.daemon.accounts.clear()
    try:
        for _ in range(3):
            host.run()
    finally:
        host.daemon.want_files.user_name = real
    assert host.containers(GONE) == {"g": "running"}


# --- 7. Multi-user hygiene -------------------------------------------------------------------

def test_a_squatted_folder_is_moved_aside_and_its_user_served(host: Host) -> None:
    host.paths.wants.mkdir(parents=True, exist_ok=True)
    host.folder(VIC, owner=MAL)
    host.put(VIC, "t.yaml", WANT.format(name="t", extra="", at="2026-01-05"), owner=MAL)
    r = host.run()
    assert r.plan is not None
    made = (host.paths.wants / VIC).stat()  # made again by ds01d, as the victim's, empty
    assert made.st_uid == host.ids[VIC][0] and not list((host.paths.wants / VIC).iterdir())
    assert not (host.paths.status / VIC).exists()  # nothing written for the user it names
    moved = list((host.paths.state / "foreign").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith(f"{host.ids[MAL][0]}-")
    events = [json.loads(x) for x in host.paths.events.read_text().splitlines()]
    assert [(e["event_type"], e["user"], e["details"]["moved"]) for e in events] == \
        [("spool.foreign", MAL, 1)]
    from ds01d.cli.want import open_folder

    def make() -> int:
        os.close(open_folder(host.paths, VIC, create=True))
        return 0

    assert as_user(*host.ids[VIC], make) == 0


def test_what_a_user_may_see_of_others(host: Host) -> None:
    host.want(VIC, "v", extra="mig: 3g.20gb\n")
    host.want(MAL, "m", extra="mig: 3g.20gb\n")
    host.run()
    st = host.paths.status.stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o711)
    vic = (host.paths.status / VIC).stat()
    assert (vic.st_uid, vic.st_mode & 0o777) == (host.ids[VIC][0], 0o700)
    assert host.paths.events.stat().st_mode & 0o777 == 0o640
    assert host.paths.wants.stat().st_mode & 0o7777 == 0o1733

    def snoop() -> int:
        for path, how in ((host.paths.status, os.listdir), (host.paths.wants, os.listdir),
                          (host.paths.status / VIC / "v.json", _read),
                          (host.paths.events, _read), (host.paths.wants / VIC, os.listdir)):
            try:
                how(path)
            except PermissionError:
                continue
            return 1  # could see another user's files
        _read(host.paths.status / MAL / "m.json")  # their own: readable
        return 0

    assert as_user(*host.ids[MAL], snoop) == 0


def _read(path: Path) -> bytes:
    return path.read_bytes()


def test_printed_names_are_made_safe(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    from ds01d.cli import main

    host.put(MAL, "\x1b]0;pwned\x07.yaml", "x")
    host.run()
    planted = host.paths.status / MAL / "z.json"  # their own folder: they may put files there
    planted.write_text(json.dumps({"user": MAL, "name": "z\x1b[2J", "phase": "Running",
                                   "reason": "\x1b]0;owned\x07\n\x1b[31mroot"}))
    assert main(["--root", str(host.root), "status", "--all"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b" in out
    assert main(["--root", str(host.root), "--as", VIC, "drop", "container",
                 f"../{MAL}/t"]) == 1
    assert "is not a container name" in capsys.readouterr().err
    assert main(["--root", str(host.root), "--as", VIC, "keepalive", "../x", "--for",
                 "1h"]) == 1


# --- 8. Derived files heal; an I/O error costs that file ----------------------------------

def test_deleted_status_files_come_back(host: Host) -> None:
    host.want(VIC, "v", extra="mig: 3g.20gb\n")
    host.run()
    shutil.rmtree(host.paths.status)
    host.run()
    assert host.status(VIC, "v")["phase"] == "Running"
    fake = host.paths.status / VIC / ".fake"
    fake.write_text("{}")  # the user replaces their status file (they own the folder)
    fake.replace(host.paths.status / VIC / "v.json")
    host.run()
    assert host.status(VIC, "v")["phase"] == "Running"


def test_an_unwritable_event_log_fails_no_action(host: Host) -> None:
    host.paths.events.parent.mkdir(parents=True, exist_ok=True)
    host.paths.events.mkdir()  # appends fail: EISDIR
    host.want(VIC, "v", extra="mig: 3g.20gb\n")
    r = host.run()
    assert r.executed > 0 and r.failed == 0
    assert host.containers(VIC) == {"v": "running"}
    assert host.daemon.events.lost > 0


def test_an_unwritable_status_folder_costs_only_status(host: Host) -> None:
    host.paths.state.mkdir(parents=True, exist_ok=True)
    host.paths.status.write_text("not a folder")
    host.want(VIC, "v", extra="mig: 3g.20gb\n")
    r = host.run()
    assert r.failed == 0 and host.containers(VIC) == {"v": "running"}
    assert (host.paths.state / "ds01d-state.json").exists()
    host.paths.status.unlink()
    host.run()
    assert host.status(VIC, "v")["phase"] == "Running"


# --- 1. Root never works where a user points ------------------------------------------------

def test_the_workspace_is_made_as_its_owner(base: Path, users: dict[str, tuple[int, int]]
                                            ) -> None:
    uid, gid = users[MAL]
    home = base / "home" / MAL
    shutil.rmtree(home / "workspace", ignore_errors=True)
    target = base / "root-dir"
    target.mkdir(mode=0o755, exist_ok=True)
    (home / "workspace").symlink_to(target)  # ~/workspace -> a folder of root's
    os.lchown(home / "workspace", uid, gid)
    try:
        with pytest.raises(PermanentError, match="Permission denied"):
            asuser.make_dirs(uid, gid, str(home / "workspace" / "t"))
        assert list(target.iterdir()) == []
        with pytest.raises(PermanentError, match="symlink"):
            asuser.owned_dir(str(home), ["workspace", "t"], uid)
    finally:
        (home / "workspace").unlink()
    asuser.make_dirs(uid, gid, str(home / "workspace" / "t"))
    path, _ = asuser.owned_dir(str(home), ["workspace", "t"], uid)
    assert path == str(home / "workspace" / "t")
    assert (home / "workspace" / "t").stat().st_uid == uid


def test_a_workspace_swapped_for_a_link_mid_setup_gives_nothing_away(
        base: Path, users: dict[str, tuple[int, int]]) -> None:
    uid, gid = users[MAL]
    home = base / "home" / MAL
    shutil.rmtree(home / "workspace", ignore_errors=True)
    (home / "workspace").mkdir()
    os.chown(home / "workspace", uid, gid)
    secret = base / "root-secret"
    secret.mkdir(mode=0o700, exist_ok=True)
    (secret / "key").write_text("root's")
    (secret / "key").chmod(0o600)
    work, link = home / "workspace" / "t", home / "workspace" / ".t"
    link.symlink_to(secret)
    os.lchown(link, uid, gid)
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            _exchange(work, link) if work.exists() or work.is_symlink() else None

    thread = threading.Thread(target=swap)
    thread.start()
    outcomes: set[str] = set()
    try:
        for _ in range(300):
            try:
                asuser.make_dirs(uid, gid, str(work))
                path, _ = asuser.owned_dir(str(home), ["workspace", "t"], uid)
            except PermanentError:
                outcomes.add("refused")  # whatever mkdir or the check said, as the user
                continue
            assert path.startswith(str(home) + "/")
            outcomes.add("made")
    finally:
        stop.set()
        thread.join()
    assert (secret / "key").stat().st_uid == 0 and (secret / "key").stat().st_mode & 0o777 \
        == 0o600
    assert (secret).stat().st_uid == 0
    assert outcomes <= {"made", "refused"}, outcomes


def test_make_dirs_refuses_without_root_for_another_user() -> None:
    assert as_user(65534, 65534, _try_make_dirs) == 0


def _try_make_dirs() -> int:
    try:
        asuser.make_dirs(0, 0, "/nonexistent/x")
    except PermanentError as e:
        return 0 if "without root" in str(e) else 2
    return 1
