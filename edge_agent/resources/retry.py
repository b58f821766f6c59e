"""When to try a device again after it stopped answering (pure, injected time and randomness).

A device that times out or drops its connection is not asked again at every
poll: after the n-th failure in a row the next attempt waits a delay drawn
uniformly from [d/2, d], d = min(max_s, initial_s * 2^(n-1)) clock seconds
(exponential backoff with jitter, so the devices of many houses behind one
rebooting gateway do not come back in lockstep).  Until then its
measurements age (stale, then missing) and nothing is written to it.  One
answer resets the delay.  A device that *answers* with a Modbus exception is
reachable and is not backed off.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta


class DeviceRetry:
    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {initial_s}, {max_s}")
        self.initial_s = initial_s
        self.max_s = max_s
        self._rng = rng or random.Random()
        self.failures = 0  # in a row
        self.next_attempt: datetime | None = None  # None: ask now

    def due(self, now: datetime) -> bool:
        """True if the device may be asked at ``now``."""
        return self.next_attempt is None or now >= self.next_attempt

    def failed(self, now: datetime) -> float:
        """Record a failed attempt at ``now``; the delay (clock s) before the next one."""
        self.failures += 1
        d = min(self.max_s, self.initial_s * 2 ** min(self.failures - 1, 30))
        delay = self._rng.uniform(d / 2, d)
        self.next_attempt = now + timedelta(seconds=delay)
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.next_attempt = None


__all__ = ["DeviceRetry"]
