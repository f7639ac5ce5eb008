"""``ds01 want container`` and ``ds01 drop container``: edit the caller's want files."""

from __future__ import annotations

import os

from ds01d.cli.common import caller, load, now, paths
from ds01d.config.want import Want, limit_problems, to_yaml
from ds01d.errors import InvalidInput
from ds01d.fsutil import write_atomic
from ds01d.paths import Paths

TYPE_CHECKING = False  # mypy reads this name as True; argparse is not imported at run time
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from ds01d.config.values import Limits

_FLAG = {"name": "NAME", "image": "--image", "gpus": "--gpus", "mig": "--mig",
         "cpus": "--cpus", "memory": "--memory", "shm": "--shm",
         "container": "--command/--env/--port"}


def _checked(args: argparse.Namespace, user: str, p: Paths) -> Want:
    """The want as typed, judged by the same rules ds01d reads want files with (messages
    name the flag)."""
    from ds01d.config.want import from_data
    from ds01d.errors import ConfigError
    from ds01d.units import iso

    raw = {"version": 1, "kind": "container", "name": args.name, "image": args.image,
           "requested_at": iso(now(p))}
    raw |= {k: getattr(args, k) for k in ("gpus", "mig", "cpus", "memory", "shm")
            if getattr(args, k) is not None}
    if args.command or args.env or args.port:
        raw["container"] = _settings(args)
    try:
        return from_data(raw, user=user, file="command line")
    except ConfigError as e:
        first = e.errors[0]
        flag = _FLAG.get(first.key.split(".", 1)[0], "")
        raise InvalidInput(f"{flag}: {first.message}" if flag else first.message) from None


def _settings(args: argparse.Namespace) -> dict[str, object]:
    """``--command``, ``--env``, ``--port``: what the container runs, with its workspace."""
    import shlex

    try:
        command = shlex.split(args.command) if args.command else ["sleep", "infinity"]
    except ValueError as e:
        raise InvalidInput(f"--command: {e}") from None
    return {"workspace": True, "command": command, "env": args.env or [],
            "ports": [{"container_port": n, "host_port": n} for n in args.port or []]}


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _owner(p: Paths, user: str) -> tuple[int, int] | None:
    """Root writing for a user (``--as`` on a real root) hands files to that user."""
    if os.geteuid() != 0 or p.is_simulated():
        return None
    from ds01d.adapters.nss import ids_of

    found = ids_of(user)
    if found is None:
        raise InvalidInput(f"no such user: {user}")
    return found


