"""An independent S2 Resource Manager in its own process (tests/e2e/s2_rm.py: s2-python and
aiohttp only, nothing of this project) connects to a running edge agent over a real WebSocket
with its token, describes a battery, receives the instruction the house's plan asks for, and
reports its status; then one that drops off mid-instruction."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, BatteryConfig, ControlConfig, DeviceConfig
from edge_agent.link_config import S2Config
from edge_agent.s2_cem.component import attach
from edge_agent.s2_cem.server import S2CemServer
from simulator.hybrid_device import SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from tests.conftest import free_port, until
from tests.ha_fixtures import close_default_executor
from vpp_common.clock import SystemClock
from vpp_common.messages import DispatchPlan, Envelope, FallbackMode, PlanSlot, Setpoint

pytestmark = pytest.mark.e2e

RM_SCRIPT = Path(__file__).with_name("s2_rm.py")
TOKEN = "t0ken-for-the-garage-battery"
RESOURCE = uuid.uuid4()


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[tuple[EdgeAgent, S2CemServer]]:
    clock = SystemClock()
    sim = SunSpecHybridSimulator(SimulatorConfig(physics=PhysicsConfig(initial_soc_pct=50)), clock)
    await sim.start()
    cfg = AgentConfig(
        house_id="house-s2", insecure=True, metrics_port=None, aggregator=f"127.0.0.1:{free_port()}",
        device=DeviceConfig(port=sim.port, timeout_s=0.5, poll_interval_s=0.2),
        battery=BatteryConfig(revert_s=10), control=ControlConfig(tick_s=0.1, deadband_w=20), state_dir=tmp_path,
        s2=S2Config(host="127.0.0.1", port=0, insecure=True, stale_after_s=5,
                    resource_managers=[{"name": "garage", "token": TOKEN}]))  # type: ignore[list-item]
    agent = EdgeAgent(cfg, clock=clock)
    server = attach(agent)
    assert server is not None
    try:
        await agent.start()
        await agent.wait_ready(5)
        await until(lambda: server.port is not None, "the S2 server to listen")
        yield agent, server
    finally:
        await agent.stop()
        await sim.stop()
        await close_default_executor()


class RmProcess:
    def __init__(self, url: str, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the project on its path
        self.proc = subprocess.Popen([sys.executable, str(RM_SCRIPT), url, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd="/")
        self.events: list[dict[str, Any]] = []

    async def wait_for(self, **match: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        while True:
            line = await asyncio.wait_for(loop.run_in_executor(None, self.proc.stdout.readline), 10)  # type: ignore[union-attr]
            assert line, f"the RM ended: {self.proc.stderr.read()}"  # type: ignore[union-attr]
            event = json.loads(line)
            self.events.append(event)
            if all(event.get(k) == v for k, v in match.items()):
                return event

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


def plan_for(resource_id: str, target_w: float, agent: EdgeAgent) -> DispatchPlan:
    now = agent.clock.now()
    sp = Setpoint(resource_id, target_w, Envelope(target_w, target_w))
    return DispatchPlan("local-s2-test", 1, now, now, now + timedelta(hours=1), 3600, (PlanSlot(now, (sp,)),),
                        fallback=FallbackMode.SELF_CONSUMPTION)


async def test_an_independent_rm_follows_the_house_plan(agent) -> None:
    edge, server = agent
    rm = RmProcess(server.url, TOKEN, "--resource-id", str(RESOURCE))
    try:
        await rm.wait_for(event="selected", control_type="FILL_RATE_BASED_CONTROL")
        await until(lambda: (s := server.coordinator.snapshots.get("garage")) is not None
                    and s.power_w is not None and s.actuators != (), "the battery's state")
        # the house's plan names the RM's resource (a local override here: the aggregator does
        # not know S2 RMs yet, docs/s2-cem.md)
        edge.override = plan_for(str(RESOURCE), -2000.0, edge)
        got = await rm.wait_for(event="instruction")
        assert got["factor"] == pytest.approx(0.6)  # discharge: -5000..0 W, -2000 W at 0.6
        await rm.wait_for(event="status", status="SUCCEEDED")
        await until(lambda: server.coordinator.snapshots["garage"].instructions[-1].status == "SUCCEEDED",
                    "the CEM to know it succeeded")
        snap = server.coordinator.snapshots["garage"]
        assert snap.power_w is not None and snap.power_w.value == pytest.approx(-2000)
        # every message the RM sent was taken (each ReceptionStatus OK); none refused
        receptions = [e for e in rm.events if e["event"] == "reception"]
        assert receptions and all(e["status"] == "OK" for e in receptions), receptions
        assert edge.refusals.by_source.get("s2", 0) == 0
        assert edge.metrics.registry.get_sample_value("vpp_edge_s2_sessions",
                                                      {"control_type": "FILL_RATE_BASED_CONTROL"}) == 1
    finally:
        rm.stop()
    await until(lambda: not server.coordinator.snapshots["garage"].connected, "the session to end")


async def test_an_rm_that_drops_off_mid_instruction_is_stale_not_zero(agent) -> None:
    edge, server = agent
    rm = RmProcess(server.url, TOKEN, "--resource-id", str(RESOURCE), "--abandon")
    try:
        await rm.wait_for(event="selected")
        await until(lambda: (s := server.coordinator.snapshots.get("garage")) is not None and s.power_w is not None,
                    "the battery's state")
        edge.override = plan_for(str(RESOURCE), 3000.0, edge)
        await rm.wait_for(event="abandoned")
        await until(lambda: not server.coordinator.snapshots["garage"].connected, "the session to end")
        snap = server.coordinator.snapshots["garage"]
        assert snap.instructions[-1].status == "LOST"
        assert snap.state(edge.clock.now(), server.cfg.stale_after_s) == "disconnected"
        assert snap.power_w is not None and snap.power_w.value == 0  # its last reading, marked stale; not used
        assert server.coordinator.usable(edge.clock.now(), server.cfg.stale_after_s) == []
        # the house goes on: the agent still decides for its own battery
        decisions = edge.stats.polls
        await until(lambda: edge.stats.polls > decisions + 2, "more polls")
    finally:
        rm.stop()


async def test_hostile_peers_do_not_disturb_the_house_or_the_next_rm(agent) -> None:
    """Bad token, invalid JSON, a flood, out-of-order messages: each session ends or goes on as
    docs/s2-cem.md says, the agent keeps polling and deciding, and a good RM is served after."""
    import aiohttp

    edge, server = agent
    polls, decisions = edge.stats.polls, sum(edge.stats.decisions.values())
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(server.url, headers={"Authorization": "Bearer wrong-token-wrong-token"})
        async with http.ws_connect(server.url, headers=auth) as ws:
            await ws.receive()  # the CEM's Handshake
            await ws.send_str('{"message_type": "Handshake", "message_id": ')
            assert json.loads((await ws.receive()).data)["status"] == "INVALID_DATA"
            assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
        async with http.ws_connect(server.url, headers=auth) as ws:
            await ws.receive()
            await ws.send_str(json.dumps({"message_type": "FRBC.StorageStatus", "message_id": str(uuid.uuid4()),
                                          "present_fill_level": 50}))
            status = json.loads((await ws.receive()).data)
            assert status["status"] == "INVALID_CONTENT" and "out of order" in status["diagnostic_label"]
            for _ in range(300):
                if ws.closed:
                    break
                try:
                    await ws.send_str("{}")
                except ConnectionError:
                    break
            while (frame := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                pass
            assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 1008
    await until(lambda: edge.stats.polls > polls + 3 and sum(edge.stats.decisions.values()) > decisions + 3,
                "the agent to go on polling and deciding")
    assert edge.refusals.by_source["s2"] >= 4
    rm = RmProcess(server.url, TOKEN, "--resource-id", str(RESOURCE))
    try:
        await rm.wait_for(event="selected")
        await until(lambda: (s := server.coordinator.snapshots.get("garage")) is not None
                    and s.power_w is not None and s.actuators != (), "the battery's state")
        edge.override = plan_for(str(RESOURCE), 1000.0, edge)
        got = await rm.wait_for(event="instruction")
        assert got["factor"] == pytest.approx(0.2)
        await rm.wait_for(event="status", status="SUCCEEDED")
    finally:
        rm.stop()
