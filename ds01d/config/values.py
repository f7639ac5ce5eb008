"""A user's effective limits: the values ``ds01 want`` checks a request against.

A module of its own so that ``ds01 want`` (its start-up is measured) creates one
dataclass, not the whole model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """A user's effective per-container and per-user limits (``None`` = unlimited)."""

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
    storage_tmp: int | None = None
    """Bytes of the tmpfs at ``/tmp`` in each container (``None``: no tmpfs)."""
