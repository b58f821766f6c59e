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


async def _passes(policy: GcPolicy, busy: object, seconds: float) -> list[int]:
    """The generations collected by ``run_gc_policy`` in ``seconds``."""
    calls: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            calls.append(info["generation"])

    task = asyncio.create_task(run_gc_policy(policy, busy=busy))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)  # its first full collection and freeze
    gc.callbacks.append(count)
    try:
        await asyncio.sleep(seconds)
    finally:
        gc.callbacks.remove(count)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return calls


async def test_long_passes_wait_while_plans_are_written_then_run() -> None:
    policy = GcPolicy(young_every_s=0.01, settle_every_s=0.1, full_every_s=10.0, max_defer_s=0.6)
    busy_calls: list[bool] = []

    def busy() -> bool:
        busy_calls.append(True)
        return True

    calls = await _passes(policy, busy, 0.4)
    assert busy_calls and calls and set(calls) == {1}  # settle due (0.1 s) but deferred: young passes only
    calls = await _passes(policy, busy, 1.2)
    assert 2 in calls  # deferred at most max_defer_s: then it runs, busy or not
    calls = await _passes(policy, lambda: False, 0.4)
    assert 2 in calls


def test_writing_plans_while_a_plan_waits_and_shortly_after() -> None:
    from aggregator.service.sessions import SessionRegistry

    reg = SessionRegistry()
    assert not reg.writing_plans()
    reg._backlog_change(1)
    assert reg.writing_plans()
    reg._backlog_change(-1)
    assert reg.writing_plans()  # between two plans of a cycle
    assert not reg.writing_plans(quiet_s=0.0)
