"""The simulated host: stateful fakes of systemd, Docker, NVML and /proc over one state.

They behave like the real things where ds01 depends on it: a slice exists once started and
cannot be started twice; a container gets an id, a state and timestamps; a container asking
for a device the host lacks is created but fails at start, as Docker does; MIG instances have
UUIDs and profiles; a stopped container's processes are gone. MIG instances are created and
destroyed with the profiles and placements of the real GPU model (``gpu_models.json``, the
figures NVML reports) and the errors a real driver gives. The state lives in memory for
tests and in ``var/lib/ds01/sim/host.json`` for ``ds01d --simulate`` and ``ds01 sim``, so
other processes see it (:func:`locked` serialises them with ``flock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ds01d.adapters import base
from ds01d.adapters.base import PermanentError, TemporaryError
from ds01d.core.actions import ContainerSpec
from ds01d.core.model import (
    Container,
    Gpu,
    GpuProcess,
    MigInstance,
    MigProfile,
    ProcOwner,
    SliceState,
)
from ds01d.simclock import HOST_FILE, write_now

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC).timestamp()
"""Simulated time starts on a Monday morning; it moves only with ``ds01 sim advance``."""
FIRST_UID = 20001


def _uuid(kind: str, *parts: object) -> str:
    h = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return f"{kind}-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


MODELS = Path(__file__).resolve().parent / "gpu_models.json"


@functools.cache
def model_profiles(model: str) -> tuple[MigProfile, ...]:
    """The MIG profiles a GPU model reports (none: no MIG), from ``gpu_models.json``."""
    for m in json.loads(MODELS.read_text())["models"]:
        if model in m["names"]:
            return tuple(MigProfile(p["name"], p["id"], p["slices"], p["instances"],
                                    p["memory_mib"], tuple((a, b) for a, b in p["placements"]))
                         for p in m["profiles"])
    return ()


def _taken(instances: list[dict[str, Any]]) -> int:
    """The memory slices instances take (a bit each)."""
    return sum(((1 << i["size"]) - 1) << i["start"] for i in instances if "start" in i)


def _first_free(profile: MigProfile, taken: int) -> tuple[int, int] | None:
    return next(((a, b) for a, b in profile.placements if not taken & (((1 << b) - 1) << a)),
                None)


def sim_gpu(index: int, profiles: Mapping[str, int] | None = None,
            model: str = "NVIDIA A100-PCIE-40GB", memory_mib: int = 40960) -> dict[str, Any]:
    """One simulated GPU; ``profiles`` (e.g. ``{"3g.20gb": 2}``) turns MIG on. Each instance
    takes the first free placement of its profile, in order."""
    uuid = _uuid("GPU", "sim", index)
    table = {p.name: p for p in model_profiles(model)}
    instances: list[dict[str, Any]] = []
    gi = 1
    for profile, count in (profiles or {}).items():
        for _ in range(count):
            start, size = _first_free(table[profile], _taken(instances)) or (0, 0)
            instances.append({"uuid": _uuid("MIG", uuid, gi), "profile": profile, "gi": gi,
                              "start": start, "size": size})
            gi += 1
    return {"index": index, "uuid": uuid, "model": model, "memory_mib": memory_mib,
            "mig_enabled": bool(profiles), "mig_pending": None, "instances": instances,
            "utilization": 0.0}


def default_gpus() -> list[dict[str, Any]]:
    """4x A100-PCIE-40GB: GPUs 0-1 whole, GPU 2 MIG 3g.20gb x2, GPU 3 MIG 2g.10gb x3."""
    return [sim_gpu(0), sim_gpu(1), sim_gpu(2, {"3g.20gb": 2}), sim_gpu(3, {"2g.10gb": 3})]


@dataclass
class SimHost:
    """The whole simulated machine, JSON-serialisable."""

    now: float = START
    gpus: list[dict[str, Any]] = field(default_factory=default_gpus)
    slices: dict[str, dict[str, int | None]] = field(default_factory=dict)
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    processes: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    next_id: int = 1
    next_pid: int = 4000
    next_serial: int = 1
    """MIG devices made on this host (a re-created instance gets a new UUID)."""

    def clock(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)

    def uid_of(self, user: str) -> int:
        """A stable uid for a simulated user (any name is valid here)."""
        if user not in self.users:
            self.users[user] = FIRST_UID + len(self.users)
        return self.users[user]

    def user_of(self, uid: int) -> str | None:
        return next((u for u, i in self.users.items() if i == uid), None)

    def device_uuids(self) -> set[str]:
        out = set()
        for g in self.gpus:
            out.add(g["uuid"])
            out.update(i["uuid"] for i in g["instances"])
        return out

    def container(self, ref: str) -> dict[str, Any]:
        """A container by id, id prefix or name."""
        for c in self.containers.values():
            if c["id"].startswith(ref) or c["name"] == ref:
                return c
        raise PermanentError(f"No such container: {ref}")

    def add_process(self, device: str, *, uid: int | None, container_id: str | None,
                    mem_mib: int) -> int:
        if device not in self.device_uuids():
            raise PermanentError(f"no GPU or MIG instance {device} on this host")
        pid = self.next_pid
        self.next_pid += 1
        self.processes[str(pid)] = {"pid": pid, "device": device, "mem": mem_mib, "uid": uid,
                                    "container_id": container_id}
        return pid

    def to_json(self) -> str:
        """The host as JSON (compact: the C encoder, a tenth of the time of an indented one;
        ``ds01 sim show --json`` prints it indented)."""
        return json.dumps(vars(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SimHost:
        return cls(**json.loads(text))


def host_file(sim_dir: Path) -> Path:
    return sim_dir / HOST_FILE


@contextlib.contextmanager
def locked(sim_dir: Path) -> Iterator[SimHost]:
    """The simulated host, loaded under an exclusive lock and saved back on success."""
    path = host_file(sim_dir)
    if not path.exists():
        raise FileNotFoundError(f"no simulated host in {sim_dir} (run: ds01 sim init)")
    with open(sim_dir / "host.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = path.read_text()
        host = SimHost.from_json(text)
        yield host
        after = host.to_json()
        if after != text:  # written only when the machine changed
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(after)
            os.replace(tmp, path)
            write_now(str(sim_dir), host.now)


class SimSystemd:
    """Transient slices as systemd keeps them: present once started, gone once stopped."""

    def __init__(self, host: SimHost) -> None:
        self.host = host

    def list_slices(self) -> list[SliceState]:
        def state(name: str, properties: Mapping[str, int | None]) -> SliceState:
            return _listed(_SLICES, name, None, lambda r: r.properties == properties,
                           lambda: SliceState(name, dict(properties)))

        return [state(n, p) for n, p in sorted(self.host.slices.items())]

    def start_slice(self, name: str, properties: Mapping[str, int | None]) -> None:
        if name in self.host.slices:
            raise TemporaryError(f"Unit {name} already exists.")
        self.host.slices[name] = dict(properties)

    def set_slice_properties(self, name: str, properties: Mapping[str, int | None]) -> None:
        if name not in self.host.slices:
            raise TemporaryError(f"Unit {name} not loaded.")
        self.host.slices[name].update(properties)

    def stop_slice(self, name: str) -> None:
        self.host.slices.pop(name, None)


_WHEN: dict[float, datetime] = {}


def _when(t: float | None) -> datetime | None:
    """A record's time as a datetime (each one made once: a listing repeats them all)."""
    if t is None:
        return None
    known = _WHEN.get(t)
    if known is None:
        known = datetime.fromtimestamp(t, UTC)
        if len(_WHEN) >= 200_000:
            _WHEN.clear()
        _WHEN[t] = known
    return known


