"""What one user may put in their own want folder (docs/security.md), as file writers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def nested(f: Path) -> None:
    (f / "a.yaml").write_text("[" * 60_000)


def merge_bombs(f: Path) -> None:
    lines = ["a0: &a0 {k0: 0}", "b0: &b0 {j0: 0}"]
    for i in range(1, 26):
        lines += [f"a{i}: &a{i} {{<<: [*a{i - 1}, *b{i - 1}], x{i}: 1}}",
                  f"b{i}: &b{i} {{<<: [*b{i - 1}, *a{i - 1}], y{i}: 1}}"]
    for n in range(64):
        (f / f"b{n:02d}.yaml").write_text("\n".join(lines))


def many_files(f: Path) -> None:
    for i in range(10_000):
        (f / f"w{i:05d}.yaml").write_text("x")


def many_keys(f: Path) -> None:
    body = "".join(f"k{i}: 1\n" for i in range(110_000))
    for i in range(9):
        (f / f"k{i}.yaml").write_text(body)


def long_names(f: Path) -> None:
    for i in range(900):
        (f / (f"{i:03d}" + "a" * 240 + ".yaml")).write_text("x")


ATTACKS: dict[str, Callable[[Path], None]] = {
    "nested": nested, "merge bombs x64": merge_bombs, "10,000 files": many_files,
    "110,000 keys x9": many_keys, "900 long names": long_names}
