"""One look at the machine through the adapters, every error a condition not a crash."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from ds01d.adapters.base import Dcgm, Docker, Nvml, Procfs, Systemd
from ds01d.core.devices import DeviceTable
from ds01d.core.idle import MIG_UNKNOWN
from ds01d.core.model import Gpu, MigReading, Observed, ProcOwner


@dataclass(frozen=True)
class Adapters:
    systemd: Systemd
    docker: Docker
    nvml: Nvml
    procfs: Procfs
    dcgm: Dcgm | None = None
    """Per-MIG-instance activity (``dcgm.exporter_url``); ``None``: not configured."""


T = TypeVar("T")


def _read(name: str, fn: Callable[[], list[T]], errors: dict[str, str]) -> list[T]:
    try:
        return list(fn())
    except Exception as e:  # an adapter may fail in any way; the pass must go on
        errors[name] = f"{type(e).__name__}: {e}"
        return []


def observe(a: Adapters, now: datetime) -> Observed:
    """What is there now. An adapter that fails is reported in ``adapter_errors`` and seen as
    empty for this pass (the daemon then skips the actions that depend on it)."""
    errors: dict[str, str] = {}
    slices = _read("systemd", a.systemd.list_slices, errors)
    containers = _read("docker", a.docker.list_containers, errors)
    gpus = _read("nvml", a.nvml.gpus, errors)
    # one GPU lost is named on its own ("nvml:gpu 3"), and holds nothing else back
    problems: dict[str, str] = getattr(a.nvml, "problems", {})
    errors.update({f"nvml:{k}": v for k, v in problems.items()})
    procs = _read("nvml", a.nvml.processes, errors)
    owners: dict[int, ProcOwner] = {}
    for p in procs:
        try:
            owners[p.pid] = a.procfs.owner(p.pid)
        except Exception as e:  # the process may be gone already
            owners[p.pid] = ProcOwner(p.pid, None, None, None)
            errors.setdefault("procfs", f"{type(e).__name__}: {e}")
    gpu_list = tuple(gpus)
    table = DeviceTable.of(gpu_list)
    held = tuple(table.resolve(c) if c.devices or c.gpu_count or c.all_gpus else c
                 for c in containers)
    return Observed(now=now, slices={s.name: s for s in slices}, containers=held,
                    gpus=gpu_list, processes=tuple(procs), owners=owners,
                    adapter_errors=errors, mig_activity=_mig_activity(a, gpu_list, errors))


def _mig_activity(a: Adapters, gpus: tuple[Gpu, ...], errors: dict[str, str]
                  ) -> dict[str, float] | None:
    """MIG instance uuid -> DCGM activity; ``None`` (processes count) without a reading."""
    if a.dcgm is None or not any(g.instances for g in gpus):
        return None
    try:
        return by_instance(a.dcgm.mig_activity(), gpus)
    except Exception as e:  # the exporter may be down or send anything: processes count
        errors["dcgm"] = f"{type(e).__name__}: {e} ({MIG_UNKNOWN})"
        return None


def by_instance(found: Iterable[MigReading], gpus: Iterable[Gpu]) -> dict[str, float]:
    """MIG instance uuid -> percent: each reading matched to the instance NVML named (its
    GPU by UUID, else by index; then its GPU instance id)."""
    table = {(r.gpu_uuid or f"#{r.gpu_index}", r.gpu_instance_id): r.percent for r in found}
    out: dict[str, float] = {}
    for g in gpus:
        for i in g.instances:
            for gpu in (g.uuid, f"#{g.index}"):
                if (gpu, i.gpu_instance_id) in table:
                    out[i.uuid] = table[(gpu, i.gpu_instance_id)]
                    break
    return out
