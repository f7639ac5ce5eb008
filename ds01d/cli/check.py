"""``ds01 check-config``: validate every admin file; every error, with its line."""

from __future__ import annotations

import argparse
import sys

from ds01d.cli.common import nss_for, paths
from ds01d.config.effective import Nss
from ds01d.config.loader import load_config
from ds01d.config.model import DesiredConfig
from ds01d.errors import ConfigError


def _nss_warnings(config: DesiredConfig, nss: Nss) -> list[str]:
    return [f"groups.{g.name}.unix_groups: Unix group {u!r} not found through NSS"
            for g in config.groups.values() for u in g.unix_groups
            if nss.unix_group_members(u) is None]


def run(args: argparse.Namespace) -> int:
    p = paths(args)
    try:
        config = load_config(p.etc)
    except ConfigError as e:
        for err in e.errors:
            print(err)
        print(f"{len(e.errors)} error(s) in {p.etc}", file=sys.stderr)
        return 1
    for w in config.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for line in _nss_warnings(config, nss_for(p)):
        print(f"warning: {line}", file=sys.stderr)
    members = sum(len(g.members) for g in config.groups.values())
    print(f"{p.etc}: valid: {len(config.groups)} groups, {members} listed members, "
          f"{len(config.overrides)} overrides, {len(config.exemptions)} exemptions"
          f"{', a MIG layout' if config.mig_layout else ''}")
    return 0
