"""Frozen-data detection (edge_agent.resources.frozen): what must advance, and what may stay put."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.resources.frozen import FreezeDetector, Progress, soc_progress

T0 = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)


def feed(det: FreezeDetector, values: list[float], rate: float, resolution: float = 1.0, step_s: float = 1.0):
    verdict = None
    for i, v in enumerate(values):
        verdict = det.update(T0 + timedelta(seconds=i * step_s), [Progress("c", v, rate, resolution)])
    return verdict


def test_counter_that_stops_at_non_zero_power_is_frozen() -> None:
    det = FreezeDetector(steps=3, min_s=5)
    # 6.6 kW: half of it owed is ~0.9 Wh/s; moving, then stuck
    v = feed(det, [100, 102, 104, 104, 104, 104, 104, 104, 104, 104], rate=6600 * 0.5 / 3600)
    assert v is not None and v.frozen == ("c",)
    assert "c = 104" in v.detail
    # moving again clears at once
    assert not det.update(T0 + timedelta(seconds=10), [Progress("c", 105, 1.0, 1.0)])


def test_not_flagged_before_min_s_even_at_high_rate() -> None:
    det = FreezeDetector(steps=3, min_s=5)
    assert not feed(det, [1, 2, 2, 2, 2], rate=100.0)  # stuck for 3 s only


def test_constant_at_zero_power_is_not_frozen() -> None:
    """Night PV, an idle battery: counters legitimately stand still."""
    det = FreezeDetector()
    assert not feed(det, [1, 2] + [2] * 600, rate=0.0)


def test_a_register_never_seen_moving_is_ignored() -> None:
    """A 'timestamp' a device does not maintain is constant from the start: no false alarm."""
    det = FreezeDetector()
    assert not feed(det, [7] * 100, rate=1.0)


def test_coarse_resolution_needs_more_owed() -> None:
    det = FreezeDetector(steps=3, min_s=0)
    # 100 Wh steps at 0.5 Wh/s owed: 300 Wh owed takes 600 s
    assert not feed(det, [1, 2] + [2] * 500, rate=0.5, resolution=100.0)
    det = FreezeDetector(steps=3, min_s=0)
    assert feed(det, [1, 2] + [2] * 700, rate=0.5, resolution=100.0)


def test_unread_value_forgets_the_track() -> None:
    det = FreezeDetector(steps=3, min_s=0)
    feed(det, [1, 2, 2, 2], rate=1.0)
    assert not det.update(T0 + timedelta(seconds=10), [Progress("c", None, 1.0, 1.0)])
    # after a gap, the first reading is a new start (not live yet)
    assert not det.update(T0 + timedelta(seconds=20), [Progress("c", 2, 1.0, 1.0)])


def test_soc_at_its_edges_owes_nothing() -> None:
    assert soc_progress("soc", 100.0, 500.0, 10_000, 0.1).min_rate_per_s == 0.0
    assert soc_progress("soc", 1.0, -500.0, 10_000, 0.1).min_rate_per_s == 0.0
    assert soc_progress("soc", 50.0, 3600.0, 10_000, 0.1).min_rate_per_s > 0.0


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=2, max_size=60),
       st.floats(min_value=0, max_value=10))
def test_a_value_that_changes_every_poll_is_never_frozen(deltas: list[float], rate: float) -> None:
    det = FreezeDetector(steps=3, min_s=0)
    value = 0.0
    for i, d in enumerate(deltas):
        value += d + 1.0  # strictly increasing
        assert not det.update(T0 + timedelta(seconds=i), [Progress("c", value, rate, 1.0)])
