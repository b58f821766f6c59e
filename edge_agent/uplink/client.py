"""The agent's one long-lived stream to the aggregator, with reconnects.

``run()`` keeps a ``FleetService.Connect`` stream open: it sends Hello first,
then whatever is queued with :meth:`send`; decoded aggregator messages go to
the callbacks.  When the stream drops it reconnects with exponential backoff
and jitter (reset after a Welcome).  Generated types stay in this package.

Telemetry goes to a :class:`TelemetrySpool` (on disk in the agent) whether
or not the stream is up, and is deleted from it only when the aggregator says
it is stored (``TelemetryAck``, announced in the Welcome): a sample that is
not acked within ``ack_timeout_s`` is sent again on the same stream, and every
unacked sample is sent again, in order, on the next stream, also after an
agent restart.  At most ``max_in_flight`` samples are out at a time, so a long
backlog is back-filled in order without flooding the stream.  So a store
outage, a dropped stream or a restart loses no telemetry as long as the
backlog fits the spool (beyond that the oldest are dropped and counted).  An
aggregator without acks gets every sample once, as before.

Reconnects: a new channel for every stream attempt, so that a returning
aggregator is reached at the agent's next attempt, not after the channel's own
reconnect backoff on top of the agent's (up to 2 min with grpc's defaults).
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
from edge_agent.uplink.spool import TelemetrySpool
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import fleet_service_pb2_grpc as fs_grpc
from vpp_common.backoff import Backoff
from vpp_common.clock import cancel_and_wait
from vpp_common.messages import (
    DispatchPlan,
    Flexibility,
    GridSignal,
    Hello,
    PlanStatus,
    SiteTelemetry,
)

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
    # no BDP probing: a plan is a few KB, and each probe costs the aggregator a PING to answer
    ("grpc.http2.bdp_probe", 0),
]

DEFAULT_BACKOFF = Backoff()


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
    """A spooled telemetry message loaded for sending, not acknowledged yet."""

    request: fs.ConnectRequest
    stream: int = 0  # the stream it was last sent on (0: not sent yet)
    sent_at: float = 0.0  # monotonic s


def _telemetry_request(payload: bytes) -> fs.ConnectRequest:
    req = fs.ConnectRequest()
    req.telemetry.ParseFromString(payload)
    return req


class UplinkClient:
    def __init__(self, *, target: str, house_id: str, hello: Callable[[], Hello], callbacks: UplinkCallbacks,
                 backoff: Backoff = DEFAULT_BACKOFF, tls: TlsFiles | None = None, rng: random.Random | None = None,
                 outbox_size: int = 256, telemetry_buffer: int = 720, ack_timeout_s: float = 15.0,
                 spool: TelemetrySpool | None = None, max_in_flight: int = 256) -> None:
        """``spool``: where telemetry waits for its ack (default: in memory, ``telemetry_buffer``
        samples); ``max_in_flight``: unacked samples out on the stream at a time."""
        self._tls = tls
        self._target = target
        self._house_id = house_id
        self._hello = hello
        self._cb = callbacks
        self._backoff = backoff
        self._rng = rng or random.Random()
        # Bounded: when the stream is down, the oldest messages give way (telemetry has its spool).
        self._outbox: deque[fs.ConnectRequest] = deque(maxlen=outbox_size)
        self._outbox_ready = asyncio.Event()
        self._seq = 0
        # telemetry until acked: the spool holds it all; the window, the oldest of it loaded for
        # sending, in order (key: spool seq); seq on this stream -> key
        self.spool = spool if spool is not None else TelemetrySpool(None, telemetry_buffer)
        self._window: OrderedDict[int, _Unacked] = OrderedDict()
        self._loaded = 0  # highest spool seq in (or once in) the window
        self._max_in_flight = max_in_flight
        self._in_flight: dict[int, int] = {}
        self._stream = 0
        self._ack_timeout_s = ack_timeout_s
        self.telemetry_acked = 0
        self.telemetry_sent = 0  # transmissions, resends included
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
            evicted = self.spool.append(message.measured_at, convert.telemetry_to_proto(message).SerializeToString())
            if evicted is not None:  # the spool was full: what it dropped is not sent either
                for key in [k for k in self._window if k <= evicted]:
                    del self._window[key]
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
        """Telemetry samples kept for the aggregator's ack (sent or not): the spool's size."""
        return len(self.spool)

    @property
    def telemetry_recorded(self) -> int:
        """Samples given to :meth:`send` (and written to the spool) by this process."""
        return self.spool.appended

    @property
    def telemetry_dropped(self) -> int:
        """Samples lost: evicted from a full spool before an ack, or not written to it."""
        return self.spool.dropped_full + self.spool.dropped_error

    def _forget(self, key: int) -> bool:
        """Done with a sample (acked, or sent to an aggregator without acks); True if it was kept."""
        self._window.pop(key, None)
        gone = self.spool.delete((key,)) > 0
        if len(self._window) <= self._max_in_flight // 2 and len(self.spool) > len(self._window):
            self._outbox_ready.set()  # room in the window: load and send more of the backlog
        return gone

    def _acked(self, sequence: int) -> None:
        key = self._in_flight.pop(sequence, None)
        if key is not None and self._forget(key):
            self.telemetry_acked += 1

    def _due_telemetry(self, now: float) -> list[tuple[int, _Unacked]]:
        """Telemetry to send now: not yet sent on this stream, or unacked for ``ack_timeout_s``."""
        room = self._max_in_flight - len(self._window)
        if room > 0 and len(self.spool) > len(self._window):
            for key, payload in self.spool.read(self._loaded, room):
                self._window[key] = _Unacked(_telemetry_request(payload))
                self._loaded = key
        return [(k, u) for k, u in self._window.items()
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
        while True:
            # A new channel per attempt (which also picks up a renewed certificate): a channel that
            # failed to connect keeps failing new calls at once for its own reconnect backoff, which
            # grows to minutes and stacks on ours
            self._cert_changed = False
            try:
                channel = self._channel()
            except OSError as exc:  # TLS files mid-replacement (read anew for every attempt): try again
                log.warning("cannot read the TLS files: %s", exc)
                channel, reconnect_after = None, 0.0
            if channel is not None:
                async with channel:
                    reconnect_after = await self._one_stream(fs_grpc.FleetServiceStub(channel))
            if self.welcome is not None:
                attempt = 0  # the last stream was accepted: start the backoff again
                self.welcome = None
            if self._cert_changed:
                log.info("client certificate renewed: reconnecting with a new channel")
                continue
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
                self.telemetry_sent += 1
                self._seq += 1
                req = fs.ConnectRequest()
                req.CopyFrom(unacked.request)
                req.sequence = self._seq
                unacked.stream, unacked.sent_at = self._stream, time.monotonic()
                welcome = self.welcome
                if welcome is not None and not welcome.telemetry_acks:
                    self._forget(key)  # an aggregator without acks: sent once, as before
                else:
                    self._in_flight[self._seq] = key
                yield req
            while self._outbox and not ended.is_set():
                req = self._outbox.popleft()
                self._seq += 1
                req.sequence = self._seq
                yield req
            self._outbox_ready.clear()
            if self._window:  # wake up to resend what is not acked in time
                try:
                    async with asyncio.timeout(self._ack_timeout_s / 2):
                        await self._outbox_ready.wait()
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
                        for key in list(self._in_flight.values()):
                            self._forget(key)
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
