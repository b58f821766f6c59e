"""The rules of FleetService.Connect as proto/vpp/v1/fleet_service.proto states them, over real
loopback gRPC: the order after Hello, sequences, one Hello, PlanStatus of unknown plans, and
what a house without a battery gets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from aggregator.config import AggregatorConfig
from aggregator.server import AggregatorServer
from edge_agent.uplink import convert as edge
from tests.integration.test_aggregator_service import FLEX, HELLO, T0, RawAgent
from vpp.v1 import fleet_service_pb2 as fs
from vpp_common.clock import ManualClock
from vpp_common.messages import (
    ControlType,
    CurtailmentFlexibility,
    Flexibility,
    Hello,
    Measurement,
    PlanState,
    PlanStatus,
    ResourceInfo,
    ResourceKind,
    SiteLimits,
    SiteTelemetry,
    Validity,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def server() -> AsyncIterator[AggregatorServer]:
    cfg = AggregatorConfig(admin_listen=None, listen="127.0.0.1:0", insecure=True, metrics_port=None, replica_id="r1")
    srv = AggregatorServer(cfg, clock=ManualClock(T0))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace_s=0.5)


def telemetry(sequence: int) -> fs.ConnectRequest:
    v = Measurement(100.0, Validity.VALID, T0)
    return fs.ConnectRequest(sequence=sequence, telemetry=edge.telemetry_to_proto(
        SiteTelemetry(T0, v, v, v, Measurement(50.0, Validity.VALID, T0), v)))


def hello(sequence: int = 1, h: Hello = HELLO) -> fs.ConnectRequest:
    return fs.ConnectRequest(sequence=sequence, hello=edge.hello_to_proto(h))


async def read(agent: RawAgent, timeout_s: float = 5.0) -> fs.ConnectResponse:
    resp = await asyncio.wait_for(agent.call.read(), timeout_s)
    assert resp is not grpc.aio.EOF, "stream ended"
    return resp


async def ended_with(agent: RawAgent) -> grpc.aio.AioRpcError:
    """The error the stream ended with (reading past what was queued before it)."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        for _ in range(10):
            resp = await asyncio.wait_for(agent.call.read(), 5.0)
            assert resp is not grpc.aio.EOF, "stream ended without an error"
    return err.value


def refused(server: AggregatorServer, source: str, reason: str) -> float:
    return float(server.metrics.refused.labels(source, reason)._value.get())


async def test_after_hello_welcome_then_grid_signal_then_current_plan_then_the_rest(server: AggregatorServer
                                                                                   ) -> None:
    first = RawAgent(server.target, "house-o")
    first.send(hello())
    first.send(fs.ConnectRequest(sequence=2, flexibility_update=edge.flexibility_to_proto(FLEX)))
    plan = (await first.expect("dispatch_plan")).dispatch_plan
    await first.close()
    again = RawAgent(server.target, "house-o")
    try:
        again.send(hello())
        again.send(telemetry(2))  # sent at once: its ack still comes after the opening three
        kinds = [(r.sequence, r.WhichOneof("payload")) for r in [await read(again) for _ in range(4)]]
        assert kinds == [(1, "welcome"), (2, "grid_signal"), (3, "dispatch_plan"), (4, "telemetry_ack")]
    finally:
        await again.close()
    assert plan.version >= 1


async def test_a_repeated_sequence_ends_the_stream_naming_the_field(server: AggregatorServer) -> None:
    agent = RawAgent(server.target, "house-s")
    try:
        agent.send(hello())
        agent.send(telemetry(2))
        assert (await agent.expect("telemetry_ack")).telemetry_ack.sequence == 2
        agent.send(telemetry(2))  # a repeat: TelemetryAck could not tell the two apart
        err = await ended_with(agent)
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("sequence:")
        assert "expected 3" in err.details() and refused(server, "telemetry", "sequence") == 1
    finally:
        await agent.close()


async def test_a_sequence_that_goes_backwards_or_skips_ends_the_stream(server: AggregatorServer) -> None:
    for house, wrong in (("house-b", 1), ("house-k", 5)):
        agent = RawAgent(server.target, house)
        try:
            agent.send(hello())
            agent.send(fs.ConnectRequest(sequence=2, heartbeat=fs.Heartbeat()))
            agent.send(fs.ConnectRequest(sequence=wrong, heartbeat=fs.Heartbeat()))
            err = await ended_with(agent)
            assert err.code() is grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("sequence:")
        finally:
            await agent.close()
    assert refused(server, "heartbeat", "sequence") == 2


