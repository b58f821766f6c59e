"""Write limiting per register: protects device flash and slow gateways from noisy setpoints.

Real devices store some setpoints in flash (wear reported on SolarEdge,
Growatt, Solis, Luxpower) and gateways choke on bursts, so the drivers pass
every write through a :class:`WriteGuard` (opt-in per driver instance):

* an unchanged value is not rewritten, unless ``refresh_s`` has passed (to
  keep a device-side revert timer alive: refresh at about half its timeout);
* a changed value is written at most once per ``min_interval_s``
  (default 30 s); a value arriving sooner is *deferred*, not queued: the
  caller's next call carries the newest value;
* at most ``max_writes_per_hour`` writes per register in any rolling hour
  (default 120).  The two defaults agree (3600 / 30 = 120), so a steady
  stream never exhausts the budget early and then starves the refresh that
  a 60 s revert timer (Victron ESS, SunSpec *_RvrtTms = 60) needs.

The guard only decides; it never sleeps.  Keys are whatever identifies a
register for the driver (unit id and address).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["write", "unchanged", "deferred"]

DEFAULT_MIN_INTERVAL_S = 30.0
DEFAULT_MAX_WRITES_PER_HOUR = 120


@dataclass
class _Register:
    last_values: tuple[int, ...]
    last_at_s: float
    history: deque[float] = field(default_factory=deque)


class WriteGuard:
    """Decides whether a write to one register may go out now (see module doc).

    ``now_s`` returns seconds on a monotonic scale (inject the simulation
    clock in tests: ``lambda: clock.now().timestamp()``).
    """

    def __init__(self, *, min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
                 max_writes_per_hour: int = DEFAULT_MAX_WRITES_PER_HOUR, refresh_s: float | None = None,
                 now_s: Callable[[], float] = time.monotonic) -> None:
        if min_interval_s < 0 or max_writes_per_hour < 1:
            raise ValueError("min_interval_s must be >= 0 and max_writes_per_hour >= 1")
        if refresh_s is not None and refresh_s < min_interval_s:
            raise ValueError("refresh_s must be >= min_interval_s")
        self.min_interval_s = min_interval_s
        self.max_writes_per_hour = max_writes_per_hour
        self.refresh_s = refresh_s
        self._now_s = now_s
        self._registers: dict[Hashable, _Register] = {}
        self.suppressed = 0
        """Writes not sent (unchanged, deferred or over the hourly budget), for metrics."""

    def decide(self, key: Hashable, values: Sequence[int]) -> Verdict:
        """What to do with ``values`` for ``key`` now.

        ``"write"``: send it, then :meth:`record` it.  ``"unchanged"``: the
        device already holds it and no refresh is due (nothing is lost).
        ``"deferred"``: a change (or a due refresh) that must wait: too soon
        or over the hourly budget; the device does *not* hold it yet.
        """
        now = self._now_s()
        reg = self._registers.get(key)
        if reg is None:
            return "write"
        while reg.history and reg.history[0] <= now - 3600.0:
            reg.history.popleft()
        since = now - reg.last_at_s
        if tuple(values) == reg.last_values and (self.refresh_s is None or since < self.refresh_s):
            self.suppressed += 1
            return "unchanged"
        if since < self.min_interval_s or len(reg.history) >= self.max_writes_per_hour:
            self.suppressed += 1
            return "deferred"
        return "write"

    def allow(self, key: Hashable, values: Sequence[int]) -> bool:
        """True if ``values`` may be written to ``key`` now; the caller must then :meth:`record` it."""
        return self.decide(key, values) == "write"

    def record(self, key: Hashable, values: Sequence[int]) -> None:
        """Note that ``values`` were written to ``key`` (after the device accepted them)."""
        now = self._now_s()
        reg = self._registers.get(key)
        if reg is None:
            reg = self._registers[key] = _Register(tuple(values), now)
        reg.last_values, reg.last_at_s = tuple(values), now
        reg.history.append(now)

    def invalidate(self, key: Hashable) -> None:
        """The device no longer holds what was written to ``key`` (read back different: a reboot,
        another master, a revert timer): the next write goes out at once, whatever its value and
        however soon (a safety re-write), still counted in the hourly budget."""
        reg = self._registers.get(key)
        if reg is not None:
            reg.last_values = ()
            reg.last_at_s = float("-inf")

    def forget(self, key: Hashable | None = None) -> None:
        """Drop what is known of ``key`` (all keys if None), e.g. after the device restarted."""
        if key is None:
            self._registers.clear()
        else:
            self._registers.pop(key, None)


__all__ = ["DEFAULT_MAX_WRITES_PER_HOUR", "DEFAULT_MIN_INTERVAL_S", "Verdict", "WriteGuard"]
