"""When the planner plans: every ``cycle_s`` clock seconds (optionally aligned to the clock),
and, debounced, when houses ask for a re-plan (connect, new flexibility) or operators change
fleet events.  Times are monotonic seconds; the clock may run faster than real time
(``Clock.speed``) or stand still before its start (a held clock)."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from aggregator.config import PlanningConfig
from vpp_common.clock import Clock, wait_event


def next_aligned_epoch_s(epoch_s: float, cycle_s: float, offset_s: float) -> float:
    """The first clock time after ``epoch_s`` that is a multiple of ``cycle_s`` plus ``offset_s``."""
    return (math.floor((epoch_s - offset_s) / cycle_s) + 1) * cycle_s + offset_s


@dataclass(frozen=True)
class Due:
    """What a wake-up asks to plan: ``houses`` None is the periodic cycle of the whole fleet;
    ``fleet`` is an operator's request to re-plan the fleet (fleet events changed)."""

    houses: set[str] | None
    fleet: bool = False


class CycleSchedule:
    def __init__(self, clock: Clock, config: PlanningConfig) -> None:
        self._clock = clock
        self._cfg = config
        self.pending: set[str] = set()
        self.fleet_pending = False
        self.wake = asyncio.Event()
        self._cycle_target: float | None = None  # clock epoch s of the next aligned cycle
        self._next = time.monotonic()

    def request(self, house_id: str) -> None:
        """Ask for a re-plan of ``house_id`` soon (debounced); ignored with ``replan_on_update`` off."""
        if not self._cfg.replan_on_update:
            return
        self.pending.add(house_id)
        self.wake.set()

    def request_fleet(self) -> None:
        """Ask for a re-plan of the whole fleet soon (fleet events changed); not subject to
        ``replan_on_update``: it is an operator's action."""
        self.fleet_pending = True
        self.wake.set()

    def next_cycle(self) -> float:
        """Monotonic time of the next full cycle: ``cycle_s`` clock seconds from now, or, with
        ``cycle_align``, the next clock time that is a multiple of ``cycle_s`` (+ offset)."""
        cfg = self._cfg
        if not cfg.cycle_align:
            return time.monotonic() + cfg.cycle_s / self._clock.speed
        epoch = self._clock.now().timestamp()
        self._cycle_target = next_aligned_epoch_s(epoch, cfg.cycle_s, cfg.cycle_offset_s)
        return time.monotonic() + (self._cycle_target - epoch) / self._clock.speed

    def cycle_not_yet(self) -> float | None:
        """With ``cycle_align``: if the clock has not reached the cycle's time yet (a clock that
        stands still before its start), the new monotonic deadline; else None."""
        left = None if self._cycle_target is None else self._cycle_target - self._clock.now().timestamp()
        return None if left is None or left <= 0 else time.monotonic() + left / self._clock.speed

    def start(self) -> None:
        """Fix the first cycle's time: aligned, or at once."""
        self._next = self.next_cycle() if self._cfg.cycle_align else time.monotonic()

    async def next_due(self) -> Due | None:
        """Wait for the next cycle or for requests (collecting a burst of them into one cycle);
        what is due, or None if nothing is (the clock has not reached the cycle's time)."""
        timeout = max(0.0, self._next - time.monotonic())
        if await wait_event(self.wake, timeout):
            await asyncio.sleep(self._cfg.debounce_s)  # collect a burst of requests into one cycle
        self.wake.clear()
        if time.monotonic() >= self._next and (later := self.cycle_not_yet()) is not None:
            self._next = later
            return None
        if time.monotonic() >= self._next:
            self._next = self.next_cycle()
            self.fleet_pending = False
            return Due(None)
        houses, self.pending = self.pending, set()
        fleet, self.fleet_pending = self.fleet_pending, False
        return Due(houses, fleet)


class LoopShare:
    """Lets a long loop on the event loop (a cycle's thousands of houses) give the loop back
    every ``every_s`` of its own work, rather than after each house: each turn waits for a
    whole pass of the loop (every stream's ready work), and one house per pass made writing
    10,000 plans take ~20 s at 10,000 streams (docs/performance.md, Streams)."""

    def __init__(self, every_s: float = 0.002) -> None:
        self._every_s = every_s
        self._since = time.perf_counter()

    async def turn(self) -> None:
        """Yield to the event loop if this loop has had it for ``every_s``."""
        if time.perf_counter() - self._since >= self._every_s:
            await asyncio.sleep(0)
            self._since = time.perf_counter()
