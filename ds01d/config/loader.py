"""Load the admin's desired-state files from ``etc/ds01/`` into a :class:`DesiredConfig`.

Every error in every file is collected (file, line, key, what would be right) before
:class:`~ds01d.errors.ConfigError` is raised; warnings (deprecated keys, ignored sections,
stray members files) travel in ``DesiredConfig.warnings``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ds01d import schema as js
from ds01d import units
from ds01d.config.model import (
    CONTAINER_TYPES,
    DEFAULT_ALERTS,
    LIMIT_KEYS,
    POLICY_KEYS,
    Alerts,
    DesiredConfig,
    Exemption,
    GlobalPolicies,
    GpuLayout,
    Group,
    Layer,
    MigLayout,
    Override,
    Value,
)
from ds01d.errors import ConfigError, Diagnostic, KeyPath
from ds01d.yamlsrc import Document, load_file, read_text

LIMITS_FILE = "resource-limits.yaml"
OVERRIDES_FILE = "user-overrides.yaml"
EXEMPTIONS_FILE = "lifecycle-exemptions.yaml"
MIG_FILE = "mig-layout.yaml"
GROUPS_DIR = "groups"
RL_SCHEMA = "resource-limits.schema.json"

_INT_KEYS = frozenset({"max_gpu_slots_per_container", "pids_limit", "max_containers_per_user",
                       "max_tasks", "tasks_max", "gpu_limit"})


def convert(key: str, value: Any) -> Value:
    """A validated raw value as ds01 uses it: bytes, hours, percent, int, float, bool.

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
                 defaults("groupPolicies", POLICY_KEYS))


class _Files:
    """Collects diagnostics while the files are read."""

    def __init__(self, etc: Path) -> None:
        self.etc = etc
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []

    def document(self, name: str, schema_name: str, *, required: bool) -> Document | None:
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
        data = {} if doc.data is None else doc.data
        errs = js.validate(schema_name, data)
        for err in errs:
            self.errors.append(Diagnostic(name, doc.line_of(err.path), _dotted(err.path),
                                          err.message))
        return None if errs else Document(doc.file, data, doc.lines)

    def error(self, doc: Document, path: KeyPath, message: str) -> None:
        self.errors.append(Diagnostic(doc.file, doc.line_of(path), _dotted(path), message))

    def warn(self, doc: Document, path: KeyPath, message: str) -> None:
        self.warnings.append(Diagnostic(doc.file, doc.line_of(path), _dotted(path), message))

    def convert(self, doc: Document, path: KeyPath, key: str, value: Any) -> Value | None:
        """:func:`convert`, an error at ``path`` (and ``None``) when out of range."""
        try:
            return convert(key, value)
        except ValueError as e:
            self.error(doc, path, str(e))
            return None


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _layer(files: _Files, doc: Document, raw: Mapping[str, Any], path: KeyPath,
           source: str) -> Layer:
    """The settings of one defaults/group/override mapping, legacy names canonicalised."""
    aliases = _annotated(_defs()["limitKeys"]["properties"], "x-ds01-alias-of")
    limits: dict[str, Value] = {}
    for key, value in raw.items():
        canon = aliases.get(key)
        if canon is None:
            if key in LIMIT_KEYS:
                limits[key] = files.convert(doc, (*path, key), key, value)
            continue
        if canon in raw:
            files.error(doc, (*path, key), f"both {key} and {canon} are set: keep only {canon}")
            continue
        limits[canon] = files.convert(doc, (*path, key), canon, value)
        files.warn(doc, (*path, key), f"deprecated name: write '{canon}: "
                   f"{units.show_value(limits[canon], canon)}' instead")
    aggregate = {k: files.convert(doc, (*path, "aggregate", k), k, v)
                 for k, v in (raw.get("aggregate") or {}).items()}
    policies = {k: files.convert(doc, (*path, "policies", k), k, v)
                for k, v in (raw.get("policies") or {}).items()}
    return Layer(source, limits, aggregate, policies)


