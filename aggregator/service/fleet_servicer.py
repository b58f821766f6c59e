"""``FleetService.Connect``: one bidirectional stream per house.

Reading and writing run as two halves: a reader task consumes the agent's
messages, and the handler itself yields whatever the session's outbox holds.
Identity comes from the transport (see ``identity``), never from messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from prometheus_client import Counter

from aggregator.metrics import AggregatorMetrics
from aggregator.service import convert
from aggregator.service.identity import IdentityError, IdentityResolver
from aggregator.service.plan_encoder import PlanEncoder
from aggregator.service.refusals import Refusals
from aggregator.service.replan_limit import ReplanLimiter
from aggregator.service.sessions import CloseItem, ControlItem, PlanItem, Session, SessionRegistry
from aggregator.service.stream_outbox import SignalEncoder
from aggregator.store import StateStore, StoreError
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import fleet_service_pb2_grpc as fs_grpc
from vpp_common.clock import Clock, cancel_and_wait
from vpp_common.messages import GridSignal, Hello, PlanState

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
SERVICE = "vpp.v1.FleetService"


def _serialize(message: fs.ConnectResponse | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def add_to_server(servicer: FleetServicer, server: grpc.aio.Server) -> None:
    """Register ``servicer`` as the generated code does, except that a response may also be
    already serialized (a plan whose slots were encoded ahead: ``PlanEncoder.response``)."""
    handlers = {"Connect": grpc.stream_stream_rpc_method_handler(
        servicer.Connect, request_deserializer=fs.ConnectRequest.FromString, response_serializer=_serialize)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


class FleetServicer(fs_grpc.FleetServiceServicer):
    def __init__(
        self,
        *,
        store: StateStore,
        sessions: SessionRegistry,
        identity: IdentityResolver,
        clock: Clock,
        metrics: AggregatorMetrics,
        replica_id: str,
        telemetry_interval_s: float,
        heartbeat_interval_s: float,
        telemetry_ttl_s: float,
        route_ttl_s: float,
        max_streams: int,
        request_plan: Callable[[str], None],
        grid_signal: Callable[[str], Awaitable[GridSignal | None]] | None = None,
        replan_min_interval_s: float = 0.0,
        encode_signal: SignalEncoder | None = None,
        plan_encoder: PlanEncoder | None = None,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._identity = identity
        self._clock = clock
        self._metrics = metrics
        self._replica_id = replica_id
        self._telemetry_interval_s = telemetry_interval_s
        self._heartbeat_interval_s = heartbeat_interval_s
        self._telemetry_ttl_s = telemetry_ttl_s
        self._route_ttl_s = route_ttl_s
        self._max_streams = max_streams
        # a house's re-plan requests pass a per-house limit before they reach the planner
        self._replans = ReplanLimiter(request_plan, replan_min_interval_s,
                                      on_coalesced=metrics.replans_coalesced.inc)
        self._request_plan = self._replans.request
        self._refusals = Refusals(metrics)
        self._grid_signal = grid_signal
        self.draining = False
        self._encode_signal = encode_signal or SignalEncoder()
        self._plans = plan_encoder or PlanEncoder(workers=0)
        self._ok: dict[str, Counter] = {}  # payload kind -> its messages{result="ok"} counter

    async def Connect(
        self, request_iterator: AsyncIterator[fs.ConnectRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[fs.ConnectResponse]:
        house_id, hello = await self._admit(request_iterator, context)
        session = self._sessions.open(house_id)
        session.hello = hello
        session.last_sequence = 1  # the Hello's (checked)
        if hello.last_plan_id:  # the agent may still report on the plan it followed before
            session.known_plans[hello.last_plan_id] = hello.last_plan_version
        # Welcome first: the planner may hand this session signals and plans while the store answers
        session.outbox.put(ControlItem(fs.ConnectResponse(welcome=convert.welcome(
            house_id, self._replica_id, self._telemetry_interval_s, self._heartbeat_interval_s))))
        self._metrics.connected_agents.set(len(self._sessions))
        reader: asyncio.Task[None] | None = None
        seq = 0
        try:
            try:
                await self._store.upsert_house(house_id, hello, self._clock.now())
                await self._store.set_route(house_id, self._replica_id, self._route_ttl_s)
                current = await self._store.get_plan(house_id)
                signal = await self._grid_signal(house_id) if self._grid_signal is not None else None
            except StoreError as exc:
                self._metrics.store_errors.inc()
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"state store unavailable: {exc}")
            if signal is not None:
                session.outbox.put(ControlItem(self.encode_signal(signal)))
            if current is not None:  # the full current plan after every (re)connect, never a delta
                session.outbox.put_plan(current)
            self._request_plan(house_id)

            while True:
                if reader is None and session.outbox.idle:
                    # the agent's next messages are read (and acked) only now: Welcome, GridSignal and
                    # the current plan come first, in that order, as the contract says
                    reader = asyncio.create_task(self._read(house_id, session, request_iterator),
                                                 name=f"read-{house_id}")
                item = await session.outbox.get()
                seq += 1
                if isinstance(item, CloseItem):
                    if item.refused:
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, item.refused)
                    if item.reason:
                        yield fs.ConnectResponse(sequence=seq, drain=convert.drain(item.reason))
                    return
                if isinstance(item, PlanItem):
                    session.writing_plan(True)
                    session.plan_sent(item.plan, time.monotonic())
                    self._metrics.plans_sent.inc()
                    yield self._plans.response(item.plan, seq)  # type: ignore[misc]  # bytes: see add_to_server
                    session.writing_plan(False)  # the handler resumes once gRPC has taken the message
                    # let the plan go now, not when the next message comes (seconds later): at a
                    # cycle's pace ~1,000 sent plans were kept alive for the garbage collector to walk
                    del item
                else:
                    item.message.sequence = seq
                    yield item.message
        finally:
            await cancel_and_wait([reader] if reader is not None else [])
            self._sessions.close(session)
            if self._sessions.get(house_id) is None:
                self._replans.forget(house_id)
            self._metrics.connected_agents.set(len(self._sessions))
            try:
                await self._store.clear_route(house_id, self._replica_id)
            except StoreError:
                self._metrics.store_errors.inc()

    async def _admit(self, requests: AsyncIterator[fs.ConnectRequest],
                     context: grpc.aio.ServicerContext) -> tuple[str, Hello]:
        """The house on this stream and its Hello (with sequence 1); aborts the call otherwise."""
        try:
            house_id = self._identity.house_of(context)
        except IdentityError as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "replica is draining; reconnect elsewhere")
        if len(self._sessions) >= self._max_streams and self._sessions.get(house_id) is None:
            context.set_trailing_metadata((("retry-after-s", "30"),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "replica full; retry later or elsewhere")

        first = await self._first_message(requests, context)
        if first.sequence != 1:
            detail = f"sequence: the Hello carries 1 (got {first.sequence})"
            self._metrics.messages.labels("hello", "invalid").inc()
            self._refusals.refused(house_id, "hello", "sequence", detail, "stream refused")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, detail)
        try:
            hello = convert.hello_from_proto(first.hello)
        except convert.InvalidMessage as exc:
            self._metrics.messages.labels("hello", "invalid").inc()
            self._refusals.refused(house_id, "hello", exc.reason, str(exc), "stream refused")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if hello.claimed_house_id and hello.claimed_house_id != house_id:
            self._metrics.messages.labels("hello", "denied").inc()
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"this stream is house {house_id!r}; it cannot speak for {hello.claimed_house_id!r}")
        self._metrics.messages.labels("hello", "ok").inc()
        return house_id, hello

    def encode_signal(self, signal: GridSignal) -> fs.ConnectResponse:
        """The encoded GridSignal, built once per signal object (see stream_outbox.SignalEncoder)."""
        return self._encode_signal(signal)

    async def _first_message(self, requests: AsyncIterator[fs.ConnectRequest],
                             context: grpc.aio.ServicerContext) -> fs.ConnectRequest:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                first = await anext(requests)
        except (StopAsyncIteration, TimeoutError):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "stream must start with Hello")
        if first.WhichOneof("payload") != "hello":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "first message must be Hello")
        return first

    async def _read(self, house_id: str, session: Session, requests: AsyncIterator[fs.ConnectRequest]) -> None:
        try:
            async for req in requests:
                kind = req.WhichOneof("payload") or "empty"
                if (broken := self._broken_rule(house_id, session, req, kind)) is not None:
                    session.outbox.put(CloseItem("", refused=broken))
                    return
                try:
                    await self._handle(house_id, session, req, kind)
                    counted = self._ok.get(kind)
                    if counted is None:  # a label lookup per message was measurable at thousands a second
                        counted = self._ok[kind] = self._metrics.messages.labels(kind, "ok")
                    counted.inc()
                except convert.InvalidMessage as exc:
                    # dropped, the stream stays: one bad update must not cost a house its stream
                    # for good; the store keeps its last good data, which planning goes on using
                    self._metrics.messages.labels(kind, "invalid").inc()
                    self._refusals.refused(house_id, kind, exc.reason, str(exc), "message dropped, stream kept")
                except StoreError as exc:
                    self._metrics.messages.labels(kind, "store_error").inc()
                    self._metrics.store_errors.inc()
                    log.warning("store error handling %s from %s: %s", kind, house_id, exc)
                except Exception as exc:  # a bug here must cost one message, not the stream's reader
                    self._metrics.messages.labels(kind, "error").inc()
                    if self._refusals.refused(house_id, kind, "error", f"{type(exc).__name__}: {exc}",
                                              "message dropped, stream kept"):
                        log.error("handling %s from %s failed", kind, house_id, exc_info=exc)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            log.info("stream of %s ended: %s", house_id, exc.code())
        # the agent closed its side (or the call ended): end ours too
        session.outbox.put(CloseItem(""))

    def _broken_rule(self, house_id: str, session: Session, req: fs.ConnectRequest, kind: str) -> str | None:
        """Why ``req`` ends the stream with INVALID_ARGUMENT; None if it keeps the stream's rules
        (each sequence the previous + 1: TelemetryAck names it, so it must not repeat; one Hello)."""
        expected = session.last_sequence + 1
        if req.sequence != expected:
            reason, detail = "sequence", f"sequence: expected {expected} (the previous + 1), got {req.sequence}"
        elif kind == "hello":
            reason, detail = "hello", "hello: sent twice on one stream"
        else:
            session.last_sequence = req.sequence
            return None
        self._metrics.messages.labels(kind, "invalid").inc()
        self._refusals.refused(house_id, kind, reason, detail, "stream ended")
        return detail

    async def _handle(self, house_id: str, session: Session, req: fs.ConnectRequest, kind: str) -> None:
        if kind == "telemetry":
            refused: list[str] = []
            t = convert.telemetry_from_proto(req.telemetry, refused)
            for field in refused:  # stored as IMPLAUSIBLE without a value
                self._refusals.refused(house_id, "telemetry", field, f"{field} out of bounds",
                                       "value marked IMPLAUSIBLE")
            self._metrics.telemetry_age.observe(max(0.0, (self._clock.now() - t.measured_at).total_seconds()))
            await self._store.put_telemetry(house_id, t, self._telemetry_ttl_s)
            # stored: the agent may forget it (a StoreError above sends no ack: the agent sends it again)
            session.outbox.put(ControlItem(fs.ConnectResponse(telemetry_ack=fs.TelemetryAck(sequence=req.sequence))))
            await self._store.set_route(house_id, self._replica_id, self._route_ttl_s)
        elif kind == "flexibility_update":
            session.flexibility = convert.flexibility_from_proto(req.flexibility_update)
            await self._store.put_flexibility(house_id, session.flexibility)
            self._request_plan(house_id)
        elif kind == "plan_status":
            status = convert.plan_status_from_proto(req.plan_status)
            if not await self._plan_known(house_id, session, status.plan_id, status.version):
                raise convert.InvalidMessage(f"plan_status: plan {status.plan_id!r} version {status.version} was "
                                             "not sent to this house; not recorded", "plan_status.plan_id")
            sent = session.sent_plan_at.pop(status.version, None)
            if sent is not None and status.state is PlanState.ACCEPTED:
                self._metrics.plan_ack_latency.observe(time.monotonic() - sent)
            await self._store.put_plan_status(house_id, status)
        elif kind == "heartbeat":
            await self._store.set_route(house_id, self._replica_id, self._route_ttl_s)
        else:  # none set, or a payload of a newer contract this aggregator does not know
            raise convert.InvalidMessage("no payload this aggregator knows")

    async def _plan_known(self, house_id: str, session: Session, plan_id: str, version: int) -> bool:
        """A plan this house was sent: named in its Hello, sent on this stream, or its current plan."""
        if session.knows_plan(plan_id, version):
            return True
        current = await self._store.get_plan(house_id)
        return current is not None and (current.plan_id, current.version) == (plan_id, version)
