"""``ds01 want container`` and ``ds01 drop container``: edit the caller's want files."""

from __future__ import annotations

import argparse
import os

from ds01d import schema as js
from ds01d.cli.common import caller, load, now, paths
from ds01d.config.want import WANT_SCHEMA, Want, limit_problems, to_yaml
from ds01d.errors import InvalidInput
from ds01d.fsutil import write_atomic
from ds01d.paths import Paths

_FLAG = {"name": "NAME", "image": "--image", "gpus": "--gpus", "mig": "--mig",
         "cpus": "--cpus", "memory": "--memory", "shm": "--shm"}


def _checked(args: argparse.Namespace, user: str, p: Paths) -> Want:
    """The want as typed, validated against the want schema (messages name the flag)."""
    raw = {"version": 1, "kind": "container", "name": args.name, "image": args.image,
           "requested_at": "2000-01-01T00:00:00Z"}
    raw |= {k: getattr(args, k) for k in ("gpus", "mig", "cpus", "memory", "shm")
            if getattr(args, k) is not None}
    errors = js.validate(WANT_SCHEMA, raw)
    if errors:
        e = errors[0]
        flag = _FLAG.get(str(e.path[0]), "") if e.path else ""
        raise InvalidInput(f"{flag}: {e.message}" if flag else e.message)
    from ds01d.units import parse_size

    return Want(user=user, name=args.name, image=args.image, requested_at=now(p),
                gpus=args.gpus or None, mig=args.mig, cpus=args.cpus,
                memory=None if args.memory is None else parse_size(args.memory),
                shm=None if args.shm is None else parse_size(args.shm))


def user_folder(p: Paths, user: str) -> str:
    """``wants/<user>/``, created for the caller; refused when someone else owns it."""
    import stat

    if "/" in user or user.startswith("."):
        raise InvalidInput(f"{user!r} cannot be used as a folder name")
    folder = p.under("var/lib/ds01/wants", user)
    os.makedirs(folder, mode=0o755, exist_ok=True)
    st = os.lstat(folder)
    uid = os.geteuid()
    if stat.S_ISLNK(st.st_mode) or uid not in (0, st.st_uid):
        raise InvalidInput(f"{folder} is not yours (owner uid {st.st_uid}): ask an admin to "
                           "remove it")
    return folder


def _give_to(path: str, user: str, p: Paths) -> None:
    """Root writing for a user (``--as``) hands the file and folder to that user."""
    if os.geteuid() != 0 or p.is_simulated():
        return
    from ds01d.adapters.nss import account

    found = account(user)
    if found is None or found.uid is None or found.gid is None:
        raise InvalidInput(f"no such user: {user}")
    for target in (os.path.dirname(path), path):
        os.chown(target, found.uid, found.gid, follow_symlinks=False)


def run_want(args: argparse.Namespace) -> int:
    p = paths(args)
    user = caller(args, p)
    want = _checked(args, user, p)
    from ds01d.cli.limits import effective_of
    from ds01d.config.values import Limits

    body = effective_of(p, user, want.requested_at)
    limits = Limits(**body["limits"])
    problems = limit_problems(want, limits)
    if problems:
        raise InvalidInput(f"cannot want container {want.name!r}: " + "; ".join(problems)
                           + " (see ds01 limits)")
    folder = user_folder(p, user)
    others = [n for n in os.listdir(folder) if n.endswith(".yaml") and not n.startswith(".")
              and n != f"{want.name}.yaml"]
    cap = limits.max_containers_per_user
    if cap is not None and len(others) >= cap:
        raise InvalidInput(f"you already want {len(others)} containers, your limit "
                           f"(max_containers_per_user is {cap}): ds01 drop container one first")
    target = os.path.join(folder, f"{want.name}.yaml")
    again = os.path.exists(target)
    write_atomic(target, to_yaml(want))
    _give_to(target, user, p)
    devices = (f"{want.gpus} GPU(s)" if want.gpus else f"MIG {want.mig}" if want.mig
               else "no GPU")
    verb = "asked again for" if again else "wanted"
    print(f"{verb} container {want.name!r} ({devices}, image {want.image}); "
          f"ds01d starts it when it can: see `ds01 status {want.name}`")
    return 0


def run_drop(args: argparse.Namespace) -> int:
    p = paths(args)
    user = caller(args, p)
    target = p.want_file(user, args.name)
    if not target.is_file() or target.is_symlink():
        raise InvalidInput(f"you have no wanted container named {args.name!r} "
                           "(see ds01 status)")
    target.unlink()
    print(f"dropped container {args.name!r}: ds01d stops and removes it and frees its devices")
    return 0


def run_keepalive(args: argparse.Namespace) -> int:
    """Postpone idle stops of one container (runtime limits still apply)."""
    from dataclasses import replace
    from datetime import timedelta

    from ds01d.config.want import from_yaml
    from ds01d.errors import ConfigError
    from ds01d.units import format_hours, parse_duration_s
    from ds01d.yamlsrc import read_text

    p = paths(args)
    user = caller(args, p)
    target = p.want_file(user, args.name)
    if not target.is_file() or target.is_symlink():
        raise InvalidInput(f"you have no wanted container named {args.name!r}")
    try:
        hours = parse_duration_s(args.duration) / 3600
    except ValueError as e:
        raise InvalidInput(f"--for: {e}") from None
    cap = load(p).policies.keepalive_max_duration_h
    capped = min(hours, cap)
    try:
        want = from_yaml(read_text(target, display=target.name, follow_symlinks=False),
                         user=user, file=target.name)
    except ConfigError as e:
        raise InvalidInput(str(e.errors[0])) from None
    until = now(p) + timedelta(hours=capped)
    write_atomic(target, to_yaml(replace(want, keepalive_until=until)))
    note = f" (capped at keepalive_max_duration_h = {format_hours(cap)})" if capped < hours else ""
    print(f"{args.name} will not be stopped for being idle before {until:%Y-%m-%d %H:%M} UTC"
          f"{note}; its runtime limit still applies")
    return 0

