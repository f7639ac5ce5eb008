"""Prometheus metrics: a custom Collector that builds fresh families from the last pass's
snapshot at scrape time, so no stale label set is ever left behind.

:data:`METRICS` is the one list of names, types, help texts and labels; ``docs/metrics.md`` is
checked against what is served. Device labels: ``gpu`` is the GPU index; ``device`` is the
GPU index for a whole GPU and ``<gpu>.<gpu-instance-id>`` for a MIG instance (the names
dcgm-exporter's job-mapping files use).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ds01d.core.actions import (
    CreateContainer,
    EnsureSlice,
    RemoveContainer,
    SetSliceProperties,
    StartContainer,
    StopContainer,
    StopSlice,
)
from ds01d.core.devices import tracked, user_of_process
from ds01d.core.model import Desired, Device, Observed, devices_of
from ds01d.core.plan import Plan

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ds01_drift_objects": ("gauge", "Objects the next pass would change, by kind "
                           "(slices, containers, devices, mig_layout).", ("kind",)),
    "ds01_mig_layout_drift": ("gauge", "1 for a GPU whose MIG layout differs from "
                              "mig-layout.yaml.", ("gpu",)),
    "ds01_mig_draining": ("gauge", "1 for a GPU whose MIG layout change waits for what uses "
                          "the instances that go.", ("gpu",)),
    "ds01_mig_drain_deadline_timestamp_seconds": ("gauge", "When a draining GPU's containers "
                                                  "are stopped for its new layout (Unix "
                                                  "time).", ("gpu",)),
    "ds01_converged": ("gauge", "1 when the machine matches the desired state, else 0.", ()),
    "ds01_gpu_allocated": ("gauge", "1 for each device held by a ds01 container.",
                           ("gpu", "device", "profile", "user", "group", "container")),
    "ds01_user_gpu_equivalents": ("gauge", "GPU-equivalents held by each user.",
                                  ("user", "group")),
    "ds01_device_info": ("gauge", "1 for each allocatable device: a whole GPU or a MIG "
                         "instance.", ("gpu", "device", "uuid", "profile")),
    "ds01_queue_length": ("gauge", "Wants waiting (Pending).", ()),
    "ds01_queue_wait_seconds": ("gauge", "How long each user's longest-waiting want has "
                                "waited.", ("user",)),
    "ds01_container_idle_seconds": ("gauge", "How long each running ds01 container has been "
                                    "idle (0: active).", ("user", "container")),
    "ds01_lifecycle_actions_total": ("counter", "Lifecycle actions taken, by action.",
                                     ("action",)),
    "ds01_untracked_gpu_processes": ("gauge", "GPU processes nobody was allocated, by device "
                                     "and user.", ("gpu", "device", "user")),
    "ds01_untracked_gpu_memory_bytes": ("gauge", "GPU memory used by processes nobody was "
                                        "allocated.", ("gpu", "device", "user")),
    "ds01_reconcile_duration_seconds": ("histogram", "Time one pass takes.", ()),
    "ds01_reconcile_errors_total": ("counter", "Actions that failed, by kind.", ("kind",)),
    "ds01_adapter_up": ("gauge", "1 when an adapter answered in the last pass.", ("adapter",)),
    "ds01_desired_state_valid": ("gauge", "1 when the desired-state files are valid (else the "
                                 "last valid state is in use).", ()),
    "ds01_last_pass_timestamp_seconds": ("gauge", "When the last pass ended (Unix time).", ()),
}
ADAPTERS = ("systemd", "docker", "nvml")
LIFECYCLE_ACTIONS = ("idle_warning", "idle_stop", "runtime_warning", "runtime_stop", "remove")

Samples = list[tuple[dict[str, str], float]]


def device_name(d: Device) -> str:
    """``0`` for a whole GPU, ``2.1`` for GPU 2's GPU instance 1."""
    return str(d.gpu_index) if d.profile is None else f"{d.gpu_index}.{d.gpu_instance_id}"


