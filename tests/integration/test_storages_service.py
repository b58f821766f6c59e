"""A house's several storages through the real aggregator over loopback gRPC (issue 23): the
house battery and an S2 RM's power station in one FlexibilityUpdate (the station first on the
wire) get one plan with a setpoint for each, the house battery first (known by the Hello, not
by position) and filled first; a house whose only storage is the station is planned on it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from aggregator.config import AggregatorConfig
from aggregator.server import AggregatorServer
from edge_agent.uplink import convert as edge
from vpp.v1 import fleet_service_pb2 as fs
from vpp_common.clock import UTC, ManualClock
from vpp_common.messages import (
    ControlType,
    DispatchPlan,
    Flexibility,
    Hello,
    ResourceInfo,
    ResourceKind,
    SiteLimits,
    StorageFlexibility,
)

from .test_aggregator_service import RawAgent

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CHEAP = datetime(2026, 6, 1, 20, 0, tzinfo=UTC)  # 20:00-22:00 at 0.10, else 0.30
HELLO = Hello("test", SiteLimits(11_000, 4_600), (ResourceInfo("battery", ResourceKind.BATTERY,
                                                               ControlType.FRBC, 5_000, 10_000),))
BATTERY = StorageFlexibility("battery", 50, 0, 100, 10, 10_000, 5_000, 5_000)
STATION = StorageFlexibility("3c6f0d0e-8f7a-4b7e-9d1c-5a2b8e4f6a10", 50, 0, 100, 0, 2_000, 1_000, 1_000, 1.0, 0.9)


async def _plan(agent: RawAgent, flex: Flexibility) -> DispatchPlan:
    agent.send(fs.ConnectRequest(sequence=1, hello=edge.hello_to_proto(HELLO)))
    agent.send(fs.ConnectRequest(sequence=2, flexibility_update=edge.flexibility_to_proto(flex)))
    return edge.plan_from_proto((await agent.expect("dispatch_plan", timeout_s=30.0)).dispatch_plan)


async def test_the_battery_and_an_rms_station_are_planned_together_battery_first(tmp_path: Path) -> None:
    prices = tmp_path / "prices.csv"
    prices.write_text("timestamp,import_price_per_kwh,export_price_per_kwh\n"
                      "2026-06-01T00:00:00+00:00,0.30,0.05\n2026-06-01T20:00:00+00:00,0.10,0.05\n"
                      "2026-06-01T22:00:00+00:00,0.30,0.05\n")
    cfg = AggregatorConfig.model_validate({
        "listen": "127.0.0.1:0", "admin_listen": None, "insecure": True, "metrics_port": None,
        "replica_id": "r1", "planning": {"prices_file": str(prices)}})
    srv = AggregatorServer(cfg, clock=ManualClock(T0))
    await srv.start()
    both, alone = RawAgent(srv.target, "h-both"), RawAgent(srv.target, "h-station")
    try:
        plan = await _plan(both, Flexibility(T0, (STATION, BATTERY)))
        assert all([sp.resource_id for sp in s.setpoints] == ["battery", STATION.resource_id] for s in plan.slots)
        for s in plan.slots:
            bat, sta = s.setpoints
            assert -5_000 <= bat.target_power_w <= 5_000 and -1_000 <= sta.target_power_w <= 1_000
            assert bat.envelope.min_w <= bat.target_power_w <= bat.envelope.max_w
            assert sta.envelope.min_w == sta.envelope.max_w == sta.target_power_w  # an RM: fixed
        cheap = [s for s in plan.slots if CHEAP <= s.start < CHEAP + timedelta(hours=2)]
        charging = [s for s in cheap if s.setpoints[0].target_power_w + s.setpoints[1].target_power_w > 5_001]
        assert charging, [(s.start, s.setpoints) for s in cheap]  # more than the battery alone can take
        for s in charging:  # the battery first, at its rating; the station the rest
            assert s.setpoints[0].target_power_w == pytest.approx(5_000)
            assert s.setpoints[1].target_power_w > 0
        # each storage's own SoC through the plan stays within its bounds (reserve .. full)
        for k, st in enumerate((BATTERY, STATION)):
            wh, lo, hi = st.soc_pct / 100 * st.capacity_wh, st.reserve_soc_pct / 100 * st.capacity_wh, st.capacity_wh
            for s in plan.slots:
                p = s.setpoints[k].target_power_w
                wh += (p * st.charge_efficiency if p > 0 else p / st.discharge_efficiency) * 0.25
                assert lo - 1 <= wh <= hi + 1, (st.resource_id, s.start, wh)
        # a house whose only storage is the station (its battery not controllable: none sent)
        only = await _plan(alone, Flexibility(T0, (STATION,)))
        assert {sp.resource_id for s in only.slots for sp in s.setpoints} == {STATION.resource_id}
        assert max(s.setpoints[0].target_power_w for s in only.slots) == pytest.approx(1_000)
        stored = await srv.store.get_flexibility("h-both")
        assert stored is not None and [s.resource_id for s in stored.storages] == [STATION.resource_id, "battery"]
    finally:
        await both.close()
        await alone.close()
        await srv.stop(grace_s=0.2)
