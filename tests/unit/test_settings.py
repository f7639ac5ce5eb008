"""The one rule set for a container's settings (want files and Docker-socket creates alike),
the shared path check, and the Docker body built from a spec."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from ds01d.config.settings import ContainerSettings, Mount, Port, from_data, problems, to_data
from ds01d.core.actions import ContainerSpec
from ds01d.core.engine import create_body
from ds01d.userpaths import owned_path_problem

HOME = "/home/alice"
OK = ContainerSettings(kind="devcontainer", command=("sleep", "1"), env=("A=1",),
                       labels=(("devcontainer.local_folder", "/home/alice/p"),),
                       mounts=(Mount("bind", "/home/alice/p", "/workspaces/p"),
                               Mount("volume", "data", "/data"), Mount("tmpfs", "", "/scratch")),
                       ports=(Port(8888, "tcp", 8888),), working_dir="/workspaces/p",
                       network="none", start="client")

# (what breaks, the settings, a word the refusal must hold)
REFUSED = [
    ("a ds01 label", replace(OK, labels=(("ds01.user", "bob"),)), "ds01."),
    ("a ds01 label, odd case", replace(OK, labels=(("DS01.managed", "true"),)), "ds01."),
    ("GPU env", replace(OK, env=("NVIDIA_VISIBLE_DEVICES=all",)), "GPUs"),
    ("GPU env, lower case", replace(OK, env=("nvidia_visible_devices=all",)), "GPUs"),
    ("bind outside home", replace(OK, mounts=(Mount("bind", "/", "/host"),)), "outside"),
    ("bind of another home", replace(OK, mounts=(Mount("bind", "/home/alice2", "/x"),)),
     "outside"),
    ("bind with ..", replace(OK, mounts=(Mount("bind", "/home/alice/../bob", "/x"),)),
     "plain path"),
    ("bind relative", replace(OK, mounts=(Mount("bind", "home/alice", "/x"),)), "absolute"),
    ("the docker socket", replace(OK, mounts=(Mount("bind", "/run/docker.sock", "/s"),)),
     "outside"),
    ("mount at /", replace(OK, mounts=(Mount("tmpfs", "", "/"),)), "target"),
    ("npipe mount", replace(OK, mounts=(Mount("npipe", "x", "/x"),)), "not allowed"),
    ("volume with a path", replace(OK, mounts=(Mount("volume", "../x", "/x"),)), "volume"),
    ("a system port", replace(OK, ports=(Port(22, "tcp", 22),)), "1024"),
    ("host network", replace(OK, network="host"), "network"),
    ("another container's network", replace(OK, network="container:abc"), "network"),
    ("unknown type", replace(OK, kind="swarm"), "type"),
    ("odd restart", replace(OK, restart="sometimes"), "restart"),
    ("too many args", replace(OK, command=("x",) * 300), "command"),
    ("bad start", replace(OK, start="nobody"), "start"),
    # `re`'s $ matches before a final newline: every pattern ends at the end of the text
    ("hostname with a newline", replace(OK, hostname="abc\n"), "hostname"),
    ("volume name with a newline", replace(OK, mounts=(Mount("volume", "data\n", "/d"),)),
     "volume"),
    ("stop signal with a newline", replace(OK, stop_signal="KILL\n"), "signal"),
    ("env name with a newline", replace(OK, env=("A\n=1",)), "NAME=VALUE"),
]


def test_good_settings_pass() -> None:
    assert problems(OK, home=HOME) == []


@pytest.mark.parametrize(("what", "settings", "word"), REFUSED, ids=[r[0] for r in REFUSED])
def test_each_rule_refuses(what: str, settings: ContainerSettings, word: str) -> None:
    found = problems(settings, home=HOME)
    assert found and any(word in p for p in found), (what, found)


def test_want_file_round_trip() -> None:
    assert from_data(to_data(OK)) == OK
    assert to_data(ContainerSettings()) == {}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "proj/sub").mkdir(parents=True)
    return tmp_path


def test_path_check_accepts_own_folders(home: Path) -> None:
    uid = os.getuid()
    assert owned_path_problem(str(home / "proj/sub"), uid=uid, home=str(home)) is None
    assert owned_path_problem(str(home), uid=uid, home=str(home)) is None


def test_path_check_refuses_links_strangers_and_missing(home: Path) -> None:
    uid = os.getuid()
    (home / "link").symlink_to("/etc")
    (home / "proj/inner").symlink_to(home / "proj/sub")
    assert "symbolic link" in str(owned_path_problem(str(home / "link"), uid=uid,
                                                     home=str(home)))
    assert "symbolic link" in str(owned_path_problem(str(home / "proj/inner"), uid=uid,
                                                     home=str(home)))
    assert "not yours" in str(owned_path_problem(str(home / "proj"), uid=uid + 1,
                                                 home=str(home)))
    assert "does not exist" in str(owned_path_problem(str(home / "nope/x"), uid=uid,
                                                      home=str(home)))
    link_home = home / "homelink"
    link_home.symlink_to(home)
    assert "cannot be opened" in str(owned_path_problem(str(link_home / "proj"), uid=uid,
                                                        home=str(link_home)))


def test_path_check_refuses_a_file_as_a_folder(home: Path) -> None:
    (home / "f").write_text("x")
    assert "not a folder" in str(owned_path_problem(str(home / "f/x"), uid=os.getuid(),
                                                    home=str(home)))


def spec(settings: ContainerSettings | None, devices: tuple[str, ...] = ()) -> ContainerSpec:
    return ContainerSpec("ds01-alice-t", "alice", "t", "img:1", {"ds01.user": "alice"},
                         devices, "ds01-student-alice.slice", 10**9, 2**30, 2**30, 2**26, 100,
                         1000, 1000, "/home/alice/workspace/t", home=HOME, settings=settings)


def test_body_of_a_plain_want() -> None:
    body = create_body(spec(None, ("MIG-1",)))
    host = body["HostConfig"]
    assert body["Cmd"] == ["sleep", "infinity"] and body["User"] == "1000:1000"
    assert host["Mounts"] == [{"Type": "bind", "Source": "/home/alice/workspace/t",
                               "Target": "/workspace", "ReadOnly": False,
                               "BindOptions": {"Propagation": "rprivate"}}]
    assert host["DeviceRequests"] == [{"Driver": "nvidia", "DeviceIDs": ["MIG-1"],
                                       "Capabilities": [["gpu"]]}]
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["Privileged"] is False and host["CgroupParent"] == "ds01-student-alice.slice"


def test_body_of_settings() -> None:
    body = create_body(spec(OK))
    host = body["HostConfig"]
    assert host["PortBindings"] == {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8888"}]}
    assert [m["Source"] for m in host["Mounts"] if m["Type"] == "volume"] == ["ds01-alice-data"]
    assert body["Labels"] == {"devcontainer.local_folder": "/home/alice/p", "ds01.user": "alice"}
    assert host["NetworkMode"] == "none" and body["Cmd"] == ["sleep", "1"]
    assert "DeviceRequests" not in host


def test_body_of_a_want_with_a_command_keeps_the_workspace() -> None:
    s = ContainerSettings(command=("jupyter", "lab"), env=("A=1",), ports=(Port(8888, "tcp",
                                                                               8888),),
                          workspace=True)
    body = create_body(spec(s))
    assert body["Cmd"] == ["jupyter", "lab"] and body["WorkingDir"] == "/workspace"
    assert body["HostConfig"]["Mounts"][0]["Source"] == "/home/alice/workspace/t"
    assert body["HostConfig"]["PortBindings"] == {"8888/tcp": [{"HostIp": "127.0.0.1",
                                                               "HostPort": "8888"}]}
