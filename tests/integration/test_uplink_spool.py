"""The uplink with its on-disk spool against a real aggregator: a lost ack, a restart of the agent
with a long backlog, and the reconnect delay once the aggregator is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest

from aggregator.config import AggregatorConfig
from aggregator.server import AggregatorServer
from aggregator.service import convert as agg_convert
from aggregator.store import MemoryStore, StoreError
from edge_agent.uplink.client import TlsFiles, UplinkCallbacks, UplinkClient
from edge_agent.uplink.spool import TelemetrySpool
from tests.conftest import until
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import fleet_service_pb2_grpc as fs_grpc
from vpp_common.backoff import Backoff
from vpp_common.clock import UTC, ManualClock
from vpp_common.messages import Measurement, SiteTelemetry, Validity

from .test_aggregator_service import HELLO

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def sample(i: int) -> SiteTelemetry:
    at = T0 + timedelta(seconds=10 * i)
    v = Measurement(float(i), Validity.VALID, at)
    return SiteTelemetry(at, v, v, v, Measurement(50.0, Validity.VALID, at), v)


class AckLosingStore(MemoryStore):
    """Stores every sample, but says it failed for the first ``lose`` of them: the aggregator sends
    no ack, as when an ack is lost after the write, and the agent sends the sample again."""

    def __init__(self, lose: int) -> None:
        super().__init__(telemetry_history_s=86_400)
        self.lose = lose
        self.puts = 0

    async def put_telemetry(self, house_id: str, telemetry: SiteTelemetry, ttl_s: float) -> None:
        await super().put_telemetry(house_id, telemetry, ttl_s)
        self.puts += 1
        if self.puts <= self.lose:
            raise StoreError("ack lost (test)")


def agg_config(listen: str = "127.0.0.1:0") -> AggregatorConfig:
    return AggregatorConfig(admin_listen=None, listen=listen, insecure=True, metrics_port=None, replica_id="r1",
                            drain_grace_s=0.2)


def client(target: str, spool: TelemetrySpool, backoff: Backoff = Backoff(0.05, 0.5), **kw: object) -> UplinkClient:
    return UplinkClient(target=target, house_id="house-s", hello=lambda: HELLO,
                        callbacks=UplinkCallbacks(on_plan=lambda plan: None), backoff=backoff, spool=spool,
                        **kw)  # type: ignore[arg-type]


@pytest.fixture
async def running() -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    try:
        yield tasks
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_resend_after_a_lost_ack_is_stored_once(tmp_path: Path, running: list[asyncio.Task[None]]) -> None:
    store = AckLosingStore(lose=3)
    srv = AggregatorServer(agg_config(), clock=ManualClock(T0), store=store)
    await srv.start()
    spool = TelemetrySpool(tmp_path / "t.sqlite")
    try:
        c = client(srv.target or "", spool, ack_timeout_s=0.3)
        running.append(asyncio.create_task(c.run()))
        sent = [sample(i) for i in range(5)]
        for s in sent:
            c.send(s)
        await until(lambda: c.telemetry_unacked == 0, "every sample acked")
        assert c.telemetry_resent >= 3 and c.telemetry_acked == 5
        assert store.puts >= 8
        assert await store.telemetry_history("house-s") == sent
    finally:
        await srv.stop(grace_s=0.2)
        spool.close()


async def test_a_backlog_recorded_offline_survives_a_restart_and_is_back_filled_in_order(
        tmp_path: Path, running: list[asyncio.Task[None]]) -> None:
    path = tmp_path / "telemetry-house-s.sqlite"
    store = MemoryStore(telemetry_history_s=86_400)
    srv = AggregatorServer(agg_config(), clock=ManualClock(T0), store=store)
    await srv.start()
    target = srv.target or ""
    await srv.stop(grace_s=0.2)  # the aggregator is away from the start

    spool = TelemetrySpool(path)
    first = client(target, spool)
    running.append(asyncio.create_task(first.run()))
    sent = [sample(i) for i in range(1500)]  # 4 h at 10 s
    for s in sent[:1000]:
        first.send(s)
    running.pop().cancel()  # the agent stops...
    spool.close()

    spool = TelemetrySpool(path)  # ...and starts again
    assert len(spool) == 1000
    srv = AggregatorServer(agg_config(target), clock=ManualClock(T0), store=store)
    await srv.start()
    try:
        second = client(target, spool, max_in_flight=64)
        running.append(asyncio.create_task(second.run()))
        for s in sent[1000:]:
            second.send(s)
        await until(lambda: second.telemetry_unacked == 0, "the backlog is back-filled", timeout_s=30)
        assert await store.telemetry_history("house-s") == sent
        assert second.telemetry_acked == 1500 and second.telemetry_dropped == 0
    finally:
        await srv.stop(grace_s=0.2)
        spool.close()


async def test_the_agent_is_back_within_its_backoff_cap_after_an_outage(
        tmp_path: Path, running: list[asyncio.Task[None]]) -> None:
    """grpc's own channel backoff (1 s growing by 1.6x up to 2 min) must not stack on the agent's:
    after a 4 s outage the agent reconnects within its cap (0.5 s) and one connect attempt."""
    store = MemoryStore()
    srv = AggregatorServer(agg_config(), clock=ManualClock(T0), store=store)
    await srv.start()
    target = srv.target or ""
    spool = TelemetrySpool(None)
    c = client(target, spool, backoff=Backoff(0.05, 0.5))
    running.append(asyncio.create_task(c.run()))
    await until(lambda: c.connected, "connected")
    await srv.stop(grace_s=0.2)
    await until(lambda: not c.connected, "the stream is down")
    down = time.monotonic()
    await until(lambda: time.monotonic() - down > 4.0, "4 s of outage", timeout_s=5)
    srv = AggregatorServer(agg_config(target), clock=ManualClock(T0), store=store)
    await srv.start()
    back = time.monotonic()
    try:
        await until(lambda: c.connected, "reconnected", timeout_s=10)
        delay = time.monotonic() - back
        print(f"reconnected {delay:.2f} s after the aggregator was back")
        assert delay < 0.5 + 0.5, f"reconnected {delay:.2f} s after the aggregator was back"
    finally:
        await srv.stop(grace_s=0.2)


class NoAckAggregator(fs_grpc.FleetServiceServicer):
    """An aggregator from before TelemetryAck: a Welcome without ``telemetry_acks``, no acks."""

    def __init__(self) -> None:
        self.telemetry: list[fs.ConnectRequest] = []

    async def Connect(self, request_iterator, context):  # type: ignore[no-untyped-def]
        first = True
        async for req in request_iterator:
            if first:
                first = False
                yield fs.ConnectResponse(welcome=fs.Welcome(house_id="house-s", replica_id="old"))
            elif req.WhichOneof("payload") == "telemetry":
                self.telemetry.append(req)


async def test_an_aggregator_without_acks_gets_each_spooled_sample_once(
        tmp_path: Path, running: list[asyncio.Task[None]]) -> None:
    old = NoAckAggregator()
    server = grpc.aio.server()
    fs_grpc.add_FleetServiceServicer_to_server(old, server)
    port = server.add_insecure_port("127.0.0.1:0")
    spool = TelemetrySpool(tmp_path / "t.sqlite")
    c = client(f"127.0.0.1:{port}", spool)
    sent = [sample(i) for i in range(5)]
    for s in sent[:3]:  # recorded before the stream is up
        c.send(s)
    await server.start()
    try:
        running.append(asyncio.create_task(c.run()))
        await until(lambda: c.connected, "connected")
        for s in sent[3:]:
            c.send(s)
        await until(lambda: len(old.telemetry) == 5 and c.telemetry_unacked == 0, "every sample sent once")
        assert [agg_convert.telemetry_from_proto(r.telemetry) for r in old.telemetry] == sent
        assert c.telemetry_sent == 5 and c.telemetry_acked == 0 and len(spool) == 0
    finally:
        await server.stop(0.2)
        spool.close()


async def test_unreadable_tls_files_are_retried_not_fatal(tmp_path: Path, running: list[asyncio.Task[None]],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A channel per attempt reads the TLS files each time: a file mid-replacement is tried again."""
    missing = tmp_path / "gone.pem"
    c = UplinkClient(target="127.0.0.1:1", house_id="", hello=lambda: HELLO,
                     callbacks=UplinkCallbacks(on_plan=lambda plan: None), backoff=Backoff(0.01, 0.02),
                     tls=TlsFiles(missing, missing, missing), spool=TelemetrySpool(None))
    with caplog.at_level("WARNING"):
        running.append(asyncio.create_task(c.run()))
        await until(lambda: sum("cannot read the TLS files" in r.message for r in caplog.records) >= 2,
                    "two attempts")
    assert not running[-1].done()
