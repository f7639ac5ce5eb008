"""A Docker create body, read into what ds01 models (pure): container settings, resources and
a GPU ask. Every key of the body is accounted for: modelled, or required to hold its empty
value (``null``, ``""``, ``0``, ``false``, ``[]``, ``{}``), or refused by name with the reason.
An unknown key, a known key in another casing (Docker's decoder ignores case) or a value of
the wrong type is refused: nothing reaches Docker that was not read here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ds01d.config.settings import ContainerSettings, Mount, Port

# keys that must stay empty, with why (shown to the user)
FORBIDDEN: dict[str, str] = {
    "Privileged": "privileged containers are root on the host",
    "CapAdd": "added capabilities",
    "Devices": "host devices (GPUs come through ds01)",
    "DeviceCgroupRules": "device access rules",
    "PidMode": "another PID namespace (host or a container's)",
    "UTSMode": "the host's UTS namespace",
    "UsernsMode": "the host's user namespace",
    "Cgroup": "another cgroup",
    "VolumesFrom": "another container's volumes",
    "VolumeDriver": "volume drivers (local volumes only)",
    "Links": "links to other containers",
    "GroupAdd": "extra groups: the container runs as you, with your group",
    "Sysctls": "kernel settings",
    "StorageOpt": "storage options",
    "Ulimits": "resource limits other than ds01's",
    "OomKillDisable": "disabling the OOM killer",
    "OomScoreAdj": "OOM score changes",
    "MaskedPaths": "unmasking kernel paths",
    "ReadonlyPaths": "changing read-only kernel paths",
    "PublishAllPorts": "publishing every port on every address (use -p PORT: 127.0.0.1)",
    "CpuQuota": "CPU quota (use --cpus)", "CpuPeriod": "CPU period (use --cpus)",
    "CpuRealtimePeriod": "real-time scheduling", "CpuRealtimeRuntime": "real-time scheduling",
    "KernelMemory": "kernel memory limits", "KernelMemoryTCP": "kernel memory limits",
    "ContainerIDFile": "a container id file", "Isolation": "isolation modes",
    "BlkioWeightDevice": "block device weights", "BlkioDeviceReadBps": "block device limits",
    "BlkioDeviceWriteBps": "block device limits", "BlkioDeviceReadIOps": "block device limits",
    "BlkioDeviceWriteIOps": "block device limits", "CpuCount": "Windows CPU settings",
    "CpuPercent": "Windows CPU settings", "IOMaximumIOps": "Windows I/O limits",
    "IOMaximumBandwidth": "Windows I/O limits", "MacAddress": "MAC addresses",
    "Annotations": "runtime annotations",
}
# keys ds01 accepts whatever they hold (they change nothing ds01 enforces)
# (read, not forwarded: ds01's own values apply; Tmpfs becomes tmpfs mounts)
IGNORED_CONFIG = ("ArgsEscaped", "OnBuild", "Shell", "Healthcheck", "Domainname",
                  "NetworkDisabled")
IGNORED_HOST = ("ConsoleSize", "BlkioWeight", "CpuShares", "CpusetCpus", "CpusetMems",
                "MemoryReservation", "MemorySwappiness", "ReadonlyRootfs", "Tmpfs",
                "LogConfig", "CapDrop", "SecurityOpt", "ExtraHosts", "Dns", "DnsOptions",
                "DnsSearch")
CONFIG_KEYS = ("Hostname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
               "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Image",
               "Volumes", "WorkingDir", "Entrypoint", "Labels", "StopSignal", "StopTimeout",
               "HostConfig", "NetworkingConfig", "MacAddress", "NetworkDisabled",
               *IGNORED_CONFIG)
HOST_KEYS = ("IpcMode", "CgroupnsMode", "Binds", "Mounts", "NetworkMode", "PortBindings",
             "RestartPolicy", "AutoRemove",
             "Init", "ShmSize", "Memory", "MemorySwap", "NanoCpus", "PidsLimit", "CgroupParent",
             "DeviceRequests", "Runtime", *IGNORED_HOST, *FORBIDDEN)
ALLOWED_NETWORKS = ("", "default", "bridge", "none")
ALLOWED_SECURITY = ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true")
LOG_DRIVERS = ("", "json-file", "local")
GPU_RUNTIMES = ("nvidia",)


class Refused(ValueError):
    """The create is refused; the message says why."""


@dataclass(frozen=True)
class GpuAsk:
    """GPUs asked for: ``count`` devices (-1: ``all``)."""

    count: int
    via: str


@dataclass(frozen=True)
class CreateAsk:
    """A create as ds01 models it."""

    image: str
    settings: ContainerSettings
    user: str
    """``User`` as given ("" when not)."""
    cpus: float | None
    memory: int | None
    memory_swap: int | None
    shm: int | None
    pids: int | None
    gpu: GpuAsk | None


def _empty(value: Any) -> bool:
    if isinstance(value, Mapping):
        return all(_empty(v) for v in value.values())
    if isinstance(value, tuple):
        return all(_empty(v) for v in value)
    return value in (None, "", 0, False)


def _check_keys(obj: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    lower = {k.lower(): k for k in known}
    for key in obj:
        if key in known:
            continue
        if key.lower() in lower:
            raise Refused(f"{where}{key}: write it {lower[key.lower()]} (odd casing is refused)")
        raise Refused(f"{where}{key} is not a setting ds01 knows")


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Refused(f"{where} must be an object")
    return value


def _strs(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
        raise Refused(f"{where} must be a list of strings")
    return value


def _int(value: Any, where: str) -> int | None:
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Refused(f"{where} must be a positive whole number")
    return value


def _bool(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise Refused(f"{where} must be true or false")
    return value


def _str(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Refused(f"{where} must be a string")
    return value


def _forbidden(host: Mapping[str, Any]) -> None:
    for key, why in FORBIDDEN.items():
        if not _empty(host.get(key)):
            raise Refused(f"HostConfig.{key} is refused: {why}")
    if host.get("CgroupnsMode") not in (None, "", "private"):
        raise Refused("HostConfig.CgroupnsMode is refused: the host's cgroup namespace")
    if host.get("IpcMode") not in (None, "", "private", "shareable", "none"):
        raise Refused("HostConfig.IpcMode is refused: another IPC namespace (host or a "
                      "container's)")


def _security(host: Mapping[str, Any]) -> None:
    for opt in _strs(host.get("SecurityOpt"), "HostConfig.SecurityOpt") or ():
        if opt not in ALLOWED_SECURITY:
            raise Refused(f"--security-opt {opt} is refused: only no-new-privileges (every "
                          "container has it, with the default seccomp and AppArmor profiles)")
    log = _obj(host.get("LogConfig"), "HostConfig.LogConfig")
    _check_keys(log, ("Type", "Config"), "HostConfig.LogConfig.")
    if log.get("Type") not in (None, *LOG_DRIVERS):
        raise Refused(f"log driver {log.get('Type')!r} is refused: only json-file or local")
    if set(_obj(log.get("Config"), "LogConfig.Config")) - {"max-size", "max-file"}:
        raise Refused("log options: only max-size and max-file")
    tmpfs = _obj(host.get("Tmpfs"), "HostConfig.Tmpfs")
    if any(not isinstance(v, str) for v in tmpfs.values()):
        raise Refused("HostConfig.Tmpfs values must be strings")


def _bind(spec: str) -> tuple[Mount, bool]:
    """``src:dst[:opts]``; returns the mount and whether it is a named volume."""
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise Refused(f"bind {spec!r}: SOURCE:TARGET[:OPTIONS]")
    source, target = parts[0], parts[1]
    opts = parts[2].split(",") if len(parts) == 3 else []
    bad = [o for o in opts if o not in ("ro", "rw", "nocopy", "private", "rprivate")]
    if bad:
        raise Refused(f"bind option {bad[0]!r} is refused (only ro, rw, nocopy)")
    volume = not source.startswith("/")
    return Mount("volume" if volume else "bind", source, target, "ro" in opts), volume


def _mount(m: Mapping[str, Any]) -> Mount:
    _check_keys(m, ("Type", "Source", "Target", "ReadOnly", "Consistency", "BindOptions",
                    "VolumeOptions", "TmpfsOptions"), "HostConfig.Mounts.")
    kind = _str(m.get("Type"), "Mount.Type")
    bind = _obj(m.get("BindOptions"), "BindOptions")
    _check_keys(bind, ("Propagation", "NonRecursive"), "BindOptions.")
    if bind.get("Propagation") not in (None, "", "private", "rprivate"):
        raise Refused(f"bind propagation {bind.get('Propagation')!r} is refused")
    vol = _obj(m.get("VolumeOptions"), "VolumeOptions")
    _check_keys(vol, ("NoCopy", "Labels", "DriverConfig", "Subpath"), "VolumeOptions.")
    if not _empty(vol.get("DriverConfig")) or not _empty(vol.get("Subpath")):
        raise Refused("volume driver options are refused (the local driver's o=bind mounts "
                      "host folders)")
    tmp = _obj(m.get("TmpfsOptions"), "TmpfsOptions")
    _check_keys(tmp, ("SizeBytes", "Mode"), "TmpfsOptions.")
    return Mount(kind, _str(m.get("Source"), "Mount.Source"), _str(m.get("Target"),
                                                                    "Mount.Target"),
                 _bool(m.get("ReadOnly"), "Mount.ReadOnly"))


def _port_key(key: str) -> tuple[int, str]:
    number, _, proto = key.partition("/")
    if not number.isdigit():
        raise Refused(f"port {key!r}: PORT/PROTOCOL")
    return int(number), proto or "tcp"


def _ports(host: Mapping[str, Any]) -> tuple[Port, ...]:
    out = []
    for key, bindings in _obj(host.get("PortBindings"), "PortBindings").items():
        number, proto = _port_key(key)
        for raw in bindings or ():
            b = _obj(raw, "PortBindings entry")
            _check_keys(b, ("HostIp", "HostPort"), "PortBindings.")
            ip = _str(b.get("HostIp"), "HostIp")
            if ip not in ("", "127.0.0.1"):
                raise Refused(f"publishing on {ip} is refused: ports are published on "
                              "127.0.0.1 only (reach them through ssh -L)")
            port = _str(b.get("HostPort"), "HostPort")
            if port and not port.isdigit():
                raise Refused(f"host port {port!r}: one number (no ranges)")
            out.append(Port(number, proto, int(port) if port else None))
    return tuple(out)


def _gpu(config: Mapping[str, Any], host: Mapping[str, Any]) -> GpuAsk | None:
    requests = host.get("DeviceRequests") or ()
    if not isinstance(requests, tuple):
        raise Refused("HostConfig.DeviceRequests must be a list")
    count = 0
    for raw in requests:
        r = _obj(raw, "DeviceRequests entry")
        _check_keys(r, ("Driver", "Count", "DeviceIDs", "Capabilities", "Options"),
                    "DeviceRequests.")
        caps = {c for group in r.get("Capabilities") or () for c in group or ()}
        if r.get("Driver") not in (None, "", "nvidia") or not caps & {"gpu", "nvidia"}:
            raise Refused("device requests other than GPUs are refused")
        ids = _strs(r.get("DeviceIDs"), "DeviceIDs") or ()
        n = r.get("Count") or 0
        count = -1 if n == -1 or count == -1 else count + (len(ids) or n)
    env = [e for e in (_strs(config.get("Env"), "Env") or ())
           if e.split("=", 1)[0].upper() == "NVIDIA_VISIBLE_DEVICES"]
    visible = [e.split("=", 1)[1] if "=" in e else "" for e in env]
    runtime = _str(host.get("Runtime"), "Runtime")
    if runtime not in ("", "runc", *GPU_RUNTIMES):
        raise Refused(f"runtime {runtime!r} is refused")
    if requests:
        return GpuAsk(count, "--gpus")
    if any(v not in ("", "void", "none") for v in visible):
        named = [v for v in visible[-1].split(",") if v]
        return GpuAsk(-1 if "all" in named else len(named), "NVIDIA_VISIBLE_DEVICES")
    if runtime in GPU_RUNTIMES:
        return GpuAsk(-1, "--runtime nvidia")
    return None


def _mounts(config: Mapping[str, Any], host: Mapping[str, Any]) -> tuple[tuple[Mount, ...],
                                                                         tuple[str, ...]]:
    mounts = [_bind(b)[0] for b in _strs(host.get("Binds"), "HostConfig.Binds") or ()]
    raw: Any
    raw = host.get("Mounts") or ()
    if not isinstance(raw, tuple):
        raise Refused("HostConfig.Mounts must be a list")
    mounts += [_mount(_obj(m, "Mounts entry")) for m in raw]
    mounts += [Mount("tmpfs", "", str(t)) for t in _obj(host.get("Tmpfs"), "Tmpfs")]
    volumes = tuple(sorted(_obj(config.get("Volumes"), "Volumes")))
    return tuple(mounts), volumes


def _network(host: Mapping[str, Any], config: Mapping[str, Any]) -> str | None:
    mode = _str(host.get("NetworkMode"), "NetworkMode")
    if mode not in ALLOWED_NETWORKS:
        raise Refused(f"network {mode!r} is refused: Docker's default network or none only")
    nets = _obj(_obj(config.get("NetworkingConfig"), "NetworkingConfig").get(
        "EndpointsConfig"), "EndpointsConfig")
    for name, endpoint in nets.items():
        if name not in ALLOWED_NETWORKS or not _empty(
                {k: v for k, v in _obj(endpoint, "endpoint").items() if k != "Aliases"}):
            raise Refused(f"network settings for {name!r} are refused")
    return "none" if mode == "none" else None


def _restart(host: Mapping[str, Any]) -> str:
    policy = _obj(host.get("RestartPolicy"), "RestartPolicy")
    _check_keys(policy, ("Name", "MaximumRetryCount"), "RestartPolicy.")
    return _str(policy.get("Name"), "RestartPolicy.Name") or "no"


def _attach(config: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(s for s in ("stdin", "stdout", "stderr")
                 if _bool(config.get(f"Attach{s.capitalize()}"), f"Attach{s}"))


def _env(config: Mapping[str, Any], gpu: GpuAsk | None) -> tuple[str, ...]:
    env = _strs(config.get("Env"), "Env") or ()
    if gpu is not None:  # the request became ds01's; the variable is Docker's to set
        env = tuple(e for e in env if e.split("=", 1)[0].upper() != "NVIDIA_VISIBLE_DEVICES")
    return env


def _labels(config: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    labels = _obj(config.get("Labels"), "Labels")
    if any(not isinstance(v, str) for v in labels.values()):
        raise Refused("label values must be strings")
    return tuple(sorted(labels.items()))


def kind_of(labels: tuple[tuple[str, str], ...], agent: str) -> str:
    """devcontainer, compose, docker or api: from the labels and the client's User-Agent."""
    keys = [k for k, _ in labels]
    if any(k.startswith("devcontainer.") for k in keys):
        return "devcontainer"
    if any(k.startswith("com.docker.compose.") for k in keys):
        return "compose"
    return "docker" if agent.startswith("Docker-Client/") else "api"


