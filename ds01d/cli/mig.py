"""``ds01 mig plan | assert | export | import FILE -c NAME``: the MIG layout, for admins.

``plan`` says what ds01d would change on each GPU to reach ``mig-layout.yaml`` and who it
affects; ``assert`` exits 0 when every GPU matches it, 1 when one drifts; ``export`` prints the
layout the GPUs have as a ``mig-layout.yaml``; ``import`` turns a configuration of NVIDIA's
mig-parted into one. None of them changes anything: ds01d applies the layout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ds01d.cli.common import load, now, paths
from ds01d.errors import InvalidInput
from ds01d.paths import Paths

TYPE_CHECKING = False  # see cli/common.py
if TYPE_CHECKING:
    from typing import Any

    from ds01d.config.model import DesiredConfig
    from ds01d.core.mig import GpuChange, MigPlan
    from ds01d.core.model import Observed


def run_mig(args: argparse.Namespace) -> int:
    command = args.mig_command
    if command == "import":
        return _import(args)
    p = paths(args)
    if command == "plan" and not p.is_simulated() and os.geteuid() != 0:
        raise InvalidInput("ds01 mig plan names the users a change affects: it is for root")
    config = None if command == "export" else load(p)
    observed = _observe(p, containers=command == "plan")
    if config is None:
        print(export(observed, when=f"{observed.now:%Y-%m-%d %H:%M} UTC"), end="")
        return 0
    mig = _plan(p, config, observed)
    if command == "assert":
        return _assert(mig)
    if args.json:
        print(json.dumps([_json(c, mig, observed) for c in mig.changes], indent=2))
    else:
        print("\n".join(plan_lines(mig, observed, configured=config.mig_layout is not None)))
    return 1 if any(c.problem for c in mig.changes) else 0  # a layout no GPU can take


def _observe(p: Paths, *, containers: bool) -> Observed:
    """GPUs (and, for ``plan``, containers and GPU processes), read-only."""
    from dataclasses import replace

    from ds01d.adapters.base import AdapterError
    from ds01d.core.model import Observed

    if p.is_simulated():
        from ds01d.adapters.sim import locked
        from ds01d.runtime.observe import observe
        from ds01d.runtime.simroot import sim_adapters

        with locked(p.sim) as host:
            adapters, clock = sim_adapters(host)
            return observe(adapters, clock.now())
    from ds01d.adapters.nvml import NvmlAdapter

    nvml = NvmlAdapter()
    try:
        seen = Observed(now(p), {}, (), tuple(nvml.gpus()), (), {})
        if not containers:
            return seen
        from ds01d.adapters.docker import DockerAdapter

        return replace(seen, containers=tuple(DockerAdapter().list_containers()),
                       processes=tuple(nvml.processes()))
    except AdapterError as e:
        raise InvalidInput(f"cannot see the GPUs: {e}") from None
    except Exception as e:  # Docker unreachable, no permission: one clear line
        raise InvalidInput(f"cannot see the containers: {type(e).__name__}: {e}") from None


def _plan(p: Paths, config: DesiredConfig, observed: Observed) -> MigPlan:
    """The layout changes ds01d would make, with its drains' start times where readable."""
    from dataclasses import replace

    from ds01d.core.mig import plan_mig
    from ds01d.runtime import carry

    since = carry.load(p.state, max_age_s=None).mig_drain_since
    return plan_mig(config, replace(observed, drain_since=since))


def _assert(mig: MigPlan) -> int:
    from ds01d.core.mig import describe

    for c in mig.changes:
        why = f" ({c.problem})" if c.problem else ""
        print(f"GPU {c.gpu.index}: {have(c)}; mig-layout.yaml: {describe(c.layout)}{why}",
              file=sys.stderr)
    if mig.changes:
        return 1
    print("every GPU matches mig-layout.yaml")
    return 0


def have(c: GpuChange) -> str:
    """What a GPU a layout change concerns has now: ``MIG 3g.20gb x2``, ``whole (MIG off)``."""
    from collections import Counter

    g = c.gpu
    if not g.mig_enabled:
        have = "whole (MIG off)"
    else:
        counts = Counter(i.profile for i in g.instances if i.device)
        have = "MIG " + (", ".join(f"{p} x{n}" for p, n in sorted(counts.items())) or "on, "
                         "no instances")
    pending = g.mig_pending
    return have + ("" if pending is None else f" (MIG {'on' if pending else 'off'} pending "
                   "a reset)")


