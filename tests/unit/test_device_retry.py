"""Devices that stop answering are retried with exponential backoff and jitter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.resources.retry import DeviceRetry

T0 = datetime(2026, 6, 21, 12, tzinfo=UTC)


def test_delays_double_with_jitter_up_to_the_cap_and_reset_on_an_answer() -> None:
    r = DeviceRetry(1.0, 16.0, random.Random(7))
    assert r.due(T0)
    now = T0
    for n in range(1, 9):
        delay = r.failed(now)
        d = min(16.0, 2.0 ** (n - 1))
        assert d / 2 <= delay <= d
        assert not r.due(now + timedelta(seconds=delay * 0.99)) and r.due(now + timedelta(seconds=delay))
        now += timedelta(seconds=delay)
    r.succeeded()
    assert r.due(now) and r.failures == 0
    assert r.failed(now) <= 1.0  # back to the first delay


def test_bad_settings_refused() -> None:
    with pytest.raises(ValueError):
        DeviceRetry(0.0, 10.0)
    with pytest.raises(ValueError):
        DeviceRetry(20.0, 10.0)
