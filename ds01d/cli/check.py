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


def _nss_warnings(config: DesiredConfig, nss: Nss) -> list[str]:
    return [f"groups.{g.name}.unix_groups: Unix group {u!r} not found through NSS"
            for g in config.groups.values() for u in g.unix_groups
            if nss.unix_group_members(u) is None]


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
        for w in e.warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(f"{len(e.errors)} error(s) and {len(e.warnings)} warning(s) in {p.etc}",
              file=sys.stderr)
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
