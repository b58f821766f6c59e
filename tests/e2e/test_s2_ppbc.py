"""A PPBC Resource Manager in its own process (tests/e2e/s2_rm.py --control ppbc: a washing
machine written from the S2 messages, s2-python and aiohttp only) connects to a running edge
agent over a real WebSocket, describes its programme, and is started in the cheapest allowed
window of the agent's tariff; the aggregator's run start moves it; its run goes up the uplink
as a shiftable run (decoded by the aggregator's own converter) and is left out once the RM is
gone.  Every message on the wire is validated by s2-python's parser on the other side."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from aggregator.service.convert import flexibility_from_proto
from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, BatteryConfig, ControlConfig, DeviceConfig, TariffConfig
from edge_agent.link_config import S2Config
from edge_agent.s2_cem.component import attach
from edge_agent.s2_cem.server import S2CemServer
from simulator.hybrid_device import SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from tests.conftest import free_port, until
from tests.e2e.test_s2_rm import RmProcess, plan_for
from tests.ha_fixtures import close_default_executor
from vpp_common.clock import SystemClock
from vpp_common.messages import Flexibility, ProfileStep, RunStart, RunState
from vpp_common.timeslots import align_down

pytestmark = pytest.mark.e2e

TOKEN = "t0ken-for-the-washing-machine"
WASHER = uuid.uuid4()
PRICE_S = 900


def write_prices(path: Path, now: datetime) -> datetime:
    """15-minute prices for 14 h: 0.30 a kWh, 0.10 for two hours from 3 h ahead (the cheapest
    start), 0.01 from 9 h ahead (after the washer's 8 h window: not allowed).  Returns the
    cheap window's start."""
    first = align_down(now, PRICE_S) - timedelta(hours=1)
    cheap = align_down(now, PRICE_S) + timedelta(hours=3)
    rows = ["timestamp,import_price_per_kwh,export_price_per_kwh"]
    for k in range(14 * 4):
        t = first + timedelta(seconds=k * PRICE_S)
        price = 0.10 if cheap <= t < cheap + timedelta(hours=2) else 0.01 if t >= cheap + timedelta(hours=6) else 0.30
        rows.append(f"{t.isoformat()},{price},0.05")
    path.write_text("\n".join(rows) + "\n")
    return cheap


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[tuple[EdgeAgent, S2CemServer, datetime]]:
    clock = SystemClock()
    cheap = write_prices(tmp_path / "prices.csv", clock.now())
    sim = SunSpecHybridSimulator(SimulatorConfig(physics=PhysicsConfig(initial_soc_pct=50)), clock)
    await sim.start()
    cfg = AgentConfig(
        house_id="house-s2-ppbc", insecure=True, metrics_port=None, aggregator=f"127.0.0.1:{free_port()}",
        device=DeviceConfig(port=sim.port, timeout_s=0.5, poll_interval_s=0.2),
        battery=BatteryConfig(revert_s=10), control=ControlConfig(tick_s=0.1, deadband_w=20), state_dir=tmp_path,
        tariff=TariffConfig(prices_file=tmp_path / "prices.csv"),
        s2=S2Config(host="127.0.0.1", port=0, insecure=True, stale_after_s=5,
                    resource_managers=[{"name": "washer", "token": TOKEN}]))  # type: ignore[list-item]
    agent = EdgeAgent(cfg, clock=clock)
    server = attach(agent)
    assert server is not None
    try:
        await agent.start()
        await agent.wait_ready(5)
        await until(lambda: server.port is not None, "the S2 server to listen")
        yield agent, server, cheap
    finally:
        await agent.stop()
        await sim.stop()
        await close_default_executor()


def uplink_flexibility(edge: EdgeAgent) -> Flexibility:
    """The flexibility update the agent's uplink would send now, as the aggregator decodes it."""
    assert edge.snapshot is not None
    edge.reports.last_flex_sent = None  # the next update goes out whatever it is
    edge.reports.send_flexibility(edge.snapshot)
    req = edge.uplink._outbox[-1]
    assert req.HasField("flexibility_update")
    return flexibility_from_proto(req.flexibility_update)


def scheduled(rm: RmProcess) -> dict[str, datetime]:
    return {e["container"]: datetime.fromisoformat(e["execution_time"]) for e in rm.events if e["event"] == "scheduled"}


async def test_a_ppbc_rm_is_started_in_the_cheapest_allowed_window(agent) -> None:
    edge, server, cheap = agent
    rm = RmProcess(server.url, TOKEN, "--resource-id", str(WASHER), "--control", "ppbc")
    try:
        await rm.wait_for(event="selected", control_type="POWER_PROFILE_BASED_CONTROL")
        first = await rm.wait_for(event="scheduled")
        second = await rm.wait_for(event="scheduled")
        # the whole run (1 h 45) in the 0.10 window, not in the 0.01 one after its 8 h window
        assert datetime.fromisoformat(first["execution_time"]) == cheap
        assert datetime.fromisoformat(second["execution_time"]) == cheap + timedelta(minutes=90)  # after heat + wash
        await until(lambda: [r.status for r in server.coordinator.snapshots["washer"].instructions]
                    == ["ACCEPTED", "ACCEPTED"], "the CEM to know both were accepted")
        flex = uplink_flexibility(edge)
        (run,) = flex.shiftable_runs
        assert run.resource_id == str(WASHER) and run.state is RunState.SCHEDULED and run.start == cheap
        assert run.profile == (ProfileStep(1800.0, 2000.0), ProfileStep(3600.0, 300.0), ProfileStep(900.0, 500.0))
        assert run.latest_end - run.earliest_start == timedelta(hours=8)
        receptions = [e for e in rm.events if e["event"] == "reception"]
        assert receptions and all(e["status"] == "OK" for e in receptions), receptions
        assert edge.refusals.by_source.get("s2", 0) == 0
        assert edge.metrics.registry.get_sample_value("vpp_edge_s2_instructions_total",
                                                      {"control_type": "POWER_PROFILE_BASED_CONTROL"}) == 2
    finally:
        rm.stop()
    await until(lambda: not server.coordinator.snapshots["washer"].connected, "the session to end")
    assert uplink_flexibility(edge).shiftable_runs == ()  # gone: stale, left out, never 0 W


async def test_the_aggregators_run_start_moves_the_run_which_runs_and_is_done(agent) -> None:
    edge, server, cheap = agent
    rm = RmProcess(server.url, TOKEN, "--resource-id", str(WASHER), "--control", "ppbc", "--steps-s", "0.5,0.5,0.5")
    try:
        await rm.wait_for(event="scheduled")
        await rm.wait_for(event="scheduled")
        assert min(scheduled(rm).values()) == cheap  # 1.5 s of programme: in the cheap window
        start = edge.clock.now() + timedelta(seconds=2)
        edge.override = dataclasses.replace(plan_for(str(uuid.uuid4()), 0.0, edge), run_starts=(RunStart(str(WASHER),
                                                                                                         start),))
        await rm.wait_for(event="revoked")
        await rm.wait_for(event="revoked")
        await rm.wait_for(event="finished")
        await rm.wait_for(event="finished")
        times = [datetime.fromisoformat(e["execution_time"]) for e in rm.events if e["event"] == "scheduled"][2:]
        assert times == [start, start + timedelta(seconds=1)]
        await until(lambda: server.coordinator.snapshots["washer"].run_started_at is not None
                    and all(s == "FINISHED" for _, s in server.coordinator.snapshots["washer"].profile_status),
                    "the CEM to see the run done")
        (run,) = uplink_flexibility(edge).shiftable_runs
        assert run.state is RunState.DONE and run.start == start
        statuses = [r.status for r in server.coordinator.snapshots["washer"].instructions]
        assert statuses == ["REVOKED", "REVOKED", "SUCCEEDED", "SUCCEEDED"]
        assert edge.refusals.by_source.get("s2", 0) == 0
    finally:
        rm.stop()


async def test_a_washer_that_drops_off_mid_instruction_is_lost_and_left_out(agent) -> None:
    edge, server, _ = agent
    rm = RmProcess(server.url, TOKEN, "--resource-id", str(WASHER), "--control", "ppbc", "--abandon")
    try:
        await rm.wait_for(event="abandoned")
        await until(lambda: not server.coordinator.snapshots["washer"].connected, "the session to end")
        snap = server.coordinator.snapshots["washer"]
        assert snap.instructions[0].status == "LOST" and snap.profile is not None
        assert uplink_flexibility(edge).shiftable_runs == ()
        polls = edge.stats.polls
        await until(lambda: edge.stats.polls > polls + 2, "the house to go on")
    finally:
        rm.stop()
