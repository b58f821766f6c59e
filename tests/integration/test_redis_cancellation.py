"""A task cancelled once while it uses the Redis store stops (docs/cancellation.md).

Python 3.11's ``asyncio.wait_for``, which redis-py puts around every command's write, loses a
cancellation that arrives just after the write finished: the command returns and the task runs
on.  The aggregator's planner is an ``asyncio.TaskGroup``, which cancels its children once, so
one lost cancellation left a child (the plan loop, a queue consumer) running and the replica's
stop failed with 'tasks did not stop within 5.0 s: ['planner']'.  Here both a loop of store
calls and the planner are cancelled once at many moments, without ``Planner.request_stop()``.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from aggregator.config import AggregatorConfig, PlanningConfig
from aggregator.server import AggregatorServer
from aggregator.store.redis_store import RedisStore
from tests.conftest import RedisServer
from vpp_common.clock import ManualClock, cancel_and_wait

from .test_aggregator_service import T0


async def _stops_when_cancelled_once(task: asyncio.Task[None], within_s: float,
                                     before: set[asyncio.Task[object]]) -> bool:
    """Cancel once; True if the task ended cancelled within ``within_s``.  Else every task started
    since ``before`` (a TaskGroup cancels its children once) is stopped, so that none is left."""
    task.cancel()
    await asyncio.wait({task}, timeout=within_s)
    if task.done():
        return task.cancelled()
    await cancel_and_wait(list(asyncio.all_tasks() - before - {asyncio.current_task()}))
    return False


async def _turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_loop_of_store_calls_stops_when_cancelled_once(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, namespace=f"cancel-{uuid.uuid4().hex[:8]}")

    async def calls() -> None:
        while True:
            await store.get_route("h1")

    try:
        await store.get_route("h1")  # connected: the moments below fall into commands
        for i in range(300):  # cancelled after 0..29 turns of the event loop
            before = asyncio.all_tasks()
            task = asyncio.create_task(calls())
            await _turns(i % 30)
            assert await _stops_when_cancelled_once(task, 2.0, before), f"cancellation {i} was lost"
    finally:
        await store.close()


@pytest.mark.parametrize("turns", [1, 2, 3])
async def test_the_planner_on_redis_stops_when_cancelled_once(redis_server: RedisServer, turns: int) -> None:
    """Cancelled while the plan loop's first cycle and the queue consumers' first pulls are
    commands in flight (a consumer that lost it is in a pull blocking for 1 s: it stops after)."""
    cfg = AggregatorConfig(listen="127.0.0.1:0", admin_listen=None, insecure=True, metrics_port=None,
                           replica_id="r1", planning=PlanningConfig(warm_solver=False))
    store = RedisStore(redis_server.url, namespace=f"cancel-{uuid.uuid4().hex[:8]}")
    srv = AggregatorServer(cfg, clock=ManualClock(T0), store=store)
    try:
        await srv.elector.try_acquire()  # the leader: its re-plan consumer pulls too
        before = asyncio.all_tasks()
        planner = asyncio.create_task(srv.planner.run(), name="planner")
        await _turns(turns)
        assert await _stops_when_cancelled_once(planner, 3.0, before)
    finally:
        await srv.elector.resign()
        srv.planner.close()
        srv.plan_encoder.close()
        await store.close()
