"""How a user's container is to be run (command, environment, mounts, ports ...) and the rules
every such request meets, wherever it comes from: a want file read by ds01d, or a create on
ds01's Docker socket. One rule set serves both (:func:`problems`); what Docker is finally
sent is built from these values alone (``ds01d/core/engine.py``), never passed through.

Pure: no I/O. Whether a bind source is really the user's is looked at on disk by
``ds01d/userpaths.py`` when the container is made.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("devcontainer", "compose", "docker", "api")
"""How a container came to be: what ``container_types`` in resource-limits.yaml names."""
RESTART = ("no", "on-failure", "unless-stopped", "always")
MOUNT_TYPES = ("bind", "volume", "tmpfs")
PROTOCOLS = ("tcp", "udp", "sctp")
MIN_HOST_PORT = 1024
"""Ports below this are the machine's own services' (ssh, ...): never published for a user."""

MAX_ARGS, MAX_ENV, MAX_LABELS, MAX_MOUNTS, MAX_PORTS = 256, 512, 128, 64, 64
MAX_TEXT = 65536
"""Longest argument, environment entry or label value (characters)."""

GPU_ENV = ("NVIDIA_VISIBLE_DEVICES", "NVIDIA_MIG_CONFIG_DEVICES", "NVIDIA_MIG_MONITOR_DEVICES")
"""Variables the NVIDIA runtime reads to expose GPUs: only ds01 sets them (by allocating)."""
RESERVED_LABEL = "ds01."
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}\Z")
ENV_NAME = re.compile(r"^[^=\0\n]+\Z")
SIGNAL = re.compile(r"^(SIG)?[A-Z0-9+-]{1,16}\Z|^[0-9]{1,2}\Z")


@dataclass(frozen=True)
class Mount:
    """``bind``: a host path (under the user's home, theirs); ``volume``: one of the user's
    named volumes, by the name they gave; ``tmpfs``: memory (``source`` empty)."""

    type: str
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class Port:
    """A container port published on 127.0.0.1 (``host_port`` None: Docker picks one)."""

    container_port: int
    protocol: str = "tcp"
    host_port: int | None = None


@dataclass(frozen=True)
class ContainerSettings:
    """What a user may choose about a container beyond image and resources."""

    kind: str = "docker"
    command: tuple[str, ...] | None = None
    """``None``: the image's (for a ds01 want without settings: ``sleep infinity``)."""
    entrypoint: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    mounts: tuple[Mount, ...] = ()
    volumes: tuple[str, ...] = ()
    """Anonymous volumes (container paths)."""
    ports: tuple[Port, ...] = ()
    working_dir: str | None = None
    hostname: str | None = None
    network: str | None = None
    """``None``: Docker's default network; ``none``: no network."""
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    attach: tuple[str, ...] = ()
    """Streams the client attaches to (``stdin``, ``stdout``, ``stderr``)."""
    init: bool = False
    auto_remove: bool = False
    restart: str = "no"
    stop_signal: str | None = None
    stop_timeout: int | None = None
    start: str = "ds01d"
    """Who starts it once made: ``ds01d``, or ``client`` (the Docker client that asked
    attaches first, then starts it, as ``docker run`` does)."""
    workspace: bool = False
    """Also ``~/workspace/NAME`` at /workspace, made as the owner (``ds01 want``)."""


def _text_problems(what: str, items: tuple[str, ...], most: int) -> list[str]:
    if len(items) > most:
        return [f"{what}: more than {most} entries"]
    if any(len(i) > MAX_TEXT or "\0" in i for i in items):
        return [f"{what}: an entry is longer than {MAX_TEXT} characters or holds a NUL"]
    return []


def _plain_container_path(path: str) -> bool:
    return (path.startswith("/") and path != "/" and posixpath.normpath(path) == path
            and not path.startswith("//") and "\0" not in path and len(path) <= 4096)


def mount_problems(m: Mount, home: str) -> list[str]:
    """What is wrong with one mount, before looking at the disk."""
    from ds01d.userpaths import lexical_problem

    out = []
    if m.type not in MOUNT_TYPES:
        out.append(f"mount type {m.type!r} is not allowed (only {', '.join(MOUNT_TYPES)})")
    if not _plain_container_path(m.target):
        out.append(f"mount target {m.target!r} must be a plain absolute path other than /")
    if m.type == "bind":
        problem = lexical_problem(m.source, home)
        if problem is not None:
            out.append(f"bind mount: {problem}")
    elif m.type == "volume" and not VOLUME_NAME.match(m.source):
        out.append(f"volume {m.source!r}: a name of letters, digits, _ . - (an anonymous "
                   "volume has none)")
    elif m.type == "tmpfs" and m.source:
        out.append("a tmpfs mount has no source")
    return out


def port_problems(p: Port) -> list[str]:
    out = []
    if not 1 <= p.container_port <= 65535 or p.protocol not in PROTOCOLS:
        out.append(f"port {p.container_port}/{p.protocol} is not a valid port")
    if p.host_port is not None and not MIN_HOST_PORT <= p.host_port <= 65535:
        out.append(f"host port {p.host_port}: only {MIN_HOST_PORT}-65535 (on 127.0.0.1)")
    return out


def _label_problems(labels: tuple[tuple[str, str], ...]) -> list[str]:
    out = _text_problems("labels", tuple(v for _, v in labels), MAX_LABELS)
    for key, _ in labels:
        if key.lower().startswith(RESERVED_LABEL):
            out.append(f"label {key!r}: labels starting with ds01. are set by ds01 alone")
        elif not key or len(key) > 256:
            out.append(f"label {key[:40]!r}: 1 to 256 characters")
    return out


def _env_problems(env: tuple[str, ...]) -> list[str]:
    out = _text_problems("env", env, MAX_ENV)
    for entry in env:
        name = entry.split("=", 1)[0]
        if not ENV_NAME.match(name):
            out.append(f"env {entry[:40]!r}: NAME=VALUE")
        elif name.upper() in GPU_ENV:
            out.append(f"env {name}: GPUs come only through ds01 (--gpus or ds01 want --gpus)")
    return out


def problems(s: ContainerSettings, *, home: str) -> list[str]:
    """Every rule a container's settings must meet (empty: it may be made)."""
    out: list[str] = []
    if s.kind not in KINDS:
        out.append(f"type {s.kind!r} is not one of {', '.join(KINDS)}")
    for what, args in (("command", s.command), ("entrypoint", s.entrypoint)):
        out += _text_problems(what, args or (), MAX_ARGS)
    out += _env_problems(s.env) + _label_problems(s.labels)
    if len(s.mounts) + len(s.volumes) > MAX_MOUNTS or len(s.ports) > MAX_PORTS:
        out.append(f"at most {MAX_MOUNTS} mounts and {MAX_PORTS} ports")
    for m in s.mounts:
        out += mount_problems(m, home)
    out += [f"volume target {v!r} must be a plain absolute path other than /"
            for v in s.volumes if not _plain_container_path(v)]
    for p in s.ports:
        out += port_problems(p)
    if s.working_dir is not None and not _plain_container_path(s.working_dir) \
            and s.working_dir != "/":
        out.append(f"working dir {s.working_dir!r} must be a plain absolute path")
    if s.hostname is not None and not HOSTNAME.match(s.hostname):
        out.append(f"hostname {s.hostname!r}: letters, digits, . and -")
    if s.network not in (None, "none"):
        out.append(f"network {s.network!r}: only Docker's default network or none")
    if s.restart not in RESTART:
        out.append(f"restart policy {s.restart!r} is not one of {', '.join(RESTART)}")
    if s.stop_signal is not None and not SIGNAL.match(s.stop_signal):
        out.append(f"stop signal {s.stop_signal!r} is not a signal name")
    if s.stop_timeout is not None and not 0 <= s.stop_timeout <= 3600:
        out.append("stop timeout: 0 to 3600 seconds")
    if s.start not in ("ds01d", "client"):
        out.append(f"start {s.start!r}: ds01d or client")
    if any(a not in ("stdin", "stdout", "stderr") for a in s.attach):
        out.append("attach: stdin, stdout, stderr")
    return out


def bind_sources(s: ContainerSettings) -> tuple[str, ...]:
    """Host paths to look at on disk before the container is made."""
    return tuple(m.source for m in s.mounts if m.type == "bind")


def to_data(s: ContainerSettings) -> dict[str, Any]:
    """The ``container:`` mapping of a want file (only what differs from the defaults)."""
    base = ContainerSettings()
    out: dict[str, Any] = {}
    if s.kind != base.kind:
        out["container_type"] = s.kind
    for name in ("command", "entrypoint", "env", "volumes", "working_dir", "hostname",
                 "network", "tty", "open_stdin", "stdin_once", "attach", "init",
                 "auto_remove", "restart", "stop_signal", "stop_timeout", "start", "workspace"):
        value = getattr(s, name)
        if value != getattr(base, name):
            out[name] = list(value) if isinstance(value, tuple) else value
    if s.labels:
        out["labels"] = dict(s.labels)
    if s.mounts:
        out["mounts"] = [{"type": m.type, "source": m.source, "target": m.target,
                          "read_only": m.read_only} for m in s.mounts]
    if s.ports:
        out["ports"] = [{"container_port": p.container_port, "protocol": p.protocol,
                         "host_port": p.host_port} for p in s.ports]
    return out


def _args(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in value)


def from_data(data: Mapping[str, Any]) -> ContainerSettings:
    """The settings of a want file's ``container:`` mapping (already schema-checked)."""
    return ContainerSettings(
        kind=str(data.get("container_type", "docker")), command=_args(data.get("command")),
        entrypoint=_args(data.get("entrypoint")), env=tuple(data.get("env") or ()),
        labels=tuple(sorted((str(k), str(v)) for k, v in (data.get("labels") or {}).items())),
        mounts=tuple(Mount(str(m["type"]), str(m.get("source", "")), str(m["target"]),
                           bool(m.get("read_only", False))) for m in data.get("mounts") or ()),
        volumes=tuple(data.get("volumes") or ()),
        ports=tuple(Port(int(p["container_port"]), str(p.get("protocol", "tcp")),
                         p.get("host_port")) for p in data.get("ports") or ()),
        working_dir=data.get("working_dir"), hostname=data.get("hostname"),
        network=data.get("network"), tty=bool(data.get("tty", False)),
        open_stdin=bool(data.get("open_stdin", False)),
        stdin_once=bool(data.get("stdin_once", False)), attach=tuple(data.get("attach") or ()),
        init=bool(data.get("init", False)), auto_remove=bool(data.get("auto_remove", False)),
        restart=str(data.get("restart", "no")), stop_signal=data.get("stop_signal"),
        stop_timeout=data.get("stop_timeout"), start=str(data.get("start", "ds01d")),
        workspace=bool(data.get("workspace", False)))
