"""``ds01 sim ...``: drive the simulated host (a scripted lab, no GPU needed)."""

from __future__ import annotations

import argparse

from ds01d.adapters.base import AdapterError
from ds01d.adapters.sim import SimHost, locked, set_activity
from ds01d.cli.common import paths
from ds01d.core.naming import docker_name
from ds01d.errors import InvalidInput
from ds01d.runtime.simroot import init_sim_root, touch_trigger
from ds01d.units import parse_duration_s


def _rate(text: str) -> float:
    from ds01d.errors import InvalidInput
    from ds01d.units import parse_rate

    try:
        return parse_rate(text)
    except ValueError as e:
        raise InvalidInput(f"--net: {e}") from None


def run_sim(args: argparse.Namespace) -> int:
    p = paths(args)
    if args.sim_command == "init":
        for line in init_sim_root(p, force=args.force) or ["already set up"]:
            print(line)
        return 0
    if not p.is_simulated():
        raise InvalidInput(f"{p.root} is not a simulated root (run: ds01 --root DIR sim init)")
    try:
        with locked(p.sim) as host:
            out = _apply(args, host)
    except AdapterError as e:
        raise InvalidInput(str(e)) from None
    touch_trigger(p)
    if out:
        print(out)
    return 0


def _apply(args: argparse.Namespace, host: SimHost) -> str:
    cmd = args.sim_command
    if cmd == "advance":
        try:
            host.now += parse_duration_s(args.duration)
        except ValueError as e:
            raise InvalidInput(str(e)) from None
        return f"simulated time is now {host.clock():%Y-%m-%d %H:%M} UTC"
    if cmd == "activity":
        user, _, name = args.target.partition("/")
        if not name:
            raise InvalidInput("name the container as USER/NAME")
        net = None if args.net is None else _rate(args.net)
        set_activity(host, docker_name(user, name), gpu_util=args.gpu_util, cpu=args.cpu,
                     net=net)
        return ""
    if cmd == "host-process":
        return _host_process(args, host)
    if args.json:
        import json

        return json.dumps(json.loads(host.to_json()), indent=1, sort_keys=True)
    return _show(host)


def _host_process(args: argparse.Namespace, host: SimHost) -> str:
    if args.action == "remove":
        if host.processes.pop(str(args.pid), None) is None:
            raise InvalidInput(f"no simulated process {args.pid}")
        return f"process {args.pid} ended"
    device = args.gpu
    if device.isdigit():
        device = next((g["uuid"] for g in host.gpus if g["index"] == int(device)), device)
    uid = args.uid if args.uid is not None else host.uid_of(args.user) if args.user else None
    if uid is None:
        raise InvalidInput("say whose process it is: --uid UID or --user NAME")
    pid = host.add_process(device, uid=uid, container_id=None, mem_mib=args.mem)
    return f"host process {pid} (uid {uid}) on {device}"


def _show(host: SimHost) -> str:
    lines = [f"time {host.clock():%Y-%m-%d %H:%M} UTC"]
    for g in host.gpus:
        kind = ("MIG " + ", ".join(f"{i['profile']} {i['uuid']}" for i in g["instances"])
                if g["mig_enabled"] else f"whole, util {g['utilization']:g}%")
        lines.append(f"gpu {g['index']} {g['uuid']}: {kind}")
    for c in sorted(host.containers.values(), key=lambda c: c["name"]):
        lines.append(f"container {c['name']}: {c['state']}, devices {c['devices'] or '-'}, "
                     f"cpu {c['cpu_percent']:g}%")
    for pr in host.processes.values():
        where = f"container {pr['container_id'][:12]}" if pr["container_id"] else "host"
        lines.append(f"process {pr['pid']}: uid {pr['uid']} on {pr['device']} ({where})")
    users = ", ".join(f"{u}={i}" for u, i in sorted(host.users.items()))
    lines.append(f"users (uid): {users or '-'}")
    return "\n".join(lines)
