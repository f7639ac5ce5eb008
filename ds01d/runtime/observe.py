"""One look at the machine through the adapters, every error a condition not a crash."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from ds01d.adapters.base import Docker, Nvml, Procfs, Systemd
from ds01d.core.model import Observed, ProcOwner


@dataclass(frozen=True)
class Adapters:
    systemd: Systemd
    docker: Docker
    nvml: Nvml
    procfs: Procfs


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
    return Observed(now=now, slices={s.name: s for s in slices}, containers=tuple(containers),
                    gpus=tuple(gpus), processes=tuple(procs), owners=owners,
                    adapter_errors=errors)
