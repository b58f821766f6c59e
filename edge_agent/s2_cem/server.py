"""The CEM's WebSocket server (aiohttp): Resource Managers connect, each with its own token.

* Upgrade: ``Authorization: Bearer <token>`` must be one of ``[[s2.resource_managers]]``'s
  (compared in constant time); else HTTP 401, logged (rate-limited) and counted.  A second
  connection with the same token replaces the first (its socket may be half-open).
* TLS (wss) with the configured certificate and key, TLS 1.2 at least; plain ws only with
  ``insecure = true``.
* Per session: a token bucket (``max_messages_per_s``, ``burst_messages``) and a size limit;
  a flood, a frame too large, invalid JSON, or no session within ``handshake_timeout_s`` ends
  the session with a WebSocket close code and a log line; nothing of it reaches the agent.
  WebSocket pings (``heartbeat_s``) find an RM that vanished without closing.
* The instruction loop asks each RM for what the plan and the site limits want (decide.py:
  FRBC, PPBC, OMBC and PEBC).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import CollectorRegistry, Counter, Gauge
from s2python.common import SessionRequest, SessionRequestType

from edge_agent.link_config import S2Config
from edge_agent.refusals import Refusals
from edge_agent.s2_cem.decide import HouseNow, decide
from edge_agent.s2_cem.listing import rows, write_status
from edge_agent.s2_cem.session import PREFERENCE, CemSession, Outcome
from edge_agent.s2_cem.state import Coordinator, RmSnapshot
from edge_agent.s2_cem.wire import Refused, parse_frame

log = logging.getLogger(__name__)

SOURCE = "s2"  # refusals' source label
CLOSE_TIMEOUT_S = 2.0  # a peer that does not answer our close frame is dropped after this (real s)
STATUS_MIN_S = 1.0  # the status file at most once a real second (an accelerated clock ticks faster)


class TokenBucket:
    def __init__(self, rate: float, burst: int, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._now = rate, float(burst), monotonic
        self.tokens, self._at = float(burst), monotonic()

    def take(self, cost: float = 1.0) -> bool:
        now = self._now()
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True


class S2Metrics:
    """Per control type, never per RM (an installer may connect many)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.sessions = Gauge("vpp_edge_s2_sessions", "Connected S2 Resource Managers, by selected control type "
                              "(none: not yet selected).", ["control_type"], registry=r)
        self.messages = Counter("vpp_edge_s2_messages_total", "S2 messages, by direction and control type.",
                                ["direction", "control_type"], registry=r)
        self.closed = Counter("vpp_edge_s2_sessions_closed_total", "S2 sessions ended, by cause.", ["cause"],
                              registry=r)
        self.instructions = Counter("vpp_edge_s2_instructions_total", "Instructions sent to S2 RMs, by control "
                                    "type.", ["control_type"], registry=r)

    def count_sessions(self, snapshots: list[RmSnapshot]) -> None:
        live = [s.control_type or "none" for s in snapshots if s.connected]
        for ct in [*(c.value for c in PREFERENCE), "NO_SELECTION", "none"]:
            self.sessions.labels(ct).set(live.count(ct))


def tls_context(cfg: S2Config) -> ssl.SSLContext | None:
    if cfg.cert_file is None or cfg.key_file is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    return ctx