def _members_files(files: _Files, groups: Mapping[str, Any] | None) -> dict[str, set[str]]:
    """Users per ``groups/<group>.members``; ``groups=None``: check syntax only."""
    folder = files.etc / GROUPS_DIR
    found: dict[str, set[str]] = {}
    if not folder.is_dir():
        if folder.exists() or folder.is_symlink():  # a file, a dangling link, a loop
            files.errors.append(Diagnostic(GROUPS_DIR, 0, "", "not a folder of members files "
                                           "(remove it, or make it one): every group would "
                                           "lose the members listed there"))
        return found
    pattern = re.compile(_defs()["username"]["pattern"])
    for path in sorted(folder.glob("*.members")):
        display = f"{GROUPS_DIR}/{path.name}"
        try:
            text = read_text(path, display=display)
        except ConfigError as e:
            files.errors.extend(e.errors)
            continue
        if groups is not None and path.stem not in groups:
            files.warnings.append(Diagnostic(display, 0, "", f"no group {path.stem!r} in "
                                             f"{LIMITS_FILE}: this file is ignored"))
            continue
        found[path.stem] = _member_lines(files, display, text, pattern)
    return found


def _member_lines(files: _Files, display: str, text: str, pattern: re.Pattern[str]) -> set[str]:
    users: set[str] = set()
    for n, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if pattern.search(entry):
            users.add(entry)
        else:
            files.errors.append(Diagnostic(display, n, "", f"{entry!r} is not a user name "
                                           "(one user a line; # starts a comment)"))
    return users


def _groups(files: _Files, doc: Document) -> dict[str, Group]:
    raw_groups: Mapping[str, Any] = doc.data.get("groups") or {}
    from_files = _members_files(files, raw_groups)
    groups = {}
    for name, raw in raw_groups.items():
        members = frozenset(raw.get("members", [])) | frozenset(from_files.get(name, ()))
        groups[name] = Group(name, int(raw.get("priority", 0)), members,
                             tuple(raw.get("unix_groups", [])),
                             _layer(files, doc, raw, ("groups", name), f"group:{name}"))
    default = doc.data.get("default_group")
    if default is not None and default not in groups:
        files.error(doc, ("default_group",), f"{default!r} is not a group defined under groups"
                    f" (known: {', '.join(sorted(groups)) or 'none'})")
    return groups


def _overrides(files: _Files, doc: Document, extra: Document | None) -> dict[str, Override]:
    out: dict[str, Override] = {}
    sources: list[tuple[Document, KeyPath, Any]] = [
        (doc, ("user_overrides",), doc.data.get("user_overrides") or {})]
    if extra is not None:
        sources.append((extra, (), extra.data))
    for d, base, table in sources:
        for user, raw in table.items():
            layer = _layer(files, d, raw, (*base, user), "override")
            if user in out:
                files.warn(d, (*base, user), f"{user} also has an override in {LIMITS_FILE}; "
                           "the two are merged, this one winning per key")
                old = out[user].layer
                layer = Layer("override", {**old.limits, **layer.limits},
                              {**old.aggregate, **layer.aggregate},
                              {**old.policies, **layer.policies})
            out[user] = Override(user, layer, raw.get("reason"))
    return out


def _exemptions(files: _Files, doc: Document | None) -> tuple[Exemption, ...]:
    if doc is None:
        return ()
    out = []
    for i, raw in enumerate(doc.data.get("exemptions") or []):
        expires = raw.get("expires_on")
        try:
            when = None if expires is None else units.parse_when(expires)
        except ValueError as e:
            files.error(doc, ("exemptions", i, "expires_on"),
                        f"{expires!r} is not a real date: {e}")
            continue
        out.append(Exemption(raw["username"], frozenset(raw["exempt_from"]), raw["reason"],
                             raw["approved_by"], when))
    return tuple(out)


