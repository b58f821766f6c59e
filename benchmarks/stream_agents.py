"""Cheap agents for ``benchmarks/streams.py``: the stream's conversation with little CPU.

The benchmark's clients share the machine's two cores with the aggregator it measures, so
every CPU second they spend is taken from the aggregator and shows up as its latency.  The
real ``UplinkClient`` (spool, resend window, dataclasses both ways) cost ~4 times what these
cost per message (docs/performance.md, "Streams").  These speak the same contract on one gRPC
connection per agent (Hello, a FlexibilityUpdate after the Welcome, Telemetry every period with
its own measured_at, a PlanStatus ACCEPTED for each plan, sequence numbers as the contract
says) with messages encoded once where they can be: the Hello and the update are the same
bytes for every agent, a telemetry sample is encoded once per tick and shared by the agents
sending in that tick, and a plan is read only for its id, version and ``created_at``.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from edge_agent.uplink import convert
from edge_agent.uplink.client import CHANNEL_OPTIONS, DEFAULT_BACKOFF, HOUSE_ID_HEADER
from vpp.v1 import fleet_service_pb2 as fs
from vpp_common.clock import UTC
from vpp_common.messages import (
    ControlType,
    Flexibility,
    Hello,
    Measurement,
    ResourceInfo,
    ResourceKind,
    SiteLimits,
    SiteTelemetry,
    StorageFlexibility,
    Validity,
)

METHOD = "/vpp.v1.FleetService/Connect"
ERRORS: dict[str, int] = {}  # status code -> streams of this process that ended with it
REASONS: dict[str, int] = {}  # "CODE: details" -> streams of this process that ended with it


def _why(exc: grpc.aio.AioRpcError, welcomed: bool, age_s: float) -> str:
    """How a stream ended, for counting: code, details, gRPC core's own error (no times or
    addresses), whether the Welcome had come and the stream's age (10 s buckets)."""
    core = re.sub(r'created_time:"[^"]*"|ipv[46]:[\d.:\[\]]+|\d{4}-\d\d-\d\dT[\d:.]+', "", exc.debug_error_string() or "")
    return (f"{exc.code().name}: {exc.details()} | {core[:160]} | {'after' if welcomed else 'before'} Welcome, "
            f"stream age {int(age_s // 10) * 10}-{int(age_s // 10) * 10 + 10} s")


def _now_ts() -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(time.time_ns())
    return ts


def bench_hello() -> Hello:
    """The Hello of ``streams.py``'s agents (both kinds): an 11 kW / 4.6 kW house with a 5 kW / 10 kWh battery."""
    return Hello("bench", SiteLimits(11_000, 4_600),
                 (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC, 5_000, 10_000),))


def bench_flexibility() -> Flexibility:
    """The battery at 50 %, 0-100 %, reserve 10 %, 10 kWh, +-5 kW, valid from now."""
    return Flexibility(datetime.now(UTC), (StorageFlexibility("battery", 50, 0, 100, 10, 10_000, 5_000, 5_000),))


def hello_bytes() -> bytes:
    return fs.ConnectRequest(sequence=1, hello=convert.hello_to_proto(bench_hello())).SerializeToString()


def flexibility_bytes() -> bytes:
    """:func:`bench_flexibility`, the payload (no sequence)."""
    return fs.ConnectRequest(flexibility_update=convert.flexibility_to_proto(bench_flexibility())).SerializeToString()


def telemetry_bytes() -> bytes:
    """A sample measured now (the payload, no sequence)."""
    now = datetime.now(UTC)
    v = Measurement(100.0, Validity.VALID, now)
    t = SiteTelemetry(now, v, v, v, Measurement(50.0, Validity.VALID, now), v)
    return fs.ConnectRequest(telemetry=convert.telemetry_to_proto(t)).SerializeToString()


def _seq(n: int) -> bytes:
    # concatenated encodings merge: the sequence field, then the payload encoded once
    return fs.ConnectRequest(sequence=n).SerializeToString()


@dataclass
class Agent:
    """One house's stream; ``on_plan(agent, latency_s)`` is called for each plan received."""

    house_id: str
    on_plan: Callable[[Agent, float], None]
    connected: bool = False
    has_plan: bool = False
    streams: int = 0  # opened (more than one: it reconnected)
    _seq: int = 0
    _out: deque[bytes] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, payload: bytes) -> None:
        """Queue a ConnectRequest's payload (without sequence: it is added when written)."""
        if self.connected:
            self._out.append(payload)
            self._ready.set()

    async def run(self, target: str, hello: bytes, flexibility: bytes) -> None:
        attempt, rng = 0, random.Random()
        while True:
            self.streams += 1
            opened = time.monotonic()
            async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
                call = channel.stream_stream(METHOD)(metadata=((HOUSE_ID_HEADER, self.house_id),))
                writer = asyncio.create_task(self._write(call, hello))
                try:
                    await self._read(call, flexibility)
                except grpc.aio.AioRpcError as exc:
                    ERRORS[exc.code().name] = ERRORS.get(exc.code().name, 0) + 1
                    why = _why(exc, self.connected, time.monotonic() - opened)
                    REASONS[why] = REASONS.get(why, 0) + 1
                finally:
                    attempt = 0 if self.connected else attempt + 1  # as the agent: reset once a stream is accepted
                    self.connected = False
                    writer.cancel()
                    await asyncio.gather(writer, return_exceptions=True)
            # the agent's own backoff (exponential, jittered: 0.5 s doubling to 60 s); a fixed
            # 0.5-5 s made a 10,000-agent retry storm ~10 times denser than a real fleet's
            await asyncio.sleep(DEFAULT_BACKOFF.delay(attempt, rng))

    async def _write(self, call: grpc.aio.StreamStreamCall, hello: bytes) -> None:  # type: ignore[type-arg]
        self._seq = 1
        self._out.clear()
        await call.write(hello)
        while True:
            while self._out:
                self._seq += 1
                await call.write(_seq(self._seq) + self._out.popleft())
            self._ready.clear()
            await self._ready.wait()

    async def _read(self, call: grpc.aio.StreamStreamCall, flexibility: bytes) -> None:  # type: ignore[type-arg]
        while True:
            raw = await call.read()
            if raw is grpc.aio.EOF:
                return
            msg = fs.ConnectResponse.FromString(raw)
            kind = msg.WhichOneof("payload")
            if kind == "dispatch_plan":
                plan = msg.dispatch_plan
                created = plan.created_at.seconds + plan.created_at.nanos * 1e-9
                self.has_plan = True
                self.on_plan(self, time.time() - created)
                self.send(fs.ConnectRequest(plan_status=fs.PlanStatus(
                    plan_id=plan.plan_id, version=plan.version, state=fs.PLAN_STATE_ACCEPTED,
                    at=_now_ts())).SerializeToString())
            elif kind == "welcome":
                self.connected = True
                self.send(flexibility)
            elif kind == "drain":
                return


async def send_telemetry(agents: list[Agent], period_s: float = 5.0) -> None:
    """Each agent every ``period_s`` at its own phase, as agents started at different times send
    (all of them in one burst would measure a fleet that reports in lockstep).  One sample is
    encoded per 20 ms tick and sent by the agents due in it."""
    tick = 0.02
    per_tick = max(1, round(len(agents) * tick / period_s))
    next_at = time.monotonic()
    while True:
        for i in range(0, len(agents), per_tick):
            payload = telemetry_bytes()
            for a in agents[i:i + per_tick]:
                a.send(payload)
            next_at += period_s * per_tick / len(agents)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
