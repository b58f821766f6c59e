"""The agent's one long-lived stream to the aggregator, with reconnects.

``run()`` keeps a ``FleetService.Connect`` stream open: it sends Hello first,
then whatever is queued with :meth:`send`; decoded aggregator messages go to
the callbacks.  When the stream drops it reconnects with exponential backoff
and jitter (reset after a Welcome).  Generated types stay in this package.

Telemetry is kept until the aggregator says it is stored (``TelemetryAck``,
announced in the Welcome): a sample that is not acked within ``ack_timeout_s``
is sent again on the same stream, and every unacked sample is sent again, in
order, on the next stream.  So a store outage or a dropped stream loses no
telemetry as long as the agent runs and the backlog stays within
``telemetry_buffer`` samples (beyond that the oldest are dropped and counted).
An aggregator without acks gets every sample once, as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from edge_agent.uplink import convert
from edge_agent.uplink.identity import UplinkIdentity
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import fleet_service_pb2_grpc as fs_grpc
from vpp_common.clock import cancel_and_wait
from vpp_common.messages import DispatchPlan, Flexibility, GridSignal, Hello, PlanStatus, SiteTelemetry

log = logging.getLogger(__name__)

HOUSE_ID_HEADER = "x-vpp-house-id"

# Must agree with the server's min ping interval (20 s) or streams die with too_many_pings.
CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    # A target may name every replica (a headless service, or "ipv4:a:p,b:p"): each agent
    # picks one at random, so houses spread over replicas and move on when one dies.
    ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"pick_first": {"shuffleAddressList": True}}]})),
    # own subchannels: with the process-wide pool, pick_first takes whichever replica another
    # channel of this process already reached (many agents in one process: simulators, tests)
    ("grpc.use_local_subchannel_pool", 1),
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


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """mTLS material, read anew for every channel so that a renewed certificate is used."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    server_name: str | None = None
    check_interval_s: float = 30.0

    def fingerprint(self) -> tuple[float, float, float]:
        """Changes when any of the files is replaced (mtime in ns)."""
        return tuple(float(p.stat().st_mtime_ns) for p in (self.ca_file, self.cert_file, self.key_file))  # type: ignore[return-value]

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca_file.read_bytes(), self.key_file.read_bytes(),
                                            self.cert_file.read_bytes())


@dataclass
class UplinkCallbacks:
    on_plan: Callable[[DispatchPlan | Exception], None]
    on_welcome: Callable[[convert.WelcomeInfo], None] = lambda w: None
    on_connection: Callable[[bool], None] = lambda up: None
    on_grid_signal: Callable[[GridSignal | Exception], None] = lambda signal: None


OutMessage = SiteTelemetry | Flexibility | PlanStatus


@dataclass
class _Unacked:
    """A telemetry message the aggregator has not acknowledged yet."""

    request: fs.ConnectRequest
    stream: int = 0  # the stream it was last sent on (0: not sent yet)
    sent_at: float = 0.0  # monotonic s


