"""Slices: ``ds01.slice`` / ``ds01-<group>.slice`` / ``ds01-<group>-<user>.slice``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from ds01d.config.model import Effective
from ds01d.core.actions import Action, EnsureSlice, SetSliceProperties, StopSlice
from ds01d.core.model import Desired, Observed
from ds01d.core.naming import ROOT_SLICE, group_slice, user_slice

USEC_PER_PERCENT = 10_000
"""CPUQuotaPerSecUSec per percent of one CPU: 100% = 1 s of CPU per second."""


_PROPS: dict[int, tuple[Effective, Mapping[str, int | None]]] = {}


def slice_properties(eff: Effective) -> Mapping[str, int | None]:
    """systemd properties of a user's slice (``None`` = infinity), made once per ``eff`` (the
    same object pass after pass, from ``EffectiveCache``): read-only.

    ref: systemd.resource-control(5): CPUQuota= (as CPUQuotaPerSecUSec), MemoryMax=,
    MemoryHigh=, TasksMax=.
    """
    known = _PROPS.get(id(eff))
    if known is not None and known[0] is eff:
        return known[1]
    found = MappingProxyType(_properties(eff))
    if len(_PROPS) >= 65536:
        _PROPS.clear()
    _PROPS[id(eff)] = (eff, found)
    return found


def _properties(eff: Effective) -> dict[str, int | None]:
    agg = eff.aggregate
    quota = None if agg.cpu_quota is None else int(agg.cpu_quota * USEC_PER_PERCENT)
    tasks = agg.tasks_max if agg.tasks_max is not None else eff.limits.max_tasks
    return {"CPUQuotaPerSecUSec": quota, "MemoryMax": agg.memory_max,
            "MemoryHigh": agg.memory_high, "TasksMax": tasks}


def slice_users(desired: Desired, observed: Observed, gone: frozenset[str]) -> set[str]:
    """Users who need a slice: a want, or a container of theirs (ds01's, or made through
    the Docker socket: systemd made its slice when Docker started it) this pass does not
    remove."""
    users = {w.user for w in desired.wants}
    users |= {c.owner for c in observed.containers if c.owner and c.id not in gone}
    return users


def wanted_slices(desired: Desired, users: Iterable[str]
                  ) -> dict[str, Mapping[str, int | None]]:
    out: dict[str, Mapping[str, int | None]] = {}
    for user in sorted(users):
        eff = desired.effective.get(user)
        if eff is None:
            continue
        group = eff.group or "default"
        out.setdefault(ROOT_SLICE, {})
        out.setdefault(group_slice(group), {})
        out[user_slice(group, user, desired.slice_parts.get(user))] = slice_properties(eff)
    return out


def _drift(want: Mapping[str, int | None], have: Mapping[str, int | None]
           ) -> dict[str, int | None]:
    return {k: v for k, v in want.items() if k not in have or have[k] != v}


def plan_slices(desired: Desired, observed: Observed, *, gone: frozenset[str] = frozenset()
                ) -> list[Action]:
    """Create missing slices, set drifted properties back, stop user slices nobody needs.

    ``gone``: containers this pass removes (their slice may go in the same pass).
    """
    wanted = wanted_slices(desired, slice_users(desired, observed, gone))
    actions: list[Action] = []
    for name, props in wanted.items():
        have = observed.slices.get(name)
        if have is None:
            actions.append(EnsureSlice(name, props))
        elif drift := _drift(props, have.properties):
            actions.append(SetSliceProperties(name, drift))
    in_use = {c.cgroup_parent for c in observed.containers if c.id not in gone}
    for name in sorted(observed.slices):
        if name.count("-") >= 2 and name not in wanted and name not in in_use:
            actions.append(StopSlice(name))
    return actions