async def test_the_hello_carries_sequence_1(server: AggregatorServer) -> None:
    agent = RawAgent(server.target, "house-h")
    try:
        agent.send(hello(sequence=0))  # proto3's default: a client that never set it
        err = await ended_with(agent)
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("sequence:")
    finally:
        await agent.close()


async def test_a_second_hello_ends_the_stream(server: AggregatorServer) -> None:
    agent = RawAgent(server.target, "house-2")
    try:
        agent.send(hello())
        await agent.expect("welcome")
        agent.send(hello(sequence=2))
        err = await ended_with(agent)
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("hello:")
        assert refused(server, "hello", "hello") == 1
    finally:
        await agent.close()


async def test_plan_status_of_an_unknown_plan_is_counted_not_recorded(server: AggregatorServer) -> None:
    agent = RawAgent(server.target, "house-u")
    try:
        agent.send(hello(h=Hello("test", HELLO.limits, HELLO.resources, last_plan_id="before", last_plan_version=7)))
        agent.send(fs.ConnectRequest(sequence=2, plan_status=edge.plan_status_to_proto(
            PlanStatus("nope", 99, PlanState.ACCEPTED, T0))))
        agent.send(telemetry(3))  # the stream stays: this one is acked
        await agent.expect("telemetry_ack")
        assert await server.store.get_plan_status("house-u") is None
        assert refused(server, "plan_status", "plan_status.plan_id") == 1
        # the plan the Hello named is known: its EXPIRED is recorded
        agent.send(fs.ConnectRequest(sequence=4, plan_status=edge.plan_status_to_proto(
            PlanStatus("before", 7, PlanState.EXPIRED, T0))))
        agent.send(telemetry(5))
        await agent.expect("telemetry_ack")
        status = await server.store.get_plan_status("house-u")
        assert status is not None and status.plan_id == "before" and status.state is PlanState.EXPIRED
    finally:
        await agent.close()


async def test_a_house_without_a_battery_gets_grid_signals_and_no_plan(server: AggregatorServer) -> None:
    pv_only = Hello("test", SiteLimits(11_000, 4_600), (ResourceInfo("pv", ResourceKind.PV, ControlType.PEBC,
                                                                     5_000, 0),))
    agent = RawAgent(server.target, "house-pv")
    try:
        agent.send(hello(h=pv_only))
        agent.send(fs.ConnectRequest(sequence=2, flexibility_update=edge.flexibility_to_proto(
            Flexibility(T0, curtailments=(CurtailmentFlexibility("pv", -3_000, -5_000),)))))
        assert [(await read(agent)).WhichOneof("payload") for _ in range(2)] == ["welcome", "grid_signal"]
        for _ in range(50):  # bounded poll for the flexibility to be stored
            if await server.store.get_flexibility("house-pv") is not None:
                break
            await asyncio.sleep(0.02)
        await server.planner.cycle()  # a whole planning cycle: nothing for this house
        await server.planner.send_signal("house-pv")  # as on a change of its limits
        assert (await read(agent)).WhichOneof("payload") == "grid_signal"
        agent.send(telemetry(3))
        assert (await read(agent)).WhichOneof("payload") == "telemetry_ack"
        assert await server.store.get_plan("house-pv") is None
    finally:
        await agent.close()


async def test_a_newer_stream_of_the_same_house_drains_the_older(server: AggregatorServer) -> None:
    old, new = RawAgent(server.target, "house-r"), RawAgent(server.target, "house-r")
    try:
        old.send(hello())
        await old.expect("welcome")
        new.send(hello())
        await new.expect("welcome")
        drain = await old.expect("drain")
        assert drain.drain.reason == "replaced by a newer stream of the same house"
        assert await asyncio.wait_for(old.call.read(), 5.0) is grpc.aio.EOF  # the last message
        assert await old.call.code() is grpc.StatusCode.OK
        new.send(telemetry(2))  # the newer stream goes on
        await new.expect("telemetry_ack")
    finally:
        await old.close()
        await new.close()
