"""NVIDIA mig-parted's configuration file, turned into ds01's ``mig-layout.yaml``.

mig-parted (``version: v1``) names layouts under ``mig-configs``; each is a list of entries
with ``devices`` (``all`` or GPU indexes), ``mig-enabled`` and ``mig-devices`` (profile ->
count). ds01 takes the one named, and refuses, with the line and the reason, what it cannot
express: ``device-filter`` (ds01 lays out GPUs by index), compute-instance profiles such as
``1c.2g.10gb`` (ds01 gives each GPU instance one compute instance filling it), MIG on with no
instances, and a GPU named by two entries. Pure: text in, text or errors out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ds01d.errors import Diagnostic, KeyPath
from ds01d.yamlsrc import Document

_PROFILE = re.compile(r"^([1-8]c\.)?([1-7]g\.[0-9]+gb(\+me|\+gfx|\+me\.all)?)\Z")
_ENTRY_KEYS = ("devices", "mig-enabled", "mig-devices", "device-filter")


class _Errors:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.found: list[Diagnostic] = []

    def add(self, path: KeyPath, message: str) -> None:
        key = ".".join(str(p) for p in path)
        self.found.append(Diagnostic(self.doc.file, self.doc.line_of(path), key, message))


def convert(doc: Document, name: str) -> tuple[dict[str, dict[str, Any]], list[Diagnostic]]:
    """ds01's ``gpus:`` mapping for mig-parted config ``name``, and every error found."""
    errors = _Errors(doc)
    data = doc.data
    if not isinstance(data, dict):
        errors.add((), "not a mig-parted configuration (a mapping with version: v1 and "
                   "mig-configs)")
        return {}, errors.found
    for key in data:
        if key not in ("version", "mig-configs"):
            errors.add((key,), "unknown key (mig-parted's v1 format has version and "
                       "mig-configs)")
    if data.get("version") != "v1":
        errors.add(("version",), f"{data.get('version')!r}: ds01 reads mig-parted's v1 format")
    configs = data.get("mig-configs")
    if not isinstance(configs, dict) or name not in configs:
        known = ", ".join(sorted(configs)) if isinstance(configs, dict) else "none"
        errors.add(("mig-configs",), f"no config {name!r} (there are: {known})")
        return {}, errors.found
    entries = configs[name]
    if not isinstance(entries, list) or not entries:
        errors.add(("mig-configs", name), "a config is a list of entries (devices, "
                   "mig-enabled, mig-devices)")
        return {}, errors.found
    gpus: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(entries):
        path: KeyPath = ("mig-configs", name, i)
        layout = _entry(entry, path, errors)
        devices = _devices(entry, path, errors) if isinstance(entry, dict) else []
        if layout is None:
            continue
        for device in devices:
            if device in gpus or (gpus and "all" in (device, *gpus)):
                errors.add((*path, "devices"), f"GPU {device} is also in another entry: ds01 "
                           "cannot tell which one applies (name each GPU once)")
            else:
                gpus[device] = layout
    return gpus, errors.found


def _entry(entry: Any, path: KeyPath, errors: _Errors) -> dict[str, Any] | None:
    if not isinstance(entry, dict):
        errors.add(path, "an entry is a mapping (devices, mig-enabled, mig-devices)")
        return None
    for key in entry:
        if key == "device-filter":
            errors.add((*path, key), "ds01 cannot express device-filter: it lays out GPUs by "
                       "index (list them under devices)")
        elif key not in _ENTRY_KEYS:
            errors.add((*path, key), f"unknown key (an entry has {', '.join(_ENTRY_KEYS[:3])})")
    enabled = entry.get("mig-enabled")
    if not isinstance(enabled, bool):
        errors.add((*path, "mig-enabled"), "true or false is needed")
        return None
    devices = _profiles(entry.get("mig-devices") or {}, (*path, "mig-devices"), errors)
    if devices is None:
        return None
    if enabled and not devices:
        errors.add((*path, "mig-devices"), "ds01 cannot express MIG on with no instances (the "
                   "GPU would serve nothing): list its mig-devices, or set mig-enabled: false")
        return None
    if devices and not enabled:
        errors.add((*path, "mig-devices"), "mig-devices given but mig-enabled is false")
        return None
    return {"mig-enabled": True, "mig-devices": devices} if enabled else {"mig-enabled": False}


def _profiles(raw: Any, path: KeyPath, errors: _Errors) -> dict[str, int] | None:
    if not isinstance(raw, dict):
        errors.add(path, "a mapping of MIG profile -> count is needed")
        return None
    out: dict[str, int] = {}
    for profile, count in raw.items():
        found = _PROFILE.match(str(profile))
        if found is None:
            errors.add((*path, profile), "not a MIG profile (such as 1g.10gb or 3g.40gb)")
        elif found.group(1):
            errors.add((*path, profile), f"ds01 cannot express compute-instance profiles: it "
                       f"gives each GPU instance one compute instance filling it (write "
                       f"{found.group(2)})")
        elif isinstance(count, bool) or not isinstance(count, int) or count < 0:
            errors.add((*path, profile), f"{count!r}: a count of instances (0 or more) is needed")
        elif count:
            out[str(profile)] = count
    return out if len(out) == sum(1 for c in raw.values() if c) else None


def _devices(entry: Mapping[str, Any], path: KeyPath, errors: _Errors) -> list[str]:
    raw = entry.get("devices")
    if raw == "all":
        return ["all"]
    if isinstance(raw, list) and raw and all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 99 for d in raw):
        return [str(d) for d in raw]
    errors.add((*path, "devices"), "all, or a list of GPU indexes such as [0, 1], is needed")
    return []


def to_yaml(gpus: Mapping[str, Mapping[str, Any]], *, header: str) -> str:
    """``mig-layout.yaml`` text: ``all`` first, then GPUs by index."""
    lines = [f"# {line}" for line in header.splitlines()] + ["version: 1", "gpus:"]
    for key in sorted(gpus, key=lambda k: (k != "all", int(k) if k.isdigit() else 0)):
        layout = gpus[key]
        label = key if key == "all" else f'"{key}"'
        if not layout["mig-enabled"]:
            lines.append(f"  {label}: {{mig-enabled: false}}")
            continue
        devices = ", ".join(f"{p}: {n}" for p, n in sorted(layout["mig-devices"].items()))
        lines += [f"  {label}:", "    mig-enabled: true", f"    mig-devices: {{{devices}}}"]
    return "\n".join(lines) + "\n"
