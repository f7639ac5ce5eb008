"""Containers through the Docker Engine API (the docker SDK; ``DOCKER_HOST`` honoured).

A ds01 container is created with ``cgroup_parent`` = its owner's slice, the ``ds01.*`` labels,
a device request for exactly its allocated GPU/MIG UUIDs (never ``all``, never privileged),
NanoCpus, Memory, MemorySwap, ShmSize, PidsLimit, the owner's uid:gid, no new privileges, no
capabilities, and their workspace at ``/workspace`` (made as the owner, see ``asuser``).
Devices are read back from ``HostConfig.DeviceRequests``; a container ds01 did
not create with ``--privileged`` or ``NVIDIA_VISIBLE_DEVICES=all`` can use every GPU.
CPU use comes from the container's cgroup (cpuacct v1 or cpu.stat v2), as a rate between two
looks. ref: Docker Engine API v1.41 (ContainerCreate, ContainerInspect, ContainerList).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from ds01d.adapters.asuser import Ident, make_dirs, mounted_ident, owned_dir, walk_real_path
from ds01d.adapters.base import AdapterError, PermanentError, TemporaryError
from ds01d.core.actions import ContainerSpec
from ds01d.core.engine import create_body
from ds01d.core.model import LABEL_WORKSPACE, Container

ZERO_TIME = "0001-01-01T00:00:00Z"


def workspace(spec: ContainerSpec) -> tuple[str, Ident]:
    """The bind source of ``/workspace``: made as the owner, then checked as it is (every part
    under the home a folder of the owner's, no link), named by its real path, with its
    identity. Docker is given a bind mount (``Mounts``), which never creates a missing source
    as root; after the start, what it mounted is compared with that identity."""
    if spec.uid is None or spec.gid is None or not spec.home:
        raise PermanentError(f"{spec.user} has no known uid and home: no workspace")
    rel = os.path.relpath(spec.workspace, spec.home)
    if rel.startswith("..") or os.path.isabs(rel):
        raise PermanentError(f"the workspace {spec.workspace} is not under {spec.home}")
    make_dirs(spec.uid, spec.gid, spec.workspace)
    return owned_dir(spec.home, rel.split("/"), spec.uid)


def bind_problem(spec: ContainerSpec) -> str | None:
    """A bind source of a container made from settings that is not its owner's (as it is
    now): the rule of ``ds01d/userpaths.py``, which the Docker socket applies too."""
    from ds01d.config.settings import bind_sources
    from ds01d.userpaths import owned_path_problem

    if spec.settings is None:
        return None
    if spec.uid is None or not spec.home:
        return f"{spec.user} has no known uid and home"
    for source in bind_sources(spec.settings):
        problem = owned_path_problem(source, uid=spec.uid, home=spec.home)
        if problem is not None:
            return f"bind mount: {problem}"
    return None


def _when(text: str | None) -> datetime | None:
    if not text or text.startswith("0001-01-01"):
        return None
    # Docker gives nanoseconds: 2026-11-22T18:00:00.123456789Z
    head, _, frac = text.rstrip("Z").partition(".")
    when = datetime.fromisoformat(head).replace(tzinfo=UTC)
    return when.replace(microsecond=int((frac + "000000")[:6])) if frac else when


def _error(e: Exception, what: str) -> AdapterError:
    if isinstance(e, ImageNotFound | NotFound):
        return PermanentError(f"{what}: {getattr(e, 'explanation', None) or e}")
    if isinstance(e, APIError):
        code = e.status_code or 500
        text = f"{what}: {e.explanation or e}"
        return PermanentError(text) if 400 <= code < 500 and code != 409 else TemporaryError(text)
    return TemporaryError(f"{what}: {e}")


def slice_path(name: str) -> str:
    """Where systemd puts a slice: ``ds01-student-alice.slice`` ->
    ``ds01.slice/ds01-student.slice/ds01-student-alice.slice``."""
    parts = name.removesuffix(".slice").split("-")
    return "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))


class CpuMeter:
    """CPU use of a container, percent of one CPU, from its cgroup between two looks."""

    def __init__(self, cgroup_root: Path = Path("/sys/fs/cgroup")) -> None:
        self.root = cgroup_root
        self.last: dict[str, tuple[float, int]] = {}

    def _usage_ns(self, cid: str, parent: str) -> int | None:
        scope = f"{slice_path(parent)}/docker-{cid}.scope" if parent.endswith(".slice") \
            else f"docker/{cid}"
        v1 = self.root / "cpuacct" / scope / "cpuacct.usage"
        v2 = self.root / scope / "cpu.stat"
        try:
            if v1.exists():
                return int(v1.read_text())
            for line in v2.read_text().splitlines():
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) * 1000
        except (OSError, ValueError):
            return None
        return None

    def percent(self, cid: str, parent: str) -> float:
        used = self._usage_ns(cid, parent)
        if used is None:
            return 0.0
        now = time.monotonic()
        before = self.last.get(cid)
        self.last[cid] = (now, used)
        if before is None or now <= before[0]:
            return 0.0
        return 100.0 * (used - before[1]) / ((now - before[0]) * 1e9)


class NetMeter:
    """Network traffic of a container, received and sent, bytes per second between two
    looks, from the counters of its network namespace (``/proc/<pid>/net/dev``, loopback
    left out). A container on the host's network is not measured (``None``)."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc
        self.last: dict[str, tuple[float, int]] = {}

    def _bytes(self, pid: int) -> int | None:
        try:
            with open(self.proc / str(pid) / "net" / "dev", "rb") as f:
                text = f.read(1 << 16).decode("ascii", errors="replace")
        except OSError:
            return None
        total = 0
        for line in text.splitlines()[2:]:
            name, _, counters = line.partition(":")
            fields = counters.split()
            if name.strip() == "lo" or len(fields) < 9:
                continue
            if fields[0].isdigit() and fields[8].isdigit():
                total += int(fields[0]) + int(fields[8])
        return total

    def rate(self, cid: str, pid: int, network_mode: str) -> float | None:
        if network_mode == "host" or pid <= 0:
            return None
        used = self._bytes(pid)
        if used is None:
            return None
        now = time.monotonic()
        before = self.last.get(cid)
        self.last[cid] = (now, used)
        if before is None or now <= before[0] or used < before[1]:
            return 0.0
        return (used - before[1]) / (now - before[0])


