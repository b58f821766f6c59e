"""The aggregator's FleetService over real loopback gRPC, driven by a raw client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

import grpc
import pytest

from aggregator.config import AggregatorConfig
from aggregator.server import AggregatorServer
from edge_agent.uplink import convert as edge
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import fleet_service_pb2_grpc as fs_grpc
from vpp_common.clock import UTC, ManualClock
from vpp_common.messages import (
    ControlType,
    Flexibility,
    Hello,
    PlanState,
    PlanStatus,
    ResourceInfo,
    ResourceKind,
    SiteLimits,
    StorageFlexibility,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HELLO = Hello("test", SiteLimits(11_000, 4_600), (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC,
                                                                5_000, 10_000),))
FLEX = Flexibility(T0, (StorageFlexibility("battery", 50, 0, 100, 10, 10_000, 5_000, 5_000),))


@pytest.fixture
async def server() -> AsyncIterator[AggregatorServer]:
    cfg = AggregatorConfig(admin_listen=None, listen="127.0.0.1:0", insecure=True, metrics_port=None, replica_id="r1")
    srv = AggregatorServer(cfg, clock=ManualClock(T0))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace_s=0.5)


class RawAgent:
    def __init__(self, target: str, house_id: str | None) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.queue: asyncio.Queue[fs.ConnectRequest | None] = asyncio.Queue()
        md = (("x-vpp-house-id", house_id),) if house_id else ()
        self.call = fs_grpc.FleetServiceStub(self.channel).Connect(self._requests(), metadata=md)

    async def _requests(self) -> AsyncIterator[fs.ConnectRequest]:
        while (item := await self.queue.get()) is not None:
            yield item

    def send(self, req: fs.ConnectRequest) -> None:
        self.queue.put_nowait(req)

    async def expect(self, kind: str, timeout_s: float = 5.0) -> fs.ConnectResponse:
        while True:
            resp = await asyncio.wait_for(self.call.read(), timeout_s)
            assert resp is not grpc.aio.EOF, f"stream ended while waiting for {kind}"
            if resp.WhichOneof("payload") == kind:
                return resp

    async def close(self) -> None:
        self.queue.put_nowait(None)
        self.call.cancel()
        await self.channel.close()


async def test_hello_welcome_then_plan_after_flexibility(server: AggregatorServer) -> None:
    agent = RawAgent(server.target, "house-7")
    try:
        agent.send(fs.ConnectRequest(sequence=1, hello=edge.hello_to_proto(HELLO)))
        welcome = await agent.expect("welcome")
        assert welcome.welcome.house_id == "house-7" and welcome.welcome.replica_id == "r1"
        agent.send(fs.ConnectRequest(sequence=2, flexibility_update=edge.flexibility_to_proto(FLEX)))
        resp = await agent.expect("dispatch_plan")
        plan = edge.plan_from_proto(resp.dispatch_plan)
        assert plan.version >= 1 and plan.slots[0].setpoint("battery") is not None
        agent.send(fs.ConnectRequest(sequence=3, plan_status=edge.plan_status_to_proto(
            PlanStatus(plan.plan_id, plan.version, PlanState.ACCEPTED, T0))))
        for _ in range(100):  # bounded poll for the store write
            status = await server.store.get_plan_status("house-7")
            if status is not None:
                break
            await asyncio.sleep(0.01)
        assert status is not None and status.version == plan.version
        assert await server.store.get_route("house-7") == "r1"
        record = await server.store.get_house("house-7")
        assert record is not None and record.hello == HELLO
    finally:
        await agent.close()


async def test_reconnect_gets_the_full_current_plan(server: AggregatorServer) -> None:
    first = RawAgent(server.target, "house-8")
    first.send(fs.ConnectRequest(sequence=1, hello=edge.hello_to_proto(HELLO)))
    first.send(fs.ConnectRequest(sequence=2, flexibility_update=edge.flexibility_to_proto(FLEX)))
    plan1 = edge.plan_from_proto((await first.expect("dispatch_plan")).dispatch_plan)
    await first.close()
    second = RawAgent(server.target, "house-8")
    try:
        second.send(fs.ConnectRequest(sequence=1, hello=edge.hello_to_proto(HELLO)))
        plan2 = edge.plan_from_proto((await second.expect("dispatch_plan")).dispatch_plan)
        assert plan2.version >= plan1.version and len(plan2.slots) == len(plan1.slots)
    finally:
        await second.close()


async def test_no_identity_is_unauthenticated(server: AggregatorServer) -> None:
    agent = RawAgent(server.target, None)
    try:
        agent.send(fs.ConnectRequest(sequence=1, hello=edge.hello_to_proto(HELLO)))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await agent.expect("welcome")
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    finally:
        await agent.close()


async def test_first_message_must_be_hello(server: AggregatorServer) -> None:
    agent = RawAgent(server.target, "house-9")
    try:
        agent.send(fs.ConnectRequest(sequence=1, heartbeat=fs.Heartbeat()))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await agent.expect("welcome")
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    finally:
        await agent.close()


async def test_drain_on_stop_is_sent_to_agents() -> None:
    cfg = AggregatorConfig(admin_listen=None, listen="127.0.0.1:0", insecure=True, metrics_port=None)
    srv = AggregatorServer(cfg, clock=ManualClock(T0))
    await srv.start()
    agent = RawAgent(srv.target, "house-10")
    try:
        agent.send(fs.ConnectRequest(sequence=1, hello=edge.hello_to_proto(HELLO)))
        await agent.expect("welcome")
        stopping = asyncio.create_task(srv.stop(grace_s=1.0))
        drain = await agent.expect("drain")
        assert "shutting down" in drain.drain.reason
        await stopping
    finally:
        await agent.close()