_T = TypeVar("_T")
_CONTAINERS: dict[str, tuple[object, Container]] = {}
_SLICES: dict[str, tuple[object, SliceState]] = {}


def _listed(known: dict[str, tuple[object, _T]], key: str, facts: object,
            same: Callable[[_T], bool], make: Callable[[], _T]) -> _T:
    """The record a listing gives for ``key``: the one made last time when its ``facts`` (a
    copy of what it is made of) are equal and ``same`` finds the rest as in that record (its
    own copies: nothing kept twice), else one made now (a listing repeats every container
    and slice, pass after pass, and the planners compare what they see with the last
    pass's)."""
    last = known.get(key)
    if last is not None and last[0] == facts and same(last[1]):
        return last[1]
    made = make()
    if len(known) >= 100_000:
        known.clear()
    known[key] = (facts, made)
    return made


def _facts(c: Mapping[str, Any]) -> tuple[Any, ...]:
    """All a container's record is made of but its labels, copied (a list changed later in
    place is never in the kept facts too)."""
    return (c["name"], c["image"], c["state"], tuple(c["devices"]), c["created_at"],
            c["started_at"], c["finished_at"], c.get("all_gpus"), c.get("cpu_percent", 0.0),
            c["cgroup_parent"], c.get("exit_code"), c.get("net_bps", 0.0),
            c.get("gpu_count", 0))


