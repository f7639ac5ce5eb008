"""``ds01 check-config --migrate``: a configuration file written in today's keys.

Pure text work on the file as the admin wrote it, line by line, so that comments, blank lines
and order are kept: an older key is renamed in place with its value in today's unit and
meaning (the loader's :class:`~ds01d.config.model.Rewrite` says how); a key ds01 reads and
ignores is commented out with the reason above it; a value that moves to another section is
added at the end of that section. Loading the result gives the same limits and no warnings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ds01d.config.model import Rewrite

_BLOCK = re.compile(r"^(?P<pre>\s*(?:-\s+)?)(?P<key>[\"']?[^\s:#\"']+[\"']?)(?P<sep>\s*:)"
                    r"(?P<rest>.*)\Z")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _split_comment(rest: str) -> tuple[str, str]:
    """``'  24h   # walltime'`` -> (``'  24h'``, ``'   # walltime'``), quotes respected."""
    quote = ""
    for i, ch in enumerate(rest):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1] in " \t"):
            head = rest[:i]
            return head.rstrip(), rest[len(head.rstrip()):]
    return rest.rstrip(), ""


def _rename_block(line: str, old: str, key: str | None, value: str | None) -> str | None:
    """``old: v  # c`` -> ``key: value  # c`` keeping the comment's column; ``None``: the key
    is not written in block style on this line."""
    m = _BLOCK.match(line)
    if m is None or m.group("key").strip("\"'") != old:
        return None
    head, comment = _split_comment(m.group("rest"))
    new_key = key or m.group("key")
    new_head = f" {value}" if value is not None else head
    before = len(m.group("key")) + len(head)
    after = len(new_key) + len(new_head)
    if comment:
        pad = comment[: len(comment) - len(comment.lstrip())]
        comment = " " * max(1, len(pad) + before - after) + comment.lstrip()
    return f"{m.group('pre')}{new_key}{m.group('sep')}{new_head}{comment}"


def _rename_flow(line: str, old: str, key: str | None, value: str | None) -> str:
    """The same inside a flow mapping (``{old: v, ...}``) or list (``[old, ...]``)."""
    word = rf"(?<![\w.-]){re.escape(old)}(?![\w.-])"
    if key is None and value is not None and not re.search(word + r"\s*:", line):
        return re.sub(word, value, line, count=1)  # a list item
    pattern = word + r"(\s*:\s*)([^,}\]#]*[^,}\]#\s])?"
    return re.sub(pattern, lambda m: f"{key or old}{m.group(1)}"
                  f"{value if value is not None else (m.group(2) or '')}", line, count=1)


def _rename(lines: list[str], r: Rewrite) -> None:
    i = r.line - 1
    old = r.note if isinstance(r.path[-1], int) else str(r.path[-1])
    if isinstance(r.path[-1], int):
        stripped = lines[i].lstrip()
        if stripped.startswith("- ") and stripped[2:].split("#")[0].strip().strip("\"'") == old:
            lines[i] = lines[i].replace(old, r.value or old, 1)
            return
    done = _rename_block(lines[i], old, r.key, r.value)
    lines[i] = done if done is not None else _rename_flow(lines[i], old, r.key, r.value)


def _block_end(lines: list[str], i: int) -> int:
    """The index after the block that starts with the key on line ``i``: every following
    line indented deeper (blank lines and comments inside included)."""
    indent = _indent(lines[i])
    end = i + 1
    j = end
    while j < len(lines):
        text = lines[j]
        if text.strip() and not text.lstrip().startswith("#") and _indent(text) <= indent:
            break
        j += 1
        if text.strip() and _indent(text) > indent:
            end = j
    return end


def _drop(lines: list[str], r: Rewrite) -> None:
    i = r.line - 1
    if _BLOCK.match(lines[i]) is None or lines[i].lstrip().startswith("#"):
        lines[i] = f"{lines[i]}  # {r.note}"
        return
    end = _block_end(lines, i)
    pad = " " * _indent(lines[i])
    body = [f"{pad}# {t[len(pad):]}" if t.strip() else t for t in lines[i:end]]
    lines[i:end] = [f"{pad}# {r.note}", *body]


def _section_line(lines: list[str], name: str) -> int | None:
    return next((i for i, t in enumerate(lines) if re.match(rf"^{re.escape(name)}\s*:", t)),
                None)


def _move(lines: list[str], r: Rewrite) -> None:
    """Add ``key: value`` at the end of the section ``move_to`` unless it sets the key
    already (the older key was commented out where it was)."""
    start = _section_line(lines, str(r.move_to))
    entry = f"{r.key}: {r.value}  # {r.note}"
    if start is None:
        lines += ["", f"{r.move_to}:", f"  {entry}"]
        return
    end = _block_end(lines, start)
    block = lines[start:end]
    if any(re.match(rf"^\s+{re.escape(str(r.key))}\s*:", t) for t in block):
        return
    pad = next((" " * _indent(t) for t in block[1:] if t.strip() and not
                t.lstrip().startswith("#")), "  ")
    last = max((k for k in range(start, end) if lines[k].strip()
                and not lines[k].lstrip().startswith("#")), default=start)
    lines.insert(last + 1, f"{pad}{entry}")


def migrate(text: str, rewrites: Iterable[Rewrite]) -> str:
    """``text`` with every rewrite of its file applied (bottom up, so line numbers hold)."""
    lines = text.split("\n")
    todo = sorted(rewrites, key=lambda r: r.line, reverse=True)
    for r in todo:
        if r.move_to is not None:
            _drop(lines, Rewrite(r.file, r.path, r.line, drop=True,
                                 note=f"ds01: now {r.move_to}.{r.key}"))
        elif r.drop:
            _drop(lines, r)
        else:
            _rename(lines, r)
    for r in todo:
        if r.move_to is not None:
            _move(lines, r)
    return "\n".join(lines)
