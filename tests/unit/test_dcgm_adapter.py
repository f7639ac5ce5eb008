"""The DCGM adapter against a stand-in dcgm-exporter serving a real-shaped scrape."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from ds01d.adapters.base import AdapterError
from ds01d.adapters.dcgm import DcgmExporter, readings
from ds01d.adapters.sim import SimHost
from ds01d.core.idle import MIG_UNKNOWN
from ds01d.runtime.observe import observe
from ds01d.runtime.simroot import sim_adapters
from tests.fakedcgm import GR, SM, Scrape, exporter

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def instance(host: SimHost, gpu: int, i: int) -> str:
    return str(host.gpus[gpu]["instances"][i]["uuid"])


def test_activity_per_gpu_instance_in_percent() -> None:
    host = SimHost()
    scrape = Scrape(host, {(2, 1): 0.42, (3, 2): 0.031})
    with exporter(scrape) as url:
        found = DcgmExporter(url).mig_activity()
    table = {(r.gpu_uuid, r.gpu_instance_id): r.percent for r in found}
    assert table[(host.gpus[2]["uuid"], 1)] == pytest.approx(42.0)
    assert table[(host.gpus[3]["uuid"], 2)] == pytest.approx(3.1)
    assert len(found) == 5  # one a MIG instance: whole GPUs and other metrics left out
    assert all(r.gpu_index in (2, 3) for r in found)


def test_sm_active_where_gr_engine_active_is_not_collected() -> None:
    host = SimHost()
    text = Scrape(host, {(2, 2): 0.5}, metrics=(SM,)).text()
    assert {r.percent for r in readings(text)} == {0.0, 50.0}
    both = Scrape(host, {(2, 2): 0.5}, metrics=(SM, GR)).text()
    mixed = both.replace("0.500000", "0.700000", 1)  # SM says 70, GR says 50: GR wins
    assert max(r.percent for r in readings(mixed)) == pytest.approx(50.0)


def test_lower_cased_names_and_labels() -> None:
    host = SimHost()
    found = readings(Scrape(host, {(3, 1): 0.2}, lower_case=True).text())
    assert max(r.percent for r in found) == pytest.approx(20.0)
    assert {r.gpu_uuid for r in found} == {host.gpus[2]["uuid"].lower(),
                                           host.gpus[3]["uuid"].lower()}


@pytest.mark.parametrize("scrape", [
    {"status": 500}, {"body": "DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu=\"0\" 0.5\n"}])
def test_a_broken_exporter_is_an_adapter_error(scrape: dict[str, object]) -> None:
    with exporter(Scrape(SimHost(), **scrape)) as url, pytest.raises(AdapterError):  # type: ignore[arg-type]
        DcgmExporter(url, timeout_s=2).mig_activity()


def test_no_exporter_listening_is_an_adapter_error() -> None:
    with exporter(Scrape(SimHost())) as url:
        pass  # the server is gone
    with pytest.raises(AdapterError, match="cannot read dcgm-exporter"):
        DcgmExporter(url, timeout_s=1).mig_activity()


def test_observe_maps_readings_to_instances_and_falls_back_visibly() -> None:
    host = SimHost()
    scrape = Scrape(host, {(2, 1): 0.3})
    with exporter(scrape) as url:
        adapters = replace(sim_adapters(host)[0], dcgm=DcgmExporter(url))
        seen = observe(adapters, NOW)
        assert seen.mig_activity is not None
        assert seen.mig_activity[instance(host, 2, 0)] == pytest.approx(30.0)
        assert seen.mig_activity[instance(host, 3, 2)] == 0.0
        assert "dcgm" not in seen.adapter_errors
        scrape.status = 503
        down = observe(adapters, NOW)
    assert down.mig_activity is None
    assert MIG_UNKNOWN in down.adapter_errors["dcgm"]
    assert observe(sim_adapters(host)[0], NOW).mig_activity is None  # not configured