@dataclass
class Snapshot:
    """The gauges of the last pass, as label sets and values."""

    gauges: dict[str, Samples] = field(default_factory=dict)


def build(plan: Plan, observed: Observed, desired: Desired, *, valid: bool,
          ended_at: float) -> Snapshot:
    """Every gauge of one pass (pure)."""
    devices = devices_of(observed.gpus)
    by_uuid = {d.uuid: d for d in devices}
    g: dict[str, Samples] = {name: [] for name, spec in METRICS.items() if spec[0] == "gauge"}
    g["ds01_device_info"] = [({"gpu": str(d.gpu_index), "device": device_name(d),
                               "uuid": d.uuid, "profile": d.profile or "full"}, 1.0)
                             for d in devices]
    _allocations(g, plan, desired, by_uuid)
    _queue(g, plan, observed)
    _untracked(g, observed, by_uuid)
    g["ds01_container_idle_seconds"] = [
        ({"user": c.owner or "", "container": c.want_name or c.name},
         (observed.now - observed.idle_since[c.id]).total_seconds()
         if c.id in observed.idle_since else 0.0)
        for c in observed.containers if c.managed and c.state == "running"]
    drift = _drift(plan)
    drift["mig_layout"] = len(plan.mig.changes)
    _mig(g, plan, desired, observed)
    g["ds01_drift_objects"] = [({"kind": k}, float(v)) for k, v in sorted(drift.items())]
    g["ds01_converged"] = [({}, 1.0 if not any(drift.values()) else 0.0)]
    g.update(unplanned(observed, valid=valid, ended_at=ended_at).gauges)
    return Snapshot(g)


def unplanned(observed: Observed, *, valid: bool, ended_at: float) -> Snapshot:
    """The gauges a pass has even when it could plan nothing (no configuration has been
    valid yet): what it could read, whether the configuration is valid, when it ended."""
    return Snapshot({
        "ds01_adapter_up": [({"adapter": a}, 0.0 if a in observed.adapter_errors else 1.0)
                            for a in ADAPTERS],
        "ds01_desired_state_valid": [({}, 1.0 if valid else 0.0)],
        "ds01_last_pass_timestamp_seconds": [({}, ended_at)]})


def _allocations(g: dict[str, Samples], plan: Plan, desired: Desired,
                 by_uuid: Mapping[str, Device]) -> None:
    """Devices held once the pass is done (its statuses), not as it found them."""
    per_user: dict[tuple[str, str], float] = {}
    for s in plan.statuses:
        if s.phase != "Running":
            continue
        eff = desired.effective.get(s.user)
        group = (eff.group or "") if eff is not None else ""
        for uuid in s.devices:
            d = by_uuid.get(uuid)
            if d is None:
                continue
            g["ds01_gpu_allocated"].append(({"gpu": str(d.gpu_index), "device": device_name(d),
                                             "profile": d.profile or "full", "user": s.user,
                                             "group": group, "container": s.name}, 1.0))
            per_user[(s.user, group)] = per_user.get((s.user, group), 0.0) + d.gpu_equivalents
    g["ds01_user_gpu_equivalents"] = [({"user": u, "group": grp}, round(v, 6))
                                      for (u, grp), v in sorted(per_user.items())]


def _queue(g: dict[str, Samples], plan: Plan, observed: Observed) -> None:
    pending = [s for s in plan.statuses if s.phase == "Pending"]
    g["ds01_queue_length"] = [({}, float(len(pending)))]
    longest: dict[str, float] = {}
    for s in pending:
        waited = (observed.now - s.since).total_seconds() if s.since else 0.0
        longest[s.user] = max(longest.get(s.user, 0.0), waited)
    g["ds01_queue_wait_seconds"] = [({"user": u}, w) for u, w in sorted(longest.items())]


