"""Acceptance: plans are leases.  Real agent, real aggregator gRPC server on loopback, the
Modbus device simulator, one manual clock.

The stream is cut mid-plan: the agent follows the plan's slots until ``valid_until``, then
falls back (self-consumption); meanwhile the fleet's leader makes a newer plan; after
reconnecting the agent adopts the aggregator's full current plan, and never an older
version when one arrives later.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from aggregator.config import AggregatorConfig, PlanningConfig
from aggregator.fleet.leadership import LEASE_NAME
from aggregator.server import AggregatorServer
from aggregator.store import MemoryStore
from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, ControlConfig, DeviceConfig
from simulator.hybrid_device import SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from tests.e2e.test_one_house import until
from vpp_common.clock import UTC, ManualClock
from vpp_common.messages import DispatchPlan, Envelope, PlanSlot, PlanState, Setpoint

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 6, 21, 2, 0, tzinfo=UTC)  # night: no PV, so the fixed setpoints are not clamped
HOUSE = "house-fallback"
SLOT_S = 300
LEASE_S = 600  # short plan leases: two 5 min slots


def agg_config(listen: str = "127.0.0.1:0") -> AggregatorConfig:
    # the aggregator plans nothing on its own here (no cycle at start, the next at midnight):
    # the test publishes every plan
    return AggregatorConfig(admin_listen=None, listen=listen, insecure=True, metrics_port=None,
                            replica_id=f"r-{uuid.uuid4().hex[:6]}", drain_grace_s=0.5,
                            planning=PlanningConfig(replan_on_update=False, cycle_s=86_400, cycle_align=True,
                                                    lease_s=3600))


def lease(version: int, start: datetime, targets_w: tuple[float, ...], plan_id: str | None = None) -> DispatchPlan:
    slots = tuple(PlanSlot(start + timedelta(seconds=SLOT_S * i), (Setpoint("battery", w, Envelope(w, w)),), None,
                           f"slot {i}") for i, w in enumerate(targets_w))
    return DispatchPlan(plan_id or str(uuid.uuid4()), version, start, start, start + timedelta(seconds=LEASE_S),
                        SLOT_S, slots)


@dataclass
class World:
    clock: ManualClock
    store: MemoryStore
    sim: SunSpecHybridSimulator
    agg: AggregatorServer
    agent: EdgeAgent


@pytest.fixture
async def world() -> AsyncIterator[World]:
    clock = ManualClock(T0)
    store = MemoryStore()
    sim = SunSpecHybridSimulator(SimulatorConfig(physics=PhysicsConfig(initial_soc_pct=40)), clock)
    await sim.start()
    agg = AggregatorServer(agg_config(), clock=clock, store=store)
    await agg.start()
    # grace_s: a long grace, so that only the lease decides when the plan stops applying
    agent = EdgeAgent(AgentConfig(house_id=HOUSE, aggregator=agg.target, insecure=True, metrics_port=None,
                                  reconnect_initial_s=0.05, reconnect_max_s=0.3,
                                  device=DeviceConfig(port=sim.port, poll_interval_s=0.2),
                                  control=ControlConfig(tick_s=0.1, deadband_w=20, grace_s=86_400)), clock=clock)
    await agent.start()
    w = World(clock, store, sim, agg, agent)
    try:
        yield w
    finally:
        await agent.stop()
        await w.agg.stop(grace_s=0.5)
        await sim.stop()
        await store.close()


def following(agent: EdgeAgent, mode: str, battery_w: float, now: datetime) -> bool:
    d = agent.stats.last_decision
    snap = agent.snapshot
    return (d is not None and d.mode == mode and abs(d.battery_w - battery_w) < 1.0
            and snap is not None and snap.telemetry.measured_at >= now)


async def test_stream_cut_mid_plan_follow_until_valid_until_then_fallback_then_full_current_plan(
        world: World) -> None:
    clock, agent, store = world.clock, world.agent, world.store
    await until(lambda: agent.uplink.connected and world.agg.elector.is_leader, what="agent connected, leader elected")

    # plan A: 2 kW then 1.5 kW of charging, a 10 min lease
    a = lease(await world.agg.planner.next_version(HOUSE), clock.now(), (2000.0, 1500.0))
    await world.agg.planner.publish(HOUSE, a)
    await until(lambda: agent.plans.current is not None and agent.plans.current.version == a.version,
                what="plan A adopted")
    await until(lambda: following(agent, "plan", 2000.0, T0), what="slot 0 of plan A applied")
    await until(lambda: abs(world.sim.snapshot().window_upper_w - 2000.0) < 50, what="2 kW at the battery")

    # the stream is cut mid-plan
    port = world.agg.port
    await world.agg.stop(grace_s=0.5)
    await until(lambda: not agent.uplink.connected, what="agent notices the stream is gone")

    # offline, the agent keeps following the lease: slot 1 of plan A
    clock.advance(SLOT_S + 60)
    t1 = clock.now()
    await until(lambda: following(agent, "plan", 1500.0, t1), what="slot 1 of plan A followed offline")
    await until(lambda: abs(world.sim.snapshot().window_upper_w - 1500.0) < 50, what="1.5 kW at the battery")
    assert agent.plans.active(t1) == a

    # at valid_until the lease is over: fallback (self-consumption), expiry noted once
    clock.advance((a.valid_until - clock.now()).total_seconds())
    t2 = clock.now()
    assert t2 == a.valid_until

    def fell_back() -> bool:
        d = agent.stats.last_decision
        snap = agent.snapshot
        return (d is not None and d.mode == "fallback" and "plan expired" in d.reason
                and snap is not None and snap.telemetry.measured_at >= t2)
    await until(fell_back, what="fallback once the lease ran out")
    assert agent.plans.active(t2) is None and agent.plans.current is not None
    assert agent.plans.current.version == a.version  # nothing newer has come in

    # meanwhile the fleet's leader (another replica) makes a newer plan C for the house
    c = lease(await store.next_plan_version(HOUSE), t2, (-1000.0, -800.0))
    token = await store.acquire_lease(LEASE_NAME, "leader-elsewhere", 30)
    assert token is not None
    await store.put_plan(HOUSE, c, token)
    await store.release_lease(LEASE_NAME, "leader-elsewhere")
    assert c.version > a.version

    # the agent reconnects (to a new replica at the same address, sharing the store) and
    # gets the full current plan: all its slots, adopted because it is newer
    world.agg = AggregatorServer(agg_config(f"127.0.0.1:{port}"), clock=clock, store=store)
    await world.agg.start()
    await until(lambda: agent.uplink.connected and agent.uplink.connects >= 2, timeout_s=15, what="reconnect")
    await until(lambda: agent.plans.current is not None and agent.plans.current.version == c.version,
                what="plan C adopted after the reconnect")
    got = agent.plans.current
    assert got is not None and got.plan_id == c.plan_id and got.valid_until == c.valid_until
    assert [(s.start, s.setpoints) for s in got.slots] == [(s.start, s.setpoints) for s in c.slots]
    await until(lambda: following(agent, "plan", -1000.0, t2), what="slot 0 of plan C applied")

    # an older version arriving later (a stale replica, a re-sent old plan) is never adopted
    rejected_before = agent.stats.plans_rejected
    session = world.agg.sessions.get(HOUSE)
    assert session is not None
    for n, old in enumerate((lease(a.version, clock.now(), (3000.0, 3000.0)), a), start=1):
        session.outbox.put_plan(old)  # (the outbox keeps only the newest pending plan: one at a time)
        await until(lambda n=n: agent.stats.plans_rejected >= rejected_before + n, what=f"old version {n} rejected")
    assert agent.plans.current is got
    await until(lambda: following(agent, "plan", -1000.0, t2), what="still following plan C")

    async def status_rejected() -> bool:
        s = await store.get_plan_status(HOUSE)
        return s is not None and s.state is PlanState.REJECTED and s.version == a.version
    for _ in range(300):  # bounded poll: the status reaches the store through the stream
        if await status_rejected():
            break
        await asyncio.sleep(0.01)
    assert await status_rejected()
