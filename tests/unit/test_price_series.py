"""``planning.prices_file``: a price series instead of the TOU tariff, day-ahead publication,
horizon cut at the known prices, and the aligned re-plan cycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.config import PlanningConfig
from vpp_common.clock import AcceleratedClock, ManualClock, SystemClock, clock_from_arguments
from vpp_common.tariff import PriceSeries

T0 = datetime(2026, 6, 21, 8, 0, tzinfo=UTC)


def _write(path: Path, rows: list[tuple[datetime, float, float]]) -> Path:
    path.write_text("timestamp,import_price_per_kwh,export_price_per_kwh\n"
                    + "".join(f"{t.isoformat()},{i},{e}\n" for t, i, e in rows), encoding="utf-8")
    return path


def test_prices_hold_per_row_and_past_the_end(tmp_path: Path) -> None:
    f = _write(tmp_path / "p.csv", [(T0 + timedelta(minutes=15 * k), 0.1 * (k + 1), 0.01 * (k + 1)) for k in range(4)])
    s = PriceSeries.load(f, slot_s=900)
    imp, exp = s.prices(T0 - timedelta(minutes=15), 900, 7)
    assert imp.tolist() == pytest.approx([0.1, 0.1, 0.2, 0.3, 0.4, 0.4, 0.4])
    assert exp.tolist() == pytest.approx([0.01, 0.01, 0.02, 0.03, 0.04, 0.04, 0.04])
    assert s.end == T0 + timedelta(hours=1)
    assert s.known_until(T0) == s.end
    slots = s.price_slots(T0, 900, 2)
    assert slots[1].start == T0 + timedelta(minutes=15) and slots[1].import_price_per_kwh == pytest.approx(0.2)


def test_hourly_rows_serve_quarter_hour_slots(tmp_path: Path) -> None:
    f = _write(tmp_path / "p.csv", [(T0, 0.2, 0.05), (T0 + timedelta(hours=1), 0.3, 0.06)])
    imp, _ = PriceSeries.load(f, slot_s=900).prices(T0, 900, 10)
    assert imp.tolist() == pytest.approx([0.2] * 4 + [0.3] * 6)


def test_day_ahead_publication(tmp_path: Path) -> None:
    rows = [(T0 + timedelta(hours=k), 0.2 + 0.01 * k, 0.05) for k in range(48)]
    s = PriceSeries.load(_write(tmp_path / "p.csv", rows), slot_s=900, publish_hour_utc=11)
    midnight = T0.replace(hour=0)
    assert s.known_until(T0) == midnight + timedelta(days=1)  # 08:00: only today
    assert s.known_until(T0.replace(hour=12)) == midnight + timedelta(days=2)  # after the auction: tomorrow too
    imp, _ = s.prices(T0.replace(hour=22), 900, 12, known_until=s.known_until(T0))  # unknown: the last known holds
    assert imp[-1] == pytest.approx(0.2 + 0.01 * 15)


@pytest.mark.parametrize("text", ["timestamp,import_price_per_kwh\n2026-06-21T08:00:00+00:00,0.1\n",
                                  "timestamp,import_price_per_kwh,export_price_per_kwh\n2026-06-21T08:00:00,0.1,0.0\n",
                                  "timestamp,import_price_per_kwh,export_price_per_kwh\n"
                                  "2026-06-21T09:00:00+00:00,0.1,0.0\n2026-06-21T08:00:00+00:00,0.1,0.0\n"])
def test_bad_files_are_refused(tmp_path: Path, text: str) -> None:
    f = tmp_path / "p.csv"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError):
        PriceSeries.load(f, slot_s=900)


def test_config_checks_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        PlanningConfig(prices_file=tmp_path / "missing.csv")
    cfg = PlanningConfig(prices_file=_write(tmp_path / "p.csv", [(T0, 0.2, 0.05)]), terminal_value_per_kwh="mean_price")
    assert cfg.terminal_value_per_kwh == "mean_price"
    assert PlanningConfig().replan_on_update and not PlanningConfig().cycle_align  # defaults keep the old behaviour


def test_clock_flags() -> None:
    assert isinstance(clock_from_arguments(None, None, None), SystemClock)
    c = clock_from_arguments("2026-06-21T08:00:00+00:00", 300.0, 1000.0)
    assert isinstance(c, AcceleratedClock) and c.speed == 300.0 and c.anchor_unix_s == 1000.0
    with pytest.raises(ValueError):
        clock_from_arguments("2026-06-21T08:00:00", 300.0, None)  # no offset
    with pytest.raises(ValueError):
        clock_from_arguments(None, 300.0, None)


async def test_aligned_cycle_runs_on_the_hour_plus_offset() -> None:
    from unittest.mock import MagicMock

    from aggregator.planner import Planner

    clock = ManualClock(T0 + timedelta(minutes=20))
    cfg = PlanningConfig(cycle_s=3600, cycle_align=True, cycle_offset_s=60, replan_on_update=False)
    p = Planner(store=MagicMock(), outbox=MagicMock(), clock=clock, tariff=MagicMock(), config=cfg,
                metrics=MagicMock(), replica_id="r", elector=MagicMock())
    import time

    wait = p.schedule.next_cycle() - time.monotonic()
    assert wait == pytest.approx(41 * 60, abs=1.0)  # 08:20 -> 09:01
    p.request("h1")
    assert not p.schedule.pending  # replan_on_update off: requests wait for the cycle


async def test_held_clock_stands_at_its_start_until_the_anchor() -> None:
    import asyncio
    import time

    clock = AcceleratedClock(T0, 1000.0, time.time() + 0.3, hold_before_anchor=True)
    assert clock.now() == T0 and clock.hold_before_anchor
    t0 = time.monotonic()
    await clock.sleep(100.0)  # 0.3 s until the anchor, then 0.1 s
    assert time.monotonic() - t0 == pytest.approx(0.4, abs=0.1)
    assert clock.now() >= T0 + timedelta(seconds=100)
    held = clock_from_arguments("2026-06-21T08:00:00+00:00", 300.0, time.time() + 60, hold=True)
    assert held.now() == T0
    with pytest.raises(ValueError):
        clock_from_arguments(None, None, None, hold=True)
    await asyncio.sleep(0)


async def test_aligned_cycle_waits_for_a_held_clock() -> None:
    import time
    from unittest.mock import MagicMock

    from aggregator.planner import Planner

    clock = AcceleratedClock(T0, 300.0, time.time() + 60, hold_before_anchor=True)
    p = Planner(store=MagicMock(), outbox=MagicMock(), clock=clock, tariff=MagicMock(),
                config=PlanningConfig(cycle_s=3600, cycle_align=True, cycle_offset_s=60), metrics=MagicMock(),
                replica_id="r", elector=MagicMock())
    p.schedule.next_cycle()
    later = p.schedule.cycle_not_yet()  # 08:01 has not come: the clock stands at 08:00 for another minute
    assert later is not None and later - time.monotonic() == pytest.approx(0.2, abs=0.05)


def test_day_ahead_publication_in_the_market_zone(tmp_path: Path) -> None:
    """Published 13:00 Europe/Berlin: 11:00 UTC in summer; the series is known to the end of the
    next Berlin day (22:00 UTC)."""
    from datetime import time

    midnight = T0.replace(hour=0)
    rows = [(midnight + timedelta(hours=h), 0.1 + h / 1000, 0.05) for h in range(72)]
    s = PriceSeries.load(_write(tmp_path / "p.csv", rows), slot_s=900, published=time(13),
                         market_timezone="Europe/Berlin")
    assert s.known_until(T0.replace(hour=10, minute=59)) == midnight + timedelta(hours=22)
    assert s.known_until(T0.replace(hour=11)) == midnight + timedelta(days=1, hours=22)
    with pytest.raises(ValueError, match="not both"):
        PriceSeries.load(tmp_path / "p.csv", slot_s=900, published=time(13), publish_hour_utc=11)
