"""``ds01 check-config``: validate every admin file; every error, with its line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ds01d.cli.common import nss_for, paths
from ds01d.config.effective import Nss
from ds01d.config.loader import load_config
from ds01d.config.model import DesiredConfig
from ds01d.errors import ConfigError, InvalidInput
from ds01d.units import quantity


def _nss_warnings(config: DesiredConfig, nss: Nss) -> list[str]:
    return [f"groups.{g.name}.unix_groups: Unix group {u!r} not found through NSS"
            for g in config.groups.values() for u in g.unix_groups
            if nss.unix_group_members(u) is None]


def _nss_warnings_of_file(etc: Path, nss: Nss) -> list[str]:
    """The Unix groups ``resource-limits.yaml`` names that NSS does not know, read from the
    file itself (an invalid configuration has no groups to ask)."""
    from ds01d.yamlsrc import load_file

    try:
        groups = load_file(etc / "resource-limits.yaml", display="resource-limits.yaml"
                           ).data.get("groups")
    except (ConfigError, OSError, AttributeError):
        return []
    out = []
    for name, group in (groups.items() if isinstance(groups, dict) else ()):
        named = group.get("unix_groups") if isinstance(group, dict) else None
        for u in named if isinstance(named, list) else ():
            if isinstance(u, str) and nss.unix_group_members(u) is None:
                out.append(f"groups.{name}.unix_groups: Unix group {u!r} not found through NSS")
    return out


def _migrated(etc: Path, name: str, config: DesiredConfig) -> str:
    """``name`` under ``etc`` written in today's keys (see ds01d/config/migrate.py)."""
    from ds01d.config.migrate import migrate
    from ds01d.yamlsrc import read_text

    if "/" in name or name.startswith("."):
        raise InvalidInput(f"--migrate takes a file name in {etc}, not a path: {name!r}")
    text = read_text(etc / name, display=name)
    return migrate(text, [r for r in config.rewrites if r.file == name])


def run(args: argparse.Namespace) -> int:
    p = paths(args)
    try:
        config = load_config(p.etc)
    except ConfigError as e:
        for err in e.errors:
            print(err)
        warnings = [str(d) for d in e.warnings] + _nss_warnings_of_file(p.etc, nss_for(p))
        for line in warnings:
            print(f"warning: {line}", file=sys.stderr)
        print(f"{quantity(len(e.errors), 'error')} and {quantity(len(warnings), 'warning')} in "
              f"{p.etc}", file=sys.stderr)
        return 1
    if args.migrate:
        print(_migrated(p.etc, args.migrate, config), end="")
        return 0
    for w in config.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for line in _nss_warnings(config, nss_for(p)):
        print(f"warning: {line}", file=sys.stderr)
    members = sum(len(g.members) for g in config.groups.values())
    print(f"{p.etc}: valid: {len(config.groups)} groups, {members} listed members, "
          f"{len(config.overrides)} overrides, {len(config.exemptions)} exemptions"
          f"{', a MIG layout' if config.mig_layout else ''}")
    return 0
