"""Counting and logging what the service refuses from outside, without flooding the log.

Every refusal is counted (``vpp_aggregator_refused_total{source,reason}``); the WARNING that
names the house and the field is written the first time and then at most once per
``every_s`` per (house, source), with how many were left out meanwhile: a house sending a
thousand bad messages a second must not drown the log of a fleet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aggregator.metrics import AggregatorMetrics

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0
MAX_TRACKED = 10_000  # (house, source) pairs remembered; the oldest are forgotten beyond


class Refusals:
    def __init__(self, metrics: AggregatorMetrics, every_s: float = LOG_EVERY_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._every_s = every_s
        self._now = monotonic
        self._last: dict[tuple[str, str], tuple[float, int]] = {}  # -> (last logged, left out since)

    def refused(self, house_id: str, source: str, reason: str, detail: str, action: str) -> bool:
        """Count one refusal; log it unless one of this house and source was logged lately.
        ``action``: what happened to the message ("dropped", "stream ended", ...).  True if logged."""
        self._metrics.refused.labels(source, reason).inc()
        key = (house_id, source)
        now = self._now()
        last = self._last.get(key)
        if last is not None and now - last[0] < self._every_s:
            self._last[key] = (last[0], last[1] + 1)
            return False
        left_out = f" ({last[1]} more like it in the last {self._every_s:.0f} s)" if last and last[1] else ""
        log.warning("house %s: %s refused (%s): %s%s", house_id, source, action, detail, left_out)
        if len(self._last) >= MAX_TRACKED and key not in self._last:
            self._last.pop(next(iter(self._last)))
        self._last[key] = (now, 0)
        return True
