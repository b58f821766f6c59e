"""The agent's local time-of-use mode: tariffs by weekday/season, the forecast planner, the
local re-planning and its configuration (pure, on a manual clock)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path

import numpy as np
import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.cli import main as agent_main
from edge_agent.config import AgentConfig, ControlConfig, TariffConfig, TariffPeriodConfig
from edge_agent.energy_manager.forecast import Forecast
from edge_agent.energy_manager.local_tou import LocalTouPlanner
from vpp_common.clock import UTC, ManualClock
from vpp_common.config import ConfigError, load_config
from vpp_common.messages import DispatchPlan, PlanSlot, PlanState, SiteLimits, StorageFlexibility
from vpp_common.tariff import DEFAULT_TARIFF, PriceSeries, TouPeriod, TouTariff
from vpp_common.tou import TouPlanInput, plan_slots, soc_schedule

DAY = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday in March
HOURS = np.arange(96) / 4
LOAD = 300 + 600 * np.exp(-0.5 * (HOURS - 7) ** 2) + 1200 * np.exp(-0.5 * ((HOURS - 19) / 1.5) ** 2)
PV_DULL = np.where((HOURS > 8) & (HOURS < 16), 1500 * np.sin(np.pi * (HOURS - 8) / 8) ** 2, 0.0)
LIMITS = SiteLimits(11_000, 4_600)


def storage(soc: float) -> StorageFlexibility:
    return StorageFlexibility("battery", soc, 0, 100, 10, 10_000, 5_000, 5_000)


WINTER = frozenset({11, 12, 1, 2})
WEEKDAYS = frozenset(range(5))
SEASONAL = TouTariff((
    TouPeriod(time(0), time(7), 0.20, 0.07),
    TouPeriod(time(7), time(17), 0.30, 0.07),
    TouPeriod(time(17), time(21), 0.50, 0.07, WEEKDAYS, WINTER),  # winter weekday peak
    TouPeriod(time(17), time(21), 0.35, 0.07, frozenset({5, 6}), WINTER),
    TouPeriod(time(17), time(21), 0.40, 0.07, None, frozenset(range(3, 11))),
    TouPeriod(time(21), time(0), 0.30, 0.07),
))


def test_tariff_prices_by_weekday_and_season() -> None:
    monday_jan, saturday_jan = datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC)
    assert SEASONAL.prices(monday_jan, 3600, 24)[0][18] == 0.50
    assert SEASONAL.prices(saturday_jan, 3600, 24)[0][18] == 0.35
    assert SEASONAL.prices(datetime(2026, 7, 6, tzinfo=UTC), 3600, 24)[0][18] == 0.40
    assert SEASONAL.prices(monday_jan, 3600, 24)[0][3] == 0.20


def test_tariff_with_a_gap_in_one_season_is_refused() -> None:
    with pytest.raises(ValueError, match=r"month 3, 07:00 UTC 0 times \(must be once\)"):
        TouTariff((TouPeriod(time(0), time(7), 0.2, 0.0), TouPeriod(time(7), time(0), 0.3, 0.0, None, WINTER)))
    with pytest.raises(ValueError, match="weekdays"):
        TouPeriod(time(0), time(7), 0.2, 0.0, frozenset({7}))


def test_forecast_plan_charges_cheap_for_the_peak_and_never_below_reserve() -> None:
    imp, exp = DEFAULT_TARIFF.prices(DAY, 900, 96)
    inp = TouPlanInput(DAY, 900, imp, storage(12), 11_000, load_forecast_w=LOAD, pv_forecast_w=PV_DULL,
                       export_price_per_kwh=exp, max_export_w=4_600)
    power, soc = soc_schedule(inp)
    peak = (HOURS >= 17) & (HOURS < 21)
    night = HOURS < 6
    slot_h = 0.25
    peak_need_wh = float(np.sum(LOAD[peak]) * slot_h / 0.95)
    # grid charged at night (0.20) about what the peak (0.45, > 2 x 0.20 with losses) needs beyond PV
    assert power[night].max() > 0 and float(np.sum(power[night]) * slot_h) > 0.5 * peak_need_wh
    assert np.all(power[peak] <= 0)  # never charges at the peak ...
    assert float(-np.sum(power[peak]) * slot_h) >= 0.8 * float(np.sum(LOAD[peak]) * slot_h)  # ... covers its load
    assert soc.min() >= 10 - 1e-9  # the reserve
    slots = plan_slots(inp)
    charging = [s for s, p in zip(slots, power, strict=True) if p > 300]
    assert charging and all(s.setpoints[0].envelope.min_w > 0 for s in charging if "cheap" in s.reason)
    assert all("cover load" in slots[i].reason for i in np.flatnonzero(peak) if power[i] < -300)


def test_flat_price_plans_plain_self_consumption() -> None:
    inp = TouPlanInput(DAY, 900, np.full(96, 0.3), storage(50), 11_000, load_forecast_w=LOAD, pv_forecast_w=PV_DULL,
                       export_price_per_kwh=np.full(96, 0.07))
    power, _ = soc_schedule(inp)
    assert power.max() <= max(0.0, float((PV_DULL - LOAD).max())) + 450  # no grid charging (1 % steps round)


def test_below_reserve_the_plan_never_discharges() -> None:
    imp, exp = DEFAULT_TARIFF.prices(DAY + timedelta(hours=17), 900, 16)
    inp = TouPlanInput(DAY, 900, imp, storage(5), 11_000, load_forecast_w=np.full(16, 2000.0),
                       pv_forecast_w=np.zeros(16), export_price_per_kwh=exp)
    power, soc = soc_schedule(inp)
    assert np.all(power >= 0) and np.all(np.diff(soc) >= 0)


class FixedForecaster:
    def __init__(self) -> None:
        self.calls = 0

    def forecast(self, now: datetime, horizon_slots: int = 96) -> Forecast:
        self.calls += 1
        k = int((now - DAY).total_seconds() // 900)
        idx = (k + np.arange(horizon_slots)) % 96
        return Forecast(now, 900, LOAD[idx], PV_DULL[idx])


def test_local_planner_replans_each_slot_and_on_new_prices(tmp_path: Path) -> None:
    fc = FixedForecaster()
    planner = LocalTouPlanner(DEFAULT_TARIFF, 900, 96, lease_slots=2)
    p1 = planner.plan(DAY + timedelta(minutes=1), storage(30), LIMITS, fc)
    assert planner.plan(DAY + timedelta(minutes=10), storage(35), LIMITS, fc) is p1  # same slot
    p2 = planner.plan(DAY + timedelta(minutes=15), storage(35), LIMITS, fc)
    assert p2.version == p1.version + 1 and p2.valid_from == DAY + timedelta(minutes=15)
    assert p2.valid_until == p2.valid_from + timedelta(minutes=30)  # a short lease: fallback if re-planning stops
    assert planner.plan(DAY + timedelta(minutes=16), storage(35), SiteLimits(11_000, 0), fc).version == 3
    assert fc.calls == 3
    # a day-ahead series: the horizon ends where the known prices end
    f = tmp_path / "p.csv"
    f.write_text("timestamp,import_price_per_kwh,export_price_per_kwh\n" + "".join(
        f"{(DAY + timedelta(hours=h)).isoformat()},{0.1 + 0.02 * h},0.05\n" for h in range(6)))
    series = LocalTouPlanner(PriceSeries.load(f, slot_s=900), 900, 96)
    plan = series.plan(DAY, storage(30), LIMITS, fc)
    assert len(plan.slots) == 24


def tou_config(**tariff: object) -> AgentConfig:
    return AgentConfig(house_id="h", insecure=True, metrics_port=None, control=ControlConfig(mode="tou"),
                       tariff=TariffConfig(**tariff))  # type: ignore[arg-type]


def test_tou_agent_ignores_aggregator_plans_and_follows_its_own() -> None:
    cfg = tou_config(periods=[TariffPeriodConfig(start=time(0), end=time(6), import_price_per_kwh=0.2),
                              TariffPeriodConfig(start=time(6), end=time(0), import_price_per_kwh=0.45)])
    a = EdgeAgent(cfg, clock=ManualClock(DAY))
    assert a.local_tou is not None
    sent: list[object] = []
    a.uplink.send = sent.append  # type: ignore[method-assign]
    a._on_plan(DispatchPlan("p", 1, DAY, DAY, DAY + timedelta(hours=1), 900, (PlanSlot(DAY, ()),)))
    assert a.plans.current is None and sent[0].state is PlanState.REJECTED  # type: ignore[attr-defined]


def test_tou_config_errors_name_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "agent.toml"
    f.write_text('insecure = true\nhouse_id = "h1"\n[control]\nmode = "tou"\n')
    with pytest.raises(ConfigError, match="tariff"):
        load_config(AgentConfig, f)
    f.write_text('insecure = true\nhouse_id = "h1"\n[control]\nmode = "tou"\n'
                 '[[tariff.periods]]\nstart = "00:00"\nend = "06:00"\nimport_price_per_kwh = 0.2\n')
    with pytest.raises(ConfigError, match=r"tariff: .*06:00 UTC 0 times"):
        load_config(AgentConfig, f)
    f.write_text('insecure = true\nhouse_id = "h1"\n[control]\nmode = "tou"\n[tariff]\n'
                 f'prices_file = "{tmp_path / "missing.csv"}"\n')
    with pytest.raises(ConfigError, match="tariff: .*does not exist"):
        load_config(AgentConfig, f)
    f.write_text('insecure = true\nhouse_id = "h1"\n[control]\nmode = "tou"\n'
                 '[[tariff.periods]]\nstart = "00:00"\nend = "00:00"\nimport_price_per_kwh = 0.3\n'
                 'weekdays = ["mon", "funday"]\n')
    assert agent_main(["run", "--config", str(f)]) == 2  # exits 2 naming the field
    assert "tariff.periods.0.weekdays" in capsys.readouterr().err
    f.write_text('insecure = true\nhouse_id = "h1"\n[control]\nmode = "tou"\n'
                 '[[tariff.periods]]\nstart = "00:00"\nend = "07:00"\nimport_price_per_kwh = 0.2\n'
                 '[[tariff.periods]]\nstart = "07:00"\nend = "00:00"\nimport_price_per_kwh = 0.4\n'
                 'weekdays = ["sat", "sun"]\n[[tariff.periods]]\nstart = "07:00"\nend = "00:00"\n'
                 'import_price_per_kwh = 0.5\nweekdays = ["mon", "tue", "wed", "thu", "fri"]\nmonths = [1, 2]\n')
    with pytest.raises(ConfigError, match="tariff: .*month 3"):  # no weekday price from March
        load_config(AgentConfig, f)


def test_outside_its_soc_range_the_plan_only_moves_back_towards_it() -> None:
    # above soc_max with a discharge too slow for a 1 % step per slot: hold, never charge
    high = StorageFlexibility("battery", 98, 0, 90, 10, 10_000, 5_000, 50)
    imp, exp = DEFAULT_TARIFF.prices(DAY, 900, 96)
    power, soc = soc_schedule(TouPlanInput(DAY, 900, imp, high, 11_000, load_forecast_w=LOAD,
                                           pv_forecast_w=PV_DULL * 3, export_price_per_kwh=exp))
    assert np.all(power <= 0) and soc.max() <= 98
