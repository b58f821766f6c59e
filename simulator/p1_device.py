"""A DSMR 5 smart meter's P1 port behind a P1-to-TCP bridge: one telegram every ``interval_s`` on the
meter's own beat (a new connection waits for the next one, as with a real meter).

As the DSMR 5.0.2 P1 Companion Standard (Netbeheer Nederland) describes it: a header line
``/XXX5<id>``, an empty line, COSEM lines ``OBIS(value*unit)``, and ``!`` followed by the CRC16
(polynomial 0xA001, reflected, initial 0; over everything from ``/`` to ``!`` inclusive) as
four upper-case hex digits.  Power in kW with three decimals (1-0:1.7.0 delivered to the
house, 1-0:2.7.0 returned), energy in kWh per tariff (1-0:1.8.1/2, 1-0:2.8.1/2), the timestamp
0-0:1.0.0 as YYMMDDhhmmssX (X: S summer, W winter).

Faults (simulator/lan_base.py): ``exception`` sends telegrams with a wrong CRC, ``implausible``
a power of 99999.999 kW; ``overrides`` (OBIS code -> raw value text, e.g. ``{"1-0:1.7.0":
"NaN*kW"}``) put hostile text into a line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

from simulator.lan_base import LanFaults


def crc16(data: bytes) -> int:
    """CRC16/ARC as DSMR 5 uses it."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class P1Sim(LanFaults):
    """A meter at the connection point: ``power_w`` (import > 0, export < 0); counters integrate."""

    def __init__(self, *, power_w: float = 800.0, interval_s: float = 1.0) -> None:
        self._init_lan()
        self.power_w = power_w
        self.interval_s = interval_s
        self.import_kwh = [1234.567, 2345.678]
        self.export_kwh = [123.456, 234.567]
        self._last_s = self.now_s()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.telegrams_sent = 0
        self._started_s = time.monotonic()

    def _advance(self) -> None:
        now = self.now_s()
        kwh = self.power_w * max(0.0, now - self._last_s) / 3_600_000.0
        self._last_s = now
        if kwh >= 0:
            self.import_kwh[1] += kwh
        else:
            self.export_kwh[1] -= kwh

    def telegram(self, at: datetime | None = None) -> bytes:
        """The next telegram (CRC wrong while the ``exception`` fault is set)."""
        fields = self.served("fields", lambda: self._fields(at or datetime.now(UTC)))
        lines = ["/ISK5\\2M550T-1012", ""] + [f"{code}({self.overrides.get(code, value)})" for code, value in fields]
        body = ("\r\n".join(lines) + "\r\n!").encode("ascii")
        crc = crc16(body) ^ (0xFFFF if self._faults.exception_code is not None else 0)
        return body + f"{crc:04X}\r\n".encode("ascii")

    def _fields(self, at: datetime) -> list[tuple[str, str]]:
        self._advance()
        imp = max(self.power_w, 0.0) / 1000.0
        exp = max(-self.power_w, 0.0) / 1000.0
        if self._faults.implausible:
            imp = 99999.999
        return [
            ("1-3:0.2.8", "50"), ("0-0:1.0.0", at.strftime("%y%m%d%H%M%S") + "W"),
            ("0-0:96.1.1", "4530303434303037313331363530363138"),
            ("1-0:1.8.1", f"{self.import_kwh[0]:010.3f}*kWh"), ("1-0:1.8.2", f"{self.import_kwh[1]:010.3f}*kWh"),
            ("1-0:2.8.1", f"{self.export_kwh[0]:010.3f}*kWh"), ("1-0:2.8.2", f"{self.export_kwh[1]:010.3f}*kWh"),
            ("0-0:96.14.0", "0002"), ("1-0:1.7.0", f"{imp:06.3f}*kW"), ("1-0:2.7.0", f"{exp:06.3f}*kW"),
            ("0-0:96.7.21", "00010"), ("0-0:96.7.9", "00002"), ("1-0:32.32.0", "00000"),
            ("1-0:32.36.0", "00000"), ("0-0:96.13.0", ""), ("1-0:32.7.0", "230.1*V"),
            ("1-0:31.7.0", f"{round(abs(self.power_w) / 230):03d}*A"),
            ("1-0:21.7.0", f"{imp:06.3f}*kW"), ("1-0:22.7.0", f"{exp:06.3f}*kW"),
        ]

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        async def make(h: str, p: int) -> asyncio.Server:
            return await asyncio.start_server(self._connection, h, p)

        def close_clients() -> None:
            for w in list(self._writers):
                w.close()

        return await self._listen(make, host, port, close_clients)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            while not writer.is_closing():
                # the meter sends on its own beat, not when someone connects: wait for the next one
                await asyncio.sleep(self.interval_s - (time.monotonic() - self._started_s) % self.interval_s)
                await self.hold()
                if self.listener is None or writer.is_closing():
                    break
                writer.write(self.telegram())
                await writer.drain()
                self.telegrams_sent += 1
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass  # stop(): this connection's task ends here (asyncio's server callback must not see it raise)
        finally:
            self._writers.discard(writer)
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def stop(self) -> None:
        await self._stop_listener()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)


__all__ = ["P1Sim", "crc16"]
