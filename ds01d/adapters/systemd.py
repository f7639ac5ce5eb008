"""ds01's slices as transient systemd units, over D-Bus with pystemd.

The bus is ``$DBUS_SYSTEM_BUS_ADDRESS`` when set (the testbed), else the system bus.
Properties ds01 manages on a user's slice, and the cgroup files they become
(ref: systemd.resource-control(5)):

| property | cgroup v2 | cgroup v1 |
|---|---|---|
| CPUQuotaPerSecUSec (CPUQuota=) | ``cpu.max`` | ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` |
| MemoryMax | ``memory.max`` | ``memory.limit_in_bytes`` |
| MemoryHigh | ``memory.high`` | (none: v1 has no soft throttle; systemd ignores it) |
| TasksMax | ``pids.max`` | ``pids.max`` |
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from pystemd.dbusexc import DBusBaseError as DBusError
from pystemd.dbuslib import DBus, DBusAddress, path_encode

from ds01d.adapters.base import PermanentError, TemporaryError
from ds01d.core.model import SliceState

# pystemd.dbuslib.DBusError is a function that makes these, not their class: catching it
# raised TypeError instead of reporting the D-Bus error.
MANAGED = ("CPUQuotaPerSecUSec", "MemoryMax", "MemoryHigh", "TasksMax")
INFINITY = 2**64 - 1
"""systemd's "infinity" for these uint64 properties; ds01 writes ``None``."""
SYSTEMD = b"org.freedesktop.systemd1"


def _wire(properties: Mapping[str, int | None]) -> dict[bytes, Any]:
    return {k.encode(): INFINITY if v is None else int(v) for k, v in properties.items()}


def _error(e: DBusError, what: str) -> Exception:
    text = str(e)
    if "InvalidArgs" in text or "PropertyReadOnly" in text:
        return PermanentError(f"{what}: {text}")
    return TemporaryError(f"{what}: {text}")


class SystemdAdapter:
    """The :class:`ds01d.adapters.base.Systemd` protocol over systemd's D-Bus API."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")

    @contextlib.contextmanager
    def _bus(self) -> Iterator[Any]:
        bus = DBusAddress(self.address.encode()) if self.address else DBus()
        with bus:
            yield bus

    def _manager(self, bus: Any, method: str, *args: Any) -> Any:
        from pystemd.systemd1 import Manager

        manager = Manager(bus=bus, _autoload=True)
        return getattr(manager.Manager, method)(*args)

    def list_slices(self) -> list[SliceState]:
        try:
            with self._bus() as bus:
                units = self._manager(bus, "ListUnitsByPatterns", [b"active"],
                                      [b"ds01.slice", b"ds01-*.slice"])
                return [self._read(bus, u[0]) for u in sorted(units)]
        except DBusError as e:
            raise _error(e, "listing slices") from None

    def _read(self, bus: Any, name: bytes) -> SliceState:
        path = path_encode(b"/org/freedesktop/systemd1/unit", name)
        props: dict[str, int | None] = {}
        for prop in MANAGED:
            value = int(bus.get_property(SYSTEMD, path, b"org.freedesktop.systemd1.Slice",
                                         prop.encode(), b"t"))
            props[prop] = None if value == INFINITY else value
        return SliceState(name.decode(), props)

    def start_slice(self, name: str, properties: Mapping[str, int | None]) -> None:
        wire = {b"Description": f"ds01: {name}".encode(), **_wire(properties)}
        try:
            with self._bus() as bus:
                self._manager(bus, "StartTransientUnit", name.encode(),
                              b"fail", wire)
        except DBusError as e:
            raise _error(e, f"starting {name}") from None

    def set_slice_properties(self, name: str, properties: Mapping[str, int | None]) -> None:
        try:
            with self._bus() as bus:
                self._manager(bus, "SetUnitProperties", name.encode(), True,
                              _wire(properties))
        except DBusError as e:
            raise _error(e, f"setting {name}") from None

    def stop_slice(self, name: str) -> None:
        try:
            with self._bus() as bus:
                self._manager(bus, "StopUnit", name.encode(), b"replace")
        except DBusError as e:
            raise _error(e, f"stopping {name}") from None
