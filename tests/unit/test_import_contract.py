"""Only ds01d/adapters/* may import pystemd, docker or pynvml (the lint contract)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

FORBIDDEN = {"pystemd", "docker", "pynvml"}


def third_party_imports(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & FORBIDDEN


def violations(package: Path) -> list[str]:
    out = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent)
        if rel.parts[:2] == ("ds01d", "adapters"):
            continue
        for name in sorted(third_party_imports(path.read_text())):
            out.append(f"{rel} imports {name}")
    return out


def test_only_adapters_import_the_machine_libraries() -> None:
    assert violations(REPO / "ds01d") == []


def test_the_contract_catches_a_violation(tmp_path: Path) -> None:
    pkg = tmp_path / "ds01d"
    (pkg / "core").mkdir(parents=True)
    (pkg / "adapters").mkdir()
    (pkg / "core" / "bad.py").write_text("import docker.errors\nfrom pynvml import nvmlInit\n")
    (pkg / "adapters" / "ok.py").write_text("import pystemd\n")
    assert violations(pkg) == ["ds01d/core/bad.py imports docker", "ds01d/core/bad.py imports pynvml"]