def _mig_layout(files: _Files, doc: Document | None) -> MigLayout | None:
    if doc is None:
        return None
    gpus = {}
    schema = js.load_schema("mig-layout.schema.json")
    default = doc.data.get("drain_deadline_h", schema["properties"]["drain_deadline_h"]["default"])
    for gpu, raw in doc.data["gpus"].items():
        devices = dict(raw.get("mig-devices") or {})
        path = ("gpus", gpu)
        if devices and not raw["mig-enabled"]:
            files.error(doc, (*path, "mig-devices"), "mig-devices given but mig-enabled is false")
        if raw["mig-enabled"] and not devices:
            files.error(doc, (*path, "mig-enabled"), "MIG is enabled but no mig-devices are listed")
        slices = sum(units.mig_compute_slices(p) * n for p, n in devices.items())
        if slices > units.COMPUTE_SLICES_PER_GPU:
            files.error(doc, (*path, "mig-devices"), f"needs {slices} compute slices; a GPU has "
                        f"{units.COMPUTE_SLICES_PER_GPU}")
        deadline = raw.get("drain_deadline_h", default)
        gpus[gpu] = GpuLayout(bool(raw["mig-enabled"]), devices,
                              None if deadline is None else float(deadline))
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


def _ignored_sections(files: _Files, doc: Document) -> None:
    props = js.load_schema(RL_SCHEMA)["properties"]
    for key, why in _annotated(props, "x-ds01-ignored").items():
        if key in doc.data:
            files.warn(doc, (key,), f"ignored: {why}; this section can be removed")
    for name, raw in (doc.data.get("container_types") or {}).items():
        if "default_mig_count" in raw:
            files.warn(doc, ("container_types", name, "default_mig_count"),
                       "ignored: ds01 allocates devices by the owner's limits")


def _container_types(files: _Files, doc: Document) -> dict[str, dict[str, Value]]:
    out: dict[str, dict[str, Value]] = {}
    aliases = _annotated(_defs()["containerType"]["properties"], "x-ds01-alias-of")
    for name in CONTAINER_TYPES:
        raw = (doc.data.get("container_types") or {}).get(name, {})
        settings: dict[str, Value] = {}
        for key, value in raw.items():
            canon = aliases.get(key, key)
            if canon == "default_mig_count":
                continue
            if canon != key and canon in raw:
                files.error(doc, ("container_types", name, key),
                            f"both {key} and {canon} are set: keep only {canon}")
                continue
            settings[canon] = files.convert(doc, ("container_types", name, key), canon, value)
            if canon != key:
                files.warn(doc, ("container_types", name, key), f"deprecated name: write "
                           f"'{canon}: {units.show_value(settings[canon], canon)}' instead")
        out[name] = settings
    return out


def _global_policies(doc: Document) -> GlobalPolicies:
    props = _defs()["globalPolicies"]["properties"]
    raw = doc.data.get("policies") or {}
    return GlobalPolicies(**{k: float(raw.get(k, props[k]["default"])) for k in props})


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
        raise ConfigError(sorted(files.errors))
    _ignored_sections(files, doc)
    config = DesiredConfig(
        builtin=builtin_layer(),
        defaults=_layer(files, doc, doc.data.get("defaults") or {}, ("defaults",), "defaults"),
        default_group=doc.data.get("default_group"),
        groups=_groups(files, doc),
        overrides=_overrides(files, doc, extra),
        exemptions=_exemptions(files, exempt_doc),
        policies=_global_policies(doc),
        container_types=_container_types(files, doc),
        mig_layout=_mig_layout(files, mig_doc),
        warnings=tuple(sorted(files.warnings)),
        alerts=_alerts(files, doc),
        socket_admins=tuple((doc.data.get("docker_socket") or {}).get("admin_groups") or ()),
    )
    if files.errors:
        raise ConfigError(sorted(files.errors))
    return config
