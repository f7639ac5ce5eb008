"""A user's wanted container: the want file, its round trip, and checks against limits."""

from __future__ import annotations

from ds01d import units
from ds01d.config.values import Limits
from ds01d.errors import ConfigError, Diagnostic
from ds01d.record import Record
from ds01d.units import iso, parse_when

TYPE_CHECKING = False  # mypy reads this name as True; ds01 want's start-up is measured
if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from typing import Any

    from ds01d.config.settings import ContainerSettings
    from ds01d.yamlsrc import Document

WANT_SCHEMA = "want.schema.json"


class Want(Record):
    """One wanted container (``var/lib/ds01/wants/<user>/<name>.yaml``).

    ``user`` is never read from the file: it is who owns the file and its folder.
    """

    __slots__ = (
        "cpus",
        "gpus",
        "image",
        "keepalive_until",
        "memory",
        "mig",
        "name",
        "requested_at",
        "settings",
        "shm",
        "user",
    )
    user: str
    name: str
    image: str
    requested_at: datetime
    gpus: int | None
    mig: str | None
    cpus: float | None
    memory: int | None
    shm: int | None
    keepalive_until: datetime | None
    settings: ContainerSettings | None
    """How the container is run (a create through the Docker socket, or ``ds01 want
    --command/--env/--port``); ``None``: ds01's plain container (``sleep infinity``,
    ``~/workspace/NAME`` at /workspace)."""

    def __init__(self, user: str, name: str, image: str, requested_at: datetime, *,
                 gpus: int | None = None, mig: str | None = None, cpus: float | None = None,
                 memory: int | None = None, shm: int | None = None,
                 keepalive_until: datetime | None = None,
                 settings: ContainerSettings | None = None) -> None:
        self._set(locals())

    @property
    def gpu_equivalents(self) -> float:
        """GPU-equivalents this want asks for: 1.0 a GPU, slices/7 a MIG instance."""
        if self.mig is not None:
            return units.mig_gpu_equivalents(self.mig)
        return float(self.gpus or 0)

    @property
    def device_count(self) -> int:
        return 1 if self.mig is not None else (self.gpus or 0)


def spec_hash(want: Want) -> str:
    """What the container was made from: asking again with other options replaces it."""
    import hashlib

    text = f"{want.image}|{want.gpus}|{want.mig}|{want.cpus}|{want.memory}|{want.shm}"
    if want.settings is not None:
        import json

        text += "|" + json.dumps(_settings_data(want.settings), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _yaml_value(value: object) -> str:
    """A value as YAML 1.1 (PyYAML) reads it back unchanged: a float keeps a decimal point
    before any exponent (``1e-10`` would be read as a string); a string is double-quoted (the
    values written here are names, images, profiles, sizes and times: no escapes needed)."""
    if isinstance(value, float):
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, dict):  # container settings: JSON, which YAML reads as a flow mapping
        import json

        return json.dumps(value, sort_keys=True)
    if isinstance(value, str):
        if any(c in value for c in '"\\') or not value.isprintable():
            raise ValueError(f"{value!r} cannot be written in a want file")
        return f'"{value}"'
    return str(value)


def to_yaml(want: Want) -> str:
    """The want file's text: stable key order, one ``key: value`` a line (valid YAML)."""
    fields: list[tuple[str, Any]] = [
        ("version", 1), ("kind", "container"), ("name", want.name), ("image", want.image),
        ("gpus", want.gpus), ("mig", want.mig), ("cpus", want.cpus),
        ("memory", None if want.memory is None else units.format_size(want.memory)),
        ("shm", None if want.shm is None else units.format_size(want.shm)),
        ("requested_at", iso(want.requested_at)),
        ("keepalive_until", None if want.keepalive_until is None else iso(want.keepalive_until)),
        ("container", None if want.settings is None else _settings_data(want.settings)),
    ]
    lines = ["# ds01 want: written by `ds01 want container`; edit with ds01, not by hand"]
    lines += [f"{k}: {_yaml_value(v)}" for k, v in fields if v is not None]
    return "\n".join(lines) + "\n"


