"""``ds01``: edit desired state and read status. It never acts on the machine itself.

Start-up time is a measured target (``bench/``): each command imports only what it uses.
"""

from __future__ import annotations

import os
import sys

from ds01d import __version__
from ds01d.errors import InvalidInput, UsageError

TYPE_CHECKING = False  # mypy reads this name as True; argparse is imported only when needed
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

DESCRIPTION = """\
ds01 manages this shared GPU server's containers. You say what you want; the ds01d daemon
makes it so: it starts your container with the GPU or MIG instance your limits allow, queues
it when none is free, and stops it when it has been idle too long.
"""
EPILOG = """\
getting started:
  ds01 gpus                                 what this host has, what is free, your room
  ds01 want container train {device:<15} a container with {what}
  ds01 status                               phase, devices, queue position, your notices
  ds01 shell train                          a shell in it (or docker exec -it train bash)
  ds01 keepalive train --for 4h             not idle-stopped for 4 hours
  ds01 drop container train                 stop and remove it (~/workspace/train is kept)

more:
  ds01 limits                               your limits, and where each value comes from
  ds01 want container prep --memory 16g     no GPU: 16G of memory, your max_cpus CPUs
  ds01 events --since 1h                    what ds01d did about your containers
  sudo ds01 check-config                    validate the admin's files in /etc/ds01

ds01d tells you before it stops a container: on your open terminals, in
/workspace/.ds01/notices inside the container, and in ds01 status.
exit status: 0 ok, 1 invalid input or refused, 2 wrong usage.
files: /etc/ds01/ (admin), /var/lib/ds01/wants/<user>/ (yours). docs: docs/users.md.
"""

if TYPE_CHECKING:
    Handler = Callable[[argparse.Namespace], int]


def _width() -> int:
    """The terminal's width, found without importing shutil (start-up time is measured)."""
    try:
        width = os.get_terminal_size(sys.stdout.fileno()).columns - 2
    except (OSError, ValueError):
        width = 98
    return max(40, min(width, 100))


def _formatter(prog: str) -> argparse.HelpFormatter:
    """Wrapped help for the commands."""
    import argparse

    return argparse.HelpFormatter(prog, width=_width())


def _raw_formatter(prog: str) -> argparse.HelpFormatter:
    """The top level keeps its examples block as written."""
    import argparse

    return argparse.RawDescriptionHelpFormatter(prog, width=_width())


_PARSER: list[type[_Parser]] = []


def _parser_class() -> type[_Parser]:
    """The argument parser: argparse is imported here, only for the commands (and the uses:
    help, a mistake) that the quick parser (``cli/quick.py``) leaves to it."""
    if _PARSER:
        return _PARSER[0]
    import argparse

    class Parser(argparse.ArgumentParser):
        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs.setdefault("formatter_class", _formatter)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(f"{message} (see {self.prog} --help)")

    _PARSER.append(Parser)
    return Parser


if TYPE_CHECKING:
    _Parser = argparse.ArgumentParser


def _check_args(p: _Parser) -> None:
    p.add_argument("--migrate", nargs="?", const="resource-limits.yaml", metavar="FILE",
                   help="print FILE (default resource-limits.yaml) written in today's keys, "
                   "comments kept; older keys renamed with their values in today's units, keys "
                   "ds01 ignores commented out. The file itself is not changed.")