def read_create(body: Any, *, agent: str = "") -> CreateAsk:
    """The create as ds01 models it, or :class:`Refused`."""
    config = _obj(body, "the body")
    _check_keys(config, CONFIG_KEYS, "")
    host = _obj(config.get("HostConfig"), "HostConfig")
    _check_keys(host, HOST_KEYS, "HostConfig.")
    _forbidden(host)
    _security(host)
    for key in ("MacAddress",):
        if not _empty(config.get(key)):
            raise Refused(f"{key} is refused")
    gpu = _gpu(config, host)
    mounts, volumes = _mounts(config, host)
    labels = _labels(config)
    exposed = _obj(config.get("ExposedPorts"), "ExposedPorts")
    for key in exposed:
        _port_key(key)
    settings = ContainerSettings(
        kind=kind_of(labels, agent), command=_strs(config.get("Cmd"), "Cmd"),
        entrypoint=_strs(config.get("Entrypoint"), "Entrypoint"), env=_env(config, gpu),
        labels=labels, mounts=mounts, volumes=volumes, ports=_ports(host),
        working_dir=_str(config.get("WorkingDir"), "WorkingDir") or None,
        hostname=_str(config.get("Hostname"), "Hostname") or None,
        network=_network(host, config), tty=_bool(config.get("Tty"), "Tty"),
        open_stdin=_bool(config.get("OpenStdin"), "OpenStdin"),
        stdin_once=_bool(config.get("StdinOnce"), "StdinOnce"), attach=_attach(config),
        init=_bool(host.get("Init"), "Init"), auto_remove=_bool(host.get("AutoRemove"),
                                                                  "AutoRemove"),
        restart=_restart(host), stop_signal=_str(config.get("StopSignal"), "StopSignal") or None,
        stop_timeout=_int(config.get("StopTimeout"), "StopTimeout"), start="client")
    nano = _int(host.get("NanoCpus"), "NanoCpus")
    image = _str(config.get("Image"), "Image")
    if not image:
        raise Refused("no image named")
    return CreateAsk(image=image, settings=settings, user=_str(config.get("User"), "User"),
                     cpus=None if nano is None else nano / 1e9,
                     memory=_int(host.get("Memory"), "Memory"),
                     memory_swap=_int(host.get("MemorySwap"), "MemorySwap")
                     if host.get("MemorySwap") != -1 else None,
                     shm=_int(host.get("ShmSize"), "ShmSize"),
                     pids=_int(host.get("PidsLimit"), "PidsLimit")
                     if host.get("PidsLimit") != -1 else None, gpu=gpu)
