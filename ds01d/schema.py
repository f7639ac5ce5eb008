"""A small JSON Schema (draft 2020-12) validator for ds01's own schemas.

Why not ``jsonschema`` at run time: importing it costs ~70 ms, and every ``ds01`` command a
user types must finish within 3x the bare interpreter start (DESIGN.md, Performance). The
schemas under ``schemas/`` stay the single source of truth; this module interprets the subset
of keywords they use (:data:`SUPPORTED`) and reports *every* error with its path and a message
meant for people. ``tests/unit/test_schema_validator.py`` checks, keyword by keyword and with
random instances, that it accepts exactly what ``jsonschema`` accepts, and fails if a schema
uses a keyword outside :data:`SUPPORTED`.
"""

from __future__ import annotations

import math
import os

from ds01d.errors import KeyPath

TYPE_CHECKING = False  # mypy reads this name as True; see errors.py on start-up cost
if TYPE_CHECKING:
    import re
    from collections.abc import Iterator
    from typing import Any

    Schema = dict[str, Any]

ANNOTATIONS = frozenset(
    {"$schema", "$id", "$defs", "$comment", "title", "description", "default", "deprecated",
     "examples"}
)
ASSERTIONS = frozenset(
    {"$ref", "type", "enum", "const", "properties", "patternProperties", "additionalProperties",
     "unevaluatedProperties", "required", "propertyNames", "items", "minItems", "maxItems",
     "uniqueItems", "minimum", "maximum", "exclusiveMinimum", "minLength", "maxLength",
     "pattern", "anyOf", "not", "allOf", "maxProperties"}
)
SUPPORTED = ANNOTATIONS | ASSERTIONS
"""Keywords this validator understands; ``x-ds01-*`` annotations are ds01's own:
``x-ds01-hint`` (what would be right), ``x-ds01-message`` (the message when a ``not`` fails),
``x-ds01-alias-of`` (a deprecated key and its canonical name), ``x-ds01-ignored`` (a legacy
section that is read and ignored)."""



class SchemaError:
    """One failed assertion: where (``path``) and what, in words (immutable).

    A plain class: a dataclass would cost ``ds01 want`` its start-up budget.
    """

    __slots__ = ("message", "path")
    path: KeyPath
    message: str

    def __init__(self, path: KeyPath, message: str) -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "message", message)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("SchemaError is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SchemaError) and (self.path, self.message) == (
            other.path, other.message)

    def __hash__(self) -> int:
        return hash((self.path, self.message))

    def __repr__(self) -> str:
        return f"SchemaError({self.path!r}, {self.message!r})"


