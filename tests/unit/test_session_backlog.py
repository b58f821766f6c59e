"""The plan backlog of a replica's streams: counted per stream, released when written or closed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from aggregator.service.sessions import PlanItem, SessionRegistry
from vpp_common.messages import DispatchPlan, FallbackMode

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def plan(version: int) -> DispatchPlan:
    return DispatchPlan(plan_id=f"p{version}", version=version, created_at=T0, valid_from=T0,
                        valid_until=T0 + timedelta(hours=1), slot_duration_s=900, slots=(),
                        fallback=FallbackMode.SELF_CONSUMPTION)


async def test_a_stream_counts_once_until_its_plan_is_written() -> None:
    reg = SessionRegistry(max_plan_backlog=2)
    a = reg.open("a")
    a.outbox.put_plan(plan(1))
    a.outbox.put_plan(plan(2))  # the newer plan replaces the waiting one: still one stream behind
    assert reg.plan_backlog == 1
    item = await a.outbox.get()
    assert isinstance(item, PlanItem) and item.plan.version == 2
    a.writing_plan(True)
    assert reg.plan_backlog == 1  # taken, not yet written
    a.writing_plan(False)
    assert reg.plan_backlog == 0


async def test_the_writer_waits_while_the_backlog_is_full_and_goes_on_when_a_stream_takes_its_plan() -> None:
    reg = SessionRegistry(max_plan_backlog=2)
    a, b = reg.open("a"), reg.open("b")
    a.outbox.put_plan(plan(1))
    b.outbox.put_plan(plan(1))
    assert reg.plan_backlog == 2
    waiter = asyncio.create_task(reg.wait_for_room(timeout_s=5.0))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await a.outbox.get()
    a.writing_plan(True)
    a.writing_plan(False)
    assert await asyncio.wait_for(waiter, 1.0) is True


async def test_a_closed_stream_leaves_the_backlog_and_a_stuck_one_only_delays_the_writer() -> None:
    reg = SessionRegistry(max_plan_backlog=1)
    a = reg.open("a")
    a.outbox.put_plan(plan(1))
    assert await reg.wait_for_room(timeout_s=0.05) is False  # nobody takes it: the writer goes on
    reg.close(a)
    assert reg.plan_backlog == 0
    assert await reg.wait_for_room(timeout_s=0.05) is True
    b = reg.open("b")
    b.outbox.put_plan(plan(1))
    await b.outbox.get()
    b.writing_plan(True)
    reg.close(b)  # closed mid-write
    assert reg.plan_backlog == 0


async def test_streams_that_take_no_plan_are_written_off_after_one_wait_in_vain() -> None:
    """A full backlog of stuck streams costs the writer one timeout, not one per plan."""
    reg = SessionRegistry(max_plan_backlog=2)
    stuck = [reg.open(f"s{i}") for i in range(2)]
    for s in stuck:
        s.outbox.put_plan(plan(1))
    assert await reg.wait_for_room(timeout_s=0.05) is False
    assert reg.plan_backlog == 0
    stuck[0].outbox.put_plan(plan(2))  # a newer plan for a stuck stream: still written off
    assert reg.plan_backlog == 0
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    live = [reg.open(f"l{i}") for i in range(100)]
    for s in live:
        assert await reg.wait_for_room(timeout_s=0.05) is True
        s.outbox.put_plan(plan(1))
        await s.outbox.get()
        s.writing_plan(True)
        s.writing_plan(False)
    assert loop.time() - t0 < 0.05
    # a stuck stream that writes its plan counts again for its next one
    await stuck[0].outbox.get()
    stuck[0].writing_plan(True)
    stuck[0].writing_plan(False)
    assert reg.plan_backlog == 0
    stuck[0].outbox.put_plan(plan(3))
    assert reg.plan_backlog == 1
    reg.close(stuck[1])
    assert reg.plan_backlog == 1
