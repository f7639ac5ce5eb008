"""``ds01 shell NAME``: a shell in your container, through ds01's Docker socket.

A container ds01 stopped (idle, runtime) while its want stands is asked for again first, and
the shell opens once ds01d has it running again (or says where it waits in the queue).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ds01d.cli.common import caller, now, paths
from ds01d.errors import InvalidInput, UsageError
from ds01d.paths import Paths

WAIT_S = 60.0
SHELL = "if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l"


def _status(p: Paths, user: str, name: str) -> dict[str, object] | None:
    from ds01d.cli.status import status_rows

    rows = status_rows(p, user, name)
    return rows[0] if rows else None


def _ask_again(p: Paths, user: str, name: str) -> None:
    """Write the want again with a new time: ds01d takes it as asked again."""
    from ds01d.cli.want import rewrite

    asked = now(p)
    rewrite(p, user, name, lambda want: want.replace(requested_at=asked))


def _wait_running(p: Paths, user: str, name: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    said = ""
    while True:
        status = _status(p, user, name) or {}
        phase, reason = status.get("phase"), str(status.get("reason") or "")
        if phase == "Running":
            return
        if phase == "Failed":
            raise InvalidInput(f"{name} cannot start: {reason}")
        line = f"{name}: {phase or 'waiting for ds01d'} ({reason})" if reason else ""
        if line and line != said:
            print(line, file=sys.stderr)
            said = line
        if time.monotonic() > deadline:
            where = status.get("queue_position")
            raise InvalidInput(f"{name} is not running yet" + (
                f" (queue position {where})" if where else "") + f": see ds01 status {name}")
        time.sleep(0.5)


def socket_of(p: Paths) -> str:
    """ds01's Docker socket: ``DOCKER_HOST`` when it names one, else the root's."""
    host = os.environ.get("DOCKER_HOST", "")
    return host if host.startswith("unix://") else f"unix://{p.under('run/ds01/docker.sock')}"


def run_shell(args: argparse.Namespace) -> int:
    from ds01d.names import is_want_name

    p = paths(args)
    user = caller(args, p)
    name = args.name
    if not is_want_name(name):
        raise InvalidInput(f"{name!r} is not a container name")
    if not 0 <= args.wait <= 86400:
        raise UsageError("--wait: 0 to 86400 seconds")
    status = _status(p, user, name)
    wanted = status is not None and status.get("phase") != "Failed"
    if status is not None and status.get("phase") == "Stopped":
        _ask_again(p, user, name)
        print(f"asked ds01d to start {name} again", file=sys.stderr)
    if wanted:
        _wait_running(p, user, name, args.wait)
    tty = ["-it"] if sys.stdin.isatty() else ["-i"]
    workdir = ["-w", "/workspace"] if wanted else []
    command = ["sh", "-c", SHELL] if not args.command else list(args.command)
    argv = ["docker", "exec", *tty, *workdir, name, *command]
    env = dict(os.environ, DOCKER_HOST=socket_of(p))
    try:
        os.execvpe("docker", argv, env)
    except OSError as e:
        raise InvalidInput(f"cannot run docker: {e.strerror}") from None
    return 0  # not reached