def open_folder(p: Paths, user: str, *, create: bool) -> int:
    """The caller's ``wants/<user>/``, opened without following links (made when ``create``);
    refused when it is not theirs. The caller closes the descriptor."""
    from ds01d.names import is_user_name

    if not is_user_name(user):
        raise InvalidInput(f"{user!r} cannot be used as a want folder name")
    spool = p.under("var/lib/ds01/wants")
    if create and not os.path.isdir(spool) and (os.geteuid() == 0 or p.is_simulated()):
        from pathlib import Path

        from ds01d.runtime.wantfiles import ensure_spool

        ensure_spool(Path(spool))
    try:
        # O_PATH: the spool (1733) may be searched and written, not read, by users
        top = os.open(spool, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise InvalidInput(f"cannot open {spool} ({e.strerror}): is ds01 set up on this "
                           "machine (ds01d running)?") from None
    try:
        if create:
            try:
                os.mkdir(user, 0o700, dir_fd=top)
            except FileExistsError:
                pass
            except OSError as e:
                raise InvalidInput(f"cannot make {spool}/{user}: {e.strerror}") from None
        try:
            fd = os.open(user, _DIR, dir_fd=top)
        except FileNotFoundError:
            raise InvalidInput("you have no wanted containers (see ds01 status)") from None
        except OSError:
            raise InvalidInput(f"{spool}/{user} is not your folder: ask an admin to remove "
                               "it") from None
    finally:
        os.close(top)
    _check_folder(fd, p, user, spool)
    return fd


def _check_folder(fd: int, p: Paths, user: str, spool: str) -> None:
    st = os.fstat(fd)
    me = os.geteuid()
    owner = _owner(p, user)
    if me == 0 and owner is not None and st.st_uid == 0:
        os.fchown(fd, *owner)  # root made it for the user (--as): theirs now
    elif me not in (0, st.st_uid) or (owner is not None and st.st_uid != owner[0]):
        os.close(fd)
        raise InvalidInput(f"{spool}/{user} is not yours (owner uid {st.st_uid}): ds01d moves "
                           "it aside within a pass; if not, ask an admin to remove it")


def _valid_name(name: str) -> str:
    from ds01d.names import is_want_name, printable

    if not is_want_name(name):
        raise InvalidInput(f"{printable(name, 80)!r} is not a container name (a-z, 0-9, . _ -; "
                           "at most 63 characters)")
    return name


def _refusals(want: Want, limits: Limits, p: Paths) -> list[str]:
    """Why ``want`` can never be served (the same rules ds01d applies), with this host's
    profiles when ds01d has said what they are."""
    from ds01d.cli.gpus import host_offer
    from ds01d.config.want import host_problems

    offer = host_offer(p)
    problems = limit_problems(want, limits, offer[0] if offer else ())
    return problems + (host_problems(want, *offer) if offer else [])


def _over_quota(want: Want, limits: Limits, aggregate: dict[str, Any],
                mine: dict[str, dict[str, Any]]) -> str | None:
    """Why ``want`` cannot be served with what the user holds now (it would not queue: only
    they can make room), or ``None``. The caps are the queue's own (``quota_caps``)."""
    from ds01d.config.values import quota_caps
    from ds01d.units import quantity

    running = {n: s for n, s in mine.items() if s.get("phase") == "Running" and n != want.name}
    held = sum(float(s.get("gpu_equivalents") or 0) for s in running.values())
    names = ", ".join(sorted(n for n, s in running.items() if s.get("devices"))) or "-"
    if not want.gpu_equivalents:
        return None
    for key, cap in quota_caps(limits.max_gpu_equivalents, aggregate.get("gpu_limit")):
        if held + want.gpu_equivalents > cap + 1e-9:
            return (f"you hold {held:.3g} of your {quantity(cap, 'GPU-equivalent')} ({names}) and "
                    f"{want.name} needs {want.gpu_equivalents:.3g} more ({key}): drop one first "
                    "(ds01 drop container NAME), then ask again")
    return None


_COMPARED = ("image", "gpus", "mig", "cpus", "memory", "shm")


def _differences(want: Want, before: dict[str, object]) -> str:
    """What ``want`` asks for that differs from the want file of the running container, e.g.
    ``image: pytorch:2 now, ubuntu:24.04 asked`` (empty when the file does not say)."""
    from ds01d import jsonfast as json
    from ds01d.names import printable

    asked: dict[str, object] = {}
    for line in to_yaml(want).splitlines()[1:]:
        key, _, value = line.partition(": ")
        asked[key] = json.loads(value)
    if before.get("name") != want.name:
        return ""
    out = [f"{k}: {before.get(k, 'none')} now, {asked.get(k, 'none')} asked"
           for k in _COMPARED if before.get(k) != asked.get(k)]
    if before.get("container") != asked.get("container"):
        out.append("command, environment or ports: other ones asked")
    return printable("; ".join(out), 400)


def _asking_again(want: Want, current: dict[str, Any] | None, replace: bool,
                  before: Callable[[], dict[str, object]]) -> tuple[bool, str]:
    """What asking for ``want`` does, given the status of the container of that name:
    (write the want?, what to say). Refused (:class:`InvalidInput`) when it would replace a
    running container without ``--replace``, saying what differs from ``before()`` (the want
    file as it is, read only then)."""
    from ds01d.config.want import spec_hash

    name = want.name
    if current is None:
        return True, f"ds01d starts it when it can: see `ds01 status {name}`"
    phase = current.get("phase")
    same = current.get("spec") == spec_hash(want)
    if phase == "Running" and same:
        return False, f"{name} already runs with these settings: nothing changes"
    if phase == "Running" and not replace:
        differ = _differences(want, before())
        raise InvalidInput(
            f"{name} runs with other settings{f' ({differ})' if differ else ''}. Asking for "
            f"these replaces it: its processes "
            f"stop, and it is made anew with the new settings once they can be served; "
            f"/workspace (~/workspace/{name}) is kept, anything else in the container is "
            f"lost. To do so, ask again with --replace (or: ds01 drop container {name})")
    if phase == "Running":
        return True, (f"replacing {name}: ds01d stops it within seconds and makes it anew with "
                      "the new settings once they can be served; /workspace is kept")
    if phase == "Pending" and same:
        position = current.get("queue_position")
        where = f" (position {position})" if position else ""
        return False, f"{name} already waits in the queue{where}: nothing changes"
    if phase == "Pending":
        return True, f"{name} now waits for the new settings; its place counts from now"
    if phase == "Stopped" and not same:
        return True, (f"{name} is made anew with the new settings (the stopped container is "
                      "removed; /workspace is kept)")
    if phase == "Stopped":
        return True, f"asked again: ds01d starts {name} again within seconds"
    return True, f"asked again for {name} (it had failed: {current.get('reason')})"


def run_want(args: argparse.Namespace) -> int:
    from ds01d.cli.limits import effective_of
    from ds01d.config.values import Limits
    from ds01d.statusfiles import read_statuses
    from ds01d.units import quantity

    p = paths(args)
    user = caller(args, p)
    want = _checked(args, user, p)
    body = effective_of(p, user, want.requested_at)
    limits = Limits(**body["limits"])
    problems = _refusals(want, limits, p)
    if want.settings is not None:
        from ds01d.config.settings import problems as settings_problems

        problems += settings_problems(want.settings, home=os.path.expanduser("~"))
    if problems:
        raise InvalidInput(f"cannot want container {want.name!r}: " + "; ".join(problems)
                           + " (see ds01 limits and ds01 gpus)")
    mine = {str(s.get("name")): s for s in read_statuses(p.under("var/lib/ds01/status"), user)}
    over = _over_quota(want, limits, body.get("aggregate") or {}, mine)
    if over is not None:
        raise InvalidInput(f"cannot want container {want.name!r} now: {over}")

    def on_disk() -> dict[str, object]:  # read only to say what a refusal is about
        from ds01d.cli.status import want_values

        return want_values(p, user, want.name)

    write, said = _asking_again(want, mine.get(want.name), bool(getattr(args, "replace", False)),
                                on_disk)
    if not write:
        print(said)
        return 0
    fd = open_folder(p, user, create=True)
    try:
        names = os.listdir(fd)
        failed = {n for n, s in mine.items() if s.get("phase") == "Failed"}
        others = sorted(n.removesuffix(".yaml") for n in names if n.endswith(".yaml")
                        and not n.startswith(".") and n != f"{want.name}.yaml")
        kept = [n for n in others if n not in failed]
        cap = limits.max_containers_per_user
        if cap is not None and len(kept) >= cap:
            raise InvalidInput(f"you already want {len(kept)} containers ({', '.join(kept)})"
                               f", your limit (max_containers_per_user is {cap}): ds01 drop "
                               "container one first")
        again = f"{want.name}.yaml" in names
        # renamed into place, not fsynced: a power cut may lose a want written in its last
        # seconds (its owner asks again); an fsync would cost every want a disk flush
        write_atomic(f"{want.name}.yaml", to_yaml(want), dir_fd=fd, owner=_owner(p, user),
                     durable=False)
    finally:
        os.close(fd)
    devices = (quantity(want.gpus, "GPU") if want.gpus else f"MIG {want.mig}" if want.mig
               else "no GPU")
    verb = "asked again for" if again else "wanted"
    print(f"{verb} container {want.name!r} ({devices}, image {want.image}): {said}; "
          f"then get in with `ds01 shell {want.name}` or VS Code (Attach to Running Container)")
    return 0


def run_drop(args: argparse.Namespace) -> int:
    p = paths(args)
    user = caller(args, p)
    name = _valid_name(args.name)
    fd = open_folder(p, user, create=False)
    try:
        os.unlink(f"{name}.yaml", dir_fd=fd)
    except FileNotFoundError:
        raise InvalidInput(f"you have no wanted container named {name!r} "
                           "(see ds01 status)") from None
    finally:
        os.close(fd)
    print(f"dropped container {name!r}: ds01d stops and removes it and frees its devices")
    return 0


def rewrite(p: Paths, user: str, name: str, change: Callable[[Want], Want]) -> None:
    """Read the caller's want ``name`` and write ``change(want)`` in its place (``ds01
    keepalive``, ``ds01 shell`` asking again); :class:`InvalidInput` when there is none."""
    from ds01d.config.want import read_want
    from ds01d.errors import ConfigError

    fd = open_folder(p, user, create=False)
    try:
        try:
            want = read_want(fd, user, name)
        except OSError:
            raise InvalidInput(f"you have no wanted container named {name!r}") from None
        except ConfigError as e:
            raise InvalidInput(str(e.errors[0])) from None
        write_atomic(f"{name}.yaml", to_yaml(change(want)), dir_fd=fd, owner=_owner(p, user),
                     durable=False)
    finally:
        os.close(fd)


def run_keepalive(args: argparse.Namespace) -> int:
    """Postpone idle stops of one container (runtime limits still apply)."""
    from datetime import timedelta

    from ds01d.units import format_hours, parse_duration_s

    p = paths(args)
    user = caller(args, p)
    name = _valid_name(args.name)
    try:
        hours = parse_duration_s(args.duration) / 3600
    except ValueError as e:
        raise InvalidInput(f"--for: {e}") from None
    cap = load(p).policies.keepalive_max_duration_h
    capped = min(hours, cap)
    until = now(p) + timedelta(hours=capped)
    rewrite(p, user, name, lambda want: want.replace(keepalive_until=until))
    note = f" (capped at keepalive_max_duration_h = {format_hours(cap)})" if capped < hours else ""
    print(f"{name} will not be stopped for being idle before {until:%Y-%m-%d %H:%M} UTC"
          f"{note}; its runtime limit still applies")
    stopped = _stopped_note(p, user, name)
    if stopped:
        print(stopped)
    return 0


def _stopped_note(p: Paths, user: str, name: str) -> str | None:
    """What to say when the container is stopped: the keepalive counts only while it runs."""
    from ds01d.cli.status import again_command, status_rows

    if not any(r.get("phase") == "Stopped" for r in status_rows(p, user, name)):
        return None
    again = again_command(p, user, name) or f"ds01 want container {name} with the same options"
    return (f"{name} is stopped: a keepalive counts only while it runs; start it again: "
            f"{again}")
