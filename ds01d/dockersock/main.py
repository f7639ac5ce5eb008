"""``ds01-socket [--root DIR]``: serve ``<root>/run/ds01/docker.sock`` (or the socket systemd
hands over) in front of the Docker Engine named by ``DOCKER_HOST`` (default the system's).

It runs apart from ds01d: neither takes the other down. It reads the same configuration (the
last valid one while an edit is invalid) to know each caller's group, slice and limits.
"""

from __future__ import annotations

import argparse
import asyncio
import grp
import logging
import os
import pwd
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ds01d import __version__
from ds01d.config.effective import Nss
from ds01d.config.model import DesiredConfig
from ds01d.core.naming import user_slice
from ds01d.dockersock.api import Refuse
from ds01d.dockersock.judge import AsWant, Caller
from ds01d.dockersock.server import Counts, Looker, Server, error_body
from ds01d.paths import Paths
from ds01d.runtime.desired import ConfigSource, EffectiveCache

log = logging.getLogger("ds01-socket")
DEFAULT_DOCKER = "unix:///var/run/docker.sock"
SD_LISTEN_FDS_START = 3
POLL_S = 0.1


def upstream_path(docker_host: str | None) -> str:
    """The Unix socket of the Docker Engine ``DOCKER_HOST`` names."""
    host = docker_host or DEFAULT_DOCKER
    if not host.startswith("unix://"):
        raise SystemExit(f"ds01-socket: DOCKER_HOST must be a unix:// socket, not {host}")
    return host.removeprefix("unix://")


def listening_socket(paths: Paths) -> socket.socket:
    """The socket systemd passed (socket activation), or ``run/ds01/docker.sock`` made here."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and \
            int(os.environ.get("LISTEN_FDS", "0")) >= 1:
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
        sock.setblocking(False)
        return sock
    path = paths.under("run/ds01/docker.sock")
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o666)  # everyone may call; who they are comes from SO_PEERCRED
    sock.listen(128)
    sock.setblocking(False)
    return sock


@dataclass
class Callers:
    """Who a uid is and what applies to them, from the lab's configuration."""

    paths: Paths
    config: ConfigSource = field(init=False)
    cache: EffectiveCache = field(default_factory=EffectiveCache)
    nss: Nss | None = None

    def __post_init__(self) -> None:
        self.config = ConfigSource(self.paths.etc)

    def __call__(self, uid: int, gid: int) -> Caller | Refuse:
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            return Refuse(f"uid {uid} has no user name on this host")
        config = self.config.load()
        if config is None:
            return Refuse("ds01's configuration cannot be read; ask an admin (ds01 "
                          "check-config)", 503)
        from ds01d.adapters.nss import SystemNss

        user = entry.pw_name
        eff = self.cache.get(config, user, now=datetime.now(UTC), nss=self.nss or SystemNss())
        profiles = sorted({p for g in (config.mig_layout.gpus.values() if config.mig_layout
                                       else ()) for p in g.devices})
        return Caller(uid=uid, gid=entry.pw_gid, user=user, home=entry.pw_dir,
                      slice=slice_of(self.cache, config, user, eff.group), limits=eff.limits,
                      group=eff.group, admin=uid == 0 or is_admin(user, config.socket_admins),
                      mig_profiles=tuple(profiles))


def slice_of(cache: EffectiveCache, config: DesiredConfig, user: str, group: str | None
             ) -> str:
    """The caller's slice, named as ds01d names it (``naming.user_parts``: the short form
    unless another name the files list has it). Two accounts that share a short form and that
    no file lists are told apart by ds01d only once both are active; here the caller's alone
    is known."""
    return user_slice(group or "default", user, cache.slice_parts(config, [user])[user])


def is_admin(user: str, groups: Sequence[str]) -> bool:
    for name in groups:
        try:
            g = grp.getgrnam(name)
        except KeyError:
            continue
        if user in g.gr_mem or pwd.getpwnam(user).pw_gid == g.gr_gid:
            return True
    return False


def write_want(paths: Paths, want: Any, caller: Caller, *, again: bool = False) -> str | None:
    """Write the caller's want into their folder (``again``: as a new version, which ds01d
    takes as asked again): why not, or None."""
    from ds01d.dockersock import wantfile
    from ds01d.errors import InvalidInput

    try:
        wantfile.write(paths.under("var/lib/ds01/wants"), want, uid=caller.uid, gid=caller.gid,
                       again=again)
    except InvalidInput as e:
        return str(e)
    except OSError as e:
        return f"cannot write your want: {e.strerror}"
    return None


