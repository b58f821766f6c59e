"""One house end to end over real sockets: Modbus simulator <- edge agent <-> aggregator.

Shows a plan's setpoint reaching the simulated battery's registers and measures
the latency from plan publication (aggregator) to the register write (device).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from aggregator.config import AggregatorConfig
from aggregator.server import AggregatorServer
from aggregator.store import MemoryStore, RedisStore, StateStore
from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, ControlConfig, DeviceConfig
from simulator.hybrid_device import RegisterWrite, SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from simulator.sunspec_image import decode_raw, scale
from vpp_common.clock import UTC, ManualClock
from vpp_common.messages import DispatchPlan, Envelope, PlanSlot, Setpoint

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 6, 21, 2, 0, tzinfo=UTC)  # cheap night tariff: the TOU plan charges


async def until(pred: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Bounded wait for a condition that no event announces (checked every 10 ms)."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class House:
    sim: SunSpecHybridSimulator
    agg: AggregatorServer
    agent: EdgeAgent
    clock: ManualClock
    store: StateStore


def agent_config(agg_target: str, sim_port: int) -> AgentConfig:
    return AgentConfig(house_id="house-e2e", aggregator=agg_target, insecure=True, metrics_port=0,
                       reconnect_initial_s=0.05, reconnect_max_s=0.5,
                       device=DeviceConfig(port=sim_port, poll_interval_s=0.2),
                       control=ControlConfig(tick_s=1.0, deadband_w=20))


def agg_config(listen: str = "127.0.0.1:0") -> AggregatorConfig:
    return AggregatorConfig(admin_listen=None, listen=listen, insecure=True, metrics_port=0, replica_id="e2e", drain_grace_s=0.5)


@pytest.fixture(params=["memory", "redis"])
async def house(request: pytest.FixtureRequest) -> AsyncIterator[House]:
    clock = ManualClock(T0)
    store: StateStore
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_server").url
        store = RedisStore(redis_url, namespace=f"e2e-{uuid.uuid4().hex[:8]}")
    else:
        store = MemoryStore()
    sim = SunSpecHybridSimulator(SimulatorConfig(physics=PhysicsConfig(initial_soc_pct=40)), clock)
    await sim.start()
    agg = AggregatorServer(agg_config(), clock=clock, store=store)
    await agg.start()
    agent = EdgeAgent(agent_config(agg.target, sim.port), clock=clock)
    await agent.start()
    h = House(sim, agg, agent, clock, store)
    try:
        yield h
    finally:
        await agent.stop()
        await h.agg.stop(grace_s=0.5)  # a test may have replaced the replica
        await sim.stop()
        await store.close()


def in_w_rte_pct(sim: SunSpecHybridSimulator, register: int) -> float:
    """Decode a raw InWRte register (int16 scaled by InOutWRte_SF) to % of WChaMax."""
    loc = sim.image.point(124, "InWRte")
    raw = decode_raw(loc.type, [register])
    sf = sim.image.scale_factor_of(loc)
    assert isinstance(raw, int) and sf is not None
    return scale(raw, sf)


def fixed_plan(version: int, now: datetime, target_w: float) -> DispatchPlan:
    slots = tuple(PlanSlot(now + timedelta(minutes=15 * i), (Setpoint("battery", target_w, Envelope(target_w, target_w)),),
                           None, "test setpoint") for i in range(4))
    return DispatchPlan(str(uuid.uuid4()), version, now, now, now + timedelta(hours=1), 900, slots)


async def test_plan_setpoint_reaches_the_battery_register(house: House) -> None:
    sim, agg, agent = house.sim, house.agg, house.agent
    # the aggregator's own TOU plan arrives and is followed (02:00 is cheap: charge)
    await until(lambda: agent.plans.current is not None, what="first plan")
    in_w_rte = sim.address_of(124, "InWRte")
    storctl = sim.address_of(124, "StorCtl_Mod")
    await until(lambda: any(w.covers(storctl) and w.value_at(storctl) == 3 for w in sim.writes),
                what="StorCtl_Mod=3 written")
    wchamax = sim.image.get(124, "WChaMax")
    assert isinstance(wchamax, float) and wchamax > 0

    latencies = []
    for _i, target in enumerate((2345.0, -1500.0, 3100.0, 0.0, 1800.0)):
        version = await agg.planner.next_version("house-e2e")
        plan = fixed_plan(version, house.clock.now(), target)
        expected_pct = target / wchamax * 100

        def matches(w: RegisterWrite, pct: float = expected_pct) -> bool:
            return w.covers(in_w_rte) and abs(in_w_rte_pct(sim, w.value_at(in_w_rte)) - pct) < 0.5

        waiter = asyncio.create_task(sim.wait_for_write(matches, timeout_s=5.0))
        await asyncio.sleep(0)  # let the waiter register before the plan goes out
        published = time.monotonic()
        await agg.planner.publish("house-e2e", plan)
        write = await waiter
        latencies.append(write.monotonic_s - published)
        # the device's physics follows the setpoint (within SoC and nameplate limits)
        snap = sim.snapshot()
        assert snap.window_lower_w == pytest.approx(target, abs=wchamax * 0.01)
        assert snap.window_upper_w == pytest.approx(target, abs=wchamax * 0.01)
    # ">=": the aggregator's own re-plan (asked for by the agent's FlexibilityUpdate) may come
    # after the fixed plans on a loaded machine and supersede the last (seen once in a full run)
    await until(lambda: agent.plans.current is not None and agent.plans.current.version >= version,
                what="last plan adopted")
    status = None
    for _ in range(200):
        status = await house.store.get_plan_status("house-e2e")
        if status is not None and status.version >= version:
            break
        await asyncio.sleep(0.01)
    assert status is not None and status.version >= version and status.state.value == "accepted"
    worst = max(latencies)
    print(f"\nplan publication -> register write latency: "
          f"median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms, max {worst * 1000:.1f} ms")
    assert worst < 1.0, f"latency {worst:.3f} s over the 1 s target on loopback"


async def test_agent_reconnects_after_the_aggregator_restarts(house: House) -> None:
    agent, store = house.agent, house.store
    await until(lambda: agent.uplink.connects >= 1 and agent.plans.current is not None, what="first connect")
    port = house.agg.port
    before = agent.plans.current
    assert before is not None
    await house.agg.stop(grace_s=0.5)
    await until(lambda: not agent.uplink.connected, what="agent notices the stream is gone")
    # a new replica on the same address, sharing the store
    house.agg = AggregatorServer(agg_config(f"127.0.0.1:{port}"), clock=house.clock, store=store)
    await house.agg.start()
    await until(lambda: agent.uplink.connects >= 2, timeout_s=15, what="reconnect")
    await until(lambda: agent.plans.current is not None and agent.plans.current.version > before.version,
                timeout_s=10, what="a plan from the new replica")
    record = await store.get_house("house-e2e")
    assert record is not None and record.hello.last_plan_version >= before.version


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


async def test_both_processes_expose_clean_prometheus_metrics(house: House) -> None:
    agent, agg = house.agent, house.agg
    await until(lambda: agent.plans.current is not None and agent.stats.writes > 0, what="a plan applied")
    assert agg.metrics_url and agent.metrics_url
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=2) as pool:  # shut down here, not when the loop closes
        agg_text, agent_text = await asyncio.gather(loop.run_in_executor(pool, _metrics, agg.metrics_url),
                                                    loop.run_in_executor(pool, _metrics, agent.metrics_url))
    assert "vpp_aggregator_connected_agents 1.0" in agg_text
    assert "vpp_aggregator_plans_sent_total" in agg_text
    assert "vpp_edge_battery_soc_ratio" in agent_text and "vpp_edge_uplink_connected 1.0" in agent_text
    assert "house-e2e" not in agg_text  # no per-house labels on the aggregator
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    for name, text in (("aggregator", agg_text), ("agent", agent_text)):
        result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
            f"{name}: {result.stdout}{result.stderr}"
