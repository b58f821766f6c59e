"""Acceptance: a 24 h day of one house on the simulated clock (runs in seconds).

The agent's real decision code (``decide`` with the safety clamp and PV curtailment,
the local time-of-use planner, the history forecaster) drives the simulator's
physics (``simulator.physics.HousePhysics``) one control tick at a time:

* self-consumption raises the self-consumption ratio (1 - exported / produced PV)
  over the battery-idle case;
* time-of-use costs less than self-consumption under a TOU tariff whose peak
  price is at least twice the off-peak price (``DEFAULT_TARIFF``: 0.20 night,
  0.30 day, 0.45 from 17:00 to 21:00 UTC, export 0.07 per kWh), and on a dynamic
  hourly day-ahead-like series too.

Both figures are printed (``pytest -s``) and kept in ``FIGURES``.  Costs are
compared with the energy left in the battery at the end of the day valued at
the off-peak price (what it would cost to put it back), so that a strategy
cannot look cheap by ending the day emptier.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from edge_agent.energy_manager.decide import BatteryLimits, decide
from edge_agent.energy_manager.forecast import HistoryForecaster
from edge_agent.energy_manager.local_tou import LocalTouPlanner
from simulator.physics import (
    BatteryCommand,
    HousePhysics,
    PhysicsConfig,
    household_load_w,
    pv_production_w,
)
from vpp_common.clock import UTC, ManualClock
from vpp_common.messages import Measurement, SiteLimits, SiteTelemetry, StorageFlexibility, Validity
from vpp_common.tariff import DEFAULT_TARIFF, PriceSeries, PriceSource

DAY = datetime(2026, 3, 2, tzinfo=UTC)
TICK_S = 60  # control period on the simulated clock
LIMITS = SiteLimits(max_import_w=11_000, max_export_w=4_600)
RESERVE_SOC_PCT = 10.0
# a spring day on a modest roof: the PV surplus alone does not fill the battery, so the
# battery's use at the peak depends on the strategy
HOUSE = PhysicsConfig(pv_kwp=4.0, sunrise_utc_h=7.0, sunset_utc_h=18.0, initial_soc_pct=30.0, min_soc_pct=5.0)
FIGURES: dict[str, float] = {}


@dataclass(frozen=True)
class DayResult:
    pv_wh: float
    exported_wh: float
    imported_wh: float
    cost: float  # currency: imports at the import price minus exports at the export price
    soc_end_pct: float

    @property
    def self_consumption_ratio(self) -> float:
        return 1 - self.exported_wh / self.pv_wh

    def cost_net_of_stored(self, off_peak: float, physics: PhysicsConfig) -> float:
        """Cost minus the value of the energy the day added to the battery, at the off-peak price."""
        added_kwh = (self.soc_end_pct - physics.initial_soc_pct) / 100 * physics.battery_capacity_wh / 1000
        return self.cost - added_kwh * physics.discharge_efficiency * off_peak


def _telemetry(s: object, now: datetime) -> SiteTelemetry:
    def v(x: float) -> Measurement:
        return Measurement(x, Validity.VALID, now)
    return SiteTelemetry(now, v(s.grid_power_w), v(s.pv_power_w), v(s.battery_power_w),  # type: ignore[attr-defined]
                         v(s.soc_pct), v(s.load_power_w))  # type: ignore[attr-defined]


def _learned_forecaster(days: int = 3) -> HistoryForecaster:
    """The house's own history: the same house measured every tick on the days before."""
    fc = HistoryForecaster(900, days=7)
    t = DAY - timedelta(days=days)
    while t < DAY:
        fc.add(t, household_load_w(HOUSE, t), pv_production_w(HOUSE, t))
        t += timedelta(seconds=TICK_S)
    return fc


def simulate_day(strategy: str, tariff: PriceSource = DEFAULT_TARIFF) -> DayResult:
    """One day of ``strategy`` ("battery_idle", "self_consumption", "tou") on the simulated clock."""
    clock = ManualClock(DAY)
    physics = HousePhysics(HOUSE, DAY, BatteryCommand(0.0, 0.0) if strategy == "battery_idle" else BatteryCommand())
    battery = BatteryLimits(HOUSE.battery_max_charge_w, HOUSE.battery_max_discharge_w, RESERVE_SOC_PCT,
                            capacity_wh=HOUSE.battery_capacity_wh, control_period_s=TICK_S,
                            discharge_efficiency=HOUSE.discharge_efficiency)
    forecaster = _learned_forecaster()
    planner = LocalTouPlanner(tariff, 900, 96) if strategy == "tou" else None
    cost = 0.0
    pv_limit: float | None = None
    snap = physics.step(clock.now())
    while clock.now() < DAY + timedelta(days=1):
        now = clock.now()
        if strategy != "battery_idle":
            plan = None
            if planner is not None:
                storage = StorageFlexibility("battery", snap.soc_pct, HOUSE.min_soc_pct, HOUSE.max_soc_pct,
                                             RESERVE_SOC_PCT, HOUSE.battery_capacity_wh, HOUSE.battery_max_charge_w,
                                             HOUSE.battery_max_discharge_w, HOUSE.charge_efficiency,
                                             HOUSE.discharge_efficiency)
                plan = planner.plan(now, storage, LIMITS, forecaster)
            d = decide(now, _telemetry(snap, now), plan, True, LIMITS, battery, active_pv_limit_w=pv_limit)
            physics.set_command(BatteryCommand(d.battery_w, d.battery_w), now)
            if d.pv_limit_w != pv_limit:
                physics.set_pv_limit(d.pv_limit_w, now)
                pv_limit = d.pv_limit_w
        before = physics.snapshot
        imp, exp = tariff.prices(now, TICK_S, 1)  # prices change on the quarter hour: constant over a tick
        clock.advance(TICK_S)
        snap = physics.step(clock.now())
        cost += ((snap.grid_imported_wh - before.grid_imported_wh) * float(imp[0])
                 - (snap.grid_exported_wh - before.grid_exported_wh) * float(exp[0])) / 1000
        forecaster.add(clock.now(), snap.load_power_w, -snap.pv_power_w)
        # safety holds at every tick, whatever the strategy (one control period of lag allowed)
        assert snap.grid_power_w >= -LIMITS.max_export_w - 1.0
        assert snap.soc_pct >= min(HOUSE.initial_soc_pct, RESERVE_SOC_PCT) - 1e-6
    return DayResult(snap.pv_energy_wh, snap.grid_exported_wh, snap.grid_imported_wh, cost, snap.soc_pct)


