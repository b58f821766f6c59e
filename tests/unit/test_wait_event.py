"""wait_event never loses a cancellation (Python 3.11's asyncio.timeout can: a task cancelled
while it waits to run, that then enters a zero timeout, got TimeoutError, not CancelledError)."""

from __future__ import annotations

import asyncio

import pytest

from vpp_common.clock import wait_event


@pytest.mark.parametrize("timeout_s", [0.0, 0.001, 1.0])
async def test_a_cancellation_requested_before_the_wait_is_not_lost(timeout_s: float) -> None:
    event = asyncio.Event()

    async def waiter() -> bool:
        asyncio.current_task().cancel()  # type: ignore[union-attr]  # requested, not yet delivered
        return await wait_event(event, timeout_s)

    task = asyncio.create_task(waiter())
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_timeout_without_cancellation_is_false_and_a_set_event_true() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.0) is False
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.0) is True
