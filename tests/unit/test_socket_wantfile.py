"""The want file ds01's Docker socket writes for a caller: a FIFO, a link or a folder the
caller planted in its place never holds the socket up or leads it elsewhere."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from ds01d.config.want import from_yaml, read_want
from ds01d.dockersock import wantfile

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: setfsuid")
WANT = ("version: 1\nkind: container\nname: t\nimage: img:1\n"
        "requested_at: '2026-01-05T09:00:00Z'\n")


def _write_within(wants: Path, seconds: float = 5.0) -> None:
    want = from_yaml(WANT, user="alice", file="t.yaml")
    failed: list[BaseException] = []

    def go() -> None:
        try:
            wantfile.write(str(wants), want, uid=0, gid=0)
        except BaseException as e:
            failed.append(e)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the socket's want write hung"
    assert not failed, failed


@pytest.mark.parametrize("planted", ["fifo", "link", "junk"])
def test_a_planted_file_is_replaced_without_waiting_or_following(
        tmp_path: Path, planted: str) -> None:
    wants = tmp_path / "wants"
    folder = wants / "alice"
    folder.mkdir(parents=True)
    target = tmp_path / "elsewhere"
    target.write_text("root's\n")
    path = folder / "t.yaml"
    if planted == "fifo":
        os.mkfifo(path)
    elif planted == "link":
        path.symlink_to(target)
    else:
        path.write_bytes(b"\xff\x00" * 1000)
    _write_within(wants)
    assert path.is_file() and not path.is_symlink()
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert read_want(fd, "alice", "t").image == "img:1"
    finally:
        os.close(fd)
    assert target.read_text() == "root's\n"
