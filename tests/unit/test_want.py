"""Want files: round trip, and refusal with a precise reason against limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from ds01d.config.model import Limits
from ds01d.config.want import Want, from_data, from_yaml, limit_problems, to_yaml
from ds01d.errors import ConfigError
from ds01d.units import iso

GiB = 1024**3
LIMITS = Limits(max_gpu_equivalents=0.5, max_gpu_slots_per_container=1, allow_full_gpu=False,
                max_cpus=8, memory=32 * GiB, memory_swap=32 * GiB, shm_size=8 * GiB,
                pids_limit=4096, max_containers_per_user=2, max_runtime_h=72,
                idle_timeout_h=2, gpu_hold_after_stop_h=0, container_hold_after_stop_h=24,
                max_tasks=8192)
T0 = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)

sizes = st.integers(1, 2**44).map(lambda n: n - n % 1024 if n > 1024 else n)
wants = st.builds(
    Want,
    user=st.just("alice"),
    name=st.from_regex(r"\A[a-z0-9][a-z0-9_.-]{0,20}\Z"),
    image=st.from_regex(r"\A[a-z0-9][a-z0-9._/:@-]{0,30}\Z"),
    requested_at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                              timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=0)),
    gpus=st.none() | st.integers(1, 8),
    mig=st.none(),
    cpus=st.none() | st.floats(0.25, 64).map(lambda f: round(f, 2)),
    memory=st.none() | sizes,
    shm=st.none() | sizes,
).flatmap(lambda w: st.sampled_from([w, w.replace(gpus=None, mig="3g.40gb")]))


@given(wants)
def test_round_trip(want: Want) -> None:
    """Every want ``ds01 want`` accepts is read back by ds01d as the same want."""
    try:
        from_data(json.loads(json.dumps(raw_of(want))), user="alice", file="cli")
    except ConfigError:
        return  # refused by both: see test_cli_and_daemon_agree
    assert from_yaml(to_yaml(want), user="alice", file="w.yaml") == want


def raw_of(want: Want) -> dict[str, object]:
    raw: dict[str, object] = {"version": 1, "kind": "container", "name": want.name,
                              "image": want.image, "requested_at": iso(want.requested_at)}
    for key in ("gpus", "mig", "cpus", "memory", "shm"):
        value = getattr(want, key)
        if value is not None:
            raw[key] = value
    return raw


def test_limits_refuse_with_reasons() -> None:
    full = Want("alice", "t", "i", T0, gpus=1)
    assert limit_problems(full, LIMITS) == [
        "your group may not use full GPUs (allow_full_gpu is false): ask for a MIG instance "
        "with --mig PROFILE instead",
        "asking for 1 GPU-equivalent is over your limit of 0.5 (max_gpu_equivalents)"]
    big_mig = Want("alice", "t", "i", T0, mig="4g.20gb")
    assert limit_problems(big_mig, LIMITS) == [
        "asking for 0.571 GPU-equivalents is over your limit of 0.5 (max_gpu_equivalents)"]
    assert limit_problems(Want("alice", "t", "i", T0, mig="3g.20gb"), LIMITS) == []
    fat = Want("alice", "t", "i", T0, cpus=9, memory=64 * GiB, shm=16 * GiB)
    assert limit_problems(fat, LIMITS) == [
        "--cpus 9 is over your limit of 8 (max_cpus)",
        "--memory 64G is over your limit of 32G (memory)",
        "--shm 16G is over your limit of 8G (shm_size)"]
    unlimited = LIMITS.replace(allow_full_gpu=True, max_gpu_equivalents=None,
                        max_gpu_slots_per_container=None, max_cpus=None, memory=None)
    assert limit_problems(Want("alice", "t", "i", T0, gpus=8, cpus=99, memory=GiB**2),
                          unlimited) == []
    two = LIMITS.replace(allow_full_gpu=True, max_gpu_equivalents=4)
    assert limit_problems(Want("alice", "t", "i", T0, gpus=2), two) == [
        "asking for 2 devices is over your limit of 1 (max_gpu_slots_per_container)"]