def _visible(env: list[str]) -> str | None:
    for item in env:
        if item.startswith("NVIDIA_VISIBLE_DEVICES="):
            return item.partition("=")[2].strip()
    return None


def gpu_request(host: dict[str, Any], env: list[str]) -> tuple[tuple[str, ...], int, bool]:
    """What GPUs Docker and the NVIDIA runtime give a container: (device references as
    written: UUIDs, indices, ``0:1``; a count, -1 for all; whether it can use every GPU).

    Device requests decide (``--gpus``: IDs, or a count the runtime turns into the first N
    GPUs). Without one, ``NVIDIA_VISIBLE_DEVICES`` decides under the NVIDIA runtime (as the
    default runtime too: Docker records it in ``HostConfig.Runtime``). ``--privileged`` sees
    every device. ref: Docker Engine API v1.41 HostConfig.DeviceRequests, Runtime;
    NVIDIA Container Toolkit, NVIDIA_VISIBLE_DEVICES.
    """
    requests = [r for r in host.get("DeviceRequests") or []
                if r.get("Driver") == "nvidia" or any("gpu" in caps for caps in
                                                      r.get("Capabilities") or [])]
    refs = [str(d) for r in requests for d in r.get("DeviceIDs") or []]
    counts = [int(r.get("Count") or 0) for r in requests]
    count = -1 if -1 in counts else sum(c for c in counts if c > 0)
    if not requests and host.get("Runtime") in ("nvidia", None, ""):
        visible = _visible(env)
        if visible == "all":
            count = -1
        elif visible and visible not in ("none", "void"):
            refs = [d for d in visible.split(",") if d.strip()]
    every = bool(host.get("Privileged")) or "all" in refs or count == -1
    return tuple(r for r in refs if r != "all"), max(count, 0), every


