"""When a serving replica collects its cyclic garbage: often and small, not rarely and long.

A replica with thousands of streams holds millions of GC-tracked objects, and
every telemetry message replaces a few that then live for seconds.  With the
default thresholds (700, 10, 10) it ran a full collection every few seconds,
0.25-0.6 s each with the event loop stopped (22 s of a 3-minute benchmark at
5,000 streams).  Larger thresholds made full passes rare, but young collections
then found 100k+ survivors (Python counts allocations *minus* deallocations, so
objects replacing older ones do not advance the count) and stopped the loop for
0.1-0.76 s.

So here: automatic collection only as a backstop (high thresholds); the loop
collects the young generations itself every ``young_every_s`` (a few ms each),
and every ``settle_every_s`` does a full pass over what was not frozen and then
freezes the survivors (``gc.freeze``), so that later passes never walk the
long-lived heap again.  Every ``full_every_s`` everything is unfrozen and
collected once, for garbage cycles among objects that were frozen while alive.

A settle or full pass stops the loop for as long as it walks what is alive and not frozen
(0.14-0.44 s at 5,000 streams, mostly the latest telemetry of every house), whatever the
settle period.  While ``busy()`` (a cycle's plans are being written to the streams) such a
pass waits, ``max_defer_s`` at most: at a few hundred plans a second, one pass in a
writing phase delayed more than 1 % of a cycle's plans by its whole length.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

BACKSTOP_THRESHOLDS = (100_000, 50, 1000)  # automatic collection: only if this task falls behind


@dataclass(frozen=True)
class GcPolicy:
    young_every_s: float = 1.0
    settle_every_s: float = 60.0
    full_every_s: float = 1800.0
    slow_s: float = 0.2  # a collection longer than this is logged
    max_defer_s: float = 60.0  # a settle or full pass waits while busy() this long at most


def _idle() -> bool:
    return False


async def run_gc_policy(policy: GcPolicy = GcPolicy(), busy: Callable[[], bool] = _idle) -> None:
    """Runs until cancelled; restores the default thresholds and unfreezes when it ends."""
    old = gc.get_threshold()
    gc.set_threshold(*BACKSTOP_THRESHOLDS)
    gc.collect()
    gc.freeze()  # what exists at startup (modules, config, the server) lives as long as the process
    last_settle = last_full = time.monotonic()
    try:
        while True:
            await asyncio.sleep(policy.young_every_s)
            now = time.monotonic()
            t0 = time.perf_counter()
            full_due = now - last_full >= policy.full_every_s
            settle_due = now - last_settle >= policy.settle_every_s
            overdue = (now - last_full >= policy.full_every_s + policy.max_defer_s
                       or now - last_settle >= policy.settle_every_s + policy.max_defer_s)
            if (full_due or settle_due) and not overdue and busy():
                full_due = settle_due = False  # a long pass waits for the plans to be written
            if full_due:
                gc.unfreeze()
                gc.collect()
                gc.freeze()
                last_full = last_settle = now
                what = "full (unfrozen)"
            elif settle_due:
                gc.collect()  # the frozen heap is not walked: only what was promoted since
                gc.freeze()
                last_settle = now
                what = "settle"
            else:
                gc.collect(1)
                what = "young"
            took = time.perf_counter() - t0
            if took > policy.slow_s:
                log.info("garbage collection (%s) took %.2f s", what, took)
    finally:
        gc.unfreeze()
        gc.set_threshold(*old)
