"""GPU use nobody was allocated: flagged once per (pid, device) while it lasts."""

from __future__ import annotations

from ds01d.core.actions import Action, FlagUntracked
from ds01d.core.devices import container_of, tracked, user_of_process
from ds01d.core.model import Observed


def plan_untracked(observed: Observed) -> tuple[list[Action], set[str]]:
    """A flag for each untracked (pid, device) not yet reported, and every current key."""
    gpu_of = {g.uuid: g.index for g in observed.gpus}
    gpu_of |= {i.uuid: g.index for g in observed.gpus for i in g.instances}
    actions: list[Action] = []
    keys: set[str] = set()
    for p in sorted(observed.processes, key=lambda p: (p.pid, p.device_uuid)):
        if tracked(p.pid, p.device_uuid, observed):
            continue
        key = f"gpu.untracked:{p.pid}:{p.device_uuid}"
        keys.add(key)
        c = container_of(p.pid, observed)
        user = user_of_process(p.pid, observed)
        where = "host" if c is None else ("ds01 container, device not allocated to it"
                                          if c.managed else "container not created by ds01")
        actions.append(FlagUntracked(p.pid, p.device_uuid, gpu_of.get(p.device_uuid, -1), user,
                                     None if c is None else c.name, p.used_memory_mib, key,
                                     {"where": where}))
    return actions, keys