def test_self_consumption_raises_the_self_consumption_ratio_over_an_idle_battery() -> None:
    idle, sc = simulate_day("battery_idle"), simulate_day("self_consumption")
    FIGURES.update(scr_idle=idle.self_consumption_ratio, scr_self_consumption=sc.self_consumption_ratio)
    print(f"\nself-consumption ratio over 24 h ({idle.pv_wh / 1000:.1f} kWh PV): battery idle "
          f"{idle.self_consumption_ratio:.1%}, self-consumption {sc.self_consumption_ratio:.1%}")
    assert sc.self_consumption_ratio > idle.self_consumption_ratio + 0.1


def test_time_of_use_costs_less_than_self_consumption_with_a_peak_twice_off_peak() -> None:
    imports = [p.import_price_per_kwh for p in DEFAULT_TARIFF.periods]
    assert max(imports) >= 2 * min(imports)  # 0.45 vs 0.20
    sc, tou = simulate_day("self_consumption"), simulate_day("tou")
    off_peak = min(imports)
    sc_net, tou_net = sc.cost_net_of_stored(off_peak, HOUSE), tou.cost_net_of_stored(off_peak, HOUSE)
    FIGURES.update(cost_self_consumption=sc_net, cost_tou=tou_net)
    print(f"\ncost over 24 h (DEFAULT_TARIFF 0.20/0.30/0.45 import, 0.07 export; stored energy at 0.20): "
          f"self-consumption {sc_net:.3f} EUR (raw {sc.cost:.3f}, SoC {HOUSE.initial_soc_pct:.0f} -> "
          f"{sc.soc_end_pct:.0f} %), time-of-use {tou_net:.3f} EUR (raw {tou.cost:.3f}, SoC -> "
          f"{tou.soc_end_pct:.0f} %)")
    assert tou_net < sc_net
    assert tou.cost < sc.cost or tou.soc_end_pct > sc.soc_end_pct  # not bought by emptying the battery


@pytest.mark.parametrize("strategy", ["self_consumption", "tou"])
def test_day_keeps_the_reserve_and_the_export_cap(strategy: str) -> None:
    # the per-tick assertions inside simulate_day are the test
    result = simulate_day(strategy)
    assert result.pv_wh > 0


def day_ahead_like() -> PriceSeries:
    """A dynamic hourly series shaped like a spring day-ahead market (import incl. fees):
    cheap at night and around midday (solar), dear at the morning and evening ramps."""
    import_per_kwh = [0.24, 0.22, 0.21, 0.20, 0.21, 0.24, 0.30, 0.36, 0.33, 0.28, 0.24, 0.21,
                      0.20, 0.21, 0.24, 0.28, 0.34, 0.42, 0.48, 0.50, 0.44, 0.36, 0.30, 0.26]
    times = [DAY + timedelta(hours=h) for h in range(24)]
    return PriceSeries(times, import_per_kwh, [0.05] * 24, slot_s=3600)


def test_time_of_use_on_a_dynamic_price_series_costs_less_than_self_consumption() -> None:
    prices = day_ahead_like()
    sc, tou = simulate_day("self_consumption", prices), simulate_day("tou", prices)
    sc_net, tou_net = sc.cost_net_of_stored(0.20, HOUSE), tou.cost_net_of_stored(0.20, HOUSE)
    FIGURES.update(cost_self_consumption_dynamic=sc_net, cost_tou_dynamic=tou_net)
    print(f"\ncost over 24 h (hourly day-ahead-like series 0.20..0.50 import, 0.05 export; stored energy at "
          f"0.20): self-consumption {sc_net:.3f} EUR (raw {sc.cost:.3f}), time-of-use {tou_net:.3f} EUR "
          f"(raw {tou.cost:.3f})")
    assert tou_net < sc_net