def schema_dir() -> str:
    """The folder holding the ``*.schema.json`` files (``schemas/`` at the repo top links here)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")


_SCHEMAS: dict[str, Schema] = {}


def load_schema(name: str) -> Schema:
    """A schema by file name, e.g. ``resource-limits.schema.json`` (read once)."""
    found = _SCHEMAS.get(name)
    if found is None:
        from ds01d.jsonfast import loads

        with open(os.path.join(schema_dir(), name), encoding="utf-8") as f:
            found = _SCHEMAS[name] = loads(f.read())
    return found


MAX_ERRORS = 50
"""Errors reported per file at most: a file with thousands of wrong keys costs a bounded
time to judge (the rest are not even looked for)."""


def validate(name: str, instance: Any, *, limit: int = MAX_ERRORS) -> list[SchemaError]:
    """The errors of ``instance`` against the schema file ``name``, the first ``limit`` of
    them (empty: valid)."""
    from itertools import islice

    return list(islice(_Run(name).check(load_schema(name), instance, ()), limit))


def empty_sections(name: str, instance: Any) -> Any:
    """``instance`` with every ``null`` that stands where the schema wants only a mapping made
    ``{}``: a section whose keys are all commented out is an empty section, not an error."""
    return _Run(name).fill(load_schema(name), instance)


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_type(value: Any, t: str) -> bool:
    actual = _type_of(value)
    if t == "number":
        return actual in ("integer", "number")
    if t == "integer" and actual == "number":
        return float(value).is_integer()
    return actual == t


_NOUN = {"null": "null", "boolean": "true or false", "integer": "a whole number",
         "number": "a number", "string": "a string", "array": "a list", "object": "a mapping"}


def show(value: Any) -> str:
    """A value as a person reads it in an error message."""
    t = _type_of(value)
    if t == "string":
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    if t in ("array", "object"):
        return _NOUN[t]
    if t == "null":
        return "null"
    if t == "boolean":
        return "true" if value else "false"
    return repr(value)


def _with_hint(message: str, schema: Schema) -> str:
    """``message``, followed by what would be right (the schema's ``x-ds01-hint``)."""
    hint = schema.get("x-ds01-hint")
    return f"{message} ({hint})" if hint else message


def declared(schema: Schema, run: _Run) -> dict[str, Schema]:
    """Property name -> subschema, from ``properties`` here and through ``$ref``/``allOf``."""
    found: dict[str, Schema] = {}
    if "$ref" in schema:
        found |= declared(run.resolve(schema["$ref"]), run)
    for sub in schema.get("allOf", []):
        found |= declared(sub, run)
    own: dict[str, Schema] = schema.get("properties", {})
    return found | own


class _Run:
    """One validation run; resolves ``$ref`` relative to the schema file ``base``."""

    def __init__(self, base: str) -> None:
        self.base = base

    def resolve(self, ref: str) -> Schema:
        file, _, pointer = ref.partition("#")
        node: Any = load_schema(file or self.base)
        for part in filter(None, pointer.split("/")):
            node = node[part]
        if file and file != self.base:
            node = dict(node)
            node["x-ds01-base"] = file
        return dict(node)

    def check(self, schema: Schema, value: Any, path: KeyPath) -> Iterator[SchemaError]:
        if "x-ds01-base" in schema and schema["x-ds01-base"] != self.base:
            yield from _Run(schema["x-ds01-base"]).check(
                {k: v for k, v in schema.items() if k != "x-ds01-base"}, value, path)
            return
        if "$ref" in schema:
            yield from self.check(self.resolve(schema["$ref"]), value, path)
        if "type" in schema and not self._type_ok(schema, value):
            yield SchemaError(path, self._type_message(schema, value))
            return
        yield from self._values(schema, value, path)
        if isinstance(value, dict):
            yield from self._object(schema, value, path)
        if isinstance(value, list):
            yield from self._array(schema, value, path)
        for sub in schema.get("allOf", []):
            yield from self.check(sub, value, path)
        if "anyOf" in schema:
            yield from self._any_of(schema, value, path)
        if "not" in schema and not any(True for _ in self.check(schema["not"], value, path)):
            yield SchemaError(path, schema.get("x-ds01-message", "this combination is not allowed"))

    def fill(self, schema: Schema, value: Any) -> Any:
        """See :func:`empty_sections`."""
        if "x-ds01-base" in schema and schema["x-ds01-base"] != self.base:
            return _Run(schema["x-ds01-base"]).fill(
                {k: v for k, v in schema.items() if k != "x-ds01-base"}, value)
        if schema.get("$ref", "#").partition("#")[0] not in ("", self.base):
            return self.fill(self.resolve(schema["$ref"]), value)
        if value is None:
            return {} if self._mapping_only(schema) else None
        if not isinstance(value, dict):
            return value
        branch = next((b for b in schema.get("anyOf", []) if self._mapping_only(b)), None)
        if branch is not None:
            return self.fill(branch, value)
        props = declared(schema, self)
        extra = self._deref(schema).get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            out[key] = item if sub is None else self.fill(sub, item)
        return out

    def _mapping_only(self, schema: Schema) -> bool:
        if "x-ds01-base" in schema and schema["x-ds01-base"] != self.base:
            return _Run(schema["x-ds01-base"])._mapping_only(
                {k: v for k, v in schema.items() if k != "x-ds01-base"})
        if "type" not in schema and "$ref" in schema:
            return self._mapping_only(self.resolve(schema["$ref"]))
        return schema.get("type") == "object"

    def _deref(self, schema: Schema) -> Schema:
        while "$ref" in schema and "type" not in schema:
            schema = self.resolve(schema["$ref"])
        return schema

    def _type_ok(self, schema: Schema, value: Any) -> bool:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return any(_is_type(value, t) for t in types)

    def _type_message(self, schema: Schema, value: Any) -> str:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if "title" in schema and "object" not in types:
            return _with_hint(f"{show(value)} is not a {schema['title']}", schema)
        want = " or ".join(_NOUN[t] for t in types)
        return _with_hint(f"{show(value)} is not {want}", schema)

    def _values(self, schema: Schema, value: Any, path: KeyPath) -> Iterator[SchemaError]:
        if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
            allowed = ", ".join(show(e) for e in schema["enum"])
            yield SchemaError(path, f"{show(value)} is not one of: {allowed}")
        if "const" in schema and not _same(value, schema["const"]):
            yield SchemaError(path, f"{show(value)} must be {show(schema['const'])}")
        if _is_type(value, "number"):
            yield from self._number(schema, value, path)
        if isinstance(value, str):
            yield from self._string(schema, value, path)

    def _number(self, schema: Schema, value: float, path: KeyPath) -> Iterator[SchemaError]:
        if isinstance(value, float) and not math.isfinite(value):
            yield SchemaError(path, f"{show(value)} is not a finite number")
            return
        if "minimum" in schema and value < schema["minimum"]:
            yield SchemaError(path, f"{show(value)} is below the minimum {schema['minimum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            yield SchemaError(path, f"{show(value)} must be more than {schema['exclusiveMinimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            yield SchemaError(path, f"{show(value)} is above the maximum {schema['maximum']}")

    def _string(self, schema: Schema, value: str, path: KeyPath) -> Iterator[SchemaError]:
        if "minLength" in schema and len(value) < schema["minLength"]:
            yield SchemaError(path, "must not be empty" if schema["minLength"] == 1
                              else f"is shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            yield SchemaError(path, f"is longer than {schema['maxLength']} characters")
        if "pattern" in schema and not _search(schema["pattern"], value):
            title = schema.get("title")
            what = f"is not a {title}" if title else "is not in the right form"
            yield SchemaError(path, _with_hint(f"{show(value)} {what}", schema))

    def _object(self, schema: Schema, value: dict[str, Any], path: KeyPath
                ) -> Iterator[SchemaError]:
        for key in schema.get("required", []):
            if key not in value:
                yield SchemaError(path, f"missing required key {key!r}")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            yield SchemaError(path, f"has more than {schema['maxProperties']} entries")
        props: dict[str, Schema] = schema.get("properties", {})
        patterns: dict[str, Schema] = schema.get("patternProperties", {})
        for key, item in value.items():
            names = schema.get("propertyNames")
            if names is not None and any(True for _ in self.check(names, key, (*path, key))):
                yield SchemaError((*path, key),
                                  _with_hint(f"{show(key)} is not a valid name here", names))
            matched = False
            if key in props:
                matched = True
                yield from self.check(props[key], item, (*path, key))
            for pat, sub in patterns.items():
                if _search(pat, key):
                    matched = True
                    yield from self.check(sub, item, (*path, key))
            if matched:
                continue
            extra = schema.get("additionalProperties")
            if extra is False:
                yield self._unknown(schema, key, path)
            elif isinstance(extra, dict):
                yield from self.check(extra, item, (*path, key))
        if schema.get("unevaluatedProperties") is False:
            known = declared(schema, self)
            for key in value:
                if key not in known and not any(_search(p, key) for p in patterns):
                    yield self._unknown(schema, key, path)

    def _unknown(self, schema: Schema, key: str, path: KeyPath) -> SchemaError:
        import difflib

        props = declared(schema, self)
        current = [n for n, sub in props.items() if not sub.get("deprecated")]
        close = (difflib.get_close_matches(key, current, n=2, cutoff=0.6)
                 or [n for n in current if n.startswith(key) or key.startswith(n)][:2]
                 or difflib.get_close_matches(key, list(props), n=2, cutoff=0.6))
        if close:
            guess = " or ".join(repr(c) for c in close)
            return SchemaError((*path, key), f"unknown key (did you mean {guess}?)")
        where = ", ".join(sorted(current)) if len(current) <= 12 else f"{len(current)} known keys"
        return SchemaError((*path, key), f"unknown key (allowed here: {where})")

    def _array(self, schema: Schema, value: list[Any], path: KeyPath) -> Iterator[SchemaError]:
        if "minItems" in schema and len(value) < schema["minItems"]:
            yield SchemaError(path, "must not be empty" if schema["minItems"] == 1
                              else f"needs at least {schema['minItems']} entries")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            yield SchemaError(path, f"has more than {schema['maxItems']} entries")
        if schema.get("uniqueItems"):
            seen: list[Any] = []
            for i, item in enumerate(value):
                if any(_same(item, s) for s in seen):
                    yield SchemaError((*path, i), f"{show(item)} is listed twice")
                seen.append(item)
        if "items" in schema:
            for i, item in enumerate(value):
                yield from self.check(schema["items"], item, (*path, i))

    def _any_of(self, schema: Schema, value: Any, path: KeyPath) -> Iterator[SchemaError]:
        results = [list(self.check(sub, value, path)) for sub in schema["anyOf"]]
        if any(not r for r in results):
            return
        branches = [(s, r) for s, r in zip(schema["anyOf"], results, strict=True)
                    if value is None or s != {"type": "null"}]
        if len(branches) == 1:
            yield from branches[0][1]
            return
        if "title" in schema:
            yield SchemaError(path, _with_hint(f"{show(value)} is not a {schema['title']}", schema))
            return
        same_type = [r for s, r in branches
                     if "type" in (d := self._deref(s)) and self._type_ok(d, value)]
        if len(same_type) == 1:
            yield from same_type[0]
            return
        yield SchemaError(path, _with_hint(f"{show(value)} is not allowed here", schema))


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``True`` is not ``1``, ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    found = _PATTERNS.get(pattern)
    if found is None:
        import re

        found = _PATTERNS[pattern] = re.compile(pattern)
    return found


def pattern_matches(pattern: str, value: str) -> bool:
    """``pattern`` (JSON Schema: ECMA-262) found in ``value``. A ``$`` at its end is the end of
    the text, as ECMA-262 says, never before a final newline (``re``'s own ``$``): ``ds01 want
    container $'t\\n'`` must not pass where a file ``t\\n.yaml`` would not. The patterns a
    want is judged by are matched without ``re`` (``ds01d/patterns.py``)."""
    from ds01d.patterns import CHECKS

    check = CHECKS.get(pattern)
    if check is not None:
        return check(value)
    if pattern.endswith("$") and value.endswith("\n"):
        return False
    return _compiled(pattern).search(value) is not None


_search = pattern_matches