class S2CemServer:
    def __init__(self, cfg: S2Config, clock: Callable[[], datetime], registry: CollectorRegistry,
                 refusals: Refusals, house: Callable[[datetime], HouseNow] | None = None,
                 tick_s: float = 5.0, status_file: Path | None = None) -> None:
        self.cfg, self.clock, self.refusals, self.house, self.tick_s = cfg, clock, refusals, house, tick_s
        self.metrics = S2Metrics(registry)
        self.coordinator = Coordinator()
        self.coordinator.listeners.append(self._on_snapshot)
        self.status_file = status_file
        self._changed = status_file is not None  # the file says "none connected" from the start
        self._written = -STATUS_MIN_S
        self.live: dict[str, tuple[web.WebSocketResponse, CemSession]] = {}
        self._tokens = [(rm.name, rm.token.get_secret_value().encode()) for rm in cfg.resource_managers]
        self._runner: web.AppRunner | None = None
        self._closing: set[asyncio.Task[bool]] = set()
        self.port: int | None = None

    def _on_snapshot(self, _: RmSnapshot) -> None:
        self.metrics.count_sessions(list(self.coordinator.snapshots.values()))
        self._changed = True

    def write_status(self, force: bool = False) -> None:
        """The status file of ``edge-agent s2 list``, if something changed (``force``: now)."""
        if self.status_file is None or not (self._changed or force) or (
                not force and time.monotonic() - self._written < STATUS_MIN_S):
            return
        self._changed, self._written = False, time.monotonic()
        try:
            write_status(self.status_file, self.clock(),
                         rows(list(self.coordinator.snapshots.values()), self.clock(), self.cfg.stale_after_s))
        except OSError as exc:
            log.warning("S2: cannot write %s: %s", self.status_file, exc.strerror or exc)

    @property
    def url(self) -> str:
        scheme = "ws" if self.cfg.cert_file is None else "wss"
        host = "127.0.0.1" if self.cfg.host in ("0.0.0.0", "") else self.cfg.host
        return f"{scheme}://{host}:{self.port}{self.cfg.path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(self.cfg.path, self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.host, self.cfg.port, ssl_context=tls_context(self.cfg))
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("S2 CEM listening on %s for %d resource manager(s)", self.url, len(self._tokens))

    async def stop(self) -> None:
        await asyncio.gather(*(self._say_goodbye(ws, session) for ws, session in list(self.live.values())))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _say_goodbye(self, ws: web.WebSocketResponse, session: CemSession) -> None:
        """The agent stops: SessionRequest TERMINATE, then close (all RMs at once: each may take
        the close timeout)."""
        try:
            await self._send(ws, session, [SessionRequest(message_id=uuid.uuid4(), request=SessionRequestType.TERMINATE,
                                                          diagnostic_label="the CEM (edge agent) is stopping")])
        except (ConnectionError, RuntimeError):
            pass  # gone already: nothing to say
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"CEM stopping")

    async def run(self) -> None:
        """A component of the agent: serve, and instruct every tick, until cancelled."""
        await self.start()
        try:
            while True:
                await asyncio.sleep(self.tick_s)
                try:
                    await self.instruct_all()
                    self.write_status()
                except Exception:  # a bug here must not stop the server the RMs depend on
                    log.exception("S2 instruction round failed")
        finally:
            await self.stop()

    def _who(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        given = token.strip().encode()
        found = None
        for name, secret in self._tokens:  # every token compared: the time says nothing of which
            if hmac.compare_digest(given, secret) and scheme.lower() == "bearer":
                found = name
        return found

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = self._who(request)
        if name is None:
            self.refusals.refuse(SOURCE, "unauthorized", f"S2 connection from {request.remote}: no valid bearer token")
            self.metrics.closed.labels("unauthorized").inc()
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Bearer realm="s2"'}, text="bearer token required")
        old = self.live.get(name)
        if old is not None:
            # not awaited: a half-open peer would hold the new one up for the whole close timeout
            log.info("S2 RM %r connected again: the older connection is closed", name)
            task = asyncio.create_task(old[0].close(code=WSCloseCode.POLICY_VIOLATION,
                                                    message=b"replaced by a newer connection"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        ws = web.WebSocketResponse(heartbeat=self.cfg.heartbeat_s, max_msg_size=self.cfg.max_message_bytes,
                                   timeout=CLOSE_TIMEOUT_S)
        await ws.prepare(request)
        session = CemSession(name, self.coordinator, self.clock(), self.clock)
        self.live[name] = (ws, session)
        log.info("S2 RM %r connected from %s (session %d)", name, request.remote, session.snap.session)
        reason = "closed by the RM"
        try:
            await self._send(ws, session, [session.opening()])
            reason = await self._serve(ws, session)
        except (ConnectionError, RuntimeError) as exc:  # the peer went away while we sent
            reason = f"connection lost: {exc}"
        except Exception:  # a bug must end this session only, never the agent
            log.exception("S2 RM %r: session failed", name)
            reason = "internal error (logged)"
        finally:
            session.closed(reason)
            if self.live.get(name, (None, None))[1] is session:
                del self.live[name]
            if not ws.closed:
                await ws.close()
            log.info("S2 RM %r session %d ended: %s", name, session.snap.session, reason)
            self.write_status()
        return ws

    async def _serve(self, ws: web.WebSocketResponse, session: CemSession) -> str:
        """Read until the session ends; returns why it ended."""
        bucket = TokenBucket(self.cfg.max_messages_per_s, self.cfg.burst_messages)
        # bytes too: the largest legal description takes ~80 ms to validate, and the loop is the agent's
        volume = TokenBucket(self.cfg.max_bytes_per_s, self.cfg.max_message_bytes)
        deadline = asyncio.get_running_loop().time() + self.cfg.handshake_timeout_s
        while True:
            timeout = None
            if session.snap.phase != "active":
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    return await self._end(ws, "timeout", WSCloseCode.POLICY_VIOLATION,
                                           f"no S2 session set up within {self.cfg.handshake_timeout_s} s")
            try:
                frame = await ws.receive(timeout=timeout)
            except TimeoutError:
                continue  # the deadline check above ends it
            if frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return f"closed by the RM (code {ws.close_code})"
            if frame.type == WSMsgType.ERROR:  # a frame past max_message_bytes, a missed ping
                exc = ws.exception()
                return await self._end(ws, "error", getattr(exc, "code", WSCloseCode.INTERNAL_ERROR),
                                       f"WebSocket error: {exc}")
            if not bucket.take():
                return await self._end(ws, "flood", WSCloseCode.POLICY_VIOLATION,
                                       f"more than {self.cfg.max_messages_per_s:g} messages/s (burst "
                                       f"{self.cfg.burst_messages})")
            if isinstance(frame.data, str | bytes) and not volume.take(len(frame.data)):
                return await self._end(ws, "flood", WSCloseCode.POLICY_VIOLATION,
                                       f"more than {self.cfg.max_bytes_per_s} bytes/s")
            if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            why = await self._take(ws, session, frame.data)
            if why is not None:
                return why

    async def _take(self, ws: web.WebSocketResponse, session: CemSession, data: str | bytes) -> str | None:
        """One frame: parsed, answered; returns why the session ends, or None."""
        ct = session.snap.control_type or "none"
        self.metrics.messages.labels("in", ct).inc()
        parsed = parse_frame(data)
        if isinstance(parsed, Refused):
            self.refusals.refuse(SOURCE, parsed.reason, f"RM {session.name!r}: {parsed.diagnostic}")
            await self._send(ws, session, [parsed.reception_status()])
            if parsed.fatal:
                return await self._end(ws, "invalid_json", WSCloseCode.UNSUPPORTED_DATA, parsed.diagnostic)
            return None
        outcome: Outcome = session.on_message(parsed)
        if outcome.refused is not None:
            self.refusals.refuse(SOURCE, outcome.refused, f"RM {session.name!r}: {parsed.message_type}")
        await self._send(ws, session, outcome.send)
        if outcome.close is not None:
            code = WSCloseCode.OK if outcome.refused is None else WSCloseCode.POLICY_VIOLATION
            return await self._end(ws, "refused" if outcome.refused else "session_request", code, outcome.close)
        return None

    async def _end(self, ws: web.WebSocketResponse, cause: str, code: int, reason: str) -> str:
        self.metrics.closed.labels(cause).inc()
        await ws.close(code=code, message=reason.encode()[:120])
        return reason

    async def _send(self, ws: web.WebSocketResponse, session: CemSession, messages: list) -> None:
        for msg in messages:
            await ws.send_str(msg.to_json())
            self.metrics.messages.labels("out", session.snap.control_type or "none").inc()

    async def instruct_all(self) -> int:
        """One round of the instruction loop; returns how many instructions were sent."""
        if self.house is None:
            return 0
        now = self.clock()
        house = self.house(now)
        sent = 0
        for ws, session in list(self.live.values()):
            try:
                order = decide(session.snap, now, house, self.cfg.stale_after_s, self.cfg.instruction_deadband_w)
            except Exception:  # a bug for one RM's description must not stop the others' instructions
                log.exception("S2 RM %r: no instruction this round", session.name)
                continue
            if ws.closed or not (order.revoke or order.send):
                continue
            log.info("S2 RM %r: %s", session.name, order.why)
            revokes = [m for iid in order.revoke if (m := session.revoke(iid)) is not None]
            for msg, rec in order.send:
                session.record(msg, rec)
            try:
                await self._send(ws, session, [*revokes, *(m for m, _ in order.send)])
                self.metrics.instructions.labels(session.snap.control_type or "none").inc(len(order.send))
                sent += len(order.send)
            except (ConnectionError, RuntimeError) as exc:
                log.info("S2 RM %r: instruction not sent: %s", session.name, exc)
        return sent

    async def revoke(self, name: str, instruction_id: str) -> bool:
        """Withdraw an instruction of RM ``name``'s live session (RevokeObject); False if there is
        no such unfinished instruction."""
        ws, session = self.live.get(name, (None, None))
        msg = session.revoke(instruction_id) if session is not None else None
        if ws is None or session is None or msg is None:
            return False
        await self._send(ws, session, [msg])
        return True
