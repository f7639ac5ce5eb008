"""Per-MIG-instance activity from DCGM, through a dcgm-exporter metrics endpoint.

NVML reports no utilisation for MIG instances; DCGM's profiling metrics do, per GPU instance:
``DCGM_FI_PROF_GR_ENGINE_ACTIVE`` (the fraction of time the graphics/compute engine was
busy) and, where that is not collected, ``DCGM_FI_PROF_SM_ACTIVE``. dcgm-exporter labels each
sample with the GPU (``gpu``: its index, ``UUID``), and for a MIG instance its GPU instance
(``GPU_I_ID``, ``GPU_I_PROFILE``). The scrape is parsed with prometheus_client's own text
parser; names and labels are matched without regard to case (some exporters lower-case them).

ref: https://docs.nvidia.com/datacenter/dcgm/latest/reference/dcgm-exporter-metrics.html
ref: DCGM field ids 1001 (GR_ENGINE_ACTIVE) and 1002 (SM_ACTIVE), "Profiling Metrics".
"""

from __future__ import annotations

import urllib.error
import urllib.request

from ds01d.adapters.base import AdapterError
from ds01d.core.model import MigReading

METRICS = ("dcgm_fi_prof_gr_engine_active", "dcgm_fi_prof_sm_active")
"""In order of preference: the first one reported for an instance is used."""
MAX_BYTES = 16 << 20
"""A scrape larger than this is refused (a host with 16 GPUs sends ~200 KiB)."""


def readings(text: str) -> list[MigReading]:
    """The MIG instances' activity in a scrape (percent, 0-100), one reading per instance."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[tuple[str, int], tuple[int, MigReading]] = {}
    try:
        for family in text_string_to_metric_families(text):
            rank = _rank(family.name)
            if rank is None:
                continue
            for sample in family.samples:
                reading = _reading(sample.labels, sample.value)
                if reading is None:
                    continue
                key = (reading.gpu_uuid or f"#{reading.gpu_index}", reading.gpu_instance_id)
                if key not in found or rank < found[key][0]:
                    found[key] = (rank, reading)
    except (ValueError, TypeError, IndexError) as e:
        raise AdapterError(f"dcgm-exporter sent something that is not a metrics page: {e}"
                           ) from None
    return [r for _, r in found.values()]


def _rank(name: str) -> int | None:
    lowered = name.lower()
    return METRICS.index(lowered) if lowered in METRICS else None


def _reading(labels: dict[str, str], value: float) -> MigReading | None:
    lowered = {k.lower(): v for k, v in labels.items()}
    gi = lowered.get("gpu_i_id", "")
    if not gi.isdigit() or not 0.0 <= value <= 1.0 + 1e-6:
        return None  # a whole GPU (no GPU instance), or not a fraction
    index = lowered.get("gpu", "")
    return MigReading(int(index) if index.isdigit() else None, lowered.get("uuid") or None,
                      int(gi), round(value * 100.0, 3))


class DcgmExporter:
    """The :class:`ds01d.adapters.base.Dcgm` protocol over a dcgm-exporter endpoint."""

    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def mig_activity(self) -> list[MigReading]:
        return readings(self._scrape())

    def _scrape(self) -> str:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as reply:
                body: bytes = reply.read(MAX_BYTES + 1)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise AdapterError(f"cannot read dcgm-exporter at {self.url}: {e}") from None
        if len(body) > MAX_BYTES:
            raise AdapterError(f"dcgm-exporter at {self.url} sent more than "
                               f"{MAX_BYTES >> 20} MiB")
        return body.decode("utf-8", errors="replace")

