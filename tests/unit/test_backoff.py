"""Reconnect delays grow exponentially, are capped, and are jittered."""

from __future__ import annotations

import random

from vpp_common.backoff import Backoff


def test_backoff_grows_caps_and_jitters() -> None:
    b = Backoff(initial_s=0.5, max_s=8.0)
    rng = random.Random(1)
    for attempt, ceiling in enumerate([0.5, 1, 2, 4, 8, 8, 8]):
        delays = [b.delay(attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # spread out: agents do not reconnect in lockstep


def test_backoff_survives_huge_attempt_counts() -> None:
    assert Backoff(1, 60).delay(10_000, random.Random(0)) <= 60
