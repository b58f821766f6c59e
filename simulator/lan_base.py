"""What the LAN device simulators share (Shelly, Tasmota, P1): a listener that a ``disconnect``
fault takes down and brings back on the same port, and the Modbus simulators' faults
(:class:`~simulator.hybrid_device.Faults`, the same specs and control channel:
simulator/fault_control.py) applied to each request.

Meaning per fault here: ``timeout`` holds requests unanswered (P1: no telegrams); ``exception``
answers with the device's error (Shelly: an RPC error object, Tasmota: HTTP 500, P1: a telegram
with a wrong CRC); ``implausible`` serves absurd values (1e9 W); ``slow:S`` delays each answer;
``disconnect`` closes the listener and its connections; ``frozen``/``stale`` stops the values
(powers and counters) from changing.  Reboot, revert and another master are Modbus matters:
NotImplementedError.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from simulator.hybrid_device import FaultInjection, Faults

IMPLAUSIBLE_W = 1e9


class Listener:
    """An asyncio TCP server (``make`` builds it for host, port) that can be dropped and restored."""

    def __init__(self, make: Callable[[str, int], Awaitable[asyncio.Server]], host: str, port: int,
                 close_clients: Callable[[], None]) -> None:
        self._make = make
        self._close_clients = close_clients  # asyncio.Server.close_clients is Python 3.13
        self.host, self.port = host, port
        self.down = False
        self._server: asyncio.Server | None = None
        self._relisten: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._server = await self._make(self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def drop(self) -> None:
        if self.down:
            return
        self.down = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self._close_clients()

    def restore(self) -> None:
        if not self.down:
            return
        self.down = False
        self._relisten = asyncio.get_running_loop().create_task(self.start(), name=f"lan-sim-relisten-{self.port}")

    async def wait_listening(self) -> None:
        if self._relisten is not None:
            await asyncio.shield(self._relisten)

    async def stop(self) -> None:
        task, self._relisten = self._relisten, None
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        server, self._server = self._server, None
        self._close_clients()
        if server is not None:
            server.close()
            await server.wait_closed()


class LanFaults(FaultInjection):
    """Faults of one LAN simulator, and its values' clock (real monotonic seconds: no physics here).

    Tests set ``overrides`` (field -> raw value, e.g. ``{"apower": float("nan")}``) to serve
    hostile values in place of the simulated ones.
    """

    listener: Listener | None = None

    def _init_lan(self) -> None:
        self._init_faults()
        self._server = None  # the Modbus server slot of FaultInjection: unused here
        self.overrides: dict[str, Any] = {}
        self._frozen_at: float | None = None
        self._last_answers: dict[str, Any] = {}
        self.bind: tuple[str, int] = ("127.0.0.1", 0)  # where start() listens unless told (port 0: a free one)

    async def _listen(self, make: Callable[[str, int], Awaitable[asyncio.Server]], host: str | None,
                      port: int | None, close_clients: Callable[[], None]) -> int:
        """Listen with ``make`` (default: ``bind``), down from the start under a disconnect fault; the port."""
        self.listener = Listener(make, host or self.bind[0], self.bind[1] if port is None else port, close_clients)
        if self._faults.disconnect:
            self.listener.down = True
        else:
            await self.listener.start()
        return self.listener.port

    @property
    def port(self) -> int:
        assert self.listener is not None, "not started"
        return self.listener.port

    @property  # type: ignore[override]  # same property, a different listener behind it
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        if faults.scale_factors:
            raise NotImplementedError(f"{type(self).__name__} has no scale factors")
        if faults.reboot_every_s is not None:
            raise NotImplementedError(f"{type(self).__name__} does not simulate a reboot")
        if faults.revert_every_s is not None or faults.other_master_every_s is not None:
            raise NotImplementedError(f"{type(self).__name__} has no revert timers and no other Modbus master")
        self._faults = faults
        if self.listener is not None:
            self.listener.drop() if faults.disconnect else self.listener.restore()
        self._frozen_at = (self._frozen_at or time.monotonic()) if faults.frozen else None
        self._signal_faults_changed()

    def now_s(self) -> float:
        """Monotonic seconds for the counters (stand still while frozen)."""
        return self._frozen_at if self._frozen_at is not None else time.monotonic()

    async def hold(self) -> bool:
        """Apply slow and timeout to one request; True if it is to be answered with the device's error."""
        if self._faults.slow_s > 0:
            await asyncio.sleep(self._faults.slow_s)
        while self._faults.timeout and self.listener is not None:
            await self._faults_changed.wait()
        return self._faults.exception_code is not None

    def served(self, key: str, make: Callable[[], Any]) -> Any:
        """A status answer: while ``frozen`` the last one served again (values, counters, times)."""
        if self._faults.frozen and key in self._last_answers:
            return self._last_answers[key]
        answer = self._last_answers[key] = make()
        return answer

    def value(self, key: str, simulated: Any) -> Any:
        """The raw value to serve: an override, the implausible one, or the simulated one."""
        if key in self.overrides:
            return self.overrides[key]
        if self._faults.implausible and isinstance(simulated, float):
            return IMPLAUSIBLE_W
        return simulated

    async def _stop_listener(self) -> None:
        listener, self.listener = self.listener, None
        self._signal_faults_changed()  # releases held requests
        if listener is not None:
            await listener.stop()




class HttpSim(LanFaults):
    """An HTTP device simulator on aiohttp's low-level server (so a ``disconnect`` can drop it)."""

    def __init__(self) -> None:
        self._init_lan()
        self._web: web.Server | None = None
        self.ssl_context: ssl.SSLContext | None = None  # set before start(): serve https

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        """Listen (default: ``bind``); the bound port."""
        self._web = web.Server(self._handle)

        async def make(h: str, p: int) -> asyncio.Server:
            assert self._web is not None
            return await asyncio.get_running_loop().create_server(self._web, h, p, ssl=self.ssl_context)

        def close_clients() -> None:
            if self._web is not None:
                for conn in self._web.connections:
                    conn.force_close()

        return await self._listen(make, host, port, close_clients)

    async def stop(self) -> None:
        await self._stop_listener()
        if self._web is not None:
            await self._web.shutdown(0.1)
            self._web = None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        raise NotImplementedError


def json_response(body: Any, status: int = 200) -> web.Response:
    """JSON as devices write it: NaN and Infinity stay as the bare tokens a buggy firmware sends."""
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


__all__ = ["IMPLAUSIBLE_W", "HttpSim", "LanFaults", "Listener", "json_response"]