class SimDocker:
    """Containers with Docker's states and timestamps; ``--gpus`` devices checked at start."""

    def __init__(self, host: SimHost) -> None:
        self.host = host

    def list_containers(self) -> list[Container]:
        return [self._observe(c) for c in sorted(self.host.containers.values(),
                                                 key=lambda c: c["id"])]

    def _observe(self, c: Mapping[str, Any]) -> Container:
        """The container as Docker would list it (the record of the last listing when
        nothing in it changed)."""
        if c["created_at"] is None:  # its time is the clock's: made each time
            return self._record(c)
        return _listed(_CONTAINERS, c["id"], _facts(c), lambda r: r.labels == c["labels"],
                       lambda: self._record(c))

    def _record(self, c: Mapping[str, Any]) -> Container:
        return Container(
            id=c["id"], name=c["name"], image=c["image"], labels=dict(c["labels"]),
            state=c["state"], devices=tuple(c["devices"]), created_at=_when(c["created_at"])
            or self.host.clock(), started_at=_when(c["started_at"]),
            finished_at=_when(c["finished_at"]), all_gpus=bool(c.get("all_gpus")),
            cpu_percent=float(c.get("cpu_percent", 0.0)), cgroup_parent=c["cgroup_parent"],
            exit_code=c.get("exit_code"),
            net_bytes_per_s=float(c.get("net_bps", 0.0)) if c["state"] == "running" else None,
            gpu_count=int(c.get("gpu_count", 0)))

    def create_and_start(self, spec: ContainerSpec) -> str:
        if any(c["name"] == spec.docker_name for c in self.host.containers.values()):
            raise TemporaryError(f"Conflict. The container name /{spec.docker_name} is in use")
        if spec.cgroup_parent and not spec.cgroup_parent.endswith(".slice"):
            raise PermanentError("cgroup-parent for systemd cgroup should be a valid slice")
        cid = hashlib.sha256(f"{spec.docker_name}/{self.host.next_id}".encode()).hexdigest()
        self.host.next_id += 1
        if spec.uid is None:
            self.host.uid_of(spec.user)
        self.host.containers[cid] = {
            "id": cid, "name": spec.docker_name, "image": spec.image, "labels": dict(spec.labels),
            "state": "created", "devices": list(spec.devices), "created_at": self.host.now,
            "started_at": None, "finished_at": None, "cpu_percent": 0.0, "gpu_util": 0.0,
            "cgroup_parent": spec.cgroup_parent, "exit_code": None, "net_bps": 0.0,
            "tmp_size": spec.tmp_size}
        if spec.settings is None or spec.settings.start == "ds01d":
            self.start(cid)
        return cid

    def start(self, container_id: str) -> None:
        c = self.host.container(container_id)
        missing = set(c["devices"]) - self.host.device_uuids()
        if missing:
            raise PermanentError("could not select device driver \"nvidia\" with capabilities: "
                                 f"[[gpu]]: unknown device {sorted(missing)[0]}")
        c.update(state="running", started_at=self.host.now, finished_at=None, exit_code=None,
                 cpu_percent=0.0, gpu_util=0.0)

    def stop(self, container_id: str, grace_s: float) -> None:
        c = self.host.container(container_id)
        if c["state"] != "running":
            return
        c.update(state="exited", finished_at=self.host.now, exit_code=143, cpu_percent=0.0,
                 gpu_util=0.0, net_bps=0.0)
        for pid, p in list(self.host.processes.items()):
            if p["container_id"] == c["id"]:
                del self.host.processes[pid]
        _refresh_utilization(self.host)

    def remove(self, container_id: str) -> None:
        c = self.host.container(container_id)
        if c["state"] == "running":
            raise TemporaryError(f"You cannot remove a running container {c['id'][:12]}")
        del self.host.containers[c["id"]]


def _refresh_utilization(host: SimHost) -> None:
    """A whole GPU's utilisation is what the running container holding it reports."""
    for g in host.gpus:
        g["utilization"] = max((c["gpu_util"] for c in host.containers.values()
                                if c["state"] == "running" and g["uuid"] in c["devices"]),
                               default=0.0)


def set_activity(host: SimHost, ref: str, *, gpu_util: float | None, cpu: float | None,
                 net: float | None = None) -> None:
    """``ds01 sim activity``: whole GPUs report ``gpu_util``; a MIG instance cannot, so GPU
    activity there is a compute process in the container on each of its instances."""
    c = host.container(ref)
    if c["state"] != "running":
        raise PermanentError(f"{c['name']} is not running")
    if cpu is not None:
        c["cpu_percent"] = cpu
    if net is not None:
        c["net_bps"] = net
    if gpu_util is not None:
        c["gpu_util"] = gpu_util
        mig = {i["uuid"] for g in host.gpus for i in g["instances"]}
        for pid, p in list(host.processes.items()):
            if p["container_id"] == c["id"] and p["device"] in mig:
                del host.processes[pid]
        if gpu_util > 0:
            for dev in c["devices"]:
                if dev in mig:
                    host.add_process(dev, uid=host.users.get(c["labels"].get("ds01.user", "")),
                                     container_id=c["id"], mem_mib=2048)
        _refresh_utilization(host)


