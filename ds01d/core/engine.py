"""The Docker Engine API body that creates a user's container: built from a
:class:`ContainerSpec` alone, by ds01d (for wants) and by the Docker socket (for creates
without GPUs) alike, so that what Docker receives is exactly what ds01 checked.

ref: Docker Engine API v1.41, ContainerCreate (Config, HostConfig, NetworkingConfig).
"""

from __future__ import annotations

from typing import Any

from ds01d.config.settings import ContainerSettings
from ds01d.core.actions import ContainerSpec
from ds01d.core.naming import docker_volume

LOOPBACK = "127.0.0.1"
HARDENING: dict[str, Any] = {
    # every container runs as its owner with no way to gain privileges: no setuid, no
    # capabilities. ref: docker run --security-opt no-new-privileges, --cap-drop
    "SecurityOpt": ["no-new-privileges:true"], "CapDrop": ["ALL"], "Privileged": False,
}


def _mounts(spec: ContainerSpec, s: ContainerSettings) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in s.mounts:
        mount: dict[str, Any] = {"Type": m.type, "Target": m.target, "ReadOnly": m.read_only}
        if m.type == "bind":
            mount |= {"Source": m.source, "BindOptions": {"Propagation": "rprivate"}}
        elif m.type == "volume":
            mount |= {"Source": docker_volume(spec.user, m.source),
                      "VolumeOptions": {"Labels": {"ds01.user": spec.user}}}
        out.append(mount)
    return out


def _ports(s: ContainerSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in s.ports:
        key = f"{p.container_port}/{p.protocol}"
        exposed[key] = {}
        bindings.setdefault(key, []).append(
            {"HostIp": LOOPBACK, "HostPort": "" if p.host_port is None else str(p.host_port)})
    return exposed, bindings


def _resources(spec: ContainerSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"CgroupParent": spec.cgroup_parent}
    for key, value in (("NanoCpus", spec.nano_cpus), ("Memory", spec.memory),
                       ("MemorySwap", spec.memory_swap), ("ShmSize", spec.shm_size),
                       ("PidsLimit", spec.pids_limit)):
        if value is not None:
            out[key] = value
    if spec.devices:
        out["DeviceRequests"] = [{"Driver": "nvidia", "DeviceIDs": list(spec.devices),
                                  "Capabilities": [["gpu"]]}]
    if spec.tmp_size is not None:  # storage_tmp; ref: Engine API HostConfig.Tmpfs
        out["Tmpfs"] = {"/tmp": f"size={spec.tmp_size}"}
    return out


def plain_settings(spec: ContainerSpec) -> ContainerSettings:
    """A ds01 want without settings: its command, the workspace at /workspace."""
    from ds01d.config.settings import Mount

    return ContainerSettings(command=spec.command, working_dir="/workspace",
                             mounts=(Mount("bind", spec.workspace, "/workspace"),),
                             restart="unless-stopped")


def with_workspace(spec: ContainerSpec, s: ContainerSettings) -> ContainerSettings:
    """Settings asking for the workspace get it at /workspace (and as working folder)."""
    from dataclasses import replace

    from ds01d.config.settings import Mount

    if not s.workspace:
        return s
    return replace(s, mounts=(Mount("bind", spec.workspace, "/workspace"), *s.mounts),
                   working_dir=s.working_dir or "/workspace")


def create_body(spec: ContainerSpec) -> dict[str, Any]:
    """``POST /containers/create?name=<spec.docker_name>`` body."""
    s = plain_settings(spec) if spec.settings is None else with_workspace(spec, spec.settings)
    exposed, bindings = _ports(s)
    host: dict[str, Any] = {
        **HARDENING, **_resources(spec), "Mounts": _mounts(spec, s), "PortBindings": bindings,
        "RestartPolicy": {"Name": s.restart}, "AutoRemove": s.auto_remove, "Init": s.init,
        "NetworkMode": s.network or "default"}
    config: dict[str, Any] = {
        "Image": spec.image, "Labels": dict(s.labels) | dict(spec.labels),
        "User": "" if spec.uid is None else f"{spec.uid}:{spec.gid}",
        "Env": list(s.env), "Tty": s.tty, "OpenStdin": s.open_stdin, "StdinOnce": s.stdin_once,
        "AttachStdin": "stdin" in s.attach, "AttachStdout": "stdout" in s.attach,
        "AttachStderr": "stderr" in s.attach, "ExposedPorts": exposed,
        "Volumes": {v: {} for v in s.volumes}, "HostConfig": host}
    optional = (("Cmd", None if s.command is None else list(s.command)),
                ("Entrypoint", None if s.entrypoint is None else list(s.entrypoint)),
                ("WorkingDir", s.working_dir), ("Hostname", s.hostname),
                ("StopSignal", s.stop_signal), ("StopTimeout", s.stop_timeout))
    config |= {k: v for k, v in optional if v is not None}
    return config
