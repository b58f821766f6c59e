"""Injected time: every component asks a ``Clock`` instead of ``datetime.now``.

The simulator runs a day in seconds with :class:`AcceleratedClock`; tests use
:class:`ManualClock` and never sleep for real time.  All times are
timezone-aware UTC.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

UTC = UTC


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

    ``hold_before_anchor``: before the anchor the clock stands still at
    ``start`` (processes can start up and connect "at" the start), and
    :meth:`sleep` waits until the clock has really advanced by the duration.
    """

    def __init__(self, start: datetime, speed: float, anchor_unix_s: float | None = None,
                 hold_before_anchor: bool = False) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be > 0, got {speed}")
        self._start = utc(start)
        self._speed = float(speed)
        self._anchor = time.time() if anchor_unix_s is None else anchor_unix_s
        self._hold = hold_before_anchor

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def anchor_unix_s(self) -> float:
        return self._anchor

    @property
    def hold_before_anchor(self) -> bool:
        return self._hold

    def now(self) -> datetime:
        elapsed_real = time.time() - self._anchor
        if self._hold:
            elapsed_real = max(0.0, elapsed_real)
        return self._start + timedelta(seconds=elapsed_real * self._speed)

    async def sleep(self, duration_s: float) -> None:
        if self._hold:  # until the clock reads now + duration (the anchor may lie ahead)
            wake = max(time.time(), self._anchor) + max(0.0, duration_s) / self._speed
            await asyncio.sleep(max(0.0, wake - time.time()))
            return
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


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait for ``event`` up to ``timeout_s`` real seconds; True if it was set.

    Not ``asyncio.wait_for``: on Python 3.11 it can swallow a cancellation that
    arrives just as the event is set, leaving a task that never stops.  A task whose
    cancellation a library lost that way still counts it (``Task.cancelling()``), and
    ``asyncio.timeout`` then takes its own expiry for a cancellation already handled and
    raises TimeoutError: so a timeout in a task with a cancellation requested raises
    CancelledError (docs/cancellation.md).
    """
    try:
        async with asyncio.timeout(max(0.0, timeout_s)):
            await event.wait()
    except TimeoutError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from None
        return False
    return True


def _cancelled_since(task: asyncio.Task[object] | None, cancels: int) -> bool:
    return task is not None and task.cancelling() > cancels


@contextmanager
def cancellation_kept() -> Iterator[None]:
    """Raise CancelledError after the body if the task was cancelled while it ran and the
    body returned (or raised something else) all the same.

    Python 3.11's ``asyncio.wait_for`` returns its inner result when a cancellation arrives
    after the inner awaitable finished but before wait_for resumed: the cancellation is lost
    (fixed in 3.12).  redis-py wraps every command's write in it, so a task cancelled once
    (an ``asyncio.TaskGroup`` cancels its children once only) ran on for ever
    (docs/cancellation.md).  A cancellation someone handled is uncancelled (asyncio.timeout,
    TaskGroup), so only a lost one leaves the count above what it was.
    """
    task = asyncio.current_task()
    cancels = task.cancelling() if task is not None else 0
    try:
        yield
    except Exception as exc:
        if _cancelled_since(task, cancels):
            raise asyncio.CancelledError from exc
        raise
    if _cancelled_since(task, cancels):
        raise asyncio.CancelledError


async def cancel_and_wait(tasks: list[asyncio.Task[None]], timeout_s: float = 5.0) -> None:
    """Cancel ``tasks`` and wait until they are done, cancelling again if needed.

    On Python 3.11 ``asyncio.wait_for`` (used inside libraries such as pymodbus and
    redis-py) can swallow a cancellation that races with its inner result, so one
    ``cancel()`` is not always enough.  Cancelling again does not reach the children of an
    ``asyncio.TaskGroup`` in a task: the group cancels them once and absorbs the rest
    (docs/cancellation.md).
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise RuntimeError(f"tasks did not stop within {timeout_s} s: {[t.get_name() for t in pending]}")
        _, pending = await asyncio.wait(pending, timeout=min(0.1, left))
    for t in tasks:  # surface real failures (not cancellation) of the stopped tasks
        if not t.cancelled() and t.exception() is not None:
            logging.getLogger(__name__).warning("task %s had failed: %r", t.get_name(), t.exception())


def log_if_it_fails(task: asyncio.Task[None]) -> asyncio.Task[None]:
    """Log ``task``'s exception as soon as it ends with one: a background task (a replica's
    planner) that dies is otherwise seen only when it is awaited at shutdown."""
    def done(t: asyncio.Task[None]) -> None:
        if not t.cancelled() and (exc := t.exception()) is not None:
            logging.getLogger(__name__).error("task %s failed", t.get_name(), exc_info=exc)

    task.add_done_callback(done)
    return task


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def add_clock_arguments(parser: object) -> None:
    """``--clock-start/--clock-speed/--clock-anchor``: run on an :class:`AcceleratedClock`
    (a simulation: processes given the same three values agree on the time)."""
    add = parser.add_argument  # type: ignore[attr-defined]
    add("--clock-start", help="accelerated clock: simulated start time, ISO 8601 with offset "
                              "(e.g. 2026-06-21T08:00:00+00:00); default: the system clock")
    add("--clock-speed", type=float, default=None, help="accelerated clock: simulated seconds per real second")
    add("--clock-anchor", type=float, default=None,
        help="accelerated clock: the Unix time (real) that maps to --clock-start; default: now")
    add("--clock-hold", action="store_true",
        help="accelerated clock: stand at --clock-start until the anchor (start up before the simulation)")


def clock_from_arguments(start: str | None, speed: float | None, anchor: float | None,
                         hold: bool = False) -> Clock:
    """The clock the flags of :func:`add_clock_arguments` describe (the system clock without them).

    Raises ValueError for a start without an offset, a speed without a start, or a speed <= 0.
    """
    if start is None:
        if speed is not None or anchor is not None or hold:
            raise ValueError("--clock-speed/--clock-anchor/--clock-hold need --clock-start")
        return SystemClock()
    at = datetime.fromisoformat(start)
    return AcceleratedClock(utc(at), 1.0 if speed is None else speed, anchor, hold_before_anchor=hold)
