"""What several commands share: the root, the caller, the loaded configuration."""

from __future__ import annotations

import os

from ds01d.errors import ConfigError, InvalidInput
from ds01d.paths import Paths

TYPE_CHECKING = False  # mypy reads this name as True; importing typing costs ~3 ms
if TYPE_CHECKING:
    import argparse
    from datetime import datetime

    from ds01d.config.effective import Nss
    from ds01d.config.model import DesiredConfig


def paths(args: argparse.Namespace) -> Paths:
    return Paths.from_option(args.root)


def caller(args: argparse.Namespace, p: Paths) -> str:
    """Who runs the command: the real user, or ``--as USER`` for root or a simulated root."""
    if args.as_user:
        if os.geteuid() != 0 and not p.is_simulated():
            raise InvalidInput("--as is only for root, or on a simulated root (ds01 sim init)")
        return str(args.as_user)
    from ds01d.adapters.nss import user_name

    name = user_name(os.getuid())
    if name is None:
        raise InvalidInput(f"uid {os.getuid()} has no user name (check /etc/passwd or NSS)")
    return name


def admin(args: argparse.Namespace, p: Paths) -> bool:
    """Whether the caller sees every user's: root not acting as a user, or anyone on a
    simulated root without ``--as`` (``--as USER`` sees what USER would see)."""
    return not args.as_user and (os.geteuid() == 0 or p.is_simulated())


def load(p: Paths) -> DesiredConfig:
    """The admin's configuration, or one clear error pointing at check-config."""
    from ds01d.config.loader import load_config

    try:
        return load_config(p.etc)
    except ConfigError as e:
        first = e.errors[0]
        more = f" (and {len(e.errors) - 1} more)" if len(e.errors) > 1 else ""
        raise InvalidInput(f"the lab's configuration in {p.etc} is invalid: {first}{more}; "
                           "an admin can see every error with `ds01 check-config`") from None


def nss_for(p: Paths) -> Nss:
    """NSS lookups on a real root; none on a simulated one (any user name is valid there)."""
    if p.is_simulated():
        from ds01d.config.effective import NoNss

        return NoNss()
    from ds01d.adapters.nss import SystemNss

    return SystemNss()


def now(p: Paths) -> datetime:
    """The clock of this root: the simulated host's on a simulated root (it moves only with
    ``ds01 sim advance``), the real one otherwise."""
    from ds01d.dt import UTC, datetime

    if p.is_simulated():
        from ds01d.simclock import read_now

        sim = p.under("var/lib/ds01/sim")
        try:
            return datetime.fromtimestamp(read_now(sim), UTC)
        except ValueError:
            raise InvalidInput(f"the simulated host in {sim} is unreadable "
                               "(ds01 sim init --force makes a new one)") from None
    return datetime.now(UTC)
