"""The systemd adapter without a bus to talk to: each call is a TemporaryError saying so (the
real pystemd, a D-Bus address where nothing listens)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ds01d.adapters.base import TemporaryError
from ds01d.adapters.systemd import SystemdAdapter


def test_no_bus_is_a_temporary_error_for_every_call(tmp_path: Path) -> None:
    s = SystemdAdapter(f"unix:path={tmp_path}/no-bus")
    calls = (s.list_slices, lambda: s.start_slice("ds01.slice", {}),
             lambda: s.set_slice_properties("ds01.slice", {"TasksMax": 1}),
             lambda: s.stop_slice("ds01.slice"))
    for call in calls:
        with pytest.raises(TemporaryError, match="Could not open a bus"):
            call()
