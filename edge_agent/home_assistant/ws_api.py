"""Home Assistant's WebSocket API as a client: the configured entities' states, kept current, and
service calls (docs/home-assistant-devices.md).

The protocol (Home Assistant's developer docs, "WebSocket API"): the server says ``auth_required``,
the client sends ``auth`` with its access token, the server answers ``auth_ok`` or
``auth_invalid``; then every command carries an ``id`` that only grows within the connection.
``subscribe_entities`` with the entity ids sends their states at once (``a``: added) and then
their changes (``c``: ``+`` changed fields, ``-`` removed attributes) and removals (``r``), in a
compressed form (``s`` state, ``a`` attributes, ``lc``/``lu`` last changed/updated as epoch
seconds); far less traffic than ``state_changed`` of every entity.  ``ping`` is answered by
``pong``: no pong within ``timeout_s`` and the connection is dropped.

Own reconnect loop: exponential backoff with jitter (vpp_common/backoff.py), reset once
subscribed.  A refused token is logged as an error (the operator must act) and retried at the
longest delay: Home Assistant may have been restored from a backup that knows the token.
Every message is hostile: anything that is not the protocol is logged (rate-limited) and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from vpp_common.backoff import Backoff
from vpp_common.log_limit import LogLimiter

log = logging.getLogger(__name__)
_limit = LogLimiter(60.0)
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class HaApiError(Exception):
    """Home Assistant answered a command with an error, or not in time."""


class AuthRefused(HaApiError):
    """``auth_invalid``: the token is wrong, expired or revoked."""


@dataclass(slots=True)
class EntityState:
    """An entity as Home Assistant last sent it: its state string, attributes and last update."""

    state: str
    attributes: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None


def _when(v: object) -> datetime | None:
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and 0 < v < 1e11:
        return datetime.fromtimestamp(v, UTC)
    return None


def apply_compressed(states: dict[str, EntityState], event: object, wanted: set[str] | None = None) -> list[str]:
    """Apply one ``subscribe_entities`` event to ``states``; the entity ids it touched.  Malformed
    parts are skipped (logged), entities not ``wanted`` are not kept: a hostile server can neither
    crash the agent nor fill its memory."""
    if not isinstance(event, dict):
        raise ValueError(f"event is not an object: {str(event)[:80]}")
    touched: list[str] = []
    for eid, c in (event.get("a") or {}).items():
        if wanted is not None and eid not in wanted:
            continue
        if isinstance(c, dict) and isinstance(c.get("s"), str):
            attrs = c.get("a")
            states[eid] = EntityState(c["s"], dict(attrs) if isinstance(attrs, dict) else {}, _when(c.get("lu", c.get("lc"))))
            touched.append(eid)
    for eid, diff in (event.get("c") or {}).items():
        old = states.get(eid)
        if old is None or not isinstance(diff, dict):
            continue
        plus, minus = diff.get("+"), diff.get("-")
        if isinstance(plus, dict):
            if isinstance(plus.get("s"), str):
                old.state = plus["s"]
            if isinstance(plus.get("a"), dict):
                old.attributes.update(plus["a"])
            old.updated_at = _when(plus.get("lu", plus.get("lc"))) or old.updated_at
        if isinstance(minus, dict) and isinstance(minus.get("a"), list):
            for k in minus["a"]:
                if isinstance(k, str):
                    old.attributes.pop(k, None)
        touched.append(eid)
    for eid in event.get("r") or ():
        if isinstance(eid, str):
            states.pop(eid, None)
            touched.append(eid)
    return touched


class HaWebSocket:
    """One connection at a time to Home Assistant; ``states`` holds the subscribed entities while
    ``connected`` (emptied on every new connection: what Home Assistant no longer has is gone)."""

    def __init__(self, url: str, token: Callable[[], str], entity_ids: list[str], backoff: Backoff,
                 timeout_s: float = 10.0, heartbeat_s: float = 30.0) -> None:
        self.url, self._token, self.entity_ids = url, token, entity_ids
        self._wanted = set(entity_ids)
        self.backoff, self.timeout_s, self.heartbeat_s = backoff, timeout_s, heartbeat_s
        self.states: dict[str, EntityState] = {}
        self.connected = False
        self.connects = 0  # sessions subscribed (tests, logs)
        self.last_error: str | None = None
        self.changed = asyncio.Event()  # replaced after each set: await ``wait_change``
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._next_id = 1
        self._sub_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._rng = random.Random()

    async def wait_change(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.changed.wait()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def run(self) -> None:
        attempt = 0
        # a host that drops the SYN is given up after timeout_s, not aiohttp's default 5 minutes
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout_s, sock_connect=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                auth_refused = False
                try:
                    async with http.ws_connect(self.url, max_msg_size=MAX_MESSAGE_BYTES, autoping=True,
                                               timeout=aiohttp.ClientWSTimeout(ws_close=self.timeout_s)) as ws:
                        await self._session(ws)
                        attempt = 0  # it was up: the next reconnect starts from the first delay
                    self.last_error = "connection closed"
                except AuthRefused as exc:
                    auth_refused, self.last_error = True, str(exc)
                    log.error("Home Assistant %s refused the token: %s (fix home_assistant.api.token)", self.url, exc)
                except (aiohttp.ClientError, OSError, TimeoutError, HaApiError, ValueError, TypeError) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    if _limit.admit(("ws", type(exc).__name__)) is not None:
                        log.warning("Home Assistant %s: %s (reconnecting with backoff)", self.url, self.last_error)
                finally:
                    self._closed()
                delay = self.backoff.max_s if auth_refused else self.backoff.delay(attempt, self._rng)
                attempt += 1
                await asyncio.sleep(delay)

    def _closed(self) -> None:
        self.connected, self._ws = False, None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(HaApiError("connection lost"))
        self._pending.clear()
        self._notify()

    async def _session(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async with asyncio.timeout(self.timeout_s):
            hello = await ws.receive_json()
        if not isinstance(hello, dict) or hello.get("type") != "auth_required":
            raise HaApiError(f"expected auth_required, got {str(hello)[:80]}")
        await ws.send_json({"type": "auth", "access_token": self._token()})
        async with asyncio.timeout(self.timeout_s):
            answer = await ws.receive_json()
        if not isinstance(answer, dict) or answer.get("type") != "auth_ok":
            if isinstance(answer, dict) and answer.get("type") == "auth_invalid":
                raise AuthRefused(str(answer.get("message", "auth_invalid"))[:200])
            raise HaApiError(f"expected auth_ok, got {str(answer)[:80]}")
        self._ws, self._next_id, self.states = ws, 1, {}
        reader = asyncio.create_task(self._read(ws), name="ha-ws-read")
        try:
            self._sub_id = self._next_id  # its first event may come before the caller sees the result
            await self.command({"type": "subscribe_entities", "entity_ids": self.entity_ids})
            self.connected, self.last_error = True, None
            self.connects += 1
            log.info("Home Assistant %s: subscribed to %d entities", self.url, len(self.entity_ids))
            self._notify()
            while not reader.done():
                await asyncio.wait([reader], timeout=self.heartbeat_s)
                if not reader.done():
                    await self.command({"type": "ping"})  # raises after timeout_s: the connection is dead
            reader.result()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def command(self, message: dict[str, Any]) -> Any:
        """Send one command with the next id; its result (HaApiError for an error or no answer)."""
        ws = self._ws
        if ws is None:
            raise HaApiError("not connected to Home Assistant")
        msg_id, self._next_id = self._next_id, self._next_id + 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        try:
            await ws.send_json({"id": msg_id, **message})
            async with asyncio.timeout(self.timeout_s):
                return await fut
        except TimeoutError:
            await ws.close()
            raise HaApiError(f"no answer to {message.get('type')} within {self.timeout_s} s") from None
        finally:
            self._pending.pop(msg_id, None)

    async def call_service(self, domain: str, service: str, entity_id: str) -> None:
        await self.command({"type": "call_service", "domain": domain, "service": service,
                            "target": {"entity_id": entity_id}})

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
                for m in data if isinstance(data, list) else [data]:
                    self._dispatch(m)
            except (ValueError, TypeError, AttributeError) as exc:
                if _limit.admit(("message", type(exc).__name__)) is not None:
                    log.warning("Home Assistant %s: ignored a message: %s", self.url, exc)

    def _dispatch(self, m: Any) -> None:
        if not isinstance(m, dict):
            raise ValueError(f"not an object: {str(m)[:80]}")
        kind, msg_id = m.get("type"), m.get("id")
        if kind == "event" and msg_id == self._sub_id:
            if apply_compressed(self.states, m.get("event"), self._wanted):
                self._notify()
            return
        fut = self._pending.get(msg_id) if isinstance(msg_id, int) else None
        if fut is None or fut.done():
            return
        if kind == "pong":
            fut.set_result(None)
        elif kind == "result" and m.get("success") is True:
            fut.set_result(m.get("result"))
        elif kind == "result":
            err = m.get("error")
            err = err if isinstance(err, dict) else {}
            fut.set_exception(HaApiError(f"{err.get('code', 'error')}: {str(err.get('message', ''))[:200]}"))


__all__ = ["AuthRefused", "EntityState", "HaApiError", "HaWebSocket", "apply_compressed"]
