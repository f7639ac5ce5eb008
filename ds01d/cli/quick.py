"""The arguments of the commands users type most, read without argparse.

``argparse`` (with the ``re`` and ``gettext`` it imports) costs more than the rest of ``ds01
status``. So the usual forms of ``want``, ``drop``, ``keepalive``, ``limits``, ``status`` and
``events`` are read here into the same values argparse would give; anything else (help, a
mistake, an unknown option, a value of the wrong type) returns ``None`` and argparse reads the
command line again, to answer exactly as it always has. A test checks, command line by
command line, that both readings agree.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy reads this name as True; importing typing costs ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any


class Args:
    """What argparse's ``Namespace`` would hold."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"Args({self.__dict__!r})"


Spec = tuple[tuple[str, ...], tuple[str, ...], int, "dict[str, tuple[str, Callable[[str], Any]]]",
             "dict[str, str]", "dict[str, Any]"]
# command: (sub-command words, positional names, how many are required,
#           valued options -> (attribute, type), flags -> attribute, defaults)
SPECS: dict[str, Spec] = {
    "want": (("container",), ("name",), 1,
             {"--image": ("image", str), "--gpus": ("gpus", int), "--mig": ("mig", str),
              "--cpus": ("cpus", float), "--memory": ("memory", str), "--shm": ("shm", str),
              "--command": ("command", str)},
             {"--replace": "replace"},
             {"image": "ubuntu:24.04", "env": None, "port": None}),  # those two: argparse
    "drop": (("container",), ("name",), 1, {}, {}, {}),
    "keepalive": ((), ("name",), 1, {"--for": ("duration", str)}, {}, {}),
    "limits": ((), ("user",), 0, {}, {"--json": "json"}, {}),
    "status": ((), ("name",), 0, {}, {"--all": "all", "--json": "json"}, {}),
    "gpus": ((), (), 0, {}, {"--json": "json"}, {}),
    "events": ((), (), 0, {"--since": ("since", str), "--user": ("user", str)},
               {"--json": "json"}, {}),
}
GLOBAL = {"--root": "root", "--as": "as_user"}


def parse(argv: Sequence[str]) -> Args | None:
    """The arguments of a usual command line, or ``None`` to let argparse read it."""
    values: dict[str, Any] = {"root": None, "as_user": None}
    i = 0
    while i < len(argv) and argv[i] in GLOBAL:
        if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
            return None
        values[GLOBAL[argv[i]]] = argv[i + 1]
        i += 2
    if i >= len(argv) or argv[i] not in SPECS:
        return None
    command = argv[i]
    words, names, required, options, flags, defaults = SPECS[command]
    rest = list(argv[i + 1:])
    if rest[:len(words)] != list(words):
        return None
    found = _command(rest[len(words):], names, options, flags)
    if found is None or sum(1 for n in names if n in found) < required:
        return None
    if command == "keepalive" and "duration" not in found:
        return None  # --for is required: argparse says so
    if "gpus" in found and "mig" in found:
        return None  # argparse says they exclude each other
    values.update(dict.fromkeys(names))
    values.update({attr: None for attr, _ in options.values()})
    values.update(dict.fromkeys(flags.values(), False))
    values.update(defaults)
    values.update(found)
    return Args(handler=command, **values)


def _command(args: list[str], names: tuple[str, ...],
             options: dict[str, tuple[str, Callable[[str], Any]]],
             flags: dict[str, str]) -> dict[str, Any] | None:
    found: dict[str, Any] = {}
    positional = list(names)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in flags:
            found[flags[arg]] = True
        elif arg in options:
            if i + 1 >= len(args) or args[i + 1].startswith("-") or options[arg][0] in found:
                return None
            attr, kind = options[arg]
            try:
                found[attr] = kind(args[i + 1])
            except ValueError:
                return None
            i += 1
        elif arg.startswith("-") or not positional:
            return None  # help, an option it does not know, or one word too many
        else:
            found[positional.pop(0)] = arg
        i += 1
    return found


TOP_OPTIONS = (("-h, --help", "show this help message and exit"),
               ("--root DIR", "root prefix of every ds01 path (env DS01_ROOT; default /)"),
               ("--as USER", "act as USER (root only, or on a simulated root)"),
               ("--version", "show program's version number and exit"))
"""The top-level options as argparse shows them (``build_parser`` defines them)."""


def top_help(description: str, epilog: str, commands: Sequence[tuple[str, str]],
             width: int) -> str | None:
    """``ds01 --help`` laid out as argparse lays it out, without argparse; ``None`` when a
    line would need wrapping (argparse then does it). A test compares the two at every
    width this returns text for."""
    usage = "usage: ds01 [-h] [--root DIR] [--as USER] [--version] COMMAND ..."
    longest = max([len(o) for o, _ in TOP_OPTIONS] + [len(c) for c, _ in commands])
    position = min(longest + 4, 24, max(width - 20, 4))
    helps = [h for _, h in TOP_OPTIONS] + [h for _, h in commands]
    if len(usage) > width or any(len(h) > max(width - position, 11) for h in helps):
        return None
    lines = [usage, "", description.rstrip("\n"), "", "options:"]
    lines += [_row(o, h, 2, position) for o, h in TOP_OPTIONS]
    lines += ["", "commands:", "  COMMAND"]
    lines += [_row(c, h, 4, position) for c, h in commands]
    return "\n".join(lines) + "\n\n" + epilog


def _row(invocation: str, help_: str, indent: int, position: int) -> str:
    if len(invocation) <= position - indent - 2:
        return " " * indent + invocation.ljust(position - indent) + help_
    return " " * indent + invocation + "\n" + " " * position + help_
