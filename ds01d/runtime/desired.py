"""Assemble desired state: the admin's config (the last valid one on error) and every want
(read by :mod:`ds01d.runtime.wantfiles`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ds01d import snapshot
from ds01d.config.effective import Nss, Signature, resolve, same_user, signature, unix_groups_named
from ds01d.config.loader import load_config
from ds01d.config.model import DesiredConfig, Effective
from ds01d.core.model import Account, Desired
from ds01d.core.naming import user_parts
from ds01d.errors import ConfigError, Diagnostic
from ds01d.runtime.wantfiles import WantsRead


@dataclass
class ConfigSource:
    """The admin's configuration; an invalid edit keeps the last valid one, and says so.

    Files are parsed again only when one of them changed (their fingerprint), so a pass
    with nothing new costs a few ``stat`` calls.
    """

    etc: Path
    last: DesiredConfig | None = None
    errors: list[Diagnostic] = field(default_factory=list)
    seen: list[list[Any]] | None = None
    saved: Path | None = None
    """Where the last valid configuration is kept with the files' fingerprint (root's file):
    a new ds01d takes it when every file is as it was then, and parses them otherwise;
    ``None``: not kept."""

    def load(self) -> DesiredConfig | None:
        now = snapshot.fingerprint(snapshot.config_files(str(self.etc)))
        if now == self.seen:
            return self.last
        if self.seen is None and self.saved is not None and (kept := self._kept(now)):
            self.seen, self.last = now, kept
            return kept
        self.seen = now
        try:
            self.last = load_config(self.etc)
            self.errors = []
            self._keep(now, self.last)
        except ConfigError as e:
            self.errors = e.errors
        except Exception as e:
            self.errors = [Diagnostic(str(self.etc), 0, "", f"ds01d could not read the "
                                      f"configuration ({type(e).__name__}: {e})")]
        return self.last

    def _kept(self, now: list[list[Any]]) -> DesiredConfig | None:
        """The configuration a previous ds01d kept, when made from files exactly as ``now``
        by this code."""
        from ds01d.fsutil import load_kept

        assert self.saved is not None
        body = load_kept(self.saved, config_tag())
        if isinstance(body, tuple) and len(body) == 2 and body[0] == now \
                and isinstance(body[1], DesiredConfig):
            return body[1]
        return None

    def _keep(self, now: list[list[Any]], config: DesiredConfig) -> None:
        if self.saved is not None:
            from ds01d.fsutil import save_kept

            save_kept(self.saved, config_tag(), (now, config))


@functools.cache
def config_tag() -> str:
    """What a kept configuration must have been made by: this ds01, this loader and these
    schemas (taken once: the code that runs is the code this ds01d started with)."""
    from ds01d.fsutil import code_tag

    return code_tag(["config/", "schemas/", "yamlsrc.py", "schema.py", "patterns.py",
                     "units.py", "names.py", "snapshot.py"])


@dataclass
class EffectiveCache:
    """Effective limits per user, kept while the configuration object, the name service's
    answers about the Unix groups it names, and the set of the user's active exemptions stay
    the same (time changes them only through exemptions)."""

    config: DesiredConfig | None = None
    table: dict[tuple[str, frozenset[int]], Effective] = field(default_factory=dict)
    nss_state: object = None
    nss_changed: bool = False
    """The last :meth:`watch` found Unix group membership changed (the snapshot is stale)."""
    parts: tuple[object, frozenset[str], dict[str, str]] | None = None
    """Slice-name parts of the last pass's users (the same users: the same parts)."""
    active: tuple[object, datetime, frozenset[int]] | None = None
    """The exemptions in force at the pass's time (asked once a pass, not once a user)."""
    shared: dict[tuple[Signature, frozenset[int]], Effective] = field(default_factory=dict)
    """Limits by signature (``config.effective.signature``): users with the same group,
    override, lifted limits and notes have the same limits, computed once."""

    def watch(self, config: DesiredConfig, nss: Nss) -> None:
        """Once a pass: forget every user's limits when group membership may have changed."""
        named = unix_groups_named(config)
        state = nss.state(named) if named else None
        self.nss_changed = config is self.config and state != self.nss_state
        if self.nss_changed:
            self.table, self.shared = {}, {}
        self.nss_state = state

    def slice_parts(self, config: DesiredConfig, users: list[str]) -> dict[str, str]:
        """Each user's part of their slice name (``naming.user_parts``), kept while the
        configuration and the set of users stay the same."""
        known = frozenset(users)
        if self.parts is None or self.parts[0] is not config or self.parts[1] != known:
            loose = config.match_without_domain
            self.parts = (config, known, user_parts(users, config.short_names,
                                                    lambda a, b: same_user(a, b, loose=loose)))
        return self.parts[2]

    def get(self, config: DesiredConfig, user: str, *, now: datetime, nss: Nss) -> Effective:
        if config is not self.config:
            self.config, self.table, self.shared = config, {}, {}
        if self.active is None or self.active[0] is not config or self.active[1] != now:
            self.active = (config, now, frozenset(i for i, e in enumerate(config.exemptions)
                                                  if e.active(now)))
        key = (user, self.active[2])
        if key not in self.table:
            self.table[key] = self._resolve(config, user, now=now, nss=nss)
        return self.table[key]

    def _resolve(self, config: DesiredConfig, user: str, *, now: datetime, nss: Nss
                 ) -> Effective:
        assert self.active is not None
        sig = (signature(config, user, now=now, nss=nss), self.active[2])
        like = self.shared.get(sig)
        if like is None:
            like = self.shared[sig] = resolve(config, user, now=now, nss=nss)
            return like
        return like.for_user(user)


def assemble(config: DesiredConfig, read: WantsRead, *, users: Iterable[str], nss: Nss,
             account: Callable[[str], Account | None], now: datetime,
             cache: EffectiveCache | None = None) -> Desired:
    """Desired state for one pass: effective limits for every user who wants or holds.
    ``cache``: kept across passes, and watched by its keeper (:meth:`EffectiveCache.watch`,
    once a pass, before this)."""
    everyone = sorted({w.user for w in read.wants} | set(users) | {u for u, _ in read.failed}
                      | {u for u, _ in read.held} | set(read.held_users))
    lookup = cache or EffectiveCache()
    effective = {u: lookup.get(config, u, now=now, nss=nss) for u in everyone}
    accounts = {u: acct for u in everyone if (acct := account(u)) is not None}
    return Desired(config, read.wants, effective, accounts, read.failed, read.held,
                   read.held_users, lookup.slice_parts(config, everyone))

