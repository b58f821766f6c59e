"""Injected time: every component asks a ``Clock`` instead of ``datetime.now``.

The simulator runs a day in seconds with :class:`AcceleratedClock`; tests use
:class:`ManualClock` and never sleep for real time.  All times are
timezone-aware UTC.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol, runtime_checkable

UTC = timezone.utc


def utc(dt: datetime) -> datetime:
    """Return ``dt`` as aware UTC; naive datetimes are refused (ambiguous)."""
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt!r}: all times must be timezone-aware")
    return dt.astimezone(UTC)


@runtime_checkable
class Clock(Protocol):
    """Source of wall time and of waiting in that time."""

    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...

    async def sleep(self, duration_s: float) -> None:
        """Wait ``duration_s`` seconds of *this clock's* time."""
        ...

    @property
    def speed(self) -> float:
        """Clock seconds per real second (1 for wall time)."""
        ...


class SystemClock:
    """Wall time."""

    speed = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, duration_s: float) -> None:
        await asyncio.sleep(max(0.0, duration_s))


class AcceleratedClock:
    """Time that runs ``speed`` times faster than wall time from ``start``.

    Two processes given the same ``start``, ``speed`` and ``anchor_unix_s``
    (the wall instant that maps to ``start``) agree on the time, so an
    aggregator and its agents can run a simulated day together.
    """

    def __init__(self, start: datetime, speed: float, anchor_unix_s: float | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be > 0, got {speed}")
        self._start = utc(start)
        self._speed = float(speed)
        self._anchor = time.time() if anchor_unix_s is None else anchor_unix_s

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def anchor_unix_s(self) -> float:
        return self._anchor

    def now(self) -> datetime:
        elapsed_real = time.time() - self._anchor
        return self._start + timedelta(seconds=elapsed_real * self._speed)

    async def sleep(self, duration_s: float) -> None:
        await asyncio.sleep(max(0.0, duration_s) / self._speed)


class ManualClock:
    """Time that moves only when a test says so; ``sleep`` waits for ``advance``."""

    speed = 1.0

    def __init__(self, start: datetime) -> None:
        self._now = utc(start)
        self._changed = asyncio.Event() if _has_loop() else None

    def now(self) -> datetime:
        return self._now

    def advance(self, duration_s: float) -> None:
        self._now += timedelta(seconds=duration_s)
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def set(self, when: datetime) -> None:
        self._now = utc(when)
        self.advance(0)

    async def sleep(self, duration_s: float) -> None:
        deadline = self._now + timedelta(seconds=duration_s)
        while self._now < deadline:
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
