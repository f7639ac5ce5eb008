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
    """An alert for each user holding more GPU-equivalents than ``max_gpu_equivalents`` (or
    more devices than ``gpu_limit``), once while it lasts; and every current key."""
    gpueq = {d.uuid: d.gpu_equivalents for d in devices}
    actions: list[Action] = []
    keys: set[str] = set()
    for user, held in sorted(hold.by_user.items()):
        eff = effective.get(user)
        if eff is None:
            continue
        used = sum(gpueq.get(d, 0.0) for d in held)
        quota, cap = eff.limits.max_gpu_equivalents, eff.aggregate.gpu_limit
        over_eq = quota is not None and used > quota + 1e-9
        over_n = cap is not None and len(held) > cap
        if not (over_eq or over_n):
            continue
        key = f"quota.over:{user}:{quota}:{cap}"
        keys.add(key)
        what = (f"{used:.3g} GPU-equivalents (max_gpu_equivalents {quota:g})" if over_eq
                else f"{len(held)} devices (gpu_limit {cap})")
        actions.append(Alert("quota.over", user, f"{user} holds {what}: over quota; nothing "
                             "is stopped, their new wants wait until they are under it", key,
                             {"gpu_equivalents": round(used, 4), "max_gpu_equivalents": quota,
                              "devices": list(held), "gpu_limit": cap}))
    return actions, keys
