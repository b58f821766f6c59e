"""WriteGuard decisions: unchanged values, minimum interval, hourly budget, refresh."""

from __future__ import annotations

import pytest

from edge_agent.drivers.write_guard import WriteGuard


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_unchanged_is_not_rewritten_until_refresh() -> None:
    t = FakeTime()
    g = WriteGuard(min_interval_s=10, max_writes_per_hour=100, refresh_s=30, now_s=t)
    assert g.allow("r", [1])
    g.record("r", [1])
    t.t = 29
    assert not g.allow("r", [1])
    t.t = 30
    assert g.allow("r", [1])


def test_changed_value_waits_for_min_interval() -> None:
    t = FakeTime()
    g = WriteGuard(min_interval_s=10, max_writes_per_hour=100, now_s=t)
    g.record("r", [1])
    t.t = 9.9
    assert not g.allow("r", [2])
    t.t = 10
    assert g.allow("r", [2])
    assert g.allow("other", [2])  # per register
    assert g.suppressed == 1


def test_hourly_budget_is_rolling() -> None:
    t = FakeTime()
    g = WriteGuard(min_interval_s=0, max_writes_per_hour=3, now_s=t)
    for i in range(3):
        t.t = i
        assert g.allow("r", [i])
        g.record("r", [i])
    t.t = 100
    assert not g.allow("r", [9])
    t.t = 3600.5
    assert g.allow("r", [9])


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        WriteGuard(min_interval_s=30, refresh_s=10)
    with pytest.raises(ValueError):
        WriteGuard(max_writes_per_hour=0)
