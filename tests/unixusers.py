"""Real Unix users for the tests that need them (root only): made with ``useradd`` when
missing, removed after, each with a home folder of their own."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def ids_of(user: str) -> tuple[int, int]:
    return int(run("id", "-u", user).stdout), int(run("id", "-g", user).stdout)


@contextlib.contextmanager
def unix_users(names: tuple[str, ...], homes: Path, *, badname: bool = False
               ) -> Iterator[dict[str, tuple[int, int]]]:
    """``names`` as real users with homes ``homes/<name>`` (made, theirs, 0750): name ->
    (uid, gid). Users this made are removed after; ``badname``: names ``useradd`` would
    otherwise refuse (``user@domain``)."""
    made = []
    try:
        for u in names:
            if run("id", u).returncode != 0:
                done = run("useradd", *(["--badname"] if badname else []), "--no-create-home",
                            "--no-user-group", "--shell", "/usr/sbin/nologin", "--home-dir",
                            str(homes / u), u)
                assert done.returncode == 0, done.stderr
                made.append(u)
        ids = {u: ids_of(u) for u in names}
        for u, (uid, gid) in ids.items():
            home = homes / u
            home.mkdir(parents=True, exist_ok=True)
            os.chown(home, uid, gid)
            home.chmod(0o750)
        yield ids
    finally:
        for u in made:
            run("userdel", u)


@contextlib.contextmanager
def passable_folder(prefix: str) -> Iterator[Path]:
    """A new folder every user may pass through (0755), for homes and roots; removed after."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