def _limits_args(p: _Parser) -> None:
    p.add_argument("user", nargs="?", metavar="USER", help="whose limits (default: yours)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def host_profiles(root: str | None) -> list[str] | None:
    """This host's MIG profiles, smallest first, as ds01d last saw them (``None``: unknown)."""
    from ds01d.cli.gpus import WHOLE, read_gpus
    from ds01d.paths import Paths

    body = read_gpus(Paths.from_option(root))
    if body is None:
        return None
    try:
        return [k for k, _ in sorted(((k, float(v["gpu_equivalents"]))
                                      for k, v in body["profiles"].items() if k != WHOLE),
                                     key=lambda kv: (kv[1], kv[0]))]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


_HOST: dict[str, list[str] | None] = {}
"""This host's profiles for the help texts (read once per command)."""


def _epilog(profiles: list[str] | None) -> str:
    """The examples of ``ds01 --help``, with this host's profiles (:func:`host_profiles`)."""
    if profiles:
        return EPILOG.format(device=f"--mig {profiles[0]}", what="one MIG instance")
    if profiles == []:
        return EPILOG.format(device="--gpus 1", what="one whole GPU")
    return EPILOG.format(device="--mig PROFILE", what="a MIG instance (see ds01 gpus)")


def _want_args(p: _Parser) -> None:
    kinds = p.add_subparsers(title="what", metavar="KIND", parser_class=_parser_class(),
                             required=True)
    w = kinds.add_parser("container", help="a container, with a GPU or MIG instance if asked",
                         description="Ask ds01d for a container. It is created as you, with "
                         "~/workspace/NAME at /workspace, within your limits (ds01 limits). "
                         "Asking again for a container ds01 stopped starts it again.")
    w.add_argument("name", metavar="NAME", help="container name (a-z, 0-9, . _ -)")
    w.add_argument("--image", default="ubuntu:24.04", help="image (default: %(default)s)")
    gpu = w.add_mutually_exclusive_group()
    gpu.add_argument("--gpus", type=int, metavar="N", help="N full GPUs")
    have = _HOST.get("profiles")
    gpu.add_argument("--mig", metavar="PROFILE", help="one MIG instance of PROFILE: " + (
        f"this host has {', '.join(have)}" if have else "ds01 gpus lists this host's"))
    w.add_argument("--cpus", type=float, metavar="N", help="CPUs (default: your max_cpus)")
    w.add_argument("--memory", metavar="SIZE", help="memory, e.g. 32g (default: your limit)")
    w.add_argument("--shm", metavar="SIZE", help="/dev/shm size (default: your shm_size)")
    w.add_argument("--replace", action="store_true",
                   help="it runs with other settings: replace it (its processes stop; "
                   "/workspace is kept)")
    w.add_argument("--env", action="append", metavar="NAME=VALUE",
                   help="environment variable (again for more)")
    w.add_argument("--port", action="append", type=int, metavar="PORT",
                   help="publish PORT on 127.0.0.1:PORT (reach it with ssh -L; again for more)")
    w.add_argument("--command", metavar="'CMD ARGS'",
                   help="what it runs (default: sleep infinity), e.g. 'jupyter lab --ip "
                   "0.0.0.0 --port 8888'")


def _drop_args(p: _Parser) -> None:
    kinds = p.add_subparsers(title="what", metavar="KIND", parser_class=_parser_class(),
                             required=True)
    d = kinds.add_parser("container", help="a container you asked for",
                         description="Drop a wanted container: ds01d stops and removes it "
                         "and frees its devices. Your workspace is kept.")
    d.add_argument("name", metavar="NAME")


def _keepalive_args(p: _Parser) -> None:
    p.add_argument("name", metavar="NAME")
    p.add_argument("--for", dest="duration", required=True, metavar="DURATION",
                   help="e.g. 30m, 4h")


def _shell_args(p: _Parser) -> None:
    p.add_argument("name", metavar="NAME", help="your container (the name you gave)")
    p.add_argument("command", nargs="*", metavar="COMMAND",
                   help="run this instead of a login shell (after --: ds01 shell NAME -- CMD)")
    p.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for a stopped container to run again "
                   "(default %(default)s)")


def _status_args(p: _Parser) -> None:
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--all", action="store_true", help="every user's (root, or a simulated root)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _gpus_args(p: _Parser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _plan_args(p: _Parser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _events_args(p: _Parser) -> None:
    p.add_argument("--since", metavar="DURATION", help="only the last DURATION, e.g. 24h")
    p.add_argument("--user", metavar="USER", help="only this user's (yours unless root)")
    p.add_argument("--json", action="store_true", help="one JSON event a line")


def _report_args(p: _Parser) -> None:
    p.add_argument("--since", default="24h", metavar="DURATION",
                   help="the window: 24h, 7d, 30d ... (default %(default)s)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--output", metavar="DIR", help="write JSON, Markdown and an SVG chart to "
                   "DIR (relative: under --root), as the daily timer does")


def _mig_args(p: _Parser) -> None:
    mig = p.add_subparsers(dest="mig_command", metavar="ACTION", parser_class=_parser_class(),
                           required=True)
    s = mig.add_parser("plan", help="what ds01d would change on each GPU, and who it affects")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    mig.add_parser("assert", help="exit 0 when every GPU matches mig-layout.yaml, 1 if not")
    mig.add_parser("export", help="the GPUs' layout as a mig-layout.yaml")
    s = mig.add_parser("import", help="a mig-parted configuration as a mig-layout.yaml",
                       description="Print the layout of one config of NVIDIA mig-parted's file "
                       "as ds01's mig-layout.yaml (redirect it to etc/ds01/mig-layout.yaml, "
                       "then ds01 check-config). What ds01 cannot express is refused with "
                       "the line and the reason.")
    s.add_argument("file", metavar="FILE", help="mig-parted's config file (version: v1)")
    s.add_argument("-c", "--config", required=True, metavar="NAME",
                   help="the config under mig-configs to import")


