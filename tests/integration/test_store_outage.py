"""Redis goes away for a while: streams stay up, the replica says it is degraded,
writes resume when Redis returns, and no telemetry is lost: the agent's uplink keeps
what the aggregator has not acked (acked = stored) and sends it again."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aggregator.config import AggregatorConfig
from aggregator.server import STORE_HEALTH_NAME, AggregatorServer
from aggregator.store import RedisStore, StoreError
from edge_agent.uplink import convert as edge
from tests.redis_process import RedisProcess
from vpp.v1 import fleet_service_pb2 as fs
from vpp_common.clock import UTC
from vpp_common.messages import Measurement, SiteTelemetry, Validity

from .test_aggregator_service import HELLO, RawAgent

pytestmark = pytest.mark.redis
OUTAGE_S = 3.0  # the raw-stream test; the agent test below takes the 20 s
AGENT_OUTAGE_S = 20.0


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    r = RedisProcess(durable=True)
    r.start()
    try:
        yield r
    finally:
        r.stop()
        shutil.rmtree(r.dir, ignore_errors=True)


@pytest.fixture
async def server(own_redis: RedisProcess) -> AsyncIterator[AggregatorServer]:
    store = RedisStore(f"redis://127.0.0.1:{own_redis.port}/0", socket_timeout_s=0.5, connect_timeout_s=0.3,
                       telemetry_history_s=600.0)  # to see every sample, not only the newest
    cfg = AggregatorConfig(listen="127.0.0.1:0", admin_listen="127.0.0.1:0", insecure=True, metrics_port=None,
                           replica_id="r1")
    srv = AggregatorServer(cfg, store=store)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace_s=0.2)
        await store.close()


def telemetry(soc: float, sequence: int) -> fs.ConnectRequest:
    now = datetime.now(UTC)
    v = Measurement(100.0, Validity.VALID, now)
    return fs.ConnectRequest(sequence=sequence, telemetry=edge.telemetry_to_proto(
        SiteTelemetry(now, v, v, v, Measurement(soc, Validity.VALID, now), v)))


async def store_health(srv: AggregatorServer) -> int:
    assert srv.admin_target
    async with grpc.aio.insecure_channel(srv.admin_target) as ch:
        resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=STORE_HEALTH_NAME))
        return int(resp.status)


async def until_async(pred, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not await pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_streams_survive_a_redis_outage_and_writes_resume(server: AggregatorServer, own_redis: RedisProcess
                                                               ) -> None:
    agent = RawAgent(server.target, "house-o")
    try:
        agent.send(fs.ConnectRequest(sequence=1, hello=edge.hello_to_proto(HELLO)))
        await agent.expect("welcome")
        agent.send(telemetry(11.0, 2))

        async def soc_is(v: float) -> bool:
            try:
                t = await server.store.get_telemetry("house-o")
            except StoreError:  # the store may still be down while we look
                return False
            return t is not None and t.battery_soc_pct.value == v

        await until_async(lambda: soc_is(11.0), 5, "first telemetry stored")
        assert await store_health(server) == health_pb2.HealthCheckResponse.SERVING

        own_redis.stop()
        await until_async(lambda: _eq(store_health(server), health_pb2.HealthCheckResponse.NOT_SERVING), 10,
                          "store health NOT_SERVING")
        assert server.metrics.store_up._value.get() == 0
        agent.send(telemetry(22.0, 3))  # arrives while the store is away: counted as a store error
        outage_end = time.monotonic() + OUTAGE_S
        while time.monotonic() < outage_end:
            await asyncio.sleep(0.1)
        assert not agent.call.done(), "the stream must stay up while the store is away"

        own_redis.start()
        await until_async(lambda: _eq(store_health(server), health_pb2.HealthCheckResponse.SERVING), 10,
                          "store health SERVING again")
        agent.send(telemetry(33.0, 4))
        await until_async(lambda: soc_is(33.0), 10, "telemetry stored again after the outage")
        assert server.metrics.store_up._value.get() == 1
    finally:
        await agent.close()


async def _eq(awaitable, expected: int) -> bool:  # type: ignore[no-untyped-def]
    return bool(await awaitable == expected)


async def test_agent_telemetry_survives_a_20s_redis_outage(server: AggregatorServer, own_redis: RedisProcess) -> None:
    """The agent's own uplink sends a sample every 0.5 s through 20 s without Redis: the stream stays
    up, health says degraded, and afterwards every sample is in the store exactly once (what was
    acked before the outage too: acked means stored), with nothing left unacked or dropped."""
    from edge_agent.uplink.client import UplinkCallbacks, UplinkClient
    from vpp_common.backoff import Backoff

    client = UplinkClient(target=server.target, house_id="house-t", hello=lambda: HELLO,
                          callbacks=UplinkCallbacks(on_plan=lambda plan: None), backoff=Backoff(0.2, 1.0),
                          ack_timeout_s=2.0)
    run = asyncio.create_task(client.run())
    sent: list[SiteTelemetry] = []

    def send_one(i: int) -> None:
        at = datetime.now(UTC)
        v = Measurement(float(i), Validity.VALID, at)
        sent.append(SiteTelemetry(at, v, v, v, Measurement(50.0, Validity.VALID, at), v))
        client.send(sent[-1])

    async def send_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            send_one(len(sent))
            await asyncio.sleep(0.5)

    try:
        await until_async(lambda: _true(client.connected), 10, "the agent's stream")
        await send_for(2.0)
        await until_async(lambda: _true(client.telemetry_unacked == 0), 10, "acks before the outage")
        acked_before = client.telemetry_acked
        assert acked_before == len(sent)

        own_redis.stop()
        await until_async(lambda: _eq(store_health(server), health_pb2.HealthCheckResponse.NOT_SERVING), 10,
                          "store health NOT_SERVING")
        outage_start = len(sent)
        await send_for(AGENT_OUTAGE_S)
        assert client.connected and client.connects == 1, "the stream must stay up while the store is away"
        assert client.telemetry_unacked >= len(sent) - outage_start - 1  # nothing stored, nothing acked
        own_redis.start()
        await until_async(lambda: _eq(store_health(server), health_pb2.HealthCheckResponse.SERVING), 10,
                          "store health SERVING again")
        await send_for(2.0)
        await until_async(lambda: _true(client.telemetry_unacked == 0), 15, "every sample acked after the outage")
        assert client.telemetry_dropped == 0 and client.connects == 1
        stored = await server.store.telemetry_history("house-t")
        assert stored == sent, f"{len(stored)} stored of {len(sent)} sent"
        assert client.telemetry_acked == len(sent) and client.telemetry_resent > 0
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def _true(value: bool) -> bool:
    return value
