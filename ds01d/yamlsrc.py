"""Read a YAML file safely and keep the line of every key.

Every file a user or admin writes may be wrong, huge, a symlink, deeply nested, full of
aliases or not text at all. This module turns any bytes into either a :class:`Document`
(JSON-like data plus a path -> line map) or a :class:`~ds01d.errors.ConfigError` with a
precise line: never another exception.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ds01d.errors import ConfigError, Diagnostic, KeyPath

MAX_BYTES = 1 << 20
"""Largest desired-state file read (1 MiB): a lab's config is a few KiB; anything bigger is a
mistake or an attack, and parsing it would stall the daemon's pass."""
MAX_NODES = 200_000
"""Most YAML nodes visited, aliases counted each time they are used ("billion laughs")."""
MAX_DEPTH = 64
"""Deepest nesting accepted; real files nest four levels."""
_CORE = "tag:yaml.org,2002:"
_TAGS = frozenset(_CORE + t for t in ("null", "bool", "int", "float", "str", "timestamp",
                                      "map", "seq", "merge"))

JSON = Any


@dataclass(frozen=True)
class Document:
    """Parsed YAML: plain data (dict/list/str/int/float/bool/None) and where each key was."""

    file: str
    data: JSON
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: Iterable[str | int]) -> int:
        """The line of ``path``, or of its nearest ancestor that has one (0: none)."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return 1 if self.lines else 0


class _Refused(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def read_text(path: Path, *, display: str, follow_symlinks: bool = True) -> str:
    """The text of a regular file of at most :data:`MAX_BYTES`, as UTF-8.

    ``follow_symlinks=False`` refuses a symlink (for files that users write: a link to
    ``/etc/shadow`` must not be read with the daemon's privileges).
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as e:
        why = "is a symlink, which is not accepted here" if e.errno == 40 else e.strerror
        raise ConfigError([Diagnostic(display, 0, "", f"cannot read: {why}")]) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError([Diagnostic(display, 0, "", "not a regular file")])
        raw = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:
        limit = f"{MAX_BYTES // 1024} KiB"
        raise ConfigError([Diagnostic(display, 0, "", f"file is larger than {limit}")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError([Diagnostic(display, line, "", "not UTF-8 text")]) from None


def load_file(path: Path, *, display: str, follow_symlinks: bool = True) -> Document:
    """:func:`read_text` then :func:`parse`."""
    return parse(read_text(path, display=display, follow_symlinks=follow_symlinks), display)


def parse(text: str, file: str) -> Document:
    """Parse one YAML document into a :class:`Document`, or raise :class:`ConfigError`."""
    import yaml

    if "\x00" in text:
        raise ConfigError([Diagnostic(file, 0, "", "contains NUL bytes: not a text file")])
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_cls(text)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        data = None if node is None else _Walker(loader, lines).convert(node, (), 0)
        return Document(file, data, lines)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        what = e.problem or e.context or "not valid YAML"
        raise ConfigError([Diagnostic(file, line, "", f"not valid YAML: {what}")]) from None
    except yaml.YAMLError as e:
        raise ConfigError([Diagnostic(file, 0, "", f"not valid YAML: {e}")]) from None
    except _Refused as e:
        raise ConfigError([Diagnostic(file, e.line, "", e.message)]) from None
    except RecursionError:
        raise ConfigError([Diagnostic(file, 0, "", "nested too deeply")]) from None
    finally:
        loader.dispose()


class _Walker:
    """Turns a composed node tree into plain data, recording the line of every key."""

    def __init__(self, loader: Any, lines: dict[KeyPath, int]) -> None:
        self.loader = loader
        self.lines = lines
        self.count = 0
        self.active: set[int] = set()

    def convert(self, node: Any, path: KeyPath, depth: int) -> JSON:
        import yaml

        line = node.start_mark.line + 1
        self.count += 1
        if self.count > MAX_NODES:
            raise _Refused(line, f"more than {MAX_NODES} values (aliases counted each use)")
        if depth > MAX_DEPTH:
            raise _Refused(line, f"nested more than {MAX_DEPTH} levels deep")
        if node.tag not in _TAGS:
            raise _Refused(line, f"tag {node.tag!r} is not allowed here (plain YAML only)")
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, line)
        if id(node) in self.active:
            raise _Refused(line, "an alias refers to itself (recursive structure)")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, path, depth)
            return self._mapping(node, path, depth)
        finally:
            self.active.discard(id(node))

    def _sequence(self, node: Any, path: KeyPath, depth: int) -> list[JSON]:
        out = []
        for i, child in enumerate(node.value):
            self.lines.setdefault((*path, i), child.start_mark.line + 1)
            out.append(self.convert(child, (*path, i), depth + 1))
        return out

    def _mapping(self, node: Any, path: KeyPath, depth: int) -> dict[str, JSON]:
        import yaml

        self.loader.flatten_mapping(node)
        out: dict[str, JSON] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused(line, "a key must be a plain word, not a list or mapping")
            key = str(key_node.value)
            if key in out:
                raise _Refused(line, f"key {key!r} appears twice in the same mapping")
            self.lines.setdefault((*path, key), line)
            out[key] = self.convert(value_node, (*path, key), depth + 1)
        return out

    def _scalar(self, node: Any, line: int) -> JSON:
        tag = node.tag
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag == "tag:yaml.org,2002:bool":
            return bool(self.loader.construct_yaml_bool(node))
        if tag == "tag:yaml.org,2002:int":
            return int(self.loader.construct_yaml_int(node))
        if tag == "tag:yaml.org,2002:float":
            value = float(self.loader.construct_yaml_float(node))
            if not math.isfinite(value):
                raise _Refused(line, f"{node.value!r} is not a finite number")
            return value
        return str(node.value)
