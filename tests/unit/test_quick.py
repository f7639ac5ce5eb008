"""The quick reading of usual command lines agrees with argparse's, or leaves it to argparse."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ds01d.cli import build_parser, command_in
from ds01d.cli.quick import parse
from ds01d.errors import UsageError

WORDS = ["want", "drop", "keepalive", "limits", "status", "events", "plan", "container",
         "train", "t2", "--image", "img:1", "--gpus", "2", "x", "--mig", "3g.20gb", "--cpus",
         "1.5", "nan", "--memory", "16g", "--shm", "1g", "--for", "4h", "--json", "--all",
         "--since", "1h", "--user", "bob", "--root", "/r", "--as", "alice", "-h", "--help",
         "--version", "--", "-x", "--gpus=2", "gpus", "--replace"]


@settings(max_examples=5000)
@given(st.lists(st.sampled_from(WORDS), max_size=8))
def test_quick_and_argparse_read_the_same(argv: list[str]) -> None:
    quick = parse(argv)
    if quick is None:
        return  # argparse reads it, as before
    try:
        full = build_parser(command_in(argv)).parse_args(argv)
    except (UsageError, SystemExit) as e:
        raise AssertionError(f"quick read {argv} but argparse refuses it: {e}") from None
    assert vars(quick) == vars(full), argv


def test_usual_lines_are_read_quickly() -> None:
    for argv in (["status"], ["--as", "a", "status", "--json"], ["limits", "bob"],
                 ["want", "container", "t", "--mig", "1g.5gb", "--cpus", "2"],
                 ["drop", "container", "t"], ["keepalive", "t", "--for", "2h"],
                 ["events", "--since", "1h"], ["gpus"], ["gpus", "--json"],
                 ["want", "container", "t", "--mig", "1g.5gb", "--replace"]):
        assert parse(argv) is not None, argv


def test_status_and_gpus_import_no_argparse() -> None:
    for command in ("status", "gpus"):
        code = ("import sys; from ds01d.cli import main; main(['--root', '/nonexistent', "
                f"'--as', 'x', '{command}']); print('argparse' in sys.modules, 're' in "
                "sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.split()
        assert out[-2:] == ["False", "False"], (command, out)


@settings(max_examples=3000)
@given(st.text(alphabet="aZ09_.@-/ \n\x1bé", max_size=130))
def test_name_checks_match_their_patterns(name: str) -> None:
    import re

    from ds01d import names

    assert names.is_user_name(name) == bool(re.match(names.USER_PATTERN, name))
    assert names.is_want_name(name) == bool(re.match(names.WANT_PATTERN, name))


def test_top_help_is_argparses_to_the_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ds01 --help`` without argparse prints what argparse prints, at every width it
    answers for (and leaves the others to argparse)."""
    from ds01d import cli
    from ds01d.cli.quick import top_help

    answered = 0
    for width in range(40, 101):
        monkeypatch.setattr(cli, "_width", lambda width=width: width)
        ours = top_help(cli.DESCRIPTION, cli._epilog(cli.host_profiles(None)),
                        [(n, c[0]) for n, c in cli.COMMANDS.items()], width)
        if ours is None:
            continue
        answered += 1
        assert ours == cli.build_parser().format_help(), width
    assert answered >= 20  # 80 columns and more, at least
