"""No regular expression in ds01 ends a match with ``$``: in Python's ``re`` it also matches
before a final newline, so ``hostname: "abc\\n"`` passed ``^...$``. Patterns end with ``\\Z``
(JSON Schema patterns, ECMA-262, go through ``schema.pattern_matches``)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

RE_CALLS = {"compile", "match", "fullmatch", "search", "findall", "finditer", "sub", "split"}


def _patterns(tree: ast.Module) -> list[tuple[int, str]]:
    """Every pattern text given to ``re``: literal, f-string parts, or a module-level name."""
    named = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
                and node.func.attr in RE_CALLS and node.args):
            continue
        arg = node.args[0]
        if isinstance(arg, ast.Name) and arg.id in named:
            arg = named[arg.id]
        parts = arg.values if isinstance(arg, ast.JoinedStr) else [arg]
        text = "".join(p.value for p in parts
                       if isinstance(p, ast.Constant) and isinstance(p.value, str))
        found.append((node.lineno, text))
    return found


def _dollar_anchored(pattern: str) -> bool:
    escaped = False
    for c in pattern:
        if c == "$" and not escaped:
            return True
        escaped = c == "\\" and not escaped
    return False


def test_no_pattern_ends_a_match_with_dollar() -> None:
    offenders = []
    for path in sorted((REPO / "ds01d").rglob("*.py")):
        for line, pattern in _patterns(ast.parse(path.read_text())):
            if _dollar_anchored(pattern):
                offenders.append(f"{path.relative_to(REPO)}:{line}: {pattern!r}")
    assert not offenders, "use \\Z, not $:\n" + "\n".join(offenders)


def test_the_guard_sees_dollar_in_every_form(tmp_path: Path) -> None:
    src = ('import re\nNAME = r"^[a-z]+$"\nA = re.compile(r"^x$")\nB = re.match(NAME, "y")\n'
           'C = re.compile(f"^{NAME}$")\nD = re.compile(r"^a\\$b\\Z")\n')
    found = [p for _, p in _patterns(ast.parse(src)) if _dollar_anchored(p)]
    assert found == ["^x$", "^[a-z]+$", "^$"]