def from_data(data: Any, *, user: str, file: str, doc: Document | None = None) -> Want:
    """The one judge of a want's values, for ``ds01 want`` and ds01d alike: the schema, then
    what it cannot say (the least size, a real date). :class:`ConfigError` otherwise.

    ``doc``: where the data came from, for line numbers.
    """
    from ds01d import schema as js

    def line(path: tuple[str | int, ...]) -> int:
        return doc.line_of(path) if doc is not None else 0

    errs = js.validate(WANT_SCHEMA, data)
    if errs:
        raise ConfigError([Diagnostic(file, line(e.path), ".".join(map(str, e.path)),
                                      e.message) for e in errs])
    key = ""
    try:
        key = "requested_at"
        requested_at = parse_when(data["requested_at"])
        key = "keepalive_until"
        keep = data.get("keepalive_until")
        keepalive_until = None if keep is None else parse_when(keep)
        sizes = {}
        for key in ("memory", "shm"):
            raw = data.get(key)
            sizes[key] = None if raw is None else units.check_size(key, units.parse_size(raw))
    except ValueError as e:
        raise ConfigError([Diagnostic(file, line((key,)), key, str(e))]) from None
    cpus, gpus = data.get("cpus"), data.get("gpus")
    return Want(user=user, name=data["name"], image=data["image"], requested_at=requested_at,
                gpus=int(gpus) or None if gpus is not None else None, mig=data.get("mig"),
                cpus=None if cpus is None else float(cpus), memory=sizes["memory"],
                shm=sizes["shm"], keepalive_until=keepalive_until,
                settings=None if data.get("container") is None else _settings(data["container"]))


def from_yaml(text: str, *, user: str, file: str) -> Want:
    """A :class:`Want` from a want file's text, or :class:`ConfigError` saying what is wrong.

    The file is read within the bounds of files users write (``yamlsrc.USER``).
    """
    from ds01d.yamlsrc import USER, parse

    doc = parse(text, file, bounds=USER)
    return from_data(doc.data, user=user, file=file, doc=doc)


def read_want(folder: int, user: str, name: str) -> Want:
    """The want ``name`` in the open folder ``folder``, read as ds01d reads it: no link
    followed, no wait on a FIFO, a regular file within the bounds of user files.
    ``OSError``: none there, or not readable; :class:`ConfigError`: not a valid want."""
    import os

    from ds01d.yamlsrc import USER, read_fd

    file = f"{name}.yaml"
    fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    try:
        return from_yaml(read_fd(fd, display=file, bounds=USER), user=user, file=file)
    finally:
        os.close(fd)


def _settings_data(s: ContainerSettings) -> dict[str, Any]:
    from ds01d.config.settings import to_data

    return to_data(s)


def _settings(data: dict[str, Any]) -> ContainerSettings:
    from ds01d.config.settings import from_data as settings_from_data

    return settings_from_data(data)


def _over(what: str, asked: str, limit: str, key: str) -> str:
    return f"{what} {asked} is over your limit of {limit} ({key})"


def limit_problems(want: Want, limits: Limits, profiles: Sequence[str] = ()) -> list[str]:
    """Why ``want`` can never be served under ``limits`` (empty: it can).

    ``profiles``: the MIG profiles this server offers, named when full GPUs are refused.
    """
    problems = []
    if want.gpus and not limits.allow_full_gpu:
        quota = limits.max_gpu_equivalents
        fit = [p for p in profiles if quota is None or units.mig_gpu_equivalents(p) <= quota]
        offer = f" ({', '.join(fit)})" if fit else ""
        problems.append("your group may not use full GPUs (allow_full_gpu is false): ask for a "
                        f"MIG instance with --mig PROFILE instead{offer}")
    slots = limits.max_gpu_slots_per_container
    if slots is not None and want.device_count > slots:
        problems.append(_over("asking for", f"{want.device_count} devices", str(slots),
                              "max_gpu_slots_per_container"))
    quota = limits.max_gpu_equivalents
    if quota is not None and want.gpu_equivalents > quota + 1e-9:
        problems.append(_over("asking for",
                              units.quantity(want.gpu_equivalents, "GPU-equivalent", ".3g"),
                              f"{quota:g}", "max_gpu_equivalents"))
    if want.cpus is not None and limits.max_cpus is not None and want.cpus > limits.max_cpus:
        problems.append(_over("--cpus", f"{want.cpus:g}", f"{limits.max_cpus:g}", "max_cpus"))
    for what, asked, limit, key in (("--memory", want.memory, limits.memory, "memory"),
                                    ("--shm", want.shm, limits.shm_size, "shm_size")):
        if asked is not None and limit is not None and asked > limit:
            problems.append(_over(what, units.format_size(asked), units.format_size(limit), key))
    return problems


def host_problems(want: Want, profiles: Sequence[str], whole: int) -> list[str]:
    """Why this server can never serve ``want``, whatever is running: ``profiles``, the MIG
    profiles it has; ``whole``, its GPUs with MIG off."""
    if want.mig is not None and want.mig not in profiles:
        have = ", ".join(profiles) or "none"
        return [f"this server has no {want.mig} MIG instances (it has: {have})"]
    if want.gpus and want.gpus > whole:
        return [f"this server has {whole} whole GPUs (MIG off); {want.gpus} asked"]
    return []


def with_defaults(want: Want, limits: Limits) -> Want:
    """Fill unset cpus/memory/shm with the user's per-container limits."""
    return want.replace(
        cpus=want.cpus if want.cpus is not None else limits.max_cpus,
        memory=want.memory if want.memory is not None else limits.memory,
        shm=want.shm if want.shm is not None else limits.shm_size,
    )
