"""Notices to users and alerts to admins, delivered outside the pass.

A **notice** is anything that concerns one user: a stop coming (idle, runtime, a keepalive
ending, a MIG relayout), their queue reaching the front, their container stopped and why, GPU
use of theirs nobody allocated. It reaches them where they are: their open terminals
(``adapters/tty.py``), the notice file in the container (``/workspace/.ds01/notices``, written
as them: ``adapters/asuser.py``) and ``ds01 status`` (which shows the events marked
``notice``). :meth:`UserNotices.tell` is the one entry point; the executor calls it for every
``Warn`` and for the other actions above.

An **alert** is what an admin should hear of: the events named in ``alerts.events``
(untracked GPU use, drift, errors, a user over quota), posted to the webhook of the
configuration. Both go through an :class:`~ds01d.runtime.outbox.Outbox`: a pass only queues.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ds01d.adapters.base import AdapterError, TemporaryError
from ds01d.config.model import Alerts
from ds01d.core.model import Account
from ds01d.runtime.outbox import Outbox

log = logging.getLogger("ds01d")


@dataclass(frozen=True)
class Notice:
    """One thing to tell one user."""

    user: str
    container: str | None
    """The container it is about: the want name of a ds01 container, else Docker's name."""
    message: str
    kind: str
    """The event type it came with (``lifecycle.idle_warning``...)."""
    managed: bool = True
    """A ds01 container: its ``/workspace`` gets the notice file."""


def workspace_of(account: Account, name: str) -> str:
    """The host folder mounted at a ds01 container's ``/workspace``."""
    return f"{account.home}/workspace/{name}"


@dataclass
class UserNotices:
    """Delivers notices to terminals and notice files, from a background sender.

    ``terminals``: ``None`` where there are none to write (a simulated host). ``as_user``:
    whether files are written as their owner (a real host); on a simulated root they are
    written plainly, following no link.
    """

    outbox: Outbox
    account: Callable[[str], Account | None]
    terminals: Any = None
    """An :class:`~ds01d.adapters.tty.Terminals` (imported only where used)."""
    as_user: bool = True
    delivered: int = 0

    def tell(self, notice: Notice, now: datetime) -> None:
        """Queue ``notice`` for ``notice.user``'s terminals and notice file."""
        acct = self.account(notice.user)
        if acct is None:
            return
        when = f"{now:%Y-%m-%d %H:%M} UTC"
        self.outbox.put(lambda: self._deliver(notice, acct, when))

    def _deliver(self, notice: Notice, acct: Account, when: str) -> None:
        from ds01d.adapters import asuser

        if self.terminals is not None and acct.uid is not None:
            self.terminals.write(notice.user, acct.uid, notice.message, when=when)
        if notice.managed and notice.container:
            line = f"[{when}] {notice.message}\n"
            folder = workspace_of(acct, notice.container)
            try:
                if not self.as_user:
                    asuser.append_plain(folder, line)
                elif acct.uid is not None and acct.gid is not None:
                    asuser.append_notice(acct.uid, acct.gid, folder, line)
            except (AdapterError, OSError) as e:
                log.warning("notice for %s not written to %s/.ds01/notices: %s", notice.user,
                            folder, e)
        self.delivered += 1


ALERT_WINDOW_S = 600.0
ALERTS_PER_WINDOW = 30
"""At most this many alerts per window reach the webhook; the rest are counted and said."""


def alerted(event_type: str, wanted: tuple[str, ...]) -> bool:
    """Whether ``event_type`` is in ``wanted`` (types, or whole categories)."""
    return event_type in wanted or event_type.partition(".")[0] in wanted


def alert_text(ev: Mapping[str, Any], host: str) -> str:
    """One line for a chat: what happened, to whom, and the details that matter."""
    details = ev.get("details")
    details = details if isinstance(details, dict) else {}
    kind, user = str(ev.get("event_type")), ev.get("user")
    if kind == "gpu.untracked":
        what = (f"GPU use nobody was allocated: pid {details.get('pid')} "
                f"of {user or 'an unknown user'} on GPU {details.get('gpu')} "
                f"({details.get('device')}), {details.get('where')}, "
                f"{details.get('used_memory_mib')} MiB")
    elif "message" in details:
        what = f"{kind}: {details['message']}"
    else:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(details.items()))[:600]
        what = f"{kind}{f' ({user})' if user else ''}: {shown}"
    return f"ds01 on {host}: {what}"


@dataclass
class Alerter:
    """Posts the events an admin wants to the configured webhook (retried, rate limited)."""

    outbox: Outbox
    config: Alerts | None = None
    host: str = field(default_factory=lambda: os.uname().nodename)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    recent: list[float] = field(default_factory=list)
    held_back: int = 0
    """Alerts over the rate limit since the last one sent (said with the next)."""
    sent: int = 0
    lost: int = 0

    def consider(self, ev: Mapping[str, Any]) -> None:
        """Queue ``ev`` for the webhook when it is one the admin wants (cheap; never waits)."""
        cfg = self.config
        if cfg is None or not alerted(str(ev.get("event_type")), cfg.events):
            return
        now = self.clock()
        self.recent = [t for t in self.recent if now - t < ALERT_WINDOW_S]
        if len(self.recent) >= ALERTS_PER_WINDOW:
            self.held_back += 1
            return
        self.recent.append(now)
        text = alert_text(ev, self.host)
        if self.held_back:
            text += f" (and {self.held_back} more alerts not sent: see ds01 events)"
            self.held_back = 0
        self.outbox.put(lambda: self._send(cfg, text))

    def _send(self, cfg: Alerts, text: str) -> None:
        from ds01d.adapters import webhook

        delay = 1.0
        for attempt in range(cfg.retries + 1):
            try:
                url = cfg.webhook_url or webhook.url_from_file(str(cfg.webhook_url_file))
                webhook.post(url, {"text": text}, timeout=cfg.timeout_s)
                self.sent += 1
                return
            except TemporaryError as e:
                if attempt == cfg.retries:
                    why = str(e)
                    break
                self.sleep(delay)
                delay *= 2
            except AdapterError as e:
                why = str(e)
                break
        self.lost += 1
        log.error("alert not delivered (%s): %s", why, text)