class SimNvml:
    """GPUs, MIG instances and processes; MIG mode and instances change as on a real GPU."""

    def __init__(self, host: SimHost) -> None:
        self.host = host

    def gpus(self) -> list[Gpu]:
        return [Gpu(g["index"], g["uuid"], g["model"], g["memory_mib"], g["mig_enabled"],
                    tuple(MigInstance(i["uuid"], i["profile"], i["gi"],
                                      (i["start"], i["size"]) if "start" in i else None)
                          for i in g["instances"]),
                    None if g["mig_enabled"] else float(g["utilization"]),
                    g.get("mig_pending"), model_profiles(g["model"]))
                for g in self.host.gpus]

    def processes(self) -> list[GpuProcess]:
        return [GpuProcess(p["pid"], p["device"], p["mem"])
                for p in sorted(self.host.processes.values(), key=lambda p: p["pid"])]

    def _gpu(self, uuid: str) -> dict[str, Any]:
        g = next((g for g in self.host.gpus if g["uuid"] == uuid), None)
        if g is None:
            raise PermanentError(f"no GPU {uuid} on this host")
        if not model_profiles(g["model"]):
            raise PermanentError(f"GPU {g['index']} ({g['model']}) does not support MIG")
        return g

    def _pids(self, devices: set[str]) -> list[tuple[int, str]]:
        return [(p["pid"], "") for p in self.host.processes.values() if p["device"] in devices]

    def set_mig_mode(self, gpu_uuid: str, enabled: bool) -> None:
        g = self._gpu(gpu_uuid)
        if g["mig_enabled"] == enabled:
            g["mig_pending"] = None
            return
        g["mig_pending"] = enabled
        devices = {g["uuid"]} | {i["uuid"] for i in g["instances"]}
        if g["instances"] or g.get("held") or self._pids(devices):
            raise base.mig_mode_in_use(g["index"], enabled, self._pids(devices),
                                       instances=len(g["instances"]))
        if g.get("mig_reset_required"):
            raise base.mig_mode_needs_reset(g["index"], enabled)
        g.update(mig_enabled=enabled, mig_pending=None, utilization=0.0)

    def destroy_instance(self, gpu_uuid: str, gpu_instance_id: int) -> None:
        g = self._gpu(gpu_uuid)
        inst = next((i for i in g["instances"] if i["gi"] == gpu_instance_id), None)
        if inst is None:
            return  # already gone: what the step wanted
        if pids := self._pids({inst["uuid"]}):
            raise base.mig_instance_in_use(g["index"], inst["uuid"], pids)
        g["instances"].remove(inst)

    def create_instance(self, gpu_uuid: str, profile_id: int, start: int) -> str:
        g = self._gpu(gpu_uuid)
        profile = next((p for p in model_profiles(g["model"]) if p.id == profile_id), None)
        if profile is None:
            raise base.mig_profile_unsupported(g["index"], g["model"], str(profile_id))
        if not g["mig_enabled"]:
            raise PermanentError(f"GPU {g['index']}: MIG is off; no instance can be created")
        size = dict(profile.placements).get(start)
        if size is None:
            raise PermanentError(f"GPU {g['index']}: {profile.name} cannot start at memory "
                                 f"slice {start} (placements: {list(profile.placements)})")
        mine = [i for i in g["instances"] if i["profile"] == profile.name]
        if _taken(g["instances"]) & (((1 << size) - 1) << start) or \
                len(mine) >= profile.instances:
            raise base.mig_out_of_placement(g["index"], profile.name, start)
        gi = min(set(range(1, 16)) - {i["gi"] for i in g["instances"]})
        uuid = _uuid("MIG", g["uuid"], gi, "serial", self.host.next_serial)
        self.host.next_serial += 1
        g["instances"].append({"uuid": uuid, "profile": profile.name, "gi": gi, "start": start,
                               "size": size})
        return uuid


class SimProcfs:
    def __init__(self, host: SimHost) -> None:
        self.host = host

    def owner(self, pid: int) -> ProcOwner:
        p = self.host.processes.get(str(pid))
        if p is None:
            return ProcOwner(pid, None, None, None)
        uid = p["uid"]
        user = None if uid is None else self.host.user_of(uid)
        return ProcOwner(pid, p["container_id"], uid, user)


@dataclass
class SimClock:
    host: SimHost

    def now(self) -> datetime:
        return self.host.clock()