def plan_lines(mig: MigPlan, observed: Observed, *, configured: bool) -> list[str]:
    """What ``ds01 mig plan`` prints."""
    from ds01d.core.mig import describe, steps
    from ds01d.core.model import devices_of

    if not configured:
        return ["no mig-layout.yaml: ds01 leaves the MIG layout as it is"]
    if not mig.changes:
        return ["nothing to do: every GPU matches mig-layout.yaml"]
    names = {d.uuid: d for d in devices_of(observed.gpus)}
    out = []
    for c in mig.changes:
        out.append(f"GPU {c.gpu.index} ({c.gpu.model}): {have(c)} -> {describe(c.layout)}")
        if c.problem:
            out.append(f"  cannot be applied: {c.problem}")
            continue
        out += [f"  {_step(s)}" for s in steps(c)]
        holders = mig.holders(c, observed.containers)
        for h in holders:
            what = ", ".join(f"{d} ({names[d].profile or 'whole GPU'})" for d in h.devices
                             if d in c.going)
            out.append(f"  in use by {h.owner or '-'}/{h.want_name or h.name} on {what}")
        pids = sorted(p.pid for p in observed.processes if p.device_uuid in c.going)
        if pids:
            out.append(f"  GPU processes on what goes: {', '.join(map(str, pids))}")
        out.append(f"  {_when(c, mig, observed)}")
    return out


def _step(action: Any) -> str:
    from ds01d.core.actions import CreateMigInstance, DestroyMigInstance, SetMigMode

    if isinstance(action, SetMigMode):
        return f"turn MIG {'on' if action.enabled else 'off'}"
    if isinstance(action, DestroyMigInstance):
        return (f"destroy {action.profile} (GPU instance {action.gpu_instance_id}"
                f"{', ' + action.uuid if action.uuid else ''})")
    assert isinstance(action, CreateMigInstance)
    return f"create {action.profile} at memory slice {action.start}"


def _when(c: GpuChange, mig: MigPlan, observed: Observed) -> str:
    deadline = c.deadline
    begun = f"draining since {c.since:%Y-%m-%d %H:%M} UTC"
    if not mig.blocked(c):
        return f"{begun}; nothing uses what goes: applied at ds01d's next pass"
    if deadline is None:
        return f"{begun}; no deadline: applied when what uses it stops"
    if deadline <= observed.now:
        return f"{begun}; deadline passed: its containers are stopped and removed (mig-relayout)"
    return (f"{begun}; deadline {deadline:%Y-%m-%d %H:%M} UTC, when its containers are stopped "
            "and removed")


def _json(c: GpuChange, mig: MigPlan, observed: Observed) -> dict[str, Any]:
    from ds01d.core.mig import describe, steps
    from ds01d.units import iso

    deadline = c.deadline
    return {"gpu": c.gpu.index, "uuid": c.gpu.uuid, "model": c.gpu.model, "have": have(c),
            "want": describe(c.layout), "problem": c.problem,
            "steps": [] if c.problem else [_step(s) for s in steps(c)],
            "in_use_by": [f"{h.owner or '-'}/{h.want_name or h.name}"
                          for h in mig.holders(c, observed.containers)],
            "pids": sorted(p.pid for p in observed.processes if p.device_uuid in c.going),
            "since": iso(c.since), "deadline": None if deadline is None else iso(deadline)}


def export(observed: Observed, *, when: str) -> str:
    """The GPUs' layout as a ``mig-layout.yaml`` (MIG mode as it is now, not pending)."""
    from collections import Counter

    from ds01d.config.migparted import to_yaml

    gpus: dict[str, dict[str, Any]] = {}
    for g in observed.gpus:
        counts = Counter(i.profile for i in g.instances if i.device)
        gpus[str(g.index)] = ({"mig-enabled": True, "mig-devices": dict(counts)}
                              if g.mig_enabled and counts else {"mig-enabled": False})
    return to_yaml(gpus, header=f"the MIG layout of this machine, as ds01 mig export saw it "
                   f"at {when}")


def _import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ds01d.config.loader import check_mig_layout
    from ds01d.config.migparted import convert, to_yaml
    from ds01d.errors import ConfigError
    from ds01d.yamlsrc import load_file, parse

    try:
        doc = load_file(Path(args.file), display=args.file)
        gpus, errors = convert(doc, args.config)
    except ConfigError as e:
        errors, gpus = list(e.errors), {}
    except OSError as e:
        raise InvalidInput(f"{args.file}: {e.strerror or e}") from None
    if not errors:
        text = to_yaml(gpus, header=f"from mig-parted config {args.config!r} in {args.file} "
                       "(ds01 mig import)")
        errors = check_mig_layout(parse(text, f"{args.file} (config {args.config}, as "
                                            "mig-layout.yaml)"))
    if errors:
        raise InvalidInput("cannot import: " + "\n".join(str(e) for e in errors))
    print(text, end="")
    return 0
