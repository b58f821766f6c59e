"""HTTP JSON of LAN devices: Shelly Gen2+ RPC (``POST /rpc``), Tasmota (``GET /cm?cmnd=``) and plain JSON
APIs (OpenDTU, APsystems EZ1, Enphase IQ Gateway: :class:`JsonApi`), over aiohttp.

Failures become driver errors (edge_agent.drivers.errors): no answer in time, a refused or
lost connection, a body that is not JSON or too large -> DeviceUnavailable (transient: the
data is stale); 401 -> AuthFailed (configuration); an answer that is an error -> DeviceRefused.
Why not aioshelly (Home Assistant's Shelly library): it speaks RPC over a WebSocket, initialises
with several calls and firmware checks, and pulls the Bluetooth stack (habluetooth, bleak,
zeroconf) into the agent; three HTTP calls do not need it (docs/lan-devices.md).
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import aiohttp

from edge_agent.drivers.errors import AuthFailed, DeviceRefused, DeviceUnavailable

MAX_BODY_BYTES = 256 * 1024  # a status answer is a few kB; more is not a device's answer
SHELLY_USER = "admin"  # Gen2+ digest auth has one user, always "admin"


class HttpJson:
    """One device's HTTP session (opened on first use, closed by :meth:`close`)."""

    def __init__(self, host: str, port: int, timeout_s: float, name: str,
                 middlewares: tuple[aiohttp.DigestAuthMiddleware, ...] = (), *, scheme: str = "http",
                 headers: dict[str, str] | None = None) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        where = f"[{host}]" if ":" in host else host  # IPv6 literal
        self.base = f"{scheme}://{where}:{port}"
        self.timeout_s = timeout_s
        self.name = name
        self._middlewares = middlewares
        self._headers = headers
        # https to a LAN device: its certificate is self-signed (Enphase's IQ Gateway), so not verified
        self._ssl = scheme != "https"
        self._session: aiohttp.ClientSession | None = None

    def _ensure(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # force_close: devices serve few connections; a kept-alive one may be dropped between polls
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s), middlewares=self._middlewares,
                headers=self._headers,
                connector=aiohttp.TCPConnector(force_close=True, limit=1, ssl=self._ssl))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, what: str, method: str, path: str, *, params: dict[str, str] | None = None,
                      body: Any = None, form: dict[str, str] | None = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON); DeviceUnavailable / AuthFailed as the module doc says."""
        session = self._ensure()
        try:
            async with session.request(method, self.base + path, params=params, json=body, data=form) as resp:
                raw = await _read_limited(resp)
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DeviceUnavailable(f"{what}: no answer ({type(exc).__name__}: {exc})", device=self.name) from exc
        if status == 401:
            raise AuthFailed(f"{what}: HTTP 401, credentials missing or wrong", device=self.name)
        try:
            return status, json.loads(raw)
        except (ValueError, RecursionError) as exc:  # also UnicodeDecodeError, ints beyond 4300 digits
            raise DeviceUnavailable(f"{what}: HTTP {status}, not JSON ({exc})", device=self.name) from exc


async def _read_limited(resp: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise aiohttp.ClientPayloadError(f"body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class ShellyRpc(HttpJson):
    """Shelly Gen2+ RPC over HTTP: one JSON-RPC 2.0 frame per ``POST /rpc``; digest auth (SHA-256,
    user ``admin``) when a password is given."""

    def __init__(self, host: str, port: int, timeout_s: float, name: str, password: str | None = None) -> None:
        auth = (aiohttp.DigestAuthMiddleware(SHELLY_USER, password),) if password else ()
        super().__init__(host, port, timeout_s, name, auth)
        self._ids = itertools.count(1)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """The call's ``result``; DeviceRefused with the device's error code and message."""
        frame: dict[str, Any] = {"id": next(self._ids), "method": method}
        if params:
            frame["params"] = params
        status, answer = await self.request(method, "POST", "/rpc", body=frame)
        if not isinstance(answer, dict):
            raise DeviceUnavailable(f"{method}: HTTP {status}, answer is not a JSON object", device=self.name)
        error = answer.get("error", answer if status != 200 else None)
        if isinstance(error, dict):
            code = error.get("code")
            raise DeviceRefused(f"{method}: {str(error.get('message'))[:200]}",
                                code=code if isinstance(code, int) and not isinstance(code, bool) else None,
                                device=self.name)
        if status != 200 or "result" not in answer:
            raise DeviceUnavailable(f"{method}: HTTP {status} without a result", device=self.name)
        return answer["result"]


class TasmotaHttp(HttpJson):
    """Tasmota's web commands: ``GET /cm?cmnd=<command>`` (``user``/``password`` when the web
    admin password is set)."""

    def __init__(self, host: str, port: int, timeout_s: float, name: str, username: str | None = None,
                 password: str | None = None) -> None:
        super().__init__(host, port, timeout_s, name)
        self._auth = {"user": username or "admin", "password": password} if password else {}

    async def command(self, cmnd: str) -> Any:
        """The command's JSON answer; DeviceRefused if Tasmota does not know the command."""
        status, answer = await self.request(cmnd, "GET", "/cm", params={**self._auth, "cmnd": cmnd})
        if status != 200:
            raise DeviceUnavailable(f"{cmnd}: HTTP {status}", device=self.name)
        if isinstance(answer, dict) and answer.get("Command") == "Unknown":
            raise DeviceRefused(f"{cmnd}: unknown command", device=self.name)
        return answer


class JsonApi(HttpJson):
    """A device's JSON documents by path (``GET``, or ``POST`` of a form), with basic auth (user
    ``admin``) or a bearer token; ``ok_path``/``ok_value``: the field every answer carries with that
    value when the device did what was asked (APsystems: ``message`` ``SUCCESS``)."""

    def __init__(self, host: str, port: int, timeout_s: float, name: str, *, scheme: str = "http",
                 password: str | None = None, token: str | None = None) -> None:
        basic = base64.b64encode(f"admin:{password}".encode()).decode() if password else None
        super().__init__(host, port, timeout_s, name, scheme=scheme,
                         headers={"Authorization": f"Bearer {token}"} if token else
                         {"Authorization": f"Basic {basic}"} if basic else None)

    async def fetch(self, path: str, *, method: str = "GET", form: dict[str, str] | None = None,
                    ok: tuple[str, str] | None = None) -> Any:
        """The answer; DeviceRefused for an error status or an answer without ``ok``."""
        status, answer = await self.request(path, method, path, form=form or None)
        if status != 200:
            raise DeviceRefused(f"{method} {path}: HTTP {status}", code=status, device=self.name)
        if ok is not None:
            field, expected = ok
            got = answer.get(field) if isinstance(answer, dict) else None
            if got != expected:
                message = answer.get("message") if isinstance(answer, dict) else None
                raise DeviceRefused(f"{method} {path}: {field} is {str(got)[:40]!r}, not {expected!r}"
                                    + (f" ({str(message)[:120]})" if message and field != "message" else ""),
                                    device=self.name)
        return answer


__all__ = ["MAX_BODY_BYTES", "HttpJson", "JsonApi", "ShellyRpc", "TasmotaHttp"]