def _sim_args(p: _Parser) -> None:
    sim = p.add_subparsers(dest="sim_command", metavar="ACTION", parser_class=_parser_class(),
                           required=True)
    s = sim.add_parser("init", help="create the simulated host (and example config)")
    s.add_argument("--force", action="store_true", help="start over with a fresh host")
    s = sim.add_parser("advance", help="move simulated time forward")
    s.add_argument("duration", metavar="DURATION", help="e.g. 30m, 2h, 1h40m, 1d")
    s = sim.add_parser("activity", help="set what a container is doing")
    s.add_argument("target", metavar="USER/NAME")
    s.add_argument("--gpu-util", type=float, metavar="PCT", help="GPU utilisation (percent)")
    s.add_argument("--cpu", type=float, metavar="PCT", help="CPU use (percent of one CPU)")
    s.add_argument("--net", metavar="RATE", help="network traffic, e.g. 20k/s")
    s = sim.add_parser("host-process", help="start or end a GPU process outside containers")
    hp = s.add_subparsers(dest="action", metavar="add|remove", parser_class=_parser_class(),
                          required=True)
    a = hp.add_parser("add", help="a process on a GPU or MIG instance")
    a.add_argument("--gpu", required=True, metavar="UUID", help="device UUID (or GPU index)")
    a.add_argument("--uid", type=int, metavar="UID", help="owner uid")
    a.add_argument("--user", metavar="NAME", help="owner, by simulated user name")
    a.add_argument("--mem", type=int, default=1024, metavar="MIB", help="GPU memory used")
    r = hp.add_parser("remove", help="end a process")
    r.add_argument("pid", type=int, metavar="PID")
    s = sim.add_parser("show", help="the simulated machine")
    s.add_argument("--json", action="store_true")


# name, one-line help, description, arguments, (module, function) that runs it
COMMANDS: dict[str, tuple[str, str, Callable[[_Parser], None], tuple[str, str]]] = {
    "check-config": ("validate the admin's desired-state files",
                     "Validate every file in etc/ds01/. Exit 0 when valid (warnings on stderr); "
                     "1 with every error as FILE:LINE: KEY: message.", _check_args,
                     ("ds01d.cli.check", "run")),
    "limits": ("show effective limits and where each value came from", "", _limits_args,
               ("ds01d.cli.limits", "run")),
    "want": ("ask for a container", "", _want_args, ("ds01d.cli.want", "run_want")),
    "drop": ("give a container back: ds01d stops and removes it", "", _drop_args,
             ("ds01d.cli.want", "run_drop")),
    "keepalive": ("postpone idle stops of a container",
                  "No idle stop before now + DURATION (capped by the lab's "
                  "keepalive_max_duration_h). The runtime limit still applies.",
                  _keepalive_args, ("ds01d.cli.want", "run_keepalive")),
    "gpus": ("GPUs and MIG instances, free or in use; queues; your room",
             "Each GPU and MIG instance of this host, free or in use (and until when, at the "
             "latest), the profiles it offers with their queues, and what your quota still "
             "lets you ask for.", _gpus_args, ("ds01d.cli.gpus", "run_gpus")),
    "shell": ("a shell in your container (through ds01's Docker socket)",
              "A shell in your container, at /workspace for one you asked for with ds01 "
              "want. A container ds01 stopped is asked for again first. Also: docker exec "
              "-it NAME bash, or VS Code's Attach to Running Container (docs/users.md).",
              _shell_args, ("ds01d.cli.shell", "run_shell")),
    "status": ("phase, devices and queue position of your containers; notices",
               "Your wanted containers: PHASE (Pending, Running, Stopped, Failed) and SINCE "
               "(when it entered that phase), devices, queue position and why; then the "
               "notices ds01d gave you in the last day.", _status_args,
               ("ds01d.cli.status", "run_status")),
    "plan": ("what the next pass of ds01d would do (does nothing)", "", _plan_args,
             ("ds01d.cli.status", "run_plan")),
    "events": ("what ds01d did and saw (var/log/ds01/events.jsonl)", "", _events_args,
               ("ds01d.cli.status", "run_events")),
    "report": ("GPU-hours, idle time reclaimed, queue waits, untracked use", "",
               _report_args, ("ds01d.cli.report", "run")),
    "mig": ("the MIG layout: plan, assert, export, import (for admins)",
            "What ds01d would change to reach etc/ds01/mig-layout.yaml (plan), whether every "
            "GPU matches it (assert), the GPUs' layout as one (export), or a mig-parted "
            "config as one (import). Nothing here changes the machine: ds01d applies the "
            "layout, draining only the GPUs that change.", _mig_args,
            ("ds01d.cli.mig", "run_mig")),
    "sim": ("drive the simulated host (no GPU needed)",
            "A simulated 4x A100 host under --root, shared with ds01d --simulate. Simulated "
            "time moves only with `sim advance`.", _sim_args, ("ds01d.cli.sim", "run_sim")),
}
_GLOBAL_WITH_VALUE = ("--root", "--as")


