"""Rate-limited logging: the first event of a key is logged, repeats of it at most once per
``every_s``, with how many were left out meanwhile, so a house or a device that sends the same
bad value every second cannot flood the log (each event is still counted by its caller)."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class LogLimiter:
    def __init__(self, every_s: float, monotonic: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000) -> None:
        self._every_s = every_s
        self._now = monotonic
        self._max_keys = max_keys  # keys remembered; the oldest are forgotten beyond
        self._last: dict[Hashable, tuple[float, int]] = {}  # key -> (last logged, left out since)

    def admit(self, key: Hashable) -> int | None:
        """None if this event of ``key`` is not to be logged (one was, lately); else how many
        were left out since the last one that was."""
        now = self._now()
        last = self._last.get(key)
        if last is not None and now - last[0] < self._every_s:
            self._last[key] = (last[0], last[1] + 1)
            return None
        if len(self._last) >= self._max_keys and key not in self._last:
            self._last.pop(next(iter(self._last)))
        self._last[key] = (now, 0)
        return last[1] if last is not None else 0
