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
from vpp_common.log_limit import LogLimiter

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0
MAX_TRACKED = 10_000  # (house, source) pairs remembered; the oldest are forgotten beyond


class Refusals:
    def __init__(self, metrics: AggregatorMetrics, every_s: float = LOG_EVERY_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._every_s = every_s
        self._limit = LogLimiter(every_s, monotonic, MAX_TRACKED)

    def refused(self, house_id: str, source: str, reason: str, detail: str, action: str) -> bool:
        """Count one refusal; log it unless one of this house and source was logged lately.
        ``action``: what happened to the message ("dropped", "stream ended", ...).  True if logged."""
        self._metrics.refused.labels(source, reason).inc()
        left_out = self._limit.admit((house_id, source))
        if left_out is None:
            return False
        more = f" ({left_out} more like it in the last {self._every_s:.0f} s)" if left_out else ""
        log.warning("house %s: %s refused (%s): %s%s", house_id, source, action, detail, more)
        return True
