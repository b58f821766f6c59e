"""The agent's one long-lived stream to the aggregator, with reconnects.

``run()`` keeps a ``FleetService.Connect`` stream open: it sends Hello first,
then whatever is queued with :meth:`send`; decoded aggregator messages go to
the callbacks.  When the stream drops it reconnects with exponential backoff
and jitter (reset after a Welcome).  Generated types stay in this package.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from edge_agent.uplink import convert
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import fleet_service_pb2_grpc as fs_grpc
from vpp_common.messages import DispatchPlan, Flexibility, Hello, PlanStatus, SiteTelemetry

log = logging.getLogger(__name__)

HOUSE_ID_HEADER = "x-vpp-house-id"

# Must agree with the server's min ping interval (20 s) or streams die with too_many_pings.
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: delay n is uniform in [d/2, d], d = min(max, initial * 2^n)."""

    initial_s: float = 0.5
    max_s: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        d = min(self.max_s, self.initial_s * (2 ** min(attempt, 30)))
        return rng.uniform(d / 2, d)


@dataclass
class UplinkCallbacks:
    on_plan: Callable[[DispatchPlan | Exception], None]
    on_welcome: Callable[[convert.WelcomeInfo], None] = lambda w: None
    on_connection: Callable[[bool], None] = lambda up: None


OutMessage = SiteTelemetry | Flexibility | PlanStatus


class UplinkClient:
    def __init__(self, *, target: str, house_id: str, hello: Callable[[], Hello], callbacks: UplinkCallbacks,
                 backoff: Backoff = Backoff(), insecure: bool = True, rng: random.Random | None = None,
                 outbox_size: int = 256) -> None:
        if not insecure:
            raise ValueError("mTLS is not available yet: use insecure = true for a local demo")
        self._target = target
        self._house_id = house_id
        self._hello = hello
        self._cb = callbacks
        self._backoff = backoff
        self._rng = rng or random.Random()
        # Bounded: when the stream is down, the oldest messages give way (a durable offline buffer comes later).
        self._outbox: deque[fs.ConnectRequest] = deque(maxlen=outbox_size)
        self._outbox_ready = asyncio.Event()
        self._seq = 0
        self.connected = False
        self.connects = 0
        self.welcome: convert.WelcomeInfo | None = None

    def send(self, message: OutMessage) -> None:
        """Queue a message; sent on the current stream or after the next connect."""
        if isinstance(message, SiteTelemetry):
            req = fs.ConnectRequest(telemetry=convert.telemetry_to_proto(message))
        elif isinstance(message, Flexibility):
            req = fs.ConnectRequest(flexibility_update=convert.flexibility_to_proto(message))
        elif isinstance(message, PlanStatus):
            req = fs.ConnectRequest(plan_status=convert.plan_status_to_proto(message))
        else:
            raise TypeError(f"cannot send {type(message).__name__}")
        self._outbox.append(req)
        self._outbox_ready.set()

    def send_heartbeat(self, at) -> None:  # type: ignore[no-untyped-def]
        self._outbox.append(fs.ConnectRequest(heartbeat=convert.heartbeat(at)))
        self._outbox_ready.set()

    async def run(self) -> None:
        attempt = 0
        async with grpc.aio.insecure_channel(self._target, options=CHANNEL_OPTIONS) as channel:
            stub = fs_grpc.FleetServiceStub(channel)
            while True:
                reconnect_after = await self._one_stream(stub)
                if self.welcome is not None:
                    attempt = 0  # the last stream was accepted: start the backoff again
                    self.welcome = None
                delay = max(reconnect_after, self._backoff.delay(attempt, self._rng))
                attempt += 1
                log.info("stream to %s down; reconnecting in %.2f s", self._target, delay)
                await asyncio.sleep(delay)

    async def _requests(self) -> AsyncIterator[fs.ConnectRequest]:
        self._seq = 1
        yield fs.ConnectRequest(sequence=1, hello=convert.hello_to_proto(self._hello()))
        while True:
            while self._outbox:
                req = self._outbox.popleft()
                self._seq += 1
                req.sequence = self._seq
                yield req
            self._outbox_ready.clear()
            await self._outbox_ready.wait()

    async def _one_stream(self, stub: fs_grpc.FleetServiceStub) -> float:
        """Run one stream until it ends; return the server's reconnect hint in s."""
        call = stub.Connect(self._requests(), metadata=((HOUSE_ID_HEADER, self._house_id),))
        reconnect_after = 0.0
        try:
            async for resp in call:
                kind = resp.WhichOneof("payload")
                if kind == "welcome":
                    self.welcome = convert.welcome_from_proto(resp.welcome)
                    self.connected = True
                    self.connects += 1
                    self._cb.on_connection(True)
                    self._cb.on_welcome(self.welcome)
                elif kind == "dispatch_plan":
                    try:
                        plan: DispatchPlan | Exception = convert.plan_from_proto(resp.dispatch_plan)
                    except convert.InvalidPlan as exc:
                        plan = exc
                    self._cb.on_plan(plan)
                elif kind == "drain":
                    reconnect_after = resp.drain.reconnect_after.ToTimedelta().total_seconds()
                    log.info("aggregator asks to reconnect: %s", resp.drain.reason)
                    break
                # grid_signal: prices are used by local policies (a later step); ignored here
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            log.info("stream ended: %s %s", exc.code().name, exc.details())
        finally:
            call.cancel()
            if self.connected:
                self.connected = False
                self._cb.on_connection(False)
        return reconnect_after
