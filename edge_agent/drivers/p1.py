"""DSMR P1 telegrams over TCP (a P1-to-TCP bridge in front of the meter), parsed with dsmr-parser.

A read connects, takes the next complete telegram (``/`` header line to the ``!CRC`` line) and
closes: the meter sends one a second (DSMR 5), so the value is never older than a second and no
buffered backlog is ever read as current.  The CRC16 is checked; a bad CRC, a telegram cut off,
too long, or nothing within the timeout -> DeviceUnavailable (the data is stale, never 0).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dsmr_parser import telegram_specifications
from dsmr_parser.exceptions import InvalidChecksumError, ParseError
from dsmr_parser.parsers import TelegramParser

from edge_agent.drivers.errors import DeviceUnavailable

MAX_TELEGRAM_BYTES = 16 * 1024  # DSMR 5 telegrams are about 1 kB; a stream without "!" is not P1
_PARSER = TelegramParser(telegram_specifications.V5)

logging.getLogger("dsmr_parser").setLevel(logging.CRITICAL)  # its per-line errors; ours say more


async def read_telegram(host: str, port: int, timeout_s: float, name: str) -> str:
    """The next complete telegram's text; DeviceUnavailable if none arrives in ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _next_telegram(host, port)
    except TimeoutError as exc:
        raise DeviceUnavailable(f"no complete P1 telegram within {timeout_s} s", device=name) from exc
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise DeviceUnavailable(f"P1 stream: {type(exc).__name__}: {exc}", device=name) from exc


async def _next_telegram(host: str, port: int) -> str:
    reader, writer = await asyncio.open_connection(host, port, limit=MAX_TELEGRAM_BYTES)
    try:
        lines: list[bytes] | None = None
        size = 0
        while True:
            line = await reader.readuntil(b"\n")
            if line.startswith(b"/"):
                lines, size = [], 0  # a header starts a telegram (what came before was a partial one)
            if lines is None:
                continue
            lines.append(line)
            size += len(line)
            if size > MAX_TELEGRAM_BYTES:
                raise ValueError(f"telegram longer than {MAX_TELEGRAM_BYTES} bytes")
            if line.startswith(b"!"):
                return b"".join(lines).decode("ascii")
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


def parse_telegram(text: str, name: str) -> dict[str, Any]:
    """Objects by dsmr-parser name -> ``{"value": Decimal, str or datetime as parsed, "unit": str | None}``.
    DeviceUnavailable for a bad CRC or a telegram dsmr-parser cannot read."""
    try:
        telegram = _PARSER.parse(text, throw_ex=True)
    except InvalidChecksumError as exc:
        raise DeviceUnavailable(f"P1 telegram with a bad CRC: {exc}", device=name) from exc
    except (ParseError, ValueError, ArithmeticError) as exc:
        raise DeviceUnavailable(f"P1 telegram not readable: {exc}", device=name) from exc
    out: dict[str, Any] = {}
    for obis_name in _PARSER.telegram_specification["objects"]:
        obj = getattr(telegram, obis_name["value_name"], None)
        if obj is not None and not isinstance(obj, list):
            try:
                out[obis_name["value_name"]] = {"value": obj.value, "unit": obj.unit}
            except (IndexError, KeyError, TypeError):
                continue
    return out


__all__ = ["MAX_TELEGRAM_BYTES", "parse_telegram", "read_telegram"]
