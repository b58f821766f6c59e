"""A small fake of Home Assistant's WebSocket API (``/api/websocket``), following its protocol:
``auth_required`` / ``auth`` / ``auth_ok`` or ``auth_invalid``, commands with ids that must grow,
``subscribe_entities`` (compressed states: ``a`` added, ``c`` changed with ``+``/``-``, ``r``
removed), ``call_service`` for ``switch`` and ``input_boolean`` ``turn_on``/``turn_off`` (the
entity's state follows unless it is ``stuck``), ``ping``/``pong``.  It can stop and start again on
the same port (a restart)."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import WSMsgType, web

from tests.conftest import free_port


class FakeHomeAssistant:
    def __init__(self, token: str = "good-token") -> None:
        self.token = token
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/api/websocket"
        self.states: dict[str, dict[str, Any]] = {}  # entity_id -> {"s":..., "a":..., "lu":...}
        self.stuck: set[str] = set()  # switches that do not follow a service call
        self.service_calls: list[dict[str, Any]] = []
        self.ids_seen: list[int] = []
        self.auth_failures = 0
        self.pings = 0
        self.hello: str | None = None  # a broken handshake: "garbage", "binary", "close", "wrong_type"
        self.handshakes = 0
        self.answer_pings = True  # False: a hung server (the client must give up and reconnect)
        self.sessions = 0
        self._subs: list[tuple[web.WebSocketResponse, int, set[str]]] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/websocket", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        for ws, _, _ in list(self._subs):
            await ws.close()
        self._subs.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def set_state(self, entity_id: str, state: str, unit: str | None = None, **attrs: Any) -> None:
        """Set an entity's state and push the change to the subscribers (as Home Assistant does)."""
        a = dict(attrs)
        if unit is not None:
            a["unit_of_measurement"] = unit
        new = entity_id not in self.states
        old_attrs = self.states.get(entity_id, {}).get("a", {})
        self.states[entity_id] = {"s": state, "a": {**old_attrs, **a}, "lu": time.time()}
        for ws, sub_id, wanted in list(self._subs):
            if entity_id in wanted:
                event = ({"a": {entity_id: self.states[entity_id]}} if new else
                         {"c": {entity_id: {"+": {"s": state, "a": a, "lu": self.states[entity_id]["lu"]}}}})
                await ws.send_json({"id": sub_id, "type": "event", "event": event})

    async def send_raw(self, text: str) -> None:
        for ws, _, _ in list(self._subs):
            await ws.send_str(text)

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.handshakes += 1
        if self.hello is not None:
            await {"garbage": lambda: ws.send_str("nonsense{"), "binary": lambda: ws.send_bytes(b"\x00\xff"),
                   "close": ws.close, "wrong_type": lambda: ws.send_json(["auth_required"])}[self.hello]()
            await ws.close()
            return ws
        await ws.send_json({"type": "auth_required", "ha_version": "2024.3.3"})
        auth = await ws.receive_json()
        if auth.get("type") != "auth" or auth.get("access_token") != self.token:
            self.auth_failures += 1
            await ws.send_json({"type": "auth_invalid", "message": "Invalid access token or password"})
            await ws.close()
            return ws
        await ws.send_json({"type": "auth_ok", "ha_version": "2024.3.3"})
        self.sessions += 1
        last_id = 0
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            m = json.loads(msg.data)
            msg_id = m.get("id")
            self.ids_seen.append(msg_id)
            if not isinstance(msg_id, int) or msg_id <= last_id:  # as Home Assistant: ids must grow
                await ws.send_json({"id": msg_id, "type": "result", "success": False,
                                    "error": {"code": "id_reuse", "message": "Identifier values have to increase."}})
                continue
            last_id = msg_id
            await self._command(ws, msg_id, m)
        self._subs = [s for s in self._subs if s[0] is not ws]
        return ws

    async def _command(self, ws: web.WebSocketResponse, msg_id: int, m: dict[str, Any]) -> None:
        kind = m.get("type")
        if kind == "ping":
            self.pings += 1
            if self.answer_pings:
                await ws.send_json({"id": msg_id, "type": "pong"})
        elif kind == "subscribe_entities":
            wanted = set(m.get("entity_ids") or self.states)
            self._subs.append((ws, msg_id, wanted))
            await ws.send_json({"id": msg_id, "type": "result", "success": True, "result": None})
            await ws.send_json({"id": msg_id, "type": "event", "event": {
                "a": {e: s for e, s in self.states.items() if e in wanted}}})
        elif kind == "call_service":
            self.service_calls.append(m)
            eid = m.get("target", {}).get("entity_id")
            if m.get("domain") not in ("switch", "input_boolean") or eid not in self.states:
                await ws.send_json({"id": msg_id, "type": "result", "success": False,
                                    "error": {"code": "not_found", "message": f"Entity {eid} not found"}})
                return
            await ws.send_json({"id": msg_id, "type": "result", "success": True,
                                "result": {"context": {"id": "x"}}})
            if eid not in self.stuck:
                await self.set_state(eid, "on" if m.get("service") == "turn_on" else "off")
        else:
            await ws.send_json({"id": msg_id, "type": "result", "success": False,
                                "error": {"code": "unknown_command", "message": "Unknown command."}})
