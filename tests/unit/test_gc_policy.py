"""The serving process's garbage collection: runs its three kinds of pass, and leaves the
collector as it found it when cancelled."""

from __future__ import annotations

import asyncio
import gc

from aggregator.gc_policy import BACKSTOP_THRESHOLDS, GcPolicy, run_gc_policy
from tests.conftest import until


async def test_collects_freezes_and_restores_the_collector() -> None:
    before = gc.get_threshold()
    calls: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            calls.append(info["generation"])

    gc.callbacks.append(count)
    task = asyncio.create_task(run_gc_policy(GcPolicy(young_every_s=0.01, settle_every_s=0.4, full_every_s=1.0)))
    try:
        # bounded wait, not a fixed sleep: late in a loaded suite one full pass over the test
        # process's heap can take longer than a settle period, so young passes come late
        await until(lambda: 1 in calls and 2 in calls, "young and full passes", timeout_s=20)
        assert gc.get_threshold() == BACKSTOP_THRESHOLDS
        assert gc.get_freeze_count() > 0  # survivors are frozen
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        gc.callbacks.remove(count)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