def command_in(argv: Sequence[str]) -> str | None:
    """The command named on a command line (its global options' values skipped)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _GLOBAL_WITH_VALUE:
            skip = True
        elif arg in COMMANDS:
            return arg
        elif not arg.startswith("-"):
            return None
    return None


def root_in(argv: Sequence[str]) -> str | None:
    """The ``--root`` given on a command line (before the command), if any."""
    for i, arg in enumerate(argv):
        if arg == "--root" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--root="):
            return arg.split("=", 1)[1]
        if arg in COMMANDS:
            return None
    return None


def build_parser(only: str | None = None, root: str | None = None) -> _Parser:
    """The parser; ``only``: that command alone, which keeps start-up short. ``None``: every
    command (for --help, and to name the choices when the command is unknown). ``root``: the
    root prefix, whose host's profiles the help examples use."""
    if only in (None, "want"):
        _HOST["profiles"] = host_profiles(root)
    parser_class = _parser_class()
    parser = parser_class(prog="ds01", description=DESCRIPTION,
                          epilog=_epilog(_HOST["profiles"]) if only is None else None,
                          formatter_class=_raw_formatter)
    parser.add_argument("--root", metavar="DIR", help="root prefix of every ds01 path "
                        "(env DS01_ROOT; default /)")
    parser.add_argument("--as", dest="as_user", metavar="USER",
                        help="act as USER (root only, or on a simulated root)")
    parser.add_argument("--version", action="version", version=f"ds01 {__version__}")
    subs = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=parser_class)
    for name, (help_, description, add_args, _) in COMMANDS.items():
        if only is not None and name != only:
            continue
        p = subs.add_parser(name, help=help_, description=description or help_)
        p.set_defaults(handler=name)
        add_args(p)
    return parser


def _handler(name: str) -> Handler:
    """Import only the module of the command being run (start-up time is measured)."""
    module, func = COMMANDS[name][3]
    # __import__ with a fromlist gives the module itself; importlib (and the warnings module
    # it imports) would cost half a millisecond more
    handler: Handler = getattr(__import__(module, fromlist=(func,)), func)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``ds01`` command; returns the exit status (0 ok, 1 invalid input, 2 usage)."""
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        from ds01d.cli.quick import parse, top_help

        if argv in (["--help"], ["-h"]):  # the most read page: without argparse
            text = top_help(DESCRIPTION, _epilog(host_profiles(None)),
                            [(n, c[0]) for n, c in COMMANDS.items()], _width())
            if text is not None:
                sys.stdout.write(text)
                return 0
        rest = None
        if command_in(argv) == "shell" and "--" in argv:  # NAME [options] -- CMD ...
            argv, rest = argv[:argv.index("--")], argv[argv.index("--") + 1:]
        args: argparse.Namespace = parse(argv) or build_parser(  # type: ignore[assignment]
            command_in(argv), root_in(argv)).parse_args(argv)
        if rest is not None:
            args.command = [*args.command, *rest]
        if not hasattr(args, "handler"):
            raise UsageError("a command is needed (see ds01 --help)")
        return _handler(args.handler)(args)
    except UsageError as e:
        print(f"ds01: {e}", file=sys.stderr)
        return 2
    except InvalidInput as e:
        print(f"ds01: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # one clear line, never a traceback (DS01_DEBUG=1 shows it)
        if os.environ.get("DS01_DEBUG"):
            raise
        print(f"ds01: internal error: {type(e).__name__}: {e} (DS01_DEBUG=1 shows more)",
              file=sys.stderr)
        return 70
