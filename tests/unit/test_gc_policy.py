"""The serving process's garbage collection: runs its three kinds of pass, and leaves the
collector as it found it when cancelled."""

from __future__ import annotations

import asyncio
import gc

from aggregator.gc_policy import BACKSTOP_THRESHOLDS, GcPolicy, run_gc_policy


async def test_collects_freezes_and_restores_the_collector() -> None:
    before = gc.get_threshold()
    calls: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            calls.append(info["generation"])

    gc.callbacks.append(count)
    task = asyncio.create_task(run_gc_policy(GcPolicy(young_every_s=0.01, settle_every_s=0.05, full_every_s=0.12)))
    try:
        await asyncio.sleep(0.3)
        assert gc.get_threshold() == BACKSTOP_THRESHOLDS
        assert gc.get_freeze_count() > 0  # survivors are frozen
        assert 1 in calls and 2 in calls  # young passes and full passes both ran
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        gc.callbacks.remove(count)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