class UplinkClient:
    def __init__(self, *, target: str, house_id: str, hello: Callable[[], Hello], callbacks: UplinkCallbacks,
                 backoff: Backoff = Backoff(), tls: TlsFiles | None = None, rng: random.Random | None = None,
                 outbox_size: int = 256, telemetry_buffer: int = 720, ack_timeout_s: float = 15.0) -> None:
        self._tls = tls
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
        # telemetry until acked, in order (key: a local counter); seq on this stream -> key
        self._telemetry: OrderedDict[int, _Unacked] = OrderedDict()
        self._telemetry_key = 0
        self._telemetry_buffer = telemetry_buffer
        self._in_flight: dict[int, int] = {}
        self._stream = 0
        self._ack_timeout_s = ack_timeout_s
        self.telemetry_acked = 0
        self.telemetry_dropped = 0  # evicted from a full buffer before an ack: lost
        self.telemetry_resent = 0
        self.connected = False
        self.connects = 0
        self.channels = 0  # channels built; grows when a renewed certificate is picked up
        self.welcome: convert.WelcomeInfo | None = None
        self._cert_changed = False
        # refused streams counted and said at a level that tells whether to act; the own
        # certificate's expiry watched (the agent sets one with its metrics)
        self.identity = UplinkIdentity()

    def send(self, message: OutMessage) -> None:
        """Queue a message; sent on the current stream or after the next connect."""
        if isinstance(message, SiteTelemetry):
            self._telemetry_key += 1
            self._telemetry[self._telemetry_key] = _Unacked(
                fs.ConnectRequest(telemetry=convert.telemetry_to_proto(message)))
            while len(self._telemetry) > self._telemetry_buffer:
                self._telemetry.popitem(last=False)
                self.telemetry_dropped += 1
            self._outbox_ready.set()
            return
        if isinstance(message, Flexibility):
            req = fs.ConnectRequest(flexibility_update=convert.flexibility_to_proto(message))
        elif isinstance(message, PlanStatus):
            req = fs.ConnectRequest(plan_status=convert.plan_status_to_proto(message))
        else:
            raise TypeError(f"cannot send {type(message).__name__}")
        self._outbox.append(req)
        self._outbox_ready.set()

    @property
    def telemetry_unacked(self) -> int:
        """Telemetry samples kept for the aggregator's ack (sent or not)."""
        return len(self._telemetry)

    def _acked(self, sequence: int) -> None:
        key = self._in_flight.pop(sequence, None)
        if key is not None and self._telemetry.pop(key, None) is not None:
            self.telemetry_acked += 1

    def _due_telemetry(self, now: float) -> list[tuple[int, _Unacked]]:
        """Telemetry to send now: not yet sent on this stream, or unacked for ``ack_timeout_s``."""
        return [(k, u) for k, u in self._telemetry.items()
                if u.stream != self._stream or now - u.sent_at >= self._ack_timeout_s]

    def send_heartbeat(self, at) -> None:  # type: ignore[no-untyped-def]
        self._outbox.append(fs.ConnectRequest(heartbeat=convert.heartbeat(at)))
        self._outbox_ready.set()

    def _channel(self) -> grpc.aio.Channel:
        self.channels += 1
        if self._tls is None:
            return grpc.aio.insecure_channel(self._target, options=CHANNEL_OPTIONS)
        self.identity.check_certificate(self._tls.cert_file)  # at the first channel and on every renewal
        options: list[tuple[str, int | str]] = list(CHANNEL_OPTIONS)
        if self._tls.server_name:
            options.append(("grpc.ssl_target_name_override", self._tls.server_name))
        return grpc.aio.secure_channel(self._target, self._tls.credentials(), options=options)

    async def run(self) -> None:
        attempt = 0
        while True:  # one channel per certificate: a renewed certificate gets a new channel
            self._cert_changed = False
            async with self._channel() as channel:
                stub = fs_grpc.FleetServiceStub(channel)
                while not self._cert_changed:
                    reconnect_after = await self._one_stream(stub)
                    if self.welcome is not None:
                        attempt = 0  # the last stream was accepted: start the backoff again
                        self.welcome = None
                    if self._cert_changed:
                        log.info("client certificate renewed: reconnecting with a new channel")
                        break
                    delay = max(reconnect_after, self._backoff.delay(attempt, self._rng))
                    attempt += 1
                    log.info("stream to %s down; reconnecting in %.2f s", self._target, delay)
                    await asyncio.sleep(delay)

    async def _watch_certificate(self, call: grpc.aio.StreamStreamCall) -> None:  # type: ignore[type-arg]
        """End the stream when the certificate files change, so the next channel uses them."""
        assert self._tls is not None
        seen = self._tls.fingerprint()
        while True:
            await asyncio.sleep(self._tls.check_interval_s)
            try:
                now = self._tls.fingerprint()
            except OSError as exc:  # mid-replacement: look again next time
                log.warning("cannot read certificate files: %s", exc)
                continue
            if now != seen:
                self._cert_changed = True
                call.cancel()
                return

    async def _requests(self, ended: asyncio.Event) -> AsyncIterator[fs.ConnectRequest]:
        """The stream's requests; returns once ``ended`` is set, because grpc keeps
        pulling from a finished call's iterator in a task of its own otherwise."""
        self._seq = 1
        self._stream += 1
        self._in_flight.clear()
        yield fs.ConnectRequest(sequence=1, hello=convert.hello_to_proto(self._hello()))
        while not ended.is_set():
            for key, unacked in self._due_telemetry(time.monotonic()):
                if ended.is_set():
                    break
                if unacked.stream == self._stream:
                    self.telemetry_resent += 1
                self._seq += 1
                req = fs.ConnectRequest()
                req.CopyFrom(unacked.request)
                req.sequence = self._seq
                unacked.stream, unacked.sent_at = self._stream, time.monotonic()
                welcome = self.welcome
                if welcome is not None and not welcome.telemetry_acks:
                    self._telemetry.pop(key, None)  # an aggregator without acks: sent once, as before
                else:
                    self._in_flight[self._seq] = key
                yield req
            while self._outbox and not ended.is_set():
                req = self._outbox.popleft()
                self._seq += 1
                req.sequence = self._seq
                yield req
            self._outbox_ready.clear()
            if self._telemetry:  # wake up to resend what is not acked in time
                try:
                    await asyncio.wait_for(self._outbox_ready.wait(), self._ack_timeout_s / 2)
                except TimeoutError:
                    pass
            else:
                await self._outbox_ready.wait()

    async def _one_stream(self, stub: fs_grpc.FleetServiceStub) -> float:
        """Run one stream until it ends; return the server's reconnect hint in s."""
        # the header names the house only for --insecure demos; with mTLS the certificate does
        metadata = ((HOUSE_ID_HEADER, self._house_id),) if self._tls is None else ()
        ended = asyncio.Event()
        call = stub.Connect(self._requests(ended), metadata=metadata)
        watcher = asyncio.create_task(self._watch_certificate(call)) if self._tls is not None else None
        reconnect_after = 0.0
        try:
            async for resp in call:
                kind = resp.WhichOneof("payload")
                if kind == "welcome":
                    self.welcome = convert.welcome_from_proto(resp.welcome)
                    self.connected = True
                    self.connects += 1
                    if not self.welcome.telemetry_acks:  # what was sent before the Welcome is done with
                        for key in self._in_flight.values():
                            self._telemetry.pop(key, None)
                        self._in_flight.clear()
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
                elif kind == "telemetry_ack":
                    self._acked(resp.telemetry_ack.sequence)
                elif kind == "grid_signal":
                    try:
                        signal: GridSignal | Exception = convert.grid_signal_from_proto(resp.grid_signal)
                    except convert.InvalidGridSignal as exc:
                        signal = exc  # the agent refuses it (counted, logged); the stream goes on
                    self._cb.on_grid_signal(signal)
        except asyncio.CancelledError:
            if not self._cert_changed or watcher is None or not watcher.done():
                raise  # our own task is being cancelled, not just the call
        except grpc.aio.AioRpcError as exc:
            self.identity.stream_failed(exc.code(), exc.details())
        finally:
            ended.set()
            self._outbox_ready.set()  # wake the request iterator so that it returns
            call.cancel()
            if watcher is not None:
                await cancel_and_wait([watcher])
            if self.connected:
                self.connected = False
                self._cb.on_connection(False)
        return reconnect_after
