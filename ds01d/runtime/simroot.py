"""Set up and use a simulated root: ``ds01 sim init`` and what ``ds01d --simulate`` needs."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

from ds01d.adapters.sim import (
    SimClock,
    SimDocker,
    SimHost,
    SimNvml,
    SimProcfs,
    SimSystemd,
    host_file,
)
from ds01d.core.model import Account
from ds01d.paths import Paths
from ds01d.runtime.observe import Adapters
from ds01d.runtime.wantfiles import ensure_spool
from ds01d.simclock import write_now

EXAMPLE = Path(__file__).resolve().parent.parent / "example"
TRIGGER = "changed"
"""File the ``ds01 sim`` commands touch so a running ``ds01d --simulate`` takes a pass."""


def init_sim_root(paths: Paths, *, force: bool = False) -> list[str]:
    """Create the simulated host (and the example config where none is). What was done."""
    done = []
    paths.sim.mkdir(parents=True, exist_ok=True)
    for folder in (paths.status, paths.events.parent, paths.run):
        folder.mkdir(parents=True, exist_ok=True)
    ensure_spool(paths.wants)
    if force or not host_file(paths.sim).exists():
        host = SimHost()
        host_file(paths.sim).write_text(host.to_json())
        write_now(str(paths.sim), host.now)
        done.append(f"simulated host: 4x A100-PCIE-40GB in {paths.sim}")
    if not (paths.etc / "resource-limits.yaml").exists():
        shutil.copytree(EXAMPLE, paths.etc, dirs_exist_ok=True)
        done.append(f"example configuration: {paths.etc}")
    return done


def touch_trigger(paths: Paths) -> None:
    (paths.sim / TRIGGER).write_text("")


def sim_adapters(host: SimHost) -> tuple[Adapters, SimClock]:
    return Adapters(SimSystemd(host), SimDocker(host), SimNvml(host), SimProcfs(host)), \
        SimClock(host)


def sim_account(paths: Paths, host: SimHost, user: str) -> Account:
    uid = host.uid_of(user)
    return Account(uid, uid, f"{_root(paths.top)}/home/{user}")  # as str(root / "home" / user)


@functools.lru_cache(maxsize=64)
def _root(top: str) -> str:
    """A root as ``str(Path(top))`` (once per root, not once per user)."""
    return str(Path(top))
