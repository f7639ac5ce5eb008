"""Read a YAML file safely and keep the line of every key.

Every file a user or admin writes may be wrong, huge, a symlink, deeply nested, full of
aliases or merge keys, or not text at all. This module turns any bytes into either a
:class:`Document` (JSON-like data plus a path -> line map) or a
:class:`~ds01d.errors.ConfigError` with a precise line: never another exception.

What one file may cost is bounded by a :class:`Bounds` value: bytes, nesting depth, values
visited (aliases and merge keys counted each time they are used) and entries per mapping or
list. Admin files get :data:`ADMIN`; the files users write get the much smaller :data:`USER`.
The parser never sees a file nested deeper than :attr:`Bounds.scan_depth` (a pre-scan of the
text), so no version of libyaml or PyYAML can recurse on it; merge keys are expanded here,
counted, not by PyYAML's ``flatten_mapping``.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ds01d.errors import ConfigError, Diagnostic, KeyPath

if TYPE_CHECKING:
    import yaml


@dataclass(frozen=True)
class Bounds:
    """What one file may cost to read; beyond any of these it is refused with a clear error."""

    max_bytes: int
    """Largest file read, in bytes."""
    max_nodes: int
    """Most YAML values visited, aliases and merge keys counted each time they are used
    ("billion laughs")."""
    max_depth: int
    """Deepest nesting of mappings and lists accepted."""
    max_entries: int
    """Most keys in one mapping, or items in one list."""

    flow_cap: bool = False
    """Refuse a file with more ``[`` and ``{`` in all than :attr:`scan_depth`: then no flow
    nesting can go deeper, whatever quotes and comments hide (for users' files, which need a
    handful; admin files may hold many, and rely on the parser's own limit, see
    :func:`_loader`)."""

    @property
    def scan_depth(self) -> int:
        """Nesting the text may show before the parser sees it (a coarse pre-scan that may
        over-count, so it is looser than :attr:`max_depth`, which the walker enforces)."""
        return self.max_depth * 2 + 16


ADMIN = Bounds(max_bytes=1 << 20, max_nodes=200_000, max_depth=64, max_entries=20_000)
"""Admin files: a lab's config is a few KiB with four levels of nesting; 1 MiB and 20,000
members in one list leave room for any real lab."""
USER = Bounds(max_bytes=64 << 10, max_nodes=4_000, max_depth=16, max_entries=256,
              flow_cap=True)
"""Files users write (wants): ds01 writes a dozen lines; these bounds keep what one user's
file costs a pass to well under a millisecond of parsing."""
MAX_BYTES = ADMIN.max_bytes
MAX_NODES = ADMIN.max_nodes
MAX_DEPTH = ADMIN.max_depth

_CORE = "tag:yaml.org,2002:"
_MERGE = _CORE + "merge"
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


def _refuse(display: str, message: str, line: int = 0) -> ConfigError:
    return ConfigError([Diagnostic(display, line, "", message)])


def open_error(e: OSError, *, follow_symlinks: bool) -> str:
    """Why a file could not be opened, in words (a symlink loop is named as one)."""
    if e.errno == errno.ELOOP:
        return ("is a symlink, which is not accepted here" if not follow_symlinks
                else "is a symlink loop (too many levels of symbolic links)")
    if e.errno == errno.ENAMETOOLONG:
        return "its name is too long"
    return e.strerror or str(e)


def read_fd(fd: int, *, display: str, bounds: Bounds = ADMIN) -> str:
    """The text of the open file ``fd`` (closed by the caller): a regular file of at most
    ``bounds.max_bytes``, as UTF-8 without NUL bytes."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(display, "not a regular file")
    if st.st_size > bounds.max_bytes:
        raise _refuse(display, f"file is larger than {bounds.max_bytes // 1024} KiB")
    chunks, left = [], bounds.max_bytes + 1
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    raw = b"".join(chunks)
    if len(raw) > bounds.max_bytes:
        raise _refuse(display, f"file is larger than {bounds.max_bytes // 1024} KiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise _refuse(display, "not UTF-8 text", line) from None


def read_text(path: Path | str, *, display: str, follow_symlinks: bool = True,
              bounds: Bounds = ADMIN) -> str:
    """The text of a regular file (see :func:`read_fd`).

    ``follow_symlinks=False`` refuses a symlink (for files that users write: a link to
    ``/etc/shadow`` must not be read with the daemon's privileges). A FIFO or device is
    opened without blocking and refused.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as e:
        why = open_error(e, follow_symlinks=follow_symlinks)
        raise _refuse(display, f"cannot read: {why}") from None
    try:
        return read_fd(fd, display=display, bounds=bounds)
    except OSError as e:
        raise _refuse(display, f"cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)


def load_file(path: Path, *, display: str, follow_symlinks: bool = True,
              bounds: Bounds = ADMIN) -> Document:
    """:func:`read_text` then :func:`parse`."""
    text = read_text(path, display=display, follow_symlinks=follow_symlinks, bounds=bounds)
    return parse(text, display, bounds=bounds)


def nesting_estimate(text: str) -> int:
    """An upper bound, give or take, of how deeply ``text`` nests: block levels (by
    indentation, and one more for each ``- `` or ``? `` that opens a line) plus the deepest
    run of ``[``/``{``.

    Brackets inside quoted strings are counted too: a file refused here would have needed
    dozens of unmatched brackets in its strings.
    """
    deepest = flow = 0
    stack: list[int] = []
    for line in text.splitlines():
        body = line.lstrip(" ")
        if not body or body.startswith("#"):
            continue
        indent = len(line) - len(body)
        while stack and stack[-1] >= indent:
            stack.pop()
        stack.append(indent)
        while body[:2] in ("- ", "? ", "-\t") or body in ("-", "?"):
            indent += 2
            stack.append(indent)
            body = body[2:].lstrip(" ")
        opened = body.count("[") + body.count("{")
        if opened:
            for ch in body:
                if ch in "[{":
                    flow += 1
                    deepest = max(deepest, len(stack) + flow)
                elif ch in "]}" and flow:
                    flow -= 1
        deepest = max(deepest, len(stack) + flow)
    return deepest


def parse(text: str, file: str, *, bounds: Bounds = ADMIN) -> Document:
    """Parse one YAML document into a :class:`Document`, or raise :class:`ConfigError`."""
    import yaml

    if len(text) > bounds.max_bytes:
        raise _refuse(file, f"file is larger than {bounds.max_bytes // 1024} KiB")
    if "\x00" in text:
        raise _refuse(file, "contains NUL bytes: not a text file")
    if nesting_estimate(text) > bounds.scan_depth or (
            bounds.flow_cap and text.count("[") + text.count("{") > bounds.scan_depth):
        raise _refuse(file, f"nested more than {bounds.max_depth} levels deep (or more [ and "
                      f"{{ than {bounds.scan_depth} in all)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _refuse(file, "not UTF-8 text", text[: e.start].count("\n") + 1) from None
    try:
        loader = _loader()(text)
    except Exception as e:  # whatever the parser makes of it costs this file alone
        raise _refuse(file, f"not readable as YAML ({type(e).__name__})") from None
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        data = None if node is None else _Walker(loader, lines, bounds).convert(node, (), 0)
        return Document(file, data, lines)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        what = e.problem or e.context or "not valid YAML"
        raise _refuse(file, f"not valid YAML: {what}{_began(e, line)}", line) from None
    except yaml.YAMLError as e:
        raise _refuse(file, f"not valid YAML: {e}") from None
    except _Refused as e:
        raise _refuse(file, e.message, e.line) from None
    except RecursionError:
        raise _refuse(file, f"nested more than {bounds.max_depth} levels deep") from None
    except Exception as e:  # a parser bug must cost this file, never the caller
        raise _refuse(file, f"not readable as YAML ({type(e).__name__})") from None
    finally:
        loader.dispose()



def _began(e: yaml.MarkedYAMLError, line: int) -> str:
    """Where what the parser was reading began, when that is an earlier line: a quote or a
    bracket left open there runs on until the parser gives up, lines later."""
    if e.context_mark is None or not 0 < e.context_mark.line + 1 < line:
        return ""
    return (f" (reading what begins at line {e.context_mark.line + 1}: is a quote or bracket "
            "left open there?)")

def _loader() -> Any:
    """libyaml's loader where it stops nesting itself (0.2.5 and later: at 1,000 levels, so
    it never recurses deeper whatever a file hides from the pre-scan); PyYAML's own otherwise
    (its recursion ends in RecursionError, which :func:`parse` turns into an error)."""
    import yaml

    try:
        from yaml import _yaml

        if yaml.__with_libyaml__ and tuple(_yaml.get_version()) >= (0, 2, 5):
            return yaml.CSafeLoader
    except (ImportError, AttributeError):
        pass
    return yaml.SafeLoader


class _Walker:
    """Turns a composed node tree into plain data, recording the line of every key."""

    def __init__(self, loader: Any, lines: dict[KeyPath, int], bounds: Bounds) -> None:
        self.loader = loader
        self.lines = lines
        self.bounds = bounds
        self.count = 0
        self.active: set[int] = set()

    def convert(self, node: Any, path: KeyPath, depth: int) -> JSON:
        import yaml

        line = node.start_mark.line + 1
        self.count += 1
        if self.count > self.bounds.max_nodes:
            raise _Refused(line, f"more than {self.bounds.max_nodes} values "
                           "(aliases and merge keys counted each use)")
        if depth > self.bounds.max_depth:
            raise _Refused(line, f"nested more than {self.bounds.max_depth} levels deep")
        if node.tag not in _TAGS:
            raise _Refused(line, f"tag {node.tag!r} is not allowed here (plain YAML only)")
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, line)
        if len(node.value) > self.bounds.max_entries:
            raise _Refused(line, f"more than {self.bounds.max_entries} entries in one "
                           f"{'list' if isinstance(node, yaml.SequenceNode) else 'mapping'}")
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

        out: dict[str, JSON] = {}
        merged: list[dict[str, JSON]] = []
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused(line, "a key must be a plain word, not a list or mapping")
            if key_node.tag == _MERGE:
                merged += self._merge(value_node, path, depth)
                continue
            key = str(key_node.value)
            if key in out:
                raise _Refused(line, f"key {key!r} appears twice in the same mapping")
            self.lines.setdefault((*path, key), line)
            out[key] = self.convert(value_node, (*path, key), depth + 1)
        for table in merged:  # explicit keys win; among merged mappings, the first one
            for key, value in table.items():
                out.setdefault(key, value)
        if len(out) > self.bounds.max_entries:
            raise _Refused(node.start_mark.line + 1, f"more than {self.bounds.max_entries} "
                           "entries in one mapping (merge keys counted)")
        return out

    def _merge(self, node: Any, path: KeyPath, depth: int) -> list[dict[str, JSON]]:
        """``<<: *anchor`` or ``<<: [*a, *b]``: the mappings to merge, each converted (and
        counted) where it is used."""
        import yaml

        line = node.start_mark.line + 1
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if isinstance(node, yaml.SequenceNode) and len(sources) > self.bounds.max_entries:
            raise _Refused(line, f"more than {self.bounds.max_entries} mappings to merge")
        out = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise _Refused(line, "a merge key (<<) takes a mapping or a list of mappings")
            value = self.convert(source, path, depth)
            out.append(value)
        return out

    def _scalar(self, node: Any, line: int) -> JSON:
        tag = node.tag
        if tag == _CORE + "null":
            return None
        if tag in (_CORE + "int", _CORE + "float") and len(node.value) > 64:
            # base-60 forms (1:0:0:...) cost PyYAML time quadratic in their length
            raise _Refused(line, f"{node.value[:40]!r}... is too long to be a number")
        try:
            if tag == _CORE + "bool":
                return bool(self.loader.construct_yaml_bool(node))
            if tag == _CORE + "int":
                number = int(self.loader.construct_yaml_int(node))
                if abs(number) >= 2**63:
                    raise _Refused(line, f"{node.value[:40]!r} is too large a number")
                return number
            if tag == _CORE + "float":
                value = float(self.loader.construct_yaml_float(node))
                if not math.isfinite(value):
                    raise _Refused(line, f"{node.value!r} is not a finite number")
                return value
        except (ValueError, IndexError, KeyError, OverflowError, TypeError):
            what = tag.rsplit(":", 1)[-1]
            shown = repr(node.value) if len(node.value) <= 40 else repr(node.value[:37] + "...")
            raise _Refused(line, f"{shown} is not a valid {what}") from None
        return str(node.value)
