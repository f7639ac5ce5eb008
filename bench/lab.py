"""Simulated labs at any scale for the benchmarks: N users in members files, one container want
for every fourth user, GPUs scaled with the users (16 per 2,000: half whole, half split into
seven 1g.5gb MIG instances)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ds01d.adapters.sim import SimHost, sim_gpu
from ds01d.daemon import Daemon
from ds01d.paths import Paths
from ds01d.runtime.simroot import init_sim_root

GROUPS = ("student", "researcher", "faculty", "admin")
CONFIG = """\
version: 1
defaults: {max_gpu_equivalents: 2, max_gpu_slots_per_container: 2, allow_full_gpu: true,
           max_containers_per_user: 4, idle_timeout_h: 4, max_runtime_h: 168}
default_group: student
groups:
  student: {priority: 10, aggregate: {cpu_quota: "1600%", memory_max: 64g, gpu_limit: 2}}
  researcher: {priority: 50, aggregate: {cpu_quota: "6400%", memory_max: 256g}}
  faculty: {priority: 75}
  admin: {priority: 100, max_gpu_equivalents: null}
"""
WANT = "version: 1\nkind: container\nname: w\nimage: img:1\nrequested_at: '2026-01-05T08:00:00Z'\n"


def user(n: int) -> str:
    return f"u{n:05d}"


def build(root: Path, users: int) -> tuple[Paths, SimHost]:
    """A simulated root with ``users`` named users and ``users // 4`` container wants."""
    paths = Paths(root)
    init_sim_root(paths)
    (paths.etc / "resource-limits.yaml").write_text(CONFIG)
    for name in ("user-overrides.yaml", "lifecycle-exemptions.yaml"):
        (paths.etc / name).unlink(missing_ok=True)
    for f in (paths.etc / "groups").glob("*.members"):
        f.unlink()
    for i, group in enumerate(GROUPS):
        names = [user(n) for n in range(users) if n % len(GROUPS) == i]
        (paths.etc / "groups" / f"{group}.members").write_text("\n".join(names) + "\n")
    half = max(1, users // 250)
    # the MIG GPUs first: mig-layout.yaml names GPUs by an index of at most two digits
    gpus = [sim_gpu(i, {"1g.5gb": 7}) for i in range(half)] + \
        [sim_gpu(i) for i in range(half, 2 * half)]
    host = SimHost(gpus=gpus)
    (paths.etc / "mig-layout.yaml").write_text(  # the host's own: every GPU compared, none drifts
        "version: 1\ngpus:\n  all: {mig-enabled: false}\n" + "".join(
            f'  "{i}": {{mig-enabled: true, mig-devices: {{1g.5gb: 7}}}}\n'
            for i in range(half)))
    mig = [i for g in gpus for i in g["instances"]]
    for n, u in enumerate(range(0, users, 4)):
        device = (f"mig: {mig[n]['profile']}\n" if n < len(mig)
                  else "gpus: 1\n" if n < len(mig) + half else "")
        folder = paths.wants / user(u)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "w.yaml").write_text(WANT + device)
    return paths, host


def converged(paths: Paths, host: SimHost) -> Daemon:
    """A daemon that has served every want (and written every status)."""
    d = Daemon(paths, simulate=True, host=host)  # as a real one: it keeps its memory
    for _ in range(3):
        d.run_pass()
    return d


def files_under(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (the simulated machine's own state left out): its inode and
    modification time, to count what a pass writes."""
    out = {}
    for folder, _, names in os.walk(root):
        if "/var/lib/ds01/sim" in folder:
            continue
        for name in names:
            path = os.path.join(folder, name)
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            out[path] = (st.st_ino, st.st_mtime_ns)
    return out


def written(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
            ) -> Iterator[str]:
    """Files created, replaced or modified between two looks."""
    for path, stamp in after.items():
        if before.get(path) != stamp:
            yield path
