"""Tell systemd how ds01d is doing (sd_notify through pystemd): READY once, WATCHDOG each
pass, STATUS in words. Does nothing when ds01d was not started by systemd as Type=notify.
ref: sd_notify(3), systemd.service(5) WatchdogSec=."""

from __future__ import annotations

import os


def enabled() -> bool:
    return bool(os.environ.get("NOTIFY_SOCKET"))


def notify(**states: str | int) -> None:
    """``notify(ready=1, status="...")``; errors are ignored (systemd is told, not asked)."""
    if not enabled():
        return
    from pystemd.daemon import notify as sd_notify

    try:
        sd_notify(False, **states)
    except Exception:  # a lost notification must never stop a pass
        return


def watchdog_period_s() -> float | None:
    """Half the watchdog timeout systemd set (WATCHDOG_USEC), or ``None`` without one."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or os.environ.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid()):
        return None
    return int(usec) / 2e6
