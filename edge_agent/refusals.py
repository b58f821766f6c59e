"""Refused outside values (plans, grid signals, device readings, config): logged and counted.

Every refusal is counted in ``vpp_edge_refused_total{source, reason}``.  The first refusal of a
(source, reason) pair is logged at WARNING with its detail; repeats of the same pair are logged
at most once per ``interval_s`` (with how many were suppressed), so a device or an aggregator
that sends the same bad value every second cannot flood the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import Counter

from vpp_common.log_limit import LogLimiter

log = logging.getLogger("edge_agent.refused")


class Refusals:
    def __init__(self, counter: Counter, interval_s: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._counter = counter
        self._limit = LogLimiter(interval_s, monotonic)
        self.total = 0
        self.by_source: dict[str, int] = {}
        self.last_reason: dict[str, tuple[int, str]] = {}  # per source: (total then, reason label)

    def refuse(self, source: str, reason: str, detail: str = "") -> None:
        """Count one refusal; ``reason`` is a short stable label (a metric label value),
        ``detail`` the human text (the value, the field, the limit)."""
        self.total += 1
        self.by_source[source] = self.by_source.get(source, 0) + 1
        self.last_reason[source] = (self.total, reason)
        self._counter.labels(source, reason).inc()
        left_out = self._limit.admit((source, reason))
        if left_out is None:
            return
        more = f" ({left_out} more like it since the last report)" if left_out else ""
        log.warning("refused %s (%s): %s%s", source, reason, detail or reason, more)
