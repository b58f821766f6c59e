"""A house's re-plan requests, limited: a token bucket per house (burst 2, one more every
``min_interval_s``).  One house sent ~970 FlexibilityUpdates/s and caused 296 fleet plan
cycles in 35 s (issue 20).  Requests beyond the bucket coalesce into one, made when the next
token is due: the store already holds the house's latest flexibility (latest wins), so the
deferred re-plan sees the newest data and no update is lost.

The burst of 2 lets a (re)connecting house have its Hello and first FlexibilityUpdate each
planned at once; a house reconnecting in a loop is limited like any other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

BURST = 2.0


@dataclass
class _Bucket:
    tokens: float
    at: float  # monotonic s of the last refill
    timer: asyncio.TimerHandle | None = None


class ReplanLimiter:
    def __init__(self, request_plan: Callable[[str], None], min_interval_s: float,
                 on_coalesced: Callable[[], None] = lambda: None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._request = request_plan
        self._interval = min_interval_s
        self._on_coalesced = on_coalesced
        self._now = monotonic
        self._buckets: dict[str, _Bucket] = {}

    def _refill(self, b: _Bucket) -> None:
        now = self._now()
        b.tokens = min(BURST, b.tokens + (now - b.at) / self._interval)
        b.at = now

    def request(self, house_id: str) -> None:
        """Ask for a re-plan of ``house_id``: now if its bucket allows, else once, later."""
        if self._interval <= 0:
            self._request(house_id)
            return
        b = self._buckets.get(house_id)
        if b is None:
            b = self._buckets[house_id] = _Bucket(BURST, self._now())
        if b.timer is not None:  # one is already due: it will see this update too
            self._on_coalesced()
            return
        self._refill(b)
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            self._request(house_id)
            return
        self._on_coalesced()
        delay = (1.0 - b.tokens) * self._interval
        b.timer = asyncio.get_running_loop().call_later(delay, self._fire, house_id)

    def _fire(self, house_id: str) -> None:
        b = self._buckets[house_id]
        b.timer = None
        self._refill(b)
        b.tokens = max(0.0, b.tokens - 1.0)
        self._request(house_id)

    def forget(self, house_id: str) -> None:
        """The house's stream ended: drop a pending request (the cycle plans it anyway).  Its
        bucket stays, so that reconnecting does not refill it."""
        b = self._buckets.get(house_id)
        if b is not None and b.timer is not None:
            b.timer.cancel()
            b.timer = None
        if b is not None and b.tokens >= BURST:
            del self._buckets[house_id]  # full again: nothing to remember
