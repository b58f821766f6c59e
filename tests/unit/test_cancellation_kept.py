"""cancellation_kept raises a cancellation the body lost (docs/cancellation.md): Python 3.11's
asyncio.wait_for, which redis-py puts around every command's write, returns the result of an
awaitable that finished just before the task was cancelled, and the cancellation is gone."""

from __future__ import annotations

import asyncio
import sys

import pytest

from vpp_common.clock import cancellation_kept


async def _written() -> int:
    return 1


async def _outcome(body: asyncio.Task[int], turns: int) -> object:
    """Cancel ``body`` after ``turns`` turns of the event loop: its result, or 'cancelled'."""
    for _ in range(turns):
        await asyncio.sleep(0)
    assert body.cancel()  # requested while the body still runs
    try:
        return await body
    except asyncio.CancelledError:
        return "cancelled"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for keeps the cancellation from 3.12 on")
@pytest.mark.parametrize("turns", [1, 2, 3])
async def test_wait_for_loses_a_cancellation_that_arrives_after_its_awaitable_finished(turns: int) -> None:
    async def body() -> int:
        return await asyncio.wait_for(_written(), 5.0)
    assert await _outcome(asyncio.create_task(body()), turns) == 1


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
async def test_a_lost_cancellation_is_raised_after_the_body(turns: int) -> None:
    async def body() -> int:
        with cancellation_kept():
            return await asyncio.wait_for(_written(), 5.0)
    assert await _outcome(asyncio.create_task(body()), turns) == "cancelled"


async def test_a_lost_cancellation_wins_over_the_bodys_own_error() -> None:
    async def body() -> int:
        with cancellation_kept():
            await asyncio.wait_for(_written(), 5.0)
            raise ValueError("the store answered badly")
    assert await _outcome(asyncio.create_task(body()), 1) == "cancelled"


async def test_a_handled_cancellation_and_no_cancellation_pass_through() -> None:
    with pytest.raises(TimeoutError), cancellation_kept():
        async with asyncio.timeout(0):  # its own cancellation, handled (uncancelled) by the timeout
            await asyncio.sleep(1)
    with cancellation_kept():
        assert await asyncio.wait_for(_written(), 5.0) == 1
    with pytest.raises(ValueError), cancellation_kept():
        raise ValueError("not a cancellation")
