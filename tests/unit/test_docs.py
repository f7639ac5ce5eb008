"""docs/configuration.md documents every schema key, and only those, with the schema's defaults."""

from __future__ import annotations

import re
from typing import Any

from ds01d import schema as js
from tests.conftest import REPO

NAMES = ["resource-limits.schema.json", "user-overrides.schema.json",
         "lifecycle-exemptions.schema.json", "mig-layout.schema.json", "want.schema.json"]
ROW = re.compile(r"^\| `([a-z_-]+)` \|[^|]*\| (`[^`]*`|—) \|", re.M)


def schema_keys() -> dict[str, Any]:
    """Every property name (deprecated ones excepted) -> its default (or None)."""
    found: dict[str, Any] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, sub in node.get("properties", {}).items():
                if not sub.get("deprecated"):
                    found.setdefault(key, sub.get("default"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for name in NAMES:
        walk(js.load_schema(name))
    return found


def documented() -> dict[str, str]:
    text = (REPO / "docs/configuration.md").read_text()
    rows: dict[str, str] = {}
    for key, default in ROW.findall(text):
        rows.setdefault(key, default)
    return rows


def test_every_schema_key_is_documented_and_nothing_else() -> None:
    keys, docs = set(schema_keys()), set(documented())
    assert keys - docs == set(), "in the schemas but not documented"
    assert docs - keys == set(), "documented but not in any schema"


def test_documented_defaults_match_the_schemas() -> None:
    docs = documented()
    for key, default in schema_keys().items():
        if default is not None:
            shown = str(default).lower() if isinstance(default, bool) else str(default)
            assert docs[key] == f"`{shown}`", key


def test_deprecated_names_are_in_the_migration_note() -> None:
    text = (REPO / "docs/configuration.md").read_text()
    props = js.load_schema("resource-limits.schema.json")["$defs"]["limitKeys"]["properties"]
    for key, sub in props.items():
        if sub.get("deprecated"):
            assert f"`{key}" in text, key
