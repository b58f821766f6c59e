"""Several aggregator replicas on one Redis: one leader plans, any replica delivers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from aggregator.config import AggregatorConfig
from aggregator.server import AggregatorServer
from aggregator.store import RedisStore
from edge_agent.uplink import convert as edge
from vpp.v1 import fleet_service_pb2 as fs
from vpp_common.clock import ManualClock

from .test_aggregator_service import FLEX, HELLO, T0, RawAgent

pytestmark = pytest.mark.redis


async def until(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def replicas(redis_server) -> AsyncIterator[list[AggregatorServer]]:  # type: ignore[no-untyped-def]
    ns = f"rep-{uuid.uuid4().hex[:8]}"
    clock = ManualClock(T0)
    servers = []
    for name in ("a", "b"):
        cfg = AggregatorConfig(listen="127.0.0.1:0", admin_listen=None, insecure=True, metrics_port=None,
                               replica_id=name, leader_lease_s=1.0)
        servers.append(AggregatorServer(cfg, clock=clock, store=RedisStore(redis_server.url, namespace=ns)))
    for s in servers:
        await s.start()
    try:
        yield servers
    finally:
        for s in servers:
            await s.stop(grace_s=0.2)
            await s.store.close()


async def test_plan_made_by_the_leader_reaches_a_house_on_a_follower(replicas: list[AggregatorServer]) -> None:
    a, b = replicas
    assert a.elector.is_leader and not b.elector.is_leader
    agent = RawAgent(b.target, "house-f")
    try:
        agent.send(fs.ConnectRequest(sequence=1, hello=edge.hello_to_proto(HELLO)))
        assert (await agent.expect("welcome")).welcome.replica_id == "b"
        agent.send(fs.ConnectRequest(sequence=2, flexibility_update=edge.flexibility_to_proto(FLEX)))
        plan = edge.plan_from_proto((await agent.expect("dispatch_plan", timeout_s=10)).dispatch_plan)
        assert plan.version >= 1
        assert b.planner.plans_written == 0 and a.planner.plans_written >= 1  # made by a, delivered by b
    finally:
        await agent.close()


async def test_a_new_leader_takes_over_and_versions_never_go_backwards(replicas: list[AggregatorServer]) -> None:
    a, b = replicas
    agent = RawAgent(b.target, "house-g")
    versions: list[int] = []
    try:
        agent.send(fs.ConnectRequest(sequence=1, hello=edge.hello_to_proto(HELLO)))
        await agent.expect("welcome")
        agent.send(fs.ConnectRequest(sequence=2, flexibility_update=edge.flexibility_to_proto(FLEX)))
        versions.append(edge.plan_from_proto((await agent.expect("dispatch_plan", 10)).dispatch_plan).version)
        # the leader dies without releasing its lease (as with kill -9): only the TTL frees it
        for t in a._tasks:
            t.cancel()
        await asyncio.gather(*a._tasks, return_exceptions=True)
        a.elector.token = None
        started = time.monotonic()
        await until(lambda: b.elector.is_leader, 5.0, "b to lead")
        took = time.monotonic() - started
        assert took <= 1.0 + 1.0 / 3 + 0.5, f"takeover took {took:.2f} s for a 1 s lease"
        b.planner.request("house-g")
        versions.append(edge.plan_from_proto((await agent.expect("dispatch_plan", 10)).dispatch_plan).version)
        assert versions == sorted(versions) and versions[-1] > versions[0]
        assert b.planner.plans_written >= 1
    finally:
        await agent.close()


async def test_feeder_envelopes_reach_houses_streaming_to_a_follower(redis_server) -> None:  # type: ignore[no-untyped-def]
    """The leader shares a limited feeder; a house on the other replica gets its envelope
    through the store and its replica's dispatch queue (not only the leader's own houses)."""
    from aggregator.config import FeederConfig, PlanningConfig

    ns = f"rep-{uuid.uuid4().hex[:8]}"
    clock = ManualClock(T0)
    feeder = FeederConfig(id="f1", houses=["house-a", "house-b"], export_limit_w=6_000.0)
    servers = []
    for name in ("a", "b"):
        cfg = AggregatorConfig(listen="127.0.0.1:0", admin_listen=None, insecure=True, metrics_port=None,
                               replica_id=name, leader_lease_s=1.0, feeders=[feeder],
                               planning=PlanningConfig(feeder_control_s=0.2))
        servers.append(AggregatorServer(cfg, clock=clock, store=RedisStore(redis_server.url, namespace=ns)))
    for s in servers:
        await s.start()
    a, b = servers
    agents = [RawAgent(a.target, "house-a"), RawAgent(b.target, "house-b")]
    try:
        assert a.elector.is_leader and not b.elector.is_leader
        for agent in agents:
            agent.send(fs.ConnectRequest(sequence=1, hello=edge.hello_to_proto(HELLO)))
            await agent.expect("welcome")

        async def envelope(agent: RawAgent) -> fs.ConnectResponse:
            while True:
                resp = await agent.expect("grid_signal", timeout_s=10)
                if resp.grid_signal.limits_are_feeder_envelope:
                    return resp

        got = [await envelope(agent) for agent in agents]
        total = sum(r.grid_signal.limits.max_export_w for r in got)
        # both silent: each counts as exporting its whole 4.6 kW cap, so the 6 kW are split
        assert 0 < total <= 6_000.0
        assert b.planner.envelopes.control.rounds == 0  # the follower computed nothing itself
    finally:
        for agent in agents:
            await agent.close()
        for s in servers:
            await s.stop(grace_s=0.2)
            await s.store.close()
