"""``datetime``'s classes for the commands users type, without its cost.

Importing ``datetime`` first runs its pure-Python twin of every class (1.7 ms, a tenth of
the bare interpreter's start), then replaces them with the C ones from ``_datetime``. The C
module alone is the same classes (``dt.datetime is datetime.datetime``); another Python,
without it, gets the module itself.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy reads this name as True; importing typing costs ~3 ms
if TYPE_CHECKING:
    from datetime import UTC, datetime, time, timedelta
else:
    try:
        from _datetime import UTC, datetime, time, timedelta
    except ImportError:
        from datetime import UTC, datetime, time, timedelta

__all__ = ["UTC", "datetime", "time", "timedelta"]
