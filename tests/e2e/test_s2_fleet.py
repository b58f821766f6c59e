"""The whole loop for a PPBC Resource Manager: a washing machine RM in its own process
(tests/e2e/s2_rm.py --control ppbc) connects to a running edge agent over a real WebSocket;
the agent reports the run up its real uplink to a running aggregator over gRPC; the
aggregator places the run (aggregator.dispatch.runs) and its plan names the start
(run_starts); the agent schedules the washer at that start, which lies in the aggregator's
cheapest window.  When the washer disconnects, the next flexibility update leaves it out."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from aggregator.server import AggregatorServer
from edge_agent.agent import EdgeAgent
from edge_agent.s2_cem.server import S2CemServer
from tests.conftest import until
from tests.e2e.s2_fleet_house import s2_fleet_house
from tests.e2e.test_s2_ppbc import write_prices
from tests.e2e.test_s2_rm import RmProcess
from vpp_common.clock import SystemClock

pytestmark = pytest.mark.e2e

TOKEN = "t0ken-for-the-washing-machine"
WASHER = uuid.uuid4()
HOUSE = "house-s2-fleet"


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[tuple[AggregatorServer, EdgeAgent, S2CemServer, datetime]]:
    cheap = write_prices(tmp_path / "prices.csv", SystemClock().now())
    async with s2_fleet_house(HOUSE, tmp_path / "prices.csv", "washer", TOKEN, tmp_path) as (agg, agent, server):
        yield agg, agent, server, cheap


def run_start(agent: EdgeAgent) -> datetime | None:
    plan = agent.plans.current
    return next((r.start for r in (plan.run_starts if plan else ()) if r.resource_id == str(WASHER)), None)


async def test_the_aggregator_places_the_washers_run_and_the_agent_starts_it_there(fleet) -> None:
    agg, agent, server, cheap = fleet
    rm = RmProcess(server.url, TOKEN, "--resource-id", str(WASHER), "--control", "ppbc")
    try:
        await rm.wait_for(event="selected", control_type="POWER_PROFILE_BASED_CONTROL")
        # the run goes up, the aggregator places it and its next plan names the start
        await until(lambda: run_start(agent) is not None, "a plan with the washer's start", 30)
        start = run_start(agent)
        assert start is not None and cheap <= start <= cheap + timedelta(minutes=15)  # the 0.10 window
        # the washer is (or is moved to be) scheduled at the aggregator's start, containers back to back
        await until(lambda: [r.execution_time for r in server.coordinator.snapshots["washer"].instructions
                             if r.open][:1] == [start], "the washer scheduled at the aggregator's start", 15)
        live = [r for r in server.coordinator.snapshots["washer"].instructions if r.open]
        assert [r.execution_time for r in live] == [start, start + timedelta(minutes=90)]
        assert agg.metrics.shiftable_runs.labels("placed")._value.get() >= 1
        receptions = [e for e in rm.events if e["event"] == "reception"]
        assert receptions and all(e["status"] == "OK" for e in receptions), receptions
        assert agent.refusals.by_source.get("s2", 0) == 0
    finally:
        rm.stop()
    await until(lambda: not server.coordinator.snapshots["washer"].connected, "the session to end")
    # the next update leaves the stale run out; the aggregator's next plan no longer names it
    await until(lambda: run_start(agent) is None, "a plan without the washer's run", 30)
    assert agg.metrics.shiftable_runs.labels("placed")._value.get() == 0
