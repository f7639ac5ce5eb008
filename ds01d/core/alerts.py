"""What admins are alerted to that only the planner can see: a user holding more than their
quota (an admin lowered it while their containers ran; running containers are never evicted)."""

from __future__ import annotations

from collections.abc import Mapping

from ds01d.config.model import Effective
from ds01d.core.actions import Action, Alert
from ds01d.core.devices import Holding
from ds01d.core.model import Device


def over_quota(hold: Holding, devices: tuple[Device, ...],
               effective: Mapping[str, Effective]) -> tuple[list[Action], set[str]]:
    """An alert for each user holding more GPU-equivalents than a cap of theirs
    (``max_gpu_equivalents``, ``aggregate.gpu_limit``: the caps the queue applies), once
    while it lasts; and every current key."""
    from ds01d.core.wants import gpu_quotas

    gpueq = {d.uuid: d.gpu_equivalents for d in devices}
    actions: list[Action] = []
    keys: set[str] = set()
    for user, held in sorted(hold.by_user.items()):
        eff = effective.get(user)
        if eff is None:
            continue
        used = sum(gpueq.get(d, 0.0) for d in held)
        over = [(key, cap) for key, cap in gpu_quotas(eff) if used > cap + 1e-9]
        if not over:
            continue
        key, cap = over[0]
        report = f"quota.over:{user}:{key}:{cap:g}"
        keys.add(report)
        actions.append(Alert("quota.over", user, f"{user} holds {used:.3g} GPU-equivalents "
                             f"({key} {cap:g}): over quota; nothing is stopped, their new wants "
                             "wait until they are under it", report,
                             {"gpu_equivalents": round(used, 4), "quota": key, "cap": cap,
                              "devices": list(held)}))
    return actions, keys
