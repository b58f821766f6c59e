"""One house for the S2 whole-loop tests (tests/e2e/test_s2_fleet.py, test_s2_frbc_fleet.py): a
running aggregator over gRPC planning on a price file, a simulated SunSpec house (its own battery)
and an edge agent with an S2 CEM on a free port for one Resource Manager, up and following a first
plan before the test begins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

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
from tests.ha_fixtures import close_default_executor
from vpp_common.clock import SystemClock


@asynccontextmanager
async def s2_fleet_house(house_id: str, prices_csv: Path, rm_name: str, token: str,
                         state_dir: Path) -> AsyncIterator[tuple[AggregatorServer, EdgeAgent, S2CemServer]]:
    clock = SystemClock()
    agg = AggregatorServer(AggregatorConfig.model_validate({
        "listen": "127.0.0.1:0", "admin_listen": None, "insecure": True, "metrics_port": None,
        "replica_id": "s2", "drain_grace_s": 0.5, "planning": {"prices_file": str(prices_csv)}}),
        clock=clock)
    await agg.start()
    sim = SunSpecHybridSimulator(SimulatorConfig(physics=PhysicsConfig(initial_soc_pct=50)), clock)
    await sim.start()
    cfg = AgentConfig(
        house_id=house_id, insecure=True, metrics_port=None, aggregator=agg.target, reconnect_initial_s=0.05,
        reconnect_max_s=0.5, device=DeviceConfig(port=sim.port, timeout_s=0.5, poll_interval_s=0.2),
        battery=BatteryConfig(revert_s=10), control=ControlConfig(tick_s=0.1, deadband_w=20), state_dir=state_dir,
        s2=S2Config(host="127.0.0.1", port=0, insecure=True, stale_after_s=5,
                    resource_managers=[{"name": rm_name, "token": token}]))  # type: ignore[list-item]
    agent = EdgeAgent(cfg, clock=clock)
    server = attach(agent)
    assert server is not None
    try:
        await agent.start()
        await agent.wait_ready(5)
        await until(lambda: server.port is not None and agent.stream_ok() and agent.plans.current is not None,
                    "the S2 server, the stream and a first plan", 20)
        yield agg, agent, server
    finally:
        await agent.stop()
        await sim.stop()
        await agg.stop(grace_s=0.5)
        await close_default_executor()
