"""Per-house limits on what a house can make the service do (issue 20): re-plan requests and
the WARNINGs its refused messages write."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aggregator.metrics import AggregatorMetrics
from aggregator.service.refusals import Refusals
from aggregator.service.replan_limit import ReplanLimiter


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def test_replans_of_a_house_burst_then_coalesce_into_one_deferred() -> None:
    calls: list[str] = []
    done = asyncio.Event()
    coalesced = []

    def request(h: str) -> None:
        calls.append(h)
        if len(calls) == 4:
            done.set()

    limiter = ReplanLimiter(request, min_interval_s=0.05, on_coalesced=lambda: coalesced.append(1))
    for _ in range(100):
        limiter.request("a")
    limiter.request("b")  # another house has its own bucket
    assert calls == ["a", "a", "b"] and len(coalesced) == 98
    await asyncio.wait_for(done.wait(), 2.0)  # the deferred one, with the latest data in the store
    assert calls == ["a", "a", "b", "a"]


async def test_a_closed_stream_drops_its_pending_replan() -> None:
    calls: list[str] = []
    limiter = ReplanLimiter(calls.append, min_interval_s=60.0)
    for _ in range(3):
        limiter.request("a")
    limiter.forget("a")
    assert calls == ["a", "a"] and limiter._buckets["a"].timer is None


def test_refusals_are_all_counted_and_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    metrics, clock = AggregatorMetrics(), FakeTime()
    r = Refusals(metrics, every_s=60.0, monotonic=clock)
    with caplog.at_level(logging.WARNING):
        logged = [r.refused("h1", "flexibility_update", "flexibility.x", "x is NaN", "dropped") for _ in range(50)]
        clock.t += 61
        logged.append(r.refused("h1", "flexibility_update", "flexibility.x", "x is NaN", "dropped"))
        logged.append(r.refused("h2", "flexibility_update", "flexibility.x", "x is NaN", "dropped"))
    assert logged.count(True) == 3
    assert metrics.registry.get_sample_value("vpp_aggregator_refused_total",
                                             {"source": "flexibility_update", "reason": "flexibility.x"}) == 52
    texts = [rec.getMessage() for rec in caplog.records]
    assert "house h1" in texts[0] and "49 more like it" in texts[1] and "house h2" in texts[2]