def _untracked(g: dict[str, Samples], observed: Observed,
               by_uuid: Mapping[str, Device]) -> None:
    count: Counter[tuple[str, str, str]] = Counter()
    memory: Counter[tuple[str, str, str]] = Counter()
    for p in observed.processes:
        if tracked(p.pid, p.device_uuid, observed):
            continue
        d = by_uuid.get(p.device_uuid)
        user = user_of_process(p.pid, observed) or ""
        key = (str(d.gpu_index) if d else "", device_name(d) if d else p.device_uuid, user)
        count[key] += 1
        memory[key] += p.used_memory_mib * 1024 * 1024
    labels = ("gpu", "device", "user")
    g["ds01_untracked_gpu_processes"] = [(dict(zip(labels, k, strict=True)), float(v))
                                         for k, v in sorted(count.items())]
    g["ds01_untracked_gpu_memory_bytes"] = [(dict(zip(labels, k, strict=True)), float(v))
                                            for k, v in sorted(memory.items())]


def _mig(g: dict[str, Samples], plan: Plan, desired: Desired, observed: Observed) -> None:
    """Per GPU that ``mig-layout.yaml`` names: drift, whether its change waits for what uses
    it (draining), and its deadline."""
    from ds01d.core.mig import layout_for

    changes = {c.gpu.index: c for c in plan.mig.changes}
    for gpu in observed.gpus:
        if layout_for(desired.config, gpu) is None:
            continue
        label = {"gpu": str(gpu.index)}
        change = changes.get(gpu.index)
        draining = change is not None and change.problem is None and plan.mig.blocked(change)
        g["ds01_mig_layout_drift"].append((label, 0.0 if change is None else 1.0))
        g["ds01_mig_draining"].append((label, 1.0 if draining else 0.0))
        if draining and change is not None and change.deadline is not None:
            g["ds01_mig_drain_deadline_timestamp_seconds"].append(
                (label, change.deadline.timestamp()))


def _drift(plan: Plan) -> dict[str, int]:
    kinds = {"slices": 0, "containers": 0, "devices": 0, "mig_layout": 0}
    for a in plan.changes:
        if isinstance(a, EnsureSlice | SetSliceProperties | StopSlice):
            kinds["slices"] += 1
        elif isinstance(a, CreateContainer | StartContainer | StopContainer | RemoveContainer):
            kinds["containers"] += 1
            if getattr(a, "devices", None) or (isinstance(a, CreateContainer) and a.spec.devices):
                kinds["devices"] += 1
    return kinds


@dataclass
class Totals:
    """Counters and the pass-time histogram, kept by the daemon across passes."""

    lifecycle: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(
        LIFECYCLE_ACTIONS, 0)))
    """Every action is there from the start (at 0), so rates and alerts see it."""
    errors: Counter[str] = field(default_factory=Counter)
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    count: int = 0
    total: float = 0.0

    def observe_pass(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1


class Collector:
    """prometheus_client collector over the daemon's latest snapshot and totals."""

    def __init__(self, source: Any) -> None:
        self.source = source  # has .metrics (Snapshot | None) and .totals (Totals)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        snap: Snapshot | None = self.source.metrics
        totals: Totals = self.source.totals
        for name, (kind, text, labels) in METRICS.items():
            if kind == "gauge":
                fam = GaugeMetricFamily(name, text, labels=list(labels))
                for sample, value in (snap.gauges.get(name, []) if snap else []):
                    fam.add_metric([sample[k] for k in labels], value)
                yield fam
            elif kind == "counter":
                fam_c = CounterMetricFamily(name.removesuffix("_total"), text,
                                            labels=list(labels))
                lifecycle = name == "ds01_lifecycle_actions_total"
                table = totals.lifecycle if lifecycle else totals.errors
                for key, value in sorted(table.items()):
                    fam_c.add_metric([key], float(value))
                yield fam_c
            else:
                cumulative = [(str(b), float(n)) for b, n in zip(BUCKETS, totals.buckets,
                                                                  strict=True)]
                cumulative.append(("+Inf", float(totals.count)))
                fam_h = HistogramMetricFamily(name, text)
                fam_h.add_metric([], cumulative, totals.total)
                yield fam_h
