"""Energy counters: valid readings only, gaps skipped, never decreasing, persisted."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.home_assistant.energy import COUNTERS, CounterStore, EnergyCounters
from vpp_common.messages import Measurement, SiteTelemetry, Validity
from vpp_common.tariff import TouPeriod, TouTariff

T0 = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)


def tel(t: float, grid: float | None, pv: float | None = -2000.0, bat: float | None = 500.0,
        validity: Validity = Validity.VALID) -> SiteTelemetry:
    def m(v: float | None) -> Measurement:
        return Measurement(v, validity if v is not None else Validity.MISSING, T0)

    return SiteTelemetry(T0 + timedelta(seconds=t), m(grid), m(pv), m(bat), m(50.0), m(1000.0))


def test_integrates_valid_readings_by_sign() -> None:
    c = EnergyCounters(max_step_s=10)
    for i in range(0, 3601, 5):  # one hour: importing 1 kW, PV 2 kW, charging 0.5 kW
        c.add(tel(i, 1000.0))
    assert math.isclose(c.kwh["grid_import"], 1.0)
    assert math.isclose(c.kwh["pv_production"], 2.0)
    assert math.isclose(c.kwh["battery_in"], 0.5)
    assert c.kwh["grid_export"] == c.kwh["battery_out"] == 0.0


def test_stale_is_not_integrated_and_a_gap_is_skipped() -> None:
    c = EnergyCounters(max_step_s=10)
    c.add(tel(0, 1000.0))
    c.add(tel(5, 1000.0))  # 5 s at 1 kW
    c.add(tel(10, 1000.0, validity=Validity.STALE))  # the stale value ends the stretch
    c.add(tel(15, 1000.0))
    c.add(tel(3600 * 5, 1000.0))  # five hours later: a gap, not 5 kWh
    c.add(tel(3600 * 5 + 5, 1000.0))  # 5 s more
    assert math.isclose(c.kwh["grid_import"], 10 * 1000 / 3_600_000)
    assert c.gaps_skipped == 3  # one per quantity: grid, PV, battery


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 30), st.one_of(st.none(), st.floats(-1e5, 1e5), st.just(math.nan),
                                                          st.just(math.inf))), max_size=60))
def test_never_decreasing_whatever_the_readings(readings: list[tuple[float, float | None]]) -> None:
    c = EnergyCounters(max_step_s=10)
    t, last = 0.0, dict(c.kwh)
    for dt, grid in readings:
        t += dt
        c.add(tel(t, grid, pv=grid, bat=grid))
        assert all(c.kwh[k] >= last[k] and math.isfinite(c.kwh[k]) for k in COUNTERS)
        last = dict(c.kwh)


def test_persisted_across_restarts(tmp_path: Path) -> None:
    store = CounterStore(tmp_path / "state" / "energy.json")
    c = store.load(10)
    for i in range(0, 61, 5):
        c.add(tel(i, -3000.0))
    store.save(c)
    again = store.load(10)
    assert again.kwh == c.kwh and again.kwh["grid_export"] > 0


def test_a_corrupt_file_is_kept_aside_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "energy.json"
    path.write_text(json.dumps({"version": 1, "kwh": {k: -5.0 for k in COUNTERS}}))
    c = CounterStore(path).load(10)
    assert all(v == 0.0 for v in c.kwh.values())
    assert (tmp_path / "energy.corrupt").exists()


def test_money_saved_today_with_a_tariff() -> None:
    from datetime import time

    tariff = TouTariff((TouPeriod(time(0), time(0), 0.30, 0.10, None, None),), currency="EUR")
    c = EnergyCounters(max_step_s=10)
    for i in range(0, 3601, 5):  # battery discharging 1 kW covers a 1 kW load: 1 kWh not imported
        c.add(tel(i, 0.0, pv=0.0, bat=-1000.0), tariff)
    assert math.isclose(c.saved_today, 0.30, rel_tol=1e-6)
