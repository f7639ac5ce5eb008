"""A user's effective limits: the values ``ds01 want`` checks a request against, and the caps
on the GPU-equivalents they may hold at once (the queue's and ``ds01 want``'s).

A module of its own, and a :class:`~ds01d.record.Record` rather than a dataclass, so that
``ds01 want`` (its start-up is measured) creates one small value, not the whole model.
"""

from __future__ import annotations

from ds01d.record import Record


class Limits(Record):
    """A user's effective per-container and per-user limits (``None`` = unlimited)."""

    __slots__ = (
        "allow_full_gpu",
        "container_hold_after_stop_h",
        "gpu_hold_after_stop_h",
        "idle_timeout_h",
        "max_containers_per_user",
        "max_cpus",
        "max_gpu_equivalents",
        "max_gpu_slots_per_container",
        "max_runtime_h",
        "max_tasks",
        "memory",
        "memory_swap",
        "pids_limit",
        "shm_size",
        "storage_tmp",
    )
    max_gpu_equivalents: float | None
    max_gpu_slots_per_container: int | None
    allow_full_gpu: bool
    max_cpus: float | None
    memory: int | None
    memory_swap: int | None
    shm_size: int | None
    pids_limit: int | None
    max_containers_per_user: int | None
    max_runtime_h: float | None
    idle_timeout_h: float | None
    gpu_hold_after_stop_h: float | None
    container_hold_after_stop_h: float | None
    max_tasks: int | None
    storage_tmp: int | None
    """Bytes of the tmpfs at ``/tmp`` in each container (``None``: no tmpfs)."""

    def __init__(self, *, max_gpu_equivalents: float | None,
                 max_gpu_slots_per_container: int | None, allow_full_gpu: bool,
                 max_cpus: float | None, memory: int | None,
                 memory_swap: int | None, shm_size: int | None, pids_limit: int | None,
                 max_containers_per_user: int | None, max_runtime_h: float | None,
                 idle_timeout_h: float | None, gpu_hold_after_stop_h: float | None,
                 container_hold_after_stop_h: float | None, max_tasks: int | None,
                 storage_tmp: int | None = None) -> None:
        self._set(locals())


def quota_caps(max_gpu_equivalents: float | None, gpu_limit: float | None
               ) -> list[tuple[str, float]]:
    """The caps on a user's GPU-equivalents held at once, with the key setting each (the
    queue's and ``ds01 want``'s)."""
    caps = (("max_gpu_equivalents", max_gpu_equivalents), ("aggregate.gpu_limit", gpu_limit))
    return [(key, float(cap)) for key, cap in caps if cap is not None]
