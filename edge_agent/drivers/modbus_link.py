"""One Modbus TCP connection of a driver, and its requests' failures as driver errors.

Shared by the SunSpec and the catalogue drivers; each serialises its own requests (one at a
time, as many devices require) and calls :meth:`ModbusLink.request` under its lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Self

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from edge_agent.drivers.errors import DeviceRejected, DeviceUnavailable


class ModbusLink:
    def __init__(self, host: str, port: int, timeout_s: float, name: str) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.host, self.port, self.timeout_s, self.name = host, port, timeout_s, name
        self._client: AsyncModbusTcpClient | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def ensure(self) -> AsyncModbusTcpClient:
        """The open connection (opened now if needed); DeviceUnavailable if it cannot be."""
        if self._client is None:
            # reconnect_delay=0: pymodbus must not reconnect in a background task; the next
            # request reconnects.  retries=0: the caller owns the retry policy (backoff, staleness).
            self._client = AsyncModbusTcpClient(self.host, port=self.port, timeout=self.timeout_s, retries=0,
                                                reconnect_delay=0, name=self.name)
        if not self._client.connected and not await self._client.connect():
            raise DeviceUnavailable("cannot connect", device=self.name)
        return self._client

    def drop(self) -> None:
        """Close the connection; the next request reconnects."""
        if self._client is not None:
            self._client.close()

    async def request(self, what: str, address: int,
                      call: Callable[[AsyncModbusTcpClient], Awaitable[Any]]) -> Any:
        """Run one request: a lost connection or no valid answer is DeviceUnavailable (and the
        connection is dropped, so a late answer is never read as the next request's); an
        exception response is DeviceRejected."""
        client = await self.ensure()
        try:
            rr = await call(client)
        except asyncio.CancelledError:
            self.drop()
            raise
        except ConnectionException as exc:
            self.drop()
            raise DeviceUnavailable(f"{what} at {address}: connection lost ({exc})", device=self.name) from exc
        except (TimeoutError, ModbusException, OSError) as exc:  # ModbusIOException: pymodbus' timeout
            self.drop()
            raise DeviceUnavailable(f"{what} at {address}: no valid answer ({exc})", device=self.name) from exc
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0) or 0)
            raise DeviceRejected(f"{what} at {address} refused", exception_code=code,
                                 function_code=int(rr.function_code), address=address, device=self.name)
        return rr


class LinkedDevice:
    """What a driver over one :class:`ModbusLink` shares: connect, close, ``async with``, and
    one request at a time (each driver takes ``_lock`` around what must not interleave)."""

    _link: ModbusLink
    _lock: asyncio.Lock

    async def connect(self) -> None:
        """Open the connection now (otherwise the first call does). DeviceUnavailable if it fails."""
        async with self._lock:
            await self._link.ensure()

    async def close(self) -> None:
        """Close the connection; a later call reconnects."""
        async with self._lock:
            self._link.drop()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _request(self, what: str, address: int,
                       call: Callable[[AsyncModbusTcpClient], Awaitable[Any]]) -> Any:
        return await self._link.request(what, address, call)
