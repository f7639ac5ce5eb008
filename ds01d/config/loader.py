"""Load the admin's desired-state files from ``etc/ds01/`` into a :class:`DesiredConfig`.

Every error in every file is collected (file, line, key, what would be right) and raised in
one :class:`~ds01d.errors.ConfigError` together with every warning: errors never hide
warnings. Warnings (older key names, keys read and ignored, stray files) travel in
``DesiredConfig.warnings``; each older key also leaves a :class:`Rewrite` saying how it is
written today (``ds01 check-config --migrate``). Older forms are read as the lab meant them:
see docs/configuration.md, "Migrating".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ds01d import schema as js
from ds01d import units
from ds01d.config.model import (
    CONTAINER_TYPES,
    DEFAULT_ALERTS,
    EXEMPTIBLE,
    LIMIT_KEYS,
    POLICY_KEYS,
    Alerts,
    Dcgm,
    DesiredConfig,
    Exemption,
    GlobalPolicies,
    GpuLayout,
    Group,
    Layer,
    MigLayout,
    Override,
    Rewrite,
    Value,
)
from ds01d.errors import ConfigError, Diagnostic, KeyPath
from ds01d.yamlsrc import Document, load_file, read_text

LIMITS_FILE = "resource-limits.yaml"
OVERRIDES_FILE = "user-overrides.yaml"
EXEMPTIONS_FILE = "lifecycle-exemptions.yaml"
MIG_FILE = "mig-layout.yaml"
PLACEMENTS_FILE = "group-overrides.txt"
GROUPS_DIR = "groups"
ARCHIVED = "archived"
RL_SCHEMA = "resource-limits.schema.json"
BUILTIN_PRIORITY = 10
"""The priority of a group that sets none, where ``defaults`` sets none either (the older
scripts' default too)."""

_INT_KEYS = frozenset({"max_gpu_slots_per_container", "pids_limit", "max_containers_per_user",
                       "max_tasks", "tasks_max", "priority"})
_SLOT_COUNTS = frozenset({"max_mig_instances", "max_gpu_slots"})
"""Older per-user GPU counts in MIG slots: a whole GPU was ``mig_instances_per_gpu`` of them."""


def convert(key: str, value: Any) -> Value:
    """A validated raw value as ds01 uses it: bytes, hours, bytes/s, percent, int, float, bool.

    Raises ``ValueError`` (with a message for people) for a value out of the range the rest
    of ds01 computes with: a size over 1P or under the setting's least, a duration over ten
    years, a quota over 1,000 CPUs.
    """
    if value is None or isinstance(value, bool):
        return value
    if key in units.SIZE_KEYS:
        return units.check_size(key, units.parse_size(value))
    if key == "cpu_quota":
        return units.parse_percent(value)
    if key == "network_idle_threshold" and isinstance(value, str):
        return units.parse_rate(value)
    if isinstance(value, str):
        return units.parse_duration_h(value)
    return int(value) if key in _INT_KEYS else float(value)


def _defs() -> Mapping[str, Any]:
    defs: Mapping[str, Any] = js.load_schema(RL_SCHEMA)["$defs"]
    return defs


def _annotated(props: Mapping[str, Any], mark: str) -> dict[str, Any]:
    return {k: v[mark] for k, v in props.items() if mark in v}


def builtin_layer() -> Layer:
    """The schema's ``default`` for every setting: what applies where no file says."""
    defs = _defs()

    def defaults(def_name: str, keys: Iterable[str]) -> dict[str, Value]:
        props = defs[def_name]["properties"]
        return {k: convert(k, props[k]["default"]) for k in keys if "default" in props[k]}

    return Layer("builtin", defaults("limitKeys", LIMIT_KEYS), {},
                 defaults("groupPolicies", POLICY_KEYS), BUILTIN_PRIORITY)


def _dict(value: Any) -> dict[str, Any]:
    """A mapping from a file, or ``{}`` for anything else (already reported by the schema)."""
    return value if isinstance(value, dict) else {}


def _whole(raw: Any) -> bool:
    return isinstance(raw, int) and not isinstance(raw, bool)


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class _Files:
    """Collects diagnostics and rewrites while the files are read."""

    def __init__(self, etc: Path) -> None:
        self.etc = etc
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.rewrites: list[Rewrite] = []
        self.slots_per_gpu: int | None = None
        """``gpu_allocation.mig_instances_per_gpu``: how many MIG slots a whole GPU counted."""

    def document(self, name: str, schema_name: str, *, required: bool) -> Document | None:
        """The file's data with empty sections filled in; its schema errors recorded (the
        data is still returned so that warnings are found too)."""
        path = self.etc / name
        if not path.exists() and not path.is_symlink():
            if required:
                self.errors.append(Diagnostic(name, 0, "", f"missing (looked in {self.etc})"))
            return None
        try:
            doc = load_file(path, display=name)
        except ConfigError as e:
            self.errors.extend(e.errors)
            return None
        data = js.empty_sections(schema_name, doc.data)
        data = {} if data is None else data
        for err in js.validate(schema_name, data):
            self.errors.append(Diagnostic(name, doc.line_of(err.path), _dotted(err.path),
                                          err.message))
        return Document(doc.file, _dict(data), doc.lines)

    def error(self, doc: Document, path: KeyPath, message: str) -> None:
        self.errors.append(Diagnostic(doc.file, doc.line_of(path), _dotted(path), message))

    def value(self, doc: Document, path: KeyPath, key: str, raw: Any) -> tuple[bool, Value]:
        """``raw`` converted; ``(False, None)`` when it is not valid: out of range is an error
        at ``path`` (unless the schema reported one there already)."""
        try:
            return True, convert(key, raw)
        except ValueError as e:
            where = (doc.file, _dotted(path))
            if not any((d.file, d.key) == where for d in self.errors):
                self.error(doc, path, str(e))
        except (TypeError, AttributeError):
            pass  # not even the right type: the schema said so
        return False, None

    def warn(self, doc: Document, path: KeyPath, message: str) -> None:
        self.warnings.append(Diagnostic(doc.file, doc.line_of(path), _dotted(path), message))

    def rename(self, doc: Document, path: KeyPath, key: str, value: Value, why: str = "",
               *, move_to: str | None = None) -> None:
        """An older key: warn with what to write instead, and remember the rewrite."""
        text = units.show_value(value, key)
        note = f" ({why})" if why else ""
        where = f" under {move_to}" if move_to else ""
        self.warn(doc, path, f"deprecated name: write '{key}: {text}'{where} instead{note}")
        self.rewrites.append(Rewrite(doc.file, path, doc.line_of(path), key=key, value=text,
                                     move_to=move_to, note=f"was {_dotted(path)}"))

    def reform(self, doc: Document, path: KeyPath, value: Value, why: str) -> None:
        """An older form of a current key: warn with the value in today's form."""
        key = str(path[-1])
        text = units.show_value(value, key)
        self.warn(doc, path, f"older form, {why}: write '{key}: {text}' instead")
        self.rewrites.append(Rewrite(doc.file, path, doc.line_of(path), value=text))

    def ignore(self, doc: Document, path: KeyPath, why: str, what: str = "key") -> None:
        self.warn(doc, path, f"ignored: {why}; this {what} can be removed")
        self.rewrites.append(Rewrite(doc.file, path, doc.line_of(path), drop=True,
                                     note=f"ignored by ds01: {why}"))


# --- limits, aggregate and policies of one defaults/group/override mapping -----------------


def _layer(files: _Files, doc: Document, raw: Mapping[str, Any], path: KeyPath,
           source: str) -> Layer:
    """The settings of one defaults/group/override mapping, older names read as meant."""
    limits = _limits(files, doc, raw, path)
    aggregate = _aggregate(files, doc, _dict(raw.get("aggregate")), (*path, "aggregate"))
    policies = _policies(files, doc, _dict(raw.get("policies")), (*path, "policies"))
    priority = raw.get("priority")
    return Layer(source, limits, aggregate, policies, priority if _whole(priority) else None)


def _limits(files: _Files, doc: Document, raw: Mapping[str, Any], path: KeyPath
            ) -> dict[str, Value]:
    props = _defs()["limitKeys"]["properties"]
    aliases = _annotated(props, "x-ds01-alias-of")
    ignored = _annotated(props, "x-ds01-ignored")
    limits: dict[str, Value] = {}
    for key, raw_value in raw.items():
        if key in ignored:
            files.ignore(doc, (*path, key), ignored[key])
        elif key in LIMIT_KEYS:
            ok, value = files.value(doc, (*path, key), key, raw_value)
            if ok:
                limits[key] = value
        elif key in aliases:
            _alias(files, doc, raw, (*path, key), canon=aliases[key], limits=limits)
    return limits


def _alias(files: _Files, doc: Document, raw: Mapping[str, Any], path: KeyPath, *,
           canon: str, limits: dict[str, Value]) -> None:
    key = str(path[-1])
    if canon in raw:
        files.error(doc, path, f"both {key} and {canon} are set: keep only {canon}")
        return
    ok, value = files.value(doc, path, canon, raw[key])
    if not ok:
        return
    value, why = _legacy_meaning(files, key, value)
    limits[canon] = value
    files.rename(doc, path, canon, value, why)


def _legacy_meaning(files: _Files, key: str, value: Value) -> tuple[Value, str]:
    """An older GPU count in today's unit, and a note for people."""
    per_gpu = files.slots_per_gpu
    if key in _SLOT_COUNTS and isinstance(value, float) and per_gpu:
        return value / per_gpu, (f"it counted MIG slots, {per_gpu} to a whole GPU "
                                 "(gpu_allocation.mig_instances_per_gpu)")
    if key in _SLOT_COUNTS | {"max_gpus_per_user"}:
        return value, ("ds01 counts GPU-equivalents: a whole GPU is 1, a MIG instance its "
                       "compute slices/7 (3g.40gb = 0.43); review the number")
    if key in ("max_mig_per_container", "max_gpus_per_container") and per_gpu:
        return value, (f"it counted MIG slots, {per_gpu} to a whole GPU; ds01 counts devices "
                       "per container: a whole GPU or a MIG instance is 1")
    return value, ""


def _aggregate(files: _Files, doc: Document, raw: Mapping[str, Any], path: KeyPath
               ) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for key, raw_value in raw.items():
        ok, value = files.value(doc, (*path, key), key, raw_value)
        if not ok:
            continue
        per_gpu = files.slots_per_gpu
        if key == "gpu_limit" and per_gpu and _whole(raw_value) and value is not None:
            value = float(value) / per_gpu
            files.reform(doc, (*path, key), value, f"MIG slots, {per_gpu} to a whole GPU "
                         "(gpu_allocation.mig_instances_per_gpu); ds01 reads GPU-equivalents")
        out[key] = value
    return out


def _policies(files: _Files, doc: Document, raw: Mapping[str, Any], path: KeyPath
              ) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for key, raw_value in raw.items():
        if key not in POLICY_KEYS:
            continue
        ok, value = files.value(doc, (*path, key), key, raw_value)
        if not ok:
            continue
        if key == "network_idle_threshold" and not isinstance(raw_value, str):
            value = units.round_rate(float(raw_value) / 3600)
            files.reform(doc, (*path, key), value, "bytes received, checked every hour; ds01 "
                         "reads bytes per second")
        elif key == "idle_detection_window" and not isinstance(raw_value, str):
            files.reform(doc, (*path, key), value, "consecutive checks, one an hour")
        out[key] = value
    return out


# --- members, placements, archived users -------------------------------------------------


def _members_files(files: _Files, groups: Mapping[str, Any] | None
                   ) -> tuple[dict[str, set[str]], set[str]]:
    """Users per ``groups/<group>.members``, and those in ``archived.members``;
    ``groups=None``: check syntax only."""
    folder = files.etc / GROUPS_DIR
    found: dict[str, set[str]] = {}
    archived: set[str] = set()
    if not folder.is_dir():
        if folder.exists() or folder.is_symlink():  # a file, a dangling link, a loop
            files.errors.append(Diagnostic(GROUPS_DIR, 0, "", "not a folder of members files "
                                           "(remove it, or make it one): every group would "
                                           "lose the members listed there"))
        return found, archived
    pattern = _defs()["username"]["pattern"]
    for path in sorted(folder.glob("*.members")):
        display = f"{GROUPS_DIR}/{path.name}"
        try:
            text = read_text(path, display=display)
        except ConfigError as e:
            files.errors.extend(e.errors)
            continue
        users = _member_lines(files, display, text, pattern)
        if groups is not None and path.stem == ARCHIVED and ARCHIVED not in groups:
            archived = users
        elif groups is not None and path.stem not in groups:
            files.warnings.append(Diagnostic(display, 0, "", f"no group {path.stem!r} in "
                                             f"{LIMITS_FILE}: this file is ignored"))
        else:
            found[path.stem] = users
    return found, archived


def _member_lines(files: _Files, display: str, text: str, pattern: str) -> set[str]:
    users: set[str] = set()
    for n, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if js.pattern_matches(pattern, entry):
            users.add(entry)
        else:
            files.errors.append(Diagnostic(display, n, "", f"{entry!r} is not a user name "
                                           "(one user a line; # starts a comment)"))
    return users


def _placements(files: _Files, groups: Mapping[str, Any]) -> list[tuple[int, str, str]]:
    """``group-overrides.txt``: (line, user, group) for each ``user:group`` line."""
    path = files.etc / PLACEMENTS_FILE
    if not path.exists() and not path.is_symlink():
        return []
    try:
        text = read_text(path, display=PLACEMENTS_FILE)
    except ConfigError as e:
        files.errors.extend(e.errors)
        return []
    pattern = _defs()["username"]["pattern"]
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        user, sep, group = (s.strip() for s in entry.rpartition(":"))
        if not sep or not js.pattern_matches(pattern, user):
            files.errors.append(Diagnostic(PLACEMENTS_FILE, n, "", f"{entry!r} is not "
                                           "user:group (one a line; # starts a comment)"))
        elif group not in groups:
            known = ", ".join(sorted(groups)) or "none"
            files.errors.append(Diagnostic(PLACEMENTS_FILE, n, "", f"{group!r} is not a group "
                                           f"defined under groups (known: {known})"))
        else:
            out.append((n, user, group))
    return out


def _place(files: _Files, members: dict[str, set[str]], placements: list[tuple[int, str, str]],
           *, loose: bool) -> None:
    """Add each placed user to their group, unless a members list already names them (as the
    older sync did: it never moved a listed user)."""
    from ds01d.config.effective import same_user

    for line, user, group in placements:
        listed = sorted(g for g, entries in members.items()
                        if any(same_user(e, user, loose=loose) for e in entries))
        if not listed:
            members[group].add(user)
        elif group not in listed:
            files.warnings.append(Diagnostic(
                PLACEMENTS_FILE, line, "", f"{user} is placed in {group}, but the members "
                f"list of {', '.join(listed)} names them already, and wins; remove one"))


def _groups(files: _Files, doc: Document, default_priority: int
            ) -> tuple[dict[str, Group], frozenset[str]]:
    raw_groups = {k: _dict(v) for k, v in _dict(doc.data.get("groups")).items()}
    from_files, archived = _members_files(files, raw_groups)
    members = {name: {m for m in raw.get("members") or [] if isinstance(m, str)}
               | from_files.get(name, set()) for name, raw in raw_groups.items()}
    _place(files, members, _placements(files, raw_groups),
           loose=doc.data.get("match_without_domain", True) is not False)
    groups = {}
    for name, raw in raw_groups.items():
        layer = _layer(files, doc, raw, ("groups", name), f"group:{name}")
        groups[name] = Group(name, default_priority if layer.priority is None
                             else layer.priority, frozenset(members[name]),
                             tuple(raw.get("unix_groups") or []), layer)
    default = doc.data.get("default_group")
    if isinstance(default, str) and default not in groups:
        files.error(doc, ("default_group",), f"{default!r} is not a group defined under groups"
                    f" (known: {', '.join(sorted(groups)) or 'none'})")
    return groups, frozenset(archived)


# --- overrides, exemptions, the MIG layout ---------------------------------------------


def _overrides(files: _Files, doc: Document, extra: Document | None) -> dict[str, Override]:
    out: dict[str, Override] = {}
    sources: list[tuple[Document, KeyPath, Any]] = [
        (doc, ("user_overrides",), _dict(doc.data.get("user_overrides")))]
    if extra is not None:
        sources.append((extra, (), _dict(extra.data)))
    ignored = _annotated(_defs()["override"]["properties"], "x-ds01-ignored")
    for d, base, table in sources:
        for user, value in table.items():
            raw = _dict(value)
            for key in sorted(raw.keys() & ignored.keys()):
                files.ignore(d, (*base, user, key), ignored[key])
            layer = _layer(files, d, raw, (*base, user), "override")
            if user in out:
                files.warn(d, (*base, user), f"{user} also has an override in {LIMITS_FILE}; "
                           "the two are merged, this one winning per key")
                old = out[user].layer
                layer = Layer("override", {**old.limits, **layer.limits},
                              {**old.aggregate, **layer.aggregate},
                              {**old.policies, **layer.policies},
                              old.priority if layer.priority is None else layer.priority)
            reason = raw.get("reason")
            out[user] = Override(user, layer, reason if isinstance(reason, str) else None)
    return out


def _exempt_from(files: _Files, doc: Document, raw: Any, path: KeyPath) -> frozenset[str]:
    out = set()
    for i, key in enumerate(raw if isinstance(raw, list) else []):
        canon = key if key in EXEMPTIBLE else f"{key}_h"
        if canon not in EXEMPTIBLE:
            continue
        if canon != key:
            files.warn(doc, (*path, i), f"deprecated name: write '{canon}' instead")
            files.rewrites.append(Rewrite(doc.file, (*path, i), doc.line_of((*path, i)),
                                          value=canon, note=key))
        out.add(canon)
    return frozenset(out)


def _exemptions(files: _Files, doc: Document | None) -> tuple[Exemption, ...]:
    if doc is None:
        return ()
    out = []
    entries = doc.data.get("exemptions")
    for i, value in enumerate(entries if isinstance(entries, list) else []):
        raw = _dict(value)
        lifted = _exempt_from(files, doc, raw.get("exempt_from"),
                              ("exemptions", i, "exempt_from"))
        expires = raw.get("expires_on")
        try:
            when = None if expires is None else units.parse_when(str(expires))
        except ValueError as e:
            files.error(doc, ("exemptions", i, "expires_on"),
                        f"{expires!r} is not a real date: {e}")
            continue
        out.append(Exemption(str(raw.get("username", "")), lifted, str(raw.get("reason", "")),
                             str(raw.get("approved_by", "")), when))
    return tuple(out)


def _mig_layout(files: _Files, doc: Document | None) -> MigLayout | None:
    if doc is None:
        return None
    gpus = {}
    schema = js.load_schema("mig-layout.schema.json")
    data = _dict(doc.data)
    default = data.get("drain_deadline_h", schema["properties"]["drain_deadline_h"]["default"])
    for gpu, value in _dict(data.get("gpus")).items():
        raw = _dict(value)
        devices = {p: n for p, n in _dict(raw.get("mig-devices")).items() if _whole(n)}
        enabled = raw.get("mig-enabled") is True
        path = ("gpus", gpu)
        if devices and not enabled:
            files.error(doc, (*path, "mig-devices"), "mig-devices given but mig-enabled is false")
        if enabled and not devices:
            files.error(doc, (*path, "mig-enabled"), "MIG is enabled but no mig-devices are listed")
        try:
            slices = sum(units.mig_compute_slices(p) * n for p, n in devices.items())
        except ValueError:
            continue  # a profile name the schema refused
        if slices > units.COMPUTE_SLICES_PER_GPU:
            files.error(doc, (*path, "mig-devices"), f"needs {slices} compute slices; a GPU has "
                        f"{units.COMPUTE_SLICES_PER_GPU}")
        deadline = raw.get("drain_deadline_h", default)
        number = isinstance(deadline, int | float) and not isinstance(deadline, bool)
        gpus[gpu] = GpuLayout(enabled, devices, float(deadline) if number else None)
    return MigLayout(gpus)


def check_mig_layout(doc: Document) -> list[Diagnostic]:
    """Every error in one ``mig-layout.yaml`` document (schema, then sense), as ``load_config``
    would report them (``ds01 mig import`` checks what it writes with it)."""
    files = _Files(Path())
    for err in js.validate("mig-layout.schema.json", doc.data):
        files.error(doc, err.path, err.message)
    if not files.errors:
        _mig_layout(files, doc)
    return sorted(files.errors)


# --- sections read and ignored, global policies, container types -------------------------


def _ignored_sections(files: _Files, doc: Document) -> None:
    props = js.load_schema(RL_SCHEMA)["properties"]
    for key, why in _annotated(props, "x-ds01-ignored").items():
        if key in doc.data:
            files.ignore(doc, (key,), why, "section")
    for name, raw in _dict(doc.data.get("container_types")).items():
        if "default_mig_count" in _dict(raw):
            files.ignore(doc, ("container_types", name, "default_mig_count"),
                         "ds01 allocates devices by the owner's limits")


def _slots_per_gpu(doc: Document) -> int | None:
    section = _dict(doc.data.get("gpu_allocation"))
    for key in ("mig_instances_per_gpu", "slots_per_gpu"):
        value = section.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 64:
            return value
    return None


def _container_types(files: _Files, doc: Document) -> dict[str, dict[str, Value]]:
    out: dict[str, dict[str, Value]] = {}
    aliases = _annotated(_defs()["containerType"]["properties"], "x-ds01-alias-of")
    for name in CONTAINER_TYPES:
        raw = _dict(_dict(doc.data.get("container_types")).get(name))
        settings: dict[str, Value] = {}
        for key, raw_value in raw.items():
            canon = aliases.get(key, key)
            path = ("container_types", name, key)
            if canon == "default_mig_count":
                continue
            if canon != key and canon in raw:
                files.error(doc, path, f"both {key} and {canon} are set: keep only {canon}")
                continue
            ok, value = files.value(doc, path, canon, raw_value)
            if not ok:
                continue
            if canon != key:
                files.rename(doc, path, canon, value)
            settings[canon] = value
        out[name] = settings
    return out


_MINUTES = {"grace_period_m", "created_container_timeout_m"}


def _global_policies(files: _Files, doc: Document) -> tuple[GlobalPolicies, Layer]:
    """The global policies, and the lab-wide defaults they set (idle thresholds and the
    device hold after a stop, from its older name)."""
    props = _defs()["globalPolicies"]["properties"]
    raw = _dict(doc.data.get("policies"))
    path = ("policies",)
    values: dict[str, float] = {}
    limits: dict[str, Value] = {}
    for key, why in _annotated(props, "x-ds01-ignored").items():
        if key in raw:
            files.ignore(doc, (*path, key), why)
    for key, canon in _annotated(props, "x-ds01-alias-of").items():
        if key in raw:
            _policy_alias(files, doc, raw, (*path, key), canon=canon, values=values,
                          limits=limits)
    for key in GlobalPolicies.__dataclass_fields__:
        if key in raw and isinstance(raw[key], int | float) and not isinstance(raw[key], bool):
            values[key] = float(raw[key])
    policies = GlobalPolicies(**{k: values.get(k, float(props[k]["default"]))
                                 for k in GlobalPolicies.__dataclass_fields__})
    idle = _policies(files, doc, raw, path)
    return policies, Layer("policies", limits, {}, idle)


def _policy_alias(files: _Files, doc: Document, raw: Mapping[str, Any], path: KeyPath, *,
                  canon: str, values: dict[str, float], limits: dict[str, Value]) -> None:
    key = str(path[-1])
    if canon in raw or (canon == "gpu_hold_after_stop_h" and canon in limits):
        files.error(doc, path, f"both {key} and {canon} are set: keep only {canon}")
        return
    ok, value = files.value(doc, path, canon, raw[key])
    if not ok or value is None:
        return
    hours = float(value) if isinstance(raw[key], str) else None
    if canon == "gpu_hold_after_stop_h":
        limits[canon] = hours if hours is not None else float(value) / 60
        files.rename(doc, path, canon, limits[canon], "it applies to every stop; a group or "
                     "an override may set its own", move_to="defaults")
        return
    if hours is not None:
        value = hours * 60 if canon in _MINUTES else hours
    values[canon] = float(value)
    files.rename(doc, path, canon, values[canon])


def _dcgm(doc: Document) -> Dcgm | None:
    raw = _dict(doc.data.get("dcgm"))
    url = raw.get("exporter_url")
    if not isinstance(url, str):
        return None
    timeout = raw.get("timeout_s", 2.0)
    return Dcgm(url, float(timeout) if isinstance(timeout, int | float) else 2.0)


def _alerts(files: _Files, doc: Document) -> Alerts | None:
    raw = doc.data.get("alerts")
    if raw is None:
        return None
    url, url_file = raw.get("webhook_url"), raw.get("webhook_url_file")
    if url is not None and url_file is not None:
        files.error(doc, ("alerts", "webhook_url_file"),
                    "both webhook_url and webhook_url_file are set: keep only one")
    if url is None and url_file is None:
        files.error(doc, ("alerts",), "give webhook_url_file (or webhook_url): where alerts go")
    props = _defs()["alerts"]["properties"]
    return Alerts(url, url_file, tuple(raw.get("events") or DEFAULT_ALERTS),
                  float(raw.get("timeout_s", props["timeout_s"]["default"])),
                  int(raw.get("retries", props["retries"]["default"])))


def load_config(etc: Path) -> DesiredConfig:
    """Read and validate every desired-state file under ``etc`` (``<root>/etc/ds01``)."""
    files = _Files(etc)
    doc = files.document(LIMITS_FILE, RL_SCHEMA, required=True)
    extra = files.document(OVERRIDES_FILE, "user-overrides.schema.json", required=False)
    exempt_doc = files.document(EXEMPTIONS_FILE, "lifecycle-exemptions.schema.json",
                                required=False)
    mig_doc = files.document(MIG_FILE, "mig-layout.schema.json", required=False)
    if doc is None:
        _members_files(files, None)
        raise ConfigError(sorted(files.errors), sorted(files.warnings))
    invalid = bool(files.errors)
    try:
        config = _build(files, doc, extra, exempt_doc, mig_doc)
    except (TypeError, AttributeError, KeyError, ValueError):
        if not invalid:
            raise  # a file the schemas accept must always load: a bug, not a bad file
        config = None  # the shapes the schema refused went further than the guards expect
    if files.errors or config is None:
        raise ConfigError(sorted(files.errors), sorted(files.warnings))
    return config


def _build(files: _Files, doc: Document, extra: Document | None, exempt_doc: Document | None,
           mig_doc: Document | None) -> DesiredConfig:
    files.slots_per_gpu = _slots_per_gpu(doc)
    _ignored_sections(files, doc)
    defaults = _layer(files, doc, _dict(doc.data.get("defaults")), ("defaults",), "defaults")
    policies, lab_defaults = _global_policies(files, doc)
    groups, archived = _groups(files, doc, defaults.priority if defaults.priority is not None
                               else BUILTIN_PRIORITY)
    return DesiredConfig(
        builtin=builtin_layer(),
        defaults=defaults,
        default_group=doc.data.get("default_group"),
        groups=groups,
        overrides=_overrides(files, doc, extra),
        exemptions=_exemptions(files, exempt_doc),
        policies=policies,
        container_types=_container_types(files, doc),
        mig_layout=_mig_layout(files, mig_doc),
        warnings=tuple(sorted(files.warnings)),
        lab_defaults=lab_defaults,
        archived=archived,
        match_without_domain=doc.data.get("match_without_domain", True) is not False,
        dcgm=_dcgm(doc),
        rewrites=tuple(files.rewrites),
        alerts=_alerts(files, doc),
        socket_admins=tuple((doc.data.get("docker_socket") or {}).get("admin_groups") or ()),
    )