class DockerAdapter:
    """The :class:`ds01d.adapters.base.Docker` protocol over the Docker Engine API."""

    def __init__(self, client: Any = None, *, cpu: CpuMeter | None = None,
                 net: NetMeter | None = None) -> None:
        self._client = client
        self.cpu = cpu or CpuMeter()
        self.net = net or NetMeter()
        self.inspected: dict[tuple[str, str], dict[str, Any]] = {}
        """Inspections by (id, state), kept while nothing happened to the container: a
        container event (from :meth:`wait_for_events`) or a change of state drops its own."""
        self.changed: set[str] = set()
        """Containers something happened to since the last look (filled by the events
        thread: a start, a stop, Docker's own restart...)."""
        self._lock = threading.Lock()

    @property
    def api(self) -> Any:
        if self._client is None:
            try:
                self._client = docker.from_env(timeout=60)
            except DockerException as e:
                raise TemporaryError(f"cannot reach Docker: {e}") from None
        return self._client.api

    def list_containers(self) -> list[Container]:
        try:
            summaries = self.api.containers(all=True)
            self._forget_changed(summaries)
            out = [self._observe(s) for s in summaries]
        except (APIError, DockerException, OSError) as e:
            raise _error(e, "listing containers") from None
        live = {s["Id"] for s in summaries}  # inspections of the gone: _forget_changed
        for meter in (self.cpu, self.net):  # their last looks: dropped with them
            meter.last = {k: v for k, v in meter.last.items() if k in live}
        return [c for c in out if c is not None]

    def _forget_changed(self, summaries: list[dict[str, Any]]) -> None:
        """Drop the inspections of containers that changed: an event said so, or their state
        is not the one inspected (running -> exited -> running between two looks is caught by
        the events; without them, a state change still is)."""
        with self._lock:
            changed, self.changed = self.changed, set()
        states = {s["Id"]: s.get("State", "") for s in summaries}
        self.inspected = {k: v for k, v in self.inspected.items()
                          if k[0] not in changed and states.get(k[0]) == k[1]}

    def _inspect(self, summary: dict[str, Any]) -> dict[str, Any] | None:
        key = (summary["Id"], summary.get("State", ""))
        if key not in self.inspected:
            try:
                self.inspected[key] = self.api.inspect_container(summary["Id"])
            except NotFound:
                return None  # removed meanwhile
        return self.inspected[key]

    def _observe(self, summary: dict[str, Any]) -> Container | None:
        info = self._inspect(summary)
        if info is None:
            return None
        host, state, config = info["HostConfig"], info["State"], info["Config"]
        devices, count, every = gpu_request(host, config.get("Env") or [])
        parent = host.get("CgroupParent") or ""
        running = state.get("Status") == "running"
        net = self.net.rate(info["Id"], int(state.get("Pid") or 0),
                            str(host.get("NetworkMode") or "")) if running else None
        return Container(
            id=info["Id"], name=info["Name"].lstrip("/"), image=config.get("Image", ""),
            labels=dict(config.get("Labels") or {}), state=state.get("Status", "unknown"),
            devices=devices, created_at=_when(info["Created"]) or datetime.now(UTC),
            started_at=_when(state.get("StartedAt")),
            finished_at=None if running else _when(state.get("FinishedAt")),
            all_gpus=every, cgroup_parent=parent,
            cpu_percent=self.cpu.percent(info["Id"], parent) if running else 0.0,
            exit_code=None if running else state.get("ExitCode"), net_bytes_per_s=net,
            gpu_count=count)

    def create_and_start(self, spec: ContainerSpec) -> str:
        """Create the container from the body ds01 checked (``core/engine.py``; the same the
        Docker socket sends), then start it, unless its owner's Docker client starts it.
        A plain ds01 container gets its workspace, made as the owner and checked as it is."""
        ident: Ident | None = None
        if (problem := bind_problem(spec)) is not None:
            raise PermanentError(f"creating {spec.docker_name}: {problem}")
        if spec.settings is None or spec.settings.workspace:
            source, ident = workspace(spec)
            spec = replace(spec, workspace=source,
                           labels={**spec.labels, LABEL_WORKSPACE: source})
        try:
            created = self.api.create_container_from_config(create_body(spec),
                                                            spec.docker_name)
        except (APIError, DockerException) as e:
            raise _error(e, f"creating {spec.docker_name}") from None
        cid = str(created["Id"])
        if spec.settings is not None and spec.settings.start == "client":
            return cid  # its owner's Docker client starts it (start() checks the workspace)
        if ident is not None:
            self._start_checked(cid, ident)
        else:
            self._start(cid)
        return cid

    def start(self, container_id: str) -> None:
        """Start a container; a ds01 container's workspace is checked again first (no part of
        its path may have become a link) and after (Docker mounted that very folder)."""
        try:
            info = self.api.inspect_container(container_id)
        except (APIError, DockerException) as e:
            raise _error(e, f"inspecting {container_id[:12]}") from None
        source = (info["Config"].get("Labels") or {}).get(LABEL_WORKSPACE)
        if not source:
            self._start(container_id)
            return
        uid = int(str(info["Config"].get("User") or "-1").split(":", 1)[0])
        self._start_checked(container_id, walk_real_path(source, uid))

    def _start(self, container_id: str) -> None:
        try:
            self.api.start(container_id)
        except (APIError, DockerException) as e:
            raise _error(e, f"starting {container_id[:12]}") from None

    def _start_checked(self, container_id: str, ident: Ident) -> None:
        self._start(container_id)
        try:
            pid = int(self.api.inspect_container(container_id)["State"].get("Pid") or 0)
        except (APIError, DockerException) as e:
            raise _error(e, f"inspecting {container_id[:12]}") from None
        try:
            seen = mounted_ident(pid, "/workspace") if pid else None
        except PermissionError:
            return  # not allowed to look (see mounted_ident)
        if pid and seen is not None and seen != ident:
            with contextlib.suppress(APIError, DockerException):
                self.api.remove_container(container_id, force=True)
            raise PermanentError(f"{container_id[:12]}: the workspace changed while the "
                                 "container started (a link was put in its place); removed")

    def stop(self, container_id: str, grace_s: float) -> None:
        try:
            self.api.stop(container_id, timeout=int(grace_s))
        except (APIError, DockerException) as e:
            raise _error(e, f"stopping {container_id[:12]}") from None

    def remove(self, container_id: str) -> None:
        try:
            self.api.remove_container(container_id)
        except NotFound:
            return
        except (APIError, DockerException) as e:
            raise _error(e, f"removing {container_id[:12]}") from None

    def wait_for_events(self, wake: Any, stop: Any) -> None:
        """Wake the loop on every container event, until ``stop`` is set; reconnects."""
        while not stop.is_set():
            try:
                for ev in self.api.events(decode=True, filters={"type": "container"}):
                    if isinstance(ev, dict) and isinstance(ev.get("id"), str):
                        with self._lock:
                            self.changed.add(ev["id"])
                    wake.set()
                    if stop.is_set():
                        return
            except Exception:  # Docker restarting: try again shortly
                stop.wait(2.0)
