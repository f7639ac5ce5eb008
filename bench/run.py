"""ds01 benchmarks (``make bench``): medians and ratios, printed beside the targets.

1. One steady-state pass of ds01d (nothing to do) on a simulated host of 2,000 users,
   500 containers and 16 GPUs (8 whole, 8 split into 7 MIG instances each): CPU time.
2. A cold full plan on the same host (every want still to be served): CPU time; and the
   same by a daemon just started, which also parses the configuration and every want file.
3. Wall time of the ``ds01`` commands a user types, beside ``python -c pass`` in this venv.

Figures are medians of repeated runs; the machines are shared and noisy.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ds01d.adapters.sim import SimHost, sim_gpu  # noqa: E402
from ds01d.daemon import Daemon  # noqa: E402
from ds01d.paths import Paths  # noqa: E402
from ds01d.runtime.simroot import init_sim_root  # noqa: E402

USERS, CONTAINERS = 2000, 500
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


def build(root: Path) -> tuple[Paths, SimHost]:
    """2,000 users in members files, 500 of them with one container want each."""
    paths = Paths(root)
    init_sim_root(paths)
    (paths.etc / "resource-limits.yaml").write_text(CONFIG)
    for name in ("user-overrides.yaml", "lifecycle-exemptions.yaml"):
        (paths.etc / name).unlink(missing_ok=True)
    for f in (paths.etc / "groups").glob("*.members"):
        f.unlink()
    for i, group in enumerate(GROUPS):
        users = [f"u{n:04d}" for n in range(USERS) if n % len(GROUPS) == i]
        (paths.etc / "groups" / f"{group}.members").write_text("\n".join(users) + "\n")
    gpus = [sim_gpu(i) for i in range(8)] + [sim_gpu(i, {"1g.5gb": 7}) for i in range(8, 16)]
    host = SimHost(gpus=gpus)
    mig = [i for g in gpus for i in g["instances"]]
    for n in range(CONTAINERS):
        device = (f"mig: {mig[n]['profile']}\n" if n < len(mig)
                  else "gpus: 1\n" if n < len(mig) + 8 else "")
        folder = paths.wants / f"u{n * USERS // CONTAINERS:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "w.yaml").write_text("version: 1\nkind: container\nname: w\nimage: img:1\n"
                                       f"requested_at: '2026-01-05T08:00:00Z'\n{device}")
    return paths, host


def cpu_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.process_time()
        fn()
        times.append((time.process_time() - t) * 1000)
    return statistics.median(times)


def wall_ms(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> int:
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths, host = build(Path(tmp) / "root")
        cold = Daemon(paths, simulate=True, host=host, read_memory=False)
        with cold.machine() as (adapters, now, h):
            first = cold.plan_once(adapters, now, h)
        assert first.plan is not None
        creates = len(first.plan.changes)
        cold_ms = cpu_ms(lambda: plan_again(cold), 15)
        first_ms = cpu_ms(lambda: plan_again(Daemon(paths, simulate=True, host=host,
                                                     read_memory=False)), 7)
        d = Daemon(paths, simulate=True, host=host, read_memory=False)
        d.run_pass()
        d.run_pass()
        r = d.run_pass()
        assert r.plan is not None and r.plan.changes == (), r.plan.changes[:3] if r.plan else r
        running = sum(1 for c in host.containers.values() if c["state"] == "running")
        steady_ms = cpu_ms(d.run_pass, 30)
        rows.append((f"steady-state pass, {USERS} users / {running} containers / 16 GPUs "
                     f"({len(host.device_uuids()) - 8} devices)", f"{steady_ms:.1f} ms CPU",
                     "< 20 ms"))
        rows.append((f"cold full plan ({creates} actions)", f"{cold_ms:.1f} ms CPU", "< 200 ms"))
        rows.append(("  the same by a new ds01d (parsing config and 500 want files)",
                     f"{first_ms:.1f} ms CPU", ""))
        rows.append(hostile_row(d, paths))
        rows += cli_rows(paths)
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'median':>16}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>16}  {target}")
    return 0


def _attacks() -> dict[str, Callable[[Path], None]]:
    """What one user may put in their own want folder (docs/security.md), as file writers."""
    def nested(f: Path) -> None:
        (f / "a.yaml").write_text("[" * 60_000)

    def bomb(f: Path) -> None:
        lines = ["a0: &a0 {k0: 0}", "b0: &b0 {j0: 0}"]
        for i in range(1, 26):
            lines += [f"a{i}: &a{i} {{<<: [*a{i - 1}, *b{i - 1}], x{i}: 1}}",
                      f"b{i}: &b{i} {{<<: [*b{i - 1}, *a{i - 1}], y{i}: 1}}"]
        for n in range(64):
            (f / f"b{n:02d}.yaml").write_text("\n".join(lines))

    def files(f: Path) -> None:
        for i in range(10_000):
            (f / f"w{i:05d}.yaml").write_text("x")

    def keys(f: Path) -> None:
        body = "".join(f"k{i}: 1\n" for i in range(110_000))
        for i in range(9):
            (f / f"k{i}.yaml").write_text(body)

    def names(f: Path) -> None:
        for i in range(900):
            (f / (f"{i:03d}" + "a" * 240 + ".yaml")).write_text("x")

    return {"nested": nested, "merge bombs x64": bomb, "10,000 files": files,
            "110,000 keys x9": keys, "900 long names": names}


def hostile_row(d: Daemon, paths: Paths) -> tuple[str, str, str]:
    """A pass while one user's folder holds an attack, rewritten before every pass (so it is
    read again each time): the worst attack's median wall time."""
    import shutil

    worst = ("", 0.0)
    for name, write in _attacks().items():
        times = []
        for _ in range(3):
            folder = paths.wants / "mallory"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            write(folder)
            t = time.perf_counter()
            d.run_pass()
            times.append((time.perf_counter() - t) * 1000)
        worst = max(worst, (name, statistics.median(times)), key=lambda w: w[1])
    shutil.rmtree(paths.wants / "mallory", ignore_errors=True)
    return (f"pass with one hostile want folder (worst: {worst[0]})", f"{worst[1]:.0f} ms wall",
            "< 1000 ms")


def plan_again(d: Daemon) -> None:
    with d.machine() as (adapters, now, h):
        result = d.plan_once(adapters, now, h)
        assert result.plan is not None


def cli_rows(paths: Paths) -> list[tuple[str, str, str]]:
    bin_dir = Path(sys.executable).parent
    py, ds01 = str(bin_dir / "python"), str(bin_dir / "ds01")
    root = ["--root", str(paths.root)]
    floor = wall_ms([py, "-c", "pass"], 30)
    rows = [("python -c pass (this venv: the floor)", f"{floor:.1f} ms", "")]
    for label, args in (("ds01 limits", ["--as", "u0001", "limits"]),
                        ("ds01 want container", ["--as", "u1999", "want", "container", "b",
                                                 "--mig", "1g.5gb"]),
                        ("ds01 status", ["--as", "u0000", "status"])):
        ms = wall_ms([ds01, *root, *args], 20)
        rows.append((label, f"{ms:.1f} ms ({ms / floor:.1f}x)", "< 3x the floor"))
    return rows


if __name__ == "__main__":
    sys.exit(main())
