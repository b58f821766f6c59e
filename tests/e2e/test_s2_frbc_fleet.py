"""The whole loop for an FRBC Resource Manager (issue 23 item 4): a power station's RM in its own
process (tests/e2e/s2_rm.py, 10 kWh, 5 kW) connects to a running edge agent with a simulated
house (its own 10 kWh battery); the agent reports the station's storage up its real uplink,
after the house battery, to a running aggregator over gRPC; the aggregator plans the two as one
storage and splits the setpoint (the house battery first); the plan names the station, the
agent accepts it, and the station receives an FRBC.Instruction following its setpoint.  When it
disconnects, the next update leaves it out and the next plan no longer names it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from aggregator.server import AggregatorServer
from edge_agent.agent import EdgeAgent
from edge_agent.s2_cem.server import S2CemServer
from tests.conftest import until
from tests.e2e import s2_rm
from tests.e2e.s2_fleet_house import s2_fleet_house
from tests.e2e.test_s2_rm import RmProcess
from vpp_common.clock import SystemClock
from vpp_common.timeslots import align_down

pytestmark = pytest.mark.e2e

TOKEN = "t0ken-for-the-power-station"
STATION = uuid.uuid4()
HOUSE = "house-s2-frbc"
PRICE_S = 900


def write_prices(path: Path, now: datetime) -> None:
    """Import at 0.01 a kWh for the next hour, then 0.40 for 13 h: both storages charge now."""
    first = align_down(now, PRICE_S) - timedelta(hours=1)
    rows = ["timestamp,import_price_per_kwh,export_price_per_kwh"]
    for k in range(15 * 4):
        t = first + timedelta(seconds=k * PRICE_S)
        rows.append(f"{t.isoformat()},{0.01 if t < first + timedelta(hours=2) else 0.40},0.05")
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[tuple[AggregatorServer, EdgeAgent, S2CemServer]]:
    write_prices(tmp_path / "prices.csv", SystemClock().now())
    async with s2_fleet_house(HOUSE, tmp_path / "prices.csv", "station", TOKEN, tmp_path) as house:
        yield house


def setpoint(agent: EdgeAgent, resource_id: str) -> float | None:
    plan = agent.plans.current
    slot = plan.slot_at(agent.clock.now()) if plan is not None else None
    sp = slot.setpoint(resource_id) if slot is not None else None
    return sp.target_power_w if sp is not None else None


async def test_the_aggregator_plans_the_station_with_the_house_battery_and_the_station_follows(fleet) -> None:
    agg, agent, server = fleet
    battery = agent.device.battery_id
    rm = RmProcess(server.url, TOKEN, "--resource-id", str(STATION))
    try:
        await rm.wait_for(event="selected", control_type="FILL_RATE_BASED_CONTROL")
        # its storage goes up after the house battery, and the aggregator keeps it
        ids: list[str] = []
        for _ in range(200):
            flex = await agg.store.get_flexibility(HOUSE)
            ids = [s.resource_id for s in flex.storages] if flex is not None else []
            if len(ids) == 2:
                break
            await asyncio.sleep(0.1)
        assert ids == [battery, str(STATION)]
        # the plan names both; the house battery takes its full 5 kW first, the station the rest
        await until(lambda: (setpoint(agent, str(STATION)) or 0) > 1000, "a plan charging the station", 30)
        assert setpoint(agent, battery) == pytest.approx(5000, abs=1)
        wanted = setpoint(agent, str(STATION))
        assert wanted is not None
        # the station receives an instruction following its setpoint (within the site limits)
        await until(lambda: any(r.reason == "plan setpoint" and abs(r.power_w - wanted) <= 100
                                for r in server.coordinator.snapshots["station"].instructions),
                    "the station instructed at its setpoint", 15)
        got = await rm.wait_for(event="instruction")
        assert got["mode"] == str(s2_rm.CHARGE) and got["factor"] == pytest.approx(wanted / s2_rm.MAX_W, abs=0.02)
        await rm.wait_for(event="status", status="SUCCEEDED")
        receptions = [e for e in rm.events if e["event"] == "reception"]
        assert receptions and all(e["status"] == "OK" for e in receptions), receptions
        assert agent.refusals.by_source.get("s2", 0) == 0 and agent.stats.plans_rejected == 0
    finally:
        rm.stop()
    await until(lambda: not server.coordinator.snapshots["station"].connected, "the session to end")
    # the next update leaves it out (never 0 % or 0 W); the next plan no longer names it
    await until(lambda: setpoint(agent, str(STATION)) is None and agent.plans.current is not None,
                "a plan without the station", 30)
    flex = await agg.store.get_flexibility(HOUSE)
    assert flex is not None and [s.resource_id for s in flex.storages] == [battery]
