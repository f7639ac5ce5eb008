"""ds01's small validator accepts exactly what jsonschema (the reference) accepts.

Table-driven valid/invalid fixtures for every schema, then random mutations of the valid ones,
each judged by both validators. Also: the schemas use no keyword the small validator lacks,
and they are valid draft 2020-12 schemas.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from referencing import Registry, Resource

from ds01d import schema as js
from ds01d.yamlsrc import parse

NAMES = ["resource-limits.schema.json", "user-overrides.schema.json",
         "lifecycle-exemptions.schema.json", "mig-layout.schema.json", "want.schema.json"]
REGISTRY: Registry[Any] = Registry().with_resources(
    (js.load_schema(n)["$id"], Resource.from_contents(js.load_schema(n))) for n in NAMES)


def reference(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(js.load_schema(name), registry=REGISTRY)


# (schema, YAML text, None when valid else a piece of the expected message)
CASES: list[tuple[str, str, str | None]] = [
    ("resource-limits.schema.json", "{}", None),
    ("resource-limits.schema.json", "defaults: {memory: 32g, memory_swap: 32G, shm_size: 1.5T}", None),
    ("resource-limits.schema.json", "defaults: {memory: 34359738368}", None),
    ("resource-limits.schema.json", "defaults: {memory: 32gb}", "'32gb' is not a size (use 32g or 32G)"),
    ("resource-limits.schema.json", "defaults: {memory: -1}", "is not a size"),
    ("resource-limits.schema.json", "defaults: {memory: null, max_cpus: null}", None),
    ("resource-limits.schema.json", "defaults: {max_cpus: 0}", "is below the minimum 0.01"),
    ("resource-limits.schema.json", "defaults: {max_cpus: 0.0000000001}", "is below the minimum 0.01"),
    ("resource-limits.schema.json", "defaults: {pids_limit: 0}", "is below the minimum 1"),
    ("resource-limits.schema.json", "defaults: {max_runtime_h: 99999999}", "is above the maximum 87600"),
    ("resource-limits.schema.json", "defaults: {memory: 9000000000000000000}", "is not a size"),
    ("resource-limits.schema.json", "defaults: {memory: 99999999999999999g}", "is not a size"),
    ("resource-limits.schema.json", "defaults: {max_gpu_equivalents: 0, memory: 0, pids_limit: 1}", None),
    ("resource-limits.schema.json", "groups: {s: {priority: 0, policies: {gpu_idle_threshold: 100}}}", None),
    ("resource-limits.schema.json", "policies: {high_demand_threshold: 1, grace_period_m: 0}", None),
    ("resource-limits.schema.json", "groups: {s: {priority: -1}}", "below the minimum 0"),
    ("resource-limits.schema.json", "defaults: {allow_full_gpu: 1}", "1 is not true or false"),
    ("resource-limits.schema.json", "defaults: {pids_limit: 2.5}", "is not a whole number"),
    ("resource-limits.schema.json", "defaults: {idle_timeout: 30m, max_runtime: 2d}", None),
    ("resource-limits.schema.json", "defaults: {idle_timeout: 30 minutes}", "is not a duration"),
    ("resource-limits.schema.json", "defaults: {idle_timeout_h: 30m}", "is not a number"),
    ("resource-limits.schema.json", "defaults: {members: [a]}", "unknown key"),
    ("resource-limits.schema.json", "groups: {Student: {}}", "'Student' is not a valid name here"),
    ("resource-limits.schema.json", "groups: {s: {members: [a, a]}}", "'a' is listed twice"),
    ("resource-limits.schema.json", "groups: {s: {priority: 5000}}", "above the maximum 1000"),
    ("resource-limits.schema.json", "groups: {s: {aggregate: {cpu_quota: 800%, gpu_limit: 2}}}", None),
    ("resource-limits.schema.json", "groups: {s: {aggregate: {cpu: 1}}}", "did you mean 'cpu_quota'"),
    ("resource-limits.schema.json", "groups: {s: {policies: {gpu_idle_threshold: 101}}}", "maximum 100"),
    ("resource-limits.schema.json", "user_overrides: {'a@b.c': {reason: x, max_cpus: 2}}", None),
    ("resource-limits.schema.json", "user_overrides: {'a b': {}}", "is not a valid name here"),
    ("resource-limits.schema.json", "policies: {high_demand_threshold: 1.5}", "maximum 1"),
    ("resource-limits.schema.json", "container_types: {vscode: {}}", "unknown key"),
    ("resource-limits.schema.json", "container_types: {api: {idle_timeout_h: 1, sigterm_grace_s: 5}}", None),
    ("resource-limits.schema.json", "version: 2", "must be 1"),
    ("resource-limits.schema.json", "monitoring: {anything: [1, 2]}", None),
    ("resource-limits.schema.json", "[1, 2]", "is not a mapping"),
    ("user-overrides.schema.json", "null", None),
    ("user-overrides.schema.json", "bob: {max_cpus: 4, aggregate: {gpu_limit: 1}}", None),
    ("user-overrides.schema.json", "bob: {priority: 4}", None),
    ("user-overrides.schema.json", "bob: {priorty: 4}", "unknown key (did you mean 'priority'?)"),
    ("lifecycle-exemptions.schema.json", "exemptions: []", None),
    ("lifecycle-exemptions.schema.json", "exemptions: [{username: a, exempt_from: [idle_timeout_h], reason: r, approved_by: b, expires_on: null}]", None),
    ("lifecycle-exemptions.schema.json", "exemptions: [{username: a, exempt_from: [idle_timeout_h], reason: r, approved_by: b, expires_on: '2026-06-30T23:59:59Z'}]", None),
    ("lifecycle-exemptions.schema.json", "exemptions: [{username: a, exempt_from: [memory], reason: r, approved_by: b}]", "is not one of"),
    ("lifecycle-exemptions.schema.json", "exemptions: [{username: a, exempt_from: [], reason: r, approved_by: b}]", "must not be empty"),
    ("lifecycle-exemptions.schema.json", "exemptions: [{username: a, exempt_from: [max_runtime_h], reason: r, approved_by: b, expires_on: tomorrow}]", "is not a date or date-time"),
    ("mig-layout.schema.json", "version: 1\ngpus: {all: {mig-enabled: false}, '2': {mig-enabled: true, mig-devices: {3g.20gb: 2}}}", None),
    ("mig-layout.schema.json", "version: 1\ngpus: {'0': {mig-enabled: true, mig-devices: {3g.20GB: 2}}}", "is not a valid name here"),
    ("mig-layout.schema.json", "gpus: {}", "missing required key 'version'"),
    ("mig-layout.schema.json", "version: 1\ngpus: {first: {mig-enabled: false}}", "is not a valid name here"),
    ("want.schema.json", "{version: 1, kind: container, name: train, image: 'pytorch/pytorch:2.3', mig: 3g.40gb, requested_at: '2026-11-22T18:00:00Z'}", None),
    ("want.schema.json", "{version: 1, kind: container, name: t, image: i, gpus: 1, mig: 1g.5gb, requested_at: '2026-11-22T18:00:00Z'}", "set either gpus or mig, not both"),
    ("want.schema.json", "{version: 1, kind: container, name: Train, image: i, requested_at: '2026-11-22T18:00:00Z'}", "is not a container name"),
    ("want.schema.json", "{version: 1, kind: vm, name: t, image: i, requested_at: '2026-11-22T18:00:00Z'}", "must be 'container'"),
    ("want.schema.json", "{version: 1, kind: container, name: t, image: 'i;rm -rf /', requested_at: x}", "is not a image reference"),
    ("want.schema.json", "{version: 1, kind: container, name: t, image: i, requested_at: '2026-11-22', user: root}", "unknown key"),
]


@pytest.mark.parametrize(("name", "text", "expected"), CASES)
def test_fixture(name: str, text: str, expected: str | None) -> None:
    data = parse(text, "fixture.yaml").data
    errors = js.validate(name, data)
    assert (not errors) == reference(name).is_valid(data), f"disagrees with jsonschema: {errors}"
    if expected is None:
        assert errors == []
    else:
        assert any(expected in e.message for e in errors), [e.message for e in errors]


def _used_keywords(node: Any, out: set[str], in_props: bool = False) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if not in_props and not k.startswith("x-ds01-"):
                out.add(k)
            as_map = k in ("properties", "$defs", "patternProperties") and not in_props
            _used_keywords(v, out, in_props=as_map)
    elif isinstance(node, list):
        for item in node:
            _used_keywords(item, out)


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_2020_12_and_uses_only_supported_keywords(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(js.load_schema(name))
    used: set[str] = set()
    _used_keywords(js.load_schema(name), used)
    assert used - js.SUPPORTED == set()


def test_unsupported_keyword_would_be_caught() -> None:
    used: set[str] = set()
    _used_keywords({"type": "object", "properties": {"a": {"if": {}}}}, used)
    assert used - js.SUPPORTED == {"if"}


VALID = {n: [parse(t, "f").data for s, t, e in CASES if s == n and e is None] for n in NAMES}
VOCAB = sorted({k for n in NAMES for k in json.dumps(js.load_schema(n)).split('"')
                if k.replace("_", "").replace("-", "").isalnum()})[:400]
json_values = st.recursive(
    st.none() | st.booleans() | st.sampled_from([0, 1, 100, 1000, 0.0, 1.0]) | st.integers(-10, 10**12) | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["32g", "1.5T", "32gb", "800%", "30m", "2026-06-30", "3g.40gb", "x", ""]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(VOCAB), inner, max_size=3),
    max_leaves=8)


def _mutate(data: Any, draw: st.DrawFn) -> Any:
    if isinstance(data, dict) and data and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(data)))
        return {**data, key: _mutate(data[key], draw)}
    if isinstance(data, dict) and draw(st.booleans()):
        return {**data, draw(st.sampled_from(VOCAB)): draw(json_values)}
    if isinstance(data, list) and data and draw(st.booleans()):
        i = draw(st.integers(0, len(data) - 1))
        return [*data[:i], _mutate(data[i], draw), *data[i + 1:]]
    return draw(json_values)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, Any]:
    name = draw(st.sampled_from(NAMES))
    base = draw(st.sampled_from(VALID[name]))
    for _ in range(draw(st.integers(1, 3))):
        base = _mutate(base, draw)
    return name, base


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(mutated())
def test_agrees_with_jsonschema_on_random_instances(case: tuple[str, Any]) -> None:
    name, data = case
    errors = js.validate(name, data)
    assert (not errors) == reference(name).is_valid(data), errors
    assert all(e.message for e in errors)
