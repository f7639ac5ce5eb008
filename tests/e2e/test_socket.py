"""ds01's Docker socket end to end: ds01-socket started by the testbed's real systemd from
units/ds01-docker.socket (socket activation), in front of the real dockerd, used by real Unix
users (not in the docker group) with the real docker CLI and VS Code's devcontainer CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.e2e.conftest import BIN, GPU0, Lab, docker, run, tb, wait_for

PEOPLE = ("dssann", "dssben")
HOMES = REPO / "build/e2e-sock-home"
DEVCONTAINER = REPO / "build/node/node_modules/.bin/devcontainer"
DS01_AS_USER = ("env", f"PYTHONPATH={REPO}", "/usr/bin/python3", "-m", "ds01d.cli")
"""``ds01`` as a user runs it: the venv's interpreter may live where users cannot reach
(pyenv under /root on CI); ``ds01 shell``'s path needs the standard library alone."""


@dataclass
class Person:
    name: str
    uid: int
    gid: int
    home: Path
    sock: str = ""

    def run(self, *cmd: str, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = ["env", "-i", f"HOME={self.home}", f"USER={self.name}", f"TMPDIR={self.home}",
               f"DOCKER_HOST=unix://{self.sock}", "PATH=/usr/local/bin:/usr/bin:/bin",
               "DOCKER_BUILDKIT=0"]
        return subprocess.run(["runuser", "-u", self.name, "--", *env, *cmd], input=stdin,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("docker", *args)

    def ok(self, *args: str) -> str:
        done = self.docker(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr[-600:])
        return done.stdout

    def refused(self, *args: str) -> str:
        done = self.docker(*args)
        assert done.returncode != 0, (args, done.stdout)
        return done.stderr


@pytest.fixture(scope="session")
def people() -> Iterator[dict[str, Person]]:
    made = []
    HOMES.mkdir(parents=True, exist_ok=True)
    os.chmod(HOMES, 0o755)
    try:
        for name in PEOPLE:
            if run("id", name, check=False).returncode != 0:
                run("useradd", "--create-home", "--home-dir", str(HOMES / name), "--shell",
                    "/bin/sh", name)
                made.append(name)
        found = {}
        for name in PEOPLE:
            uid, gid = int(run("id", "-u", name).stdout), int(run("id", "-g", name).stdout)
            found[name] = Person(name, uid, gid, HOMES / name)
        yield found
    finally:
        for name in made:
            run("userdel", name, check=False)
        shutil.rmtree(HOMES, ignore_errors=True)


def _install(root: Path) -> None:
    units = Path(os.environ["DS01_TESTBED_DIR"]) / "run/systemd/system"
    for name in ("ds01-docker.socket", "ds01-docker.service"):
        shutil.copy(REPO / "units" / name, units / name)
    dropin = units / "ds01-docker.service.d"
    dropin.mkdir(exist_ok=True)
    (dropin / "testbed.conf").write_text(f"""\
# the testbed: ds01-socket from this checkout, on a test root, in front of the testbed's dockerd
[Service]
ExecStart=
ExecStart={BIN / "ds01-socket"} --root {root} --metrics-port 9192
Environment=DOCKER_HOST=unix:///run/ds01-docker.sock PYTHONUNBUFFERED=1
ReadWritePaths=
ReadWritePaths={root}/var/lib/ds01/wants
ProtectHome=no
PrivateTmp=no
""")
    tb("systemctl", "daemon-reload")


@pytest.fixture
def sock(lab: Lab, people: dict[str, Person]) -> Iterator[dict[str, Person]]:
    wants = lab.root / "var/lib/ds01/wants"
    wants.mkdir(parents=True, exist_ok=True)
    os.chmod(wants, 0o1777)
    _install(lab.root)
    tb("systemctl", "start", "ds01-docker.socket")
    path = str(Path(os.environ["DS01_TESTBED_DIR"]) / "run/ds01/docker.sock")
    for p in people.values():
        p.sock = path
        for leftover in p.home.iterdir():
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink()
    try:
        yield people
    finally:
        print(tb("journalctl", "-u", "ds01-docker", "--no-pager", "-n", "60"))  # on failure
        tb("systemctl", "stop", "ds01-docker.service", "ds01-docker.socket")
        volumes = docker("volume", "ls", "-q").split()
        ids = docker("ps", "-aq").split()
        if ids:
            docker("rm", "-f", *ids)
        if volumes:
            run("docker", "volume", "rm", *volumes, check=False)
        run("docker", "rmi", "dssann/img:1", check=False)


def test_the_docker_cli_on_ones_own_and_on_anothers(sock: dict[str, Person]) -> None:
    ann, ben = sock["dssann"], sock["dssben"]
    since = str(int(time.time()) - 1)
    cid = ann.ok("run", "-d", "--name", "train", "ds01-test:1", "sh", "-c",
                 "echo started; sleep 1000").strip()
    ben.ok("run", "-d", "--name", "train", "ds01-test:1", "sleep", "1000")  # same name: fine
    assert ann.ok("ps", "--format", "{{.Names}}").split() == ["train"]
    assert ben.ok("ps", "--format", "{{.Names}}").split() == ["train"]
    until = str(int(time.time()) + 1)
    seen = ann.ok("events", "--since", since, "--until", until, "--format",
                  "{{.Type}} {{.Actor.Attributes.name}} {{index .Actor.Attributes \"ds01.user\"}}")
    assert "container train dssann" in seen and "dssben" not in seen, seen
    assert ann.ok("exec", "train", "id", "-u").strip() == str(ann.uid)
    tty = ann.run("script", "-qec", "docker exec -it train sh -c 'tty; id -u'", "/dev/null")
    assert "/dev/pts/" in tty.stdout and str(ann.uid) in tty.stdout, tty
    assert ann.run("docker", "exec", "-i", "train", "cat", stdin="hello\n").stdout == "hello\n"
    assert "started" in ann.ok("logs", "train")
    info = json.loads(ann.ok("inspect", "train"))[0]
    assert info["Name"] == "/train" and info["Config"]["User"] == f"{ann.uid}:{ann.gid}"
    assert info["HostConfig"]["CgroupParent"] == "ds01-student-dssann.slice"
    assert "train" in ann.ok("stats", "--no-stream", "--format", "{{.Name}}", "train")
    ann.ok("cp", "train:/bin/busybox", str(ann.home / "bb"))
    assert (ann.home / "bb").stat().st_uid == ann.uid
    ann.ok("stop", "-t", "1", "train")
    ann.ok("start", "train")
    for ref in (cid, cid[:12], "ds01-dssann-train"):
        for args in (("exec", ref, "id"), ("logs", ref), ("inspect", ref), ("stop", ref),
                     ("start", ref), ("stats", "--no-stream", ref), ("rm", "-f", ref),
                     ("cp", f"{ref}:/bin/sh", str(ben.home / "x"))):
            done = ben.docker(*args)
            assert done.returncode != 0 or args[:2] == ("rm", "-f"), (args, done.stdout)
            assert "No such container" in done.stderr or "No such object" in done.stderr, \
                (args, done.stderr)
    assert ann.ok("inspect", "-f", "{{.State.Status}}", "train").strip() == "running"
    ann.ok("volume", "create", "data")
    ben.ok("volume", "create", "data")
    assert ann.ok("volume", "ls", "-q").split() == ["data"]
    assert "No such volume" in ben.refused("volume", "rm", "ds01-dssann-data")
    build = ann.home / "b"
    build.mkdir()
    (build / "Dockerfile").write_text("FROM ds01-test:1\nRUN true\n")
    ann.ok("build", "-q", "-t", "dssann/img:1", str(build))
    assert "did not build" in ben.refused("build", "-q", "-t", "dssann/img:1", str(build))
    assert "not your image" in ben.refused("rmi", "dssann/img:1")
    ann.ok("rm", "-f", "train")
    assert ann.ok("ps", "-a", "--format", "{{.Names}}").split() == []


ESCAPES = [
    ("privileged", ("run", "--rm", "--privileged", "ds01-test:1", "true"), "Privileged"),
    ("host-root", ("run", "--rm", "-v", "/:/host", "ds01-test:1", "true"), "outside"),
    ("docker-socket", ("run", "--rm", "-v", "/run/docker.sock:/s", "ds01-test:1", "true"),
     "outside"),
    ("link-out-of-home", ("run", "--rm", "-v", "{home}/etc:/x", "ds01-test:1", "true"),
     "symbolic link"),
    ("capabilities", ("run", "--rm", "--cap-add", "SYS_ADMIN", "ds01-test:1", "true"),
     "CapAdd"),
    ("host-pid", ("run", "--rm", "--pid", "host", "ds01-test:1", "true"), "PidMode"),
    ("host-network", ("run", "--rm", "--network", "host", "ds01-test:1", "true"), "network"),
    ("root", ("run", "--rm", "-u", "root", "ds01-test:1", "true"), "--user root"),
    ("seccomp", ("run", "--rm", "--security-opt", "seccomp=unconfined", "ds01-test:1", "true"),
     "security-opt"),
    ("a-device", ("run", "--rm", "--device", "/dev/null:/dev/x", "ds01-test:1", "true"),
     "Devices"),
    ("public-port", ("run", "--rm", "-p", "0.0.0.0:18080:80", "ds01-test:1", "true"),
     "127.0.0.1"),
    ("volume-bind-option", ("volume", "create", "-o", "o=bind", "-o", "device=/", "-o",
                            "type=none", "x"), "driver options"),
]


@pytest.mark.parametrize(("what", "args", "word"), ESCAPES, ids=[e[0] for e in ESCAPES])
def test_escapes_cannot_get_past_the_socket(sock: dict[str, Person], what: str,
                                            args: tuple[str, ...], word: str) -> None:
    ann = sock["dssann"]
    (ann.home / "etc").symlink_to("/etc")
    err = ann.refused(*[a.format(home=ann.home) for a in args])
    assert "ds01:" in err and word in err, (what, err)
    assert docker("ps", "-aq").split() == []


def test_root_exec_refused_and_every_refusal_journalled(sock: dict[str, Person]) -> None:
    ann = sock["dssann"]
    ann.ok("run", "-d", "--name", "t", "ds01-test:1", "sleep", "1000")
    assert "exec as 'root' is refused" in ann.refused("exec", "-u", "root", "t", "id")
    ann.refused("run", "--rm", "--privileged", "ds01-test:1", "true")

    def entries() -> list[dict[str, str]]:
        out = tb("journalctl", "-u", "ds01-docker", "DS01_ACTION=socket.refuse",
                 "DS01_USER=dssann", "-o", "json", "--no-pager")
        return [json.loads(x) for x in out.splitlines() if x.strip()]

    found = wait_for("two journal entries", lambda: len(entries()) >= 2 and entries())
    reasons = " | ".join(e["DS01_REASON"] for e in found)
    assert "exec as 'root'" in reasons and "Privileged" in reasons
    from urllib.request import urlopen

    with urlopen("http://127.0.0.1:9192/metrics", timeout=5) as r:  # the testbed's port
        scrape = r.read().decode()
    assert 'ds01_socket_requests_total{outcome="refused"} 2.0' in scrape, scrape


SMUGGLE = r"""
import json, re, socket, sys
def talk(raw):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(raw)
    s.shutdown(socket.SHUT_WR); out = b""
    while chunk := s.recv(65536): out += chunk
    return [int(x) for x in re.findall(rb"HTTP/1\.1 (\d{3}) ", out)]
def req(method, path, body=b""):
    head = f"{method} {path} HTTP/1.1\r\nHost: d\r\nContent-Length: {len(body)}\r\n"
    return (head + "Content-Type: application/json\r\n\r\n").encode() + body
evil = json.dumps({"Image": "ds01-test:1", "HostConfig": {"Privileged": True}}).encode()
out = {
 "pipelined": talk(req("GET", "/_ping") + req("POST", "/containers/create", evil)),
 "versionless": talk(req("POST", "/containers/create", evil)),
 "casing": talk(req("POST", "/v1.41/containers/create",
                    b'{"Image": "ds01-test:1", "HostConfig": {"privileged": true}}')),
 "duplicate": talk(req("POST", "/v1.41/containers/create",
                       b'{"Image": "ds01-test:1", "HostConfig": {"Privileged": false, '
                       b'"Privileged": true}}')),
 "encoded": talk(req("GET", "/v1.41/containers/..%2f..%2fimages/json")),
 "old version": talk(req("POST", "/v1.20/containers/x/start",
                         b'{"Binds": ["/:/host"], "Privileged": true}')),
}
print(json.dumps(out))
"""


def test_smuggling_is_refused(sock: dict[str, Person]) -> None:
    ann = sock["dssann"]
    done = ann.run("/usr/bin/python3", "-c", SMUGGLE, ann.sock)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["pipelined"] == [200, 403]
    assert found["versionless"] == [403] and found["casing"] == [403]
    assert found["duplicate"] == [400] and found["encoded"] == [400]
    assert found["old version"] == [400]
    assert docker("ps", "-aq").split() == []


def test_a_gpu_run_becomes_a_want_and_the_quota_holds(sock: dict[str, Person],
                                                      lab: Lab) -> None:
    ann, ben = sock["dssann"], sock["dssben"]
    ann.ok("run", "-d", "--name", "g", "--gpus", "all", "ds01-test:1", "sleep", "1000")
    info = json.loads(docker("inspect", "ds01-dssann-g"))[0]
    assert [r["DeviceIDs"] for r in info["HostConfig"]["DeviceRequests"]] == [[GPU0]]
    assert info["Config"]["Labels"]["ds01.managed"] == "true"
    wait_for("running", lambda: lab.running("dssann", "g"))
    assert ann.ok("exec", "g", "id", "-u").strip() == str(ann.uid)
    environ = docker("exec", "ds01-dssann-g", "cat", "/proc/1/environ").split("\0")
    assert f"NVIDIA_VISIBLE_DEVICES={GPU0}" in environ
    ann.ok("stop", "-t", "1", "g")
    wait_for("stopped", lambda: lab.status("dssann", "g").get("phase") == "Stopped")
    ann.ok("start", "g")  # through ds01d: the want asked for again, the device checked free
    assert lab.running("dssann", "g")
    err = ann.refused("run", "-d", "--name", "g2", "--gpus", "all", "ds01-test:1", "sleep", "9")
    assert "queued" in err and "ds01 status g2" in err, err
    err = ben.refused("run", "-d", "--name", "g", "--gpus", "all", "ds01-test:1", "sleep", "9")
    assert "queued" in err, err
    ann.ok("rm", "-f", "g")
    assert not (lab.root / "var/lib/ds01/wants/dssann/g.yaml").exists()


def _devcontainer(person: Person, folder: Path, run_args: list[str]) -> Path:
    project = person.home / folder
    (project / ".devcontainer").mkdir(parents=True)
    (project / ".devcontainer/devcontainer.json").write_text(json.dumps({
        "image": "ds01-test:1", "runArgs": ["--network", "none", *run_args],
        "updateRemoteUserUID": False, "overrideCommand": True}))
    for path in (project, project / ".devcontainer", project / ".devcontainer/devcontainer.json"):
        os.chown(path, person.uid, person.gid)
    return project


def test_vscode_devcontainers_without_and_with_gpus(sock: dict[str, Person], lab: Lab) -> None:
    assert DEVCONTAINER.exists(), "make e2e installs @devcontainers/cli into build/node"
    ann, ben = sock["dssann"], sock["dssben"]
    plain = _devcontainer(ann, Path("plain"), [])
    up = ann.run(str(DEVCONTAINER), "up", "--workspace-folder", str(plain), "--docker-path",
                 "docker")
    assert up.returncode == 0 and '"outcome":"success"' in up.stdout, (up.stdout, up.stderr)
    whoami = ann.run(str(DEVCONTAINER), "exec", "--workspace-folder", str(plain), "id", "-u")
    assert whoami.stdout.strip() == str(ann.uid), whoami
    labels = json.loads(docker("ps", "--format", "{{json .Labels}}", "--filter",
                               "label=devcontainer.local_folder"))
    assert "ds01.type=devcontainer" in labels and "ds01.user=dssann" in labels
    gpu = _devcontainer(ann, Path("gpu"), ["--gpus", "all"])
    up = ann.run(str(DEVCONTAINER), "up", "--workspace-folder", str(gpu), "--docker-path",
                 "docker")
    assert up.returncode == 0, (up.stdout, up.stderr)
    cid = json.loads(up.stdout.strip().splitlines()[-1])["containerId"]
    info = json.loads(docker("inspect", cid))[0]
    assert [r["DeviceIDs"] for r in info["HostConfig"]["DeviceRequests"]] == [[GPU0]]
    assert info["Config"]["Labels"]["ds01.type"] == "devcontainer"
    bens = _devcontainer(ben, Path("gpu"), ["--gpus", "all"])
    up = ben.run(str(DEVCONTAINER), "up", "--workspace-folder", str(bens), "--docker-path",
                 "docker")
    assert up.returncode != 0 and "queued" in up.stdout + up.stderr, (up.stdout, up.stderr)


def test_docker_down_is_a_clear_error_not_a_hang(sock: dict[str, Person]) -> None:
    ann = sock["dssann"]
    ann.ok("ps")
    tb("systemctl", "stop", "ds01-testbed-dockerd")
    try:
        started = time.monotonic()
        err = ann.refused("ps")
        assert time.monotonic() - started < 10
        assert "Docker is not answering" in err, err
    finally:
        run(REPO / "scripts/testbed.sh", "dockerd")


def test_ds01_want_then_ds01_shell(sock: dict[str, Person], lab: Lab) -> None:
    ann, ben = sock["dssann"], sock["dssben"]
    lab.ds01("--as", "dssann", "want", "container", "w", "--image", "ds01-test:1")
    wait_for("running", lambda: lab.running("dssann", "w"))
    shell = ann.run(*DS01_AS_USER, "--root", str(lab.root), "shell", "w", "--", "sh", "-c",
                    "id -u; pwd")
    assert shell.stdout.split() == [str(ann.uid), "/workspace"], shell
    assert (ann.home / "workspace/w").stat().st_uid == ann.uid
    assert ann.ok("ps", "--format", "{{.Names}}").split() == ["w"]
    shell = ben.run(*DS01_AS_USER, "--root", str(lab.root), "shell", "w", "--", "true")
    assert shell.returncode != 0 and "No such container" in shell.stderr, shell


CONNECTIONS = r"""
import socket, sys
held = []
for _ in range(64):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); held.append(s)
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
print(s.recv(65536).split(b"\r\n")[0].decode())
"""


def test_one_user_cannot_use_up_the_server(sock: dict[str, Person]) -> None:
    ann, ben = sock["dssann"], sock["dssben"]
    done = ann.run("/usr/bin/python3", "-c", CONNECTIONS, ann.sock, timeout=60)
    assert done.stdout.startswith("HTTP/1.1 429"), (done.stdout, done.stderr)
    ben.ok("ps")  # everyone else is served meanwhile