def read_status(paths: Paths, user: str, name: str) -> dict[str, Any] | None:
    """ds01d's status of the caller's want: a small regular file read without following links
    or blocking (the folder is the user's: they may plant a FIFO or a link there)."""
    import json

    from ds01d.statusfiles import MAX_STATUS, read_small

    raw = read_small(os.path.join(paths.under("var/lib/ds01/status"), user, f"{name}.json"),
                     MAX_STATUS)
    try:
        body = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


@dataclass
class Wants:
    """A create with GPUs: the caller's want, then ds01d's container (or the queue)."""

    paths: Paths
    look: Looker
    wait_s: float = 20.0
    """How long a create with GPUs waits for ds01d to make its container."""

    async def __call__(self, verdict: AsWant, caller: Caller) -> tuple[int, bytes]:
        want = verdict.want
        problem = await asyncio.to_thread(write_want, self.paths, want, caller,
                                          again=verdict.again)
        if problem is not None:
            return 400, error_body(f"ds01: {problem}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while loop.time() < deadline:
            ready = ("running",) if verdict.again else ("created", "running")
            for c in await self.look.containers(caller.user):
                if c.want_name == want.name and c.managed and c.state in ready:
                    if verdict.again:
                        return 204, b""
                    return 201, (f'{{"Id": "{c.id}", "Warnings": []}}\n').encode()
            status = read_status(self.paths, caller.user, want.name)
            if status is not None and status.get("phase") == "Failed":
                return 400, error_body(f"ds01: {want.name}: {status.get('reason')}")
            if status is not None and status.get("queue_position"):
                return 409, error_body(
                    f"ds01: {want.name} is queued (position {status['queue_position']}): "
                    f"{status.get('reason')}. It is made when a device is free; see "
                    f"`ds01 status {want.name}`, then run this again")
            await asyncio.sleep(POLL_S)
        return 504, error_body(f"ds01: ds01d has not made {want.name} yet: see "
                               f"`ds01 status {want.name}` and run this again")


def _refused_logger() -> Any:
    from ds01d.adapters import journal

    def refused(caller: Caller | None, uid: int, what: str, why: str) -> None:
        user = caller.user if caller else f"uid {uid}"
        ev = {"event_type": "socket.refuse", "user": caller.user if caller else None,
              "details": {"request": what, "reason": why, "uid": uid}}
        message = f"refused {user}: {what}: {why}"
        if journal.available():
            journal.send(ev, message, identifier="ds01-socket")
        else:
            log.warning("%s", message)

    return refused


def serve_metrics(counts: Counts, port: int) -> None:
    if not port:
        return
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.core import CounterMetricFamily

    class Collector:
        def collect(self) -> Any:
            family = CounterMetricFamily("ds01_socket_requests", "Requests on ds01's Docker "
                                         "socket, by outcome (allowed, refused, want, error).",
                                         labels=["outcome"])
            for outcome in ("allowed", "refused", "want", "error"):
                family.add_metric([outcome], counts.by_outcome.get(outcome, 0))
            yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    try:
        start_http_server(port, addr="127.0.0.1", registry=registry)  # names users
    except OSError as e:
        log.error("no metrics: cannot listen on port %d (%s)", port, e)


async def run(paths: Paths, upstream: str, metrics_port: int) -> int:
    look = Looker(upstream, paths)
    server = Server(upstream, look, Callers(paths), Wants(paths, look))
    server.refused = _refused_logger()
    serve_metrics(server.counts, metrics_port)
    sock = listening_socket(paths)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listener = await asyncio.start_unix_server(server.accept, sock=sock)
    from ds01d.adapters import notify

    notify.notify(ready=1, status="serving")
    log.info("ds01-socket %s serving (Docker at %s)", __version__, upstream)
    async with listener:
        await stop.wait()
    notify.notify(stopping=1)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ds01-socket", description="ds01's Docker API socket: "
                                "users' containers, as them, within their limits.")
    p.add_argument("--root", metavar="DIR", help="root prefix of every path (env DS01_ROOT)")
    p.add_argument("--metrics-port", type=int, default=9102, metavar="PORT",
                   help="Prometheus metrics on PORT (default %(default)s; 0: off)")
    p.add_argument("--version", action="version", version=f"ds01-socket {__version__}")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="ds01-socket: %(levelname)s %(message)s")
    paths = Paths.from_option(args.root)
    return asyncio.run(run(paths, upstream_path(os.environ.get("DOCKER_HOST")),
                           args.metrics_port))
