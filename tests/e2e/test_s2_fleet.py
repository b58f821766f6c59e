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

from aggregator.config import AggregatorConfig
from aggregator.server import AggregatorServer
from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, BatteryConfig, ControlConfig, DeviceConfig
from edge_agent.link_config import S2Config
from edge_agent.s2_cem.component import attach
from edge_agent.s2_cem.server import S2CemServer
from simulator.hybrid_device import SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from tests.conftest import until
from tests.e2e.test_s2_ppbc import write_prices
from tests.e2e.test_s2_rm import RmProcess
from tests.ha_fixtures import close_default_executor
from vpp_common.clock import SystemClock

pytestmark = pytest.mark.e2e

TOKEN = "t0ken-for-the-washing-machine"
WASHER = uuid.uuid4()
HOUSE = "house-s2-fleet"


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[tuple[AggregatorServer, EdgeAgent, S2CemServer, datetime]]:
    clock = SystemClock()
    cheap = write_prices(tmp_path / "prices.csv", clock.now())
    agg = AggregatorServer(AggregatorConfig.model_validate({
        "listen": "127.0.0.1:0", "admin_listen": None, "insecure": True, "metrics_port": None,
        "replica_id": "s2", "drain_grace_s": 0.5, "planning": {"prices_file": str(tmp_path / "prices.csv")}}),
        clock=clock)
    await agg.start()
    sim = SunSpecHybridSimulator(SimulatorConfig(physics=PhysicsConfig(initial_soc_pct=50)), clock)
    await sim.start()
    cfg = AgentConfig(
        house_id=HOUSE, insecure=True, metrics_port=None, aggregator=agg.target, reconnect_initial_s=0.05,
        reconnect_max_s=0.5, device=DeviceConfig(port=sim.port, timeout_s=0.5, poll_interval_s=0.2),
        battery=BatteryConfig(revert_s=10), control=ControlConfig(tick_s=0.1, deadband_w=20), state_dir=tmp_path,
        s2=S2Config(host="127.0.0.1", port=0, insecure=True, stale_after_s=5,
                    resource_managers=[{"name": "washer", "token": TOKEN}]))  # type: ignore[list-item]
    agent = EdgeAgent(cfg, clock=clock)
    server = attach(agent)
    assert server is not None
    try:
        await agent.start()
        await agent.wait_ready(5)
        await until(lambda: server.port is not None and agent.stream_ok() and agent.plans.current is not None,
                    "the S2 server, the stream and a first plan", 20)
        yield agg, agent, server, cheap
    finally:
        await agent.stop()
        await sim.stop()
        await agg.stop(grace_s=0.5)
        await close_default_executor()


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
