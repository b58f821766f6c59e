"""House physics: energy balance, SoC integration with efficiency and limits, command window."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from simulator.physics import (
    BatteryCommand,
    HousePhysics,
    PhysicsConfig,
    PhysicsSnapshot,
    household_load_w,
    pv_production_w,
    window_from_storage_controls,
)

T0 = datetime(2024, 6, 1, 0, 0, tzinfo=UTC)
NOON = T0 + timedelta(hours=12)
HOUR = timedelta(hours=1)


def constant(pv_w: float, load_w: float, **kw: float) -> PhysicsConfig:
    """A house with constant PV production and load (magnitudes, W)."""
    base = dict(battery_capacity_wh=10_000.0, battery_max_charge_w=5_000.0, battery_max_discharge_w=5_000.0,
                charge_efficiency=1.0, discharge_efficiency=1.0, initial_soc_pct=50.0,
                min_soc_pct=5.0, max_soc_pct=100.0)
    base.update(kw)
    return PhysicsConfig(pv_profile=lambda _t: pv_w, load_profile=lambda _t: load_w, **base)  # type: ignore[arg-type]


def assert_balanced(s: PhysicsSnapshot) -> None:
    assert s.grid_power_w == pytest.approx(s.load_power_w + s.battery_power_w + s.pv_power_w, abs=1e-9)
    assert s.inverter_ac_power_w == pytest.approx(-(s.pv_power_w + s.battery_power_w), abs=1e-9)
    assert s.pv_power_w <= 0
    assert s.load_power_w >= 0


def assert_energy_balanced(s: PhysicsSnapshot) -> None:
    grid_net = s.grid_imported_wh - s.grid_exported_wh
    batt_net = s.battery_charged_wh - s.battery_discharged_wh
    assert grid_net == pytest.approx(s.load_energy_wh + batt_net - s.pv_energy_wh, abs=1e-6)


# -- profiles -------------------------------------------------------------


def test_pv_profile_is_a_day_bell_scaled_by_kwp() -> None:
    cfg = PhysicsConfig(pv_kwp=10.0, pv_performance_ratio=0.8, sunrise_utc_h=6.0, sunset_utc_h=20.0)
    assert pv_production_w(cfg, T0 + timedelta(hours=5)) == 0.0
    assert pv_production_w(cfg, T0 + timedelta(hours=6)) == 0.0
    assert pv_production_w(cfg, T0 + timedelta(hours=21)) == 0.0
    assert pv_production_w(cfg, T0 + timedelta(hours=13)) == pytest.approx(8_000.0)  # midpoint = peak
    morning = pv_production_w(cfg, T0 + timedelta(hours=9))
    assert 0 < morning < 8_000
    assert morning == pytest.approx(pv_production_w(cfg, T0 + timedelta(hours=17)))  # symmetric
    double = replace(cfg, pv_kwp=20.0)
    assert pv_production_w(double, T0 + timedelta(hours=9)) == pytest.approx(2 * morning)


def test_load_profile_has_base_and_two_peaks() -> None:
    cfg = PhysicsConfig(load_base_w=250.0, load_morning_peak_w=500.0, load_evening_peak_w=1000.0)
    night = household_load_w(cfg, T0 + timedelta(hours=2))
    morning = household_load_w(cfg, T0 + timedelta(hours=7))
    noon = household_load_w(cfg, NOON)
    evening = household_load_w(cfg, T0 + timedelta(hours=19))
    assert 250.0 <= night < 260.0
    assert morning == pytest.approx(750.0, abs=1.0)
    assert evening == pytest.approx(1250.0, abs=1.0)
    assert noon < 260.0
    assert max(night, noon) < morning < evening


def test_snapshot_signs_over_a_default_day() -> None:
    house = HousePhysics(PhysicsConfig(), T0)
    for minute in range(0, 24 * 60, 10):
        s = house.step(T0 + timedelta(minutes=minute))
        assert_balanced(s)
        assert 5.0 <= s.soc_pct <= 100.0
    assert_energy_balanced(house.snapshot)
    assert house.snapshot.pv_energy_wh > 0


# -- self-consumption and balance -----------------------------------------


def test_self_consumption_absorbs_surplus_with_zero_grid() -> None:
    s = HousePhysics(constant(pv_w=3000, load_w=500), NOON).snapshot
    assert s.pv_power_w == -3000
    assert s.battery_power_w == pytest.approx(2500)
    assert s.grid_power_w == pytest.approx(0)
    assert s.inverter_ac_power_w == pytest.approx(500)  # production positive
    assert_balanced(s)


def test_self_consumption_covers_load_at_night() -> None:
    s = HousePhysics(constant(pv_w=0, load_w=800), T0).snapshot
    assert s.battery_power_w == pytest.approx(-800)
    assert s.grid_power_w == pytest.approx(0)
    assert s.pv_power_w == 0 and not math.copysign(1, s.pv_power_w) < 0  # no -0.0


def test_nameplate_limits_surplus_goes_to_grid() -> None:
    s = HousePhysics(constant(pv_w=9000, load_w=500, battery_max_charge_w=3000), NOON).snapshot
    assert s.battery_power_w == 3000
    assert s.grid_power_w == pytest.approx(-5500)  # export
    assert_balanced(s)


# -- SoC integration ------------------------------------------------------


def test_soc_integrates_charge_with_efficiency() -> None:
    cfg = constant(pv_w=2500, load_w=500, charge_efficiency=0.9)
    house = HousePhysics(cfg, NOON)
    assert house.snapshot.battery_power_w == pytest.approx(2000)
    s = house.step(NOON + HOUR)
    # 2000 W for 1 h, 90 % into the cells: 1800 Wh of 10 kWh = 18 %.
    assert s.soc_pct == pytest.approx(68.0)
    assert s.battery_charged_wh == pytest.approx(2000.0)
    assert s.grid_imported_wh == pytest.approx(0.0) and s.grid_exported_wh == pytest.approx(0.0)
    assert_energy_balanced(s)


def test_soc_integrates_discharge_with_efficiency() -> None:
    cfg = constant(pv_w=0, load_w=1000, discharge_efficiency=0.9)
    house = HousePhysics(cfg, T0)
    s = house.step(T0 + HOUR)
    # 1000 Wh delivered needs 1000 / 0.9 Wh from the cells.
    assert s.soc_pct == pytest.approx(50.0 - 1000 / 0.9 / 10_000 * 100)
    assert s.battery_discharged_wh == pytest.approx(1000.0)
    assert_energy_balanced(s)


def test_integration_is_step_size_independent_under_constant_power() -> None:
    cfg = constant(pv_w=4000, load_w=1000, charge_efficiency=0.93)
    coarse = HousePhysics(cfg, NOON).step(NOON + HOUR)
    fine = HousePhysics(cfg, NOON)
    for s in range(1, 3601):
        fine.step(NOON + timedelta(seconds=s))
    assert fine.snapshot.soc_pct == pytest.approx(coarse.soc_pct)
    assert fine.snapshot.battery_charged_wh == pytest.approx(coarse.battery_charged_wh)


def test_charging_stops_exactly_at_max_soc() -> None:
    cfg = constant(pv_w=2500, load_w=500, initial_soc_pct=95.0, max_soc_pct=100.0)
    house = HousePhysics(cfg, NOON)
    s = house.step(NOON + HOUR)  # 500 Wh of headroom reached after 15 of 60 minutes
    assert s.soc_pct == 100.0
    assert s.battery_charged_wh == pytest.approx(500.0)
    assert s.battery_power_w == 0  # forced to 0 at the limit
    assert s.grid_power_w == pytest.approx(-2000)  # the surplus now goes to the grid
    assert s.grid_exported_wh == pytest.approx(2000 * 0.75)
    assert_energy_balanced(s)
    assert house.step(NOON + 2 * HOUR).soc_pct == 100.0


def test_discharging_stops_at_min_soc_and_reserve() -> None:
    cfg = constant(pv_w=0, load_w=1000, initial_soc_pct=10.0, min_soc_pct=5.0)
    house = HousePhysics(cfg, T0)
    s = house.step(T0 + HOUR)  # 500 Wh available, 1000 W load: empty after 30 min
    assert s.soc_pct == pytest.approx(5.0)
    assert s.battery_power_w == 0
    assert s.grid_power_w == pytest.approx(1000)
    assert s.battery_discharged_wh == pytest.approx(500.0)
    assert_energy_balanced(s)
    # A reserve above the SoC blocks discharging without moving the SoC.
    house2 = HousePhysics(constant(pv_w=0, load_w=1000, initial_soc_pct=50.0), T0,
                          BatteryCommand(reserve_pct=60.0))
    assert house2.snapshot.battery_power_w == 0
    assert house2.step(T0 + HOUR).soc_pct == 50.0


# -- command window -------------------------------------------------------


def test_window_clamps_self_consumption() -> None:
    house = HousePhysics(constant(pv_w=3000, load_w=500), NOON, BatteryCommand(-1000, 1000))
    s = house.snapshot
    assert s.battery_power_w == 1000
    assert s.grid_power_w == pytest.approx(-1500)
    assert (s.window_lower_w, s.window_upper_w) == (-1000, 1000)


def test_forced_charge_from_grid_and_permission() -> None:
    cfg = constant(pv_w=0, load_w=400)
    forced = HousePhysics(cfg, T0, BatteryCommand(lower_w=2000, upper_w=2000)).snapshot
    assert forced.battery_power_w == 2000
    assert forced.grid_power_w == pytest.approx(2400)
    no_grid = HousePhysics(cfg, T0, BatteryCommand(lower_w=2000, upper_w=2000, grid_charging_allowed=False))
    assert no_grid.snapshot.battery_power_w == 0  # no PV surplus to charge from
    sunny = HousePhysics(constant(pv_w=1500, load_w=400), NOON,
                         BatteryCommand(lower_w=2000, upper_w=2000, grid_charging_allowed=False))
    assert sunny.snapshot.battery_power_w == pytest.approx(1100)  # only the surplus


def test_forced_discharge_exports() -> None:
    s = HousePhysics(constant(pv_w=0, load_w=400), T0, BatteryCommand(-3000, -3000)).snapshot
    assert s.battery_power_w == -3000
    assert s.grid_power_w == pytest.approx(-2600)
    assert_balanced(s)


def test_inverted_window_upper_wins() -> None:
    s = HousePhysics(constant(pv_w=0, load_w=400), T0, BatteryCommand(lower_w=1000, upper_w=0)).snapshot
    assert s.battery_power_w == 0


def test_set_command_applies_from_now_on() -> None:
    house = HousePhysics(constant(pv_w=0, load_w=1000), T0)
    house.set_command(BatteryCommand(0.0, 0.0), T0 + HOUR)  # hold after 1 h of self-consumption
    assert house.snapshot.battery_discharged_wh == pytest.approx(1000)
    assert house.snapshot.battery_power_w == 0
    s = house.step(T0 + 2 * HOUR)
    assert s.battery_discharged_wh == pytest.approx(1000)
    assert s.grid_imported_wh == pytest.approx(1000)


@pytest.mark.parametrize(("mode", "in_rte", "out_rte", "expected"), [
    (0, 100.0, 100.0, (-4000.0, 5000.0)),  # no bits: nameplate
    (1, 20.0, 100.0, (-4000.0, 1000.0)),  # charge limit
    (1, -20.0, 100.0, (-4000.0, -1000.0)),  # negative InWRte: forced discharge
    (2, 100.0, 10.0, (-500.0, 5000.0)),  # discharge limit
    (2, 100.0, -30.0, (1500.0, 5000.0)),  # negative OutWRte: forced charge
    (3, 40.0, -40.0, (2000.0, 2000.0)),  # fixed target +2000 W
    (3, -40.0, 40.0, (-2000.0, -2000.0)),  # fixed target -2000 W
    (2, 100.0, 0.0, (0.0, 5000.0)),  # hold: no discharge
    (3, 50.0, None, (-4000.0, 2500.0)),  # a missing rate keeps the nameplate bound
])
def test_window_from_model_124(mode: int, in_rte: float, out_rte: float | None,
                               expected: tuple[float, float]) -> None:
    assert window_from_storage_controls(storctl_mod=mode, in_w_rte_pct=in_rte, out_w_rte_pct=out_rte,
                                        w_cha_max_w=5000.0, max_discharge_w=4000.0) == expected


# -- determinism and validation -------------------------------------------


def test_deterministic_and_monotonic_time() -> None:
    a, b = HousePhysics(PhysicsConfig(), T0), HousePhysics(PhysicsConfig(), T0)
    for minutes in (7, 300, 301, 720, 1439):
        assert a.step(T0 + timedelta(minutes=minutes)) == b.step(T0 + timedelta(minutes=minutes))
    with pytest.raises(ValueError, match="backwards"):
        a.step(T0)
    with pytest.raises(ValueError, match="naive"):
        a.step(datetime(2024, 6, 2, 0, 0))


@pytest.mark.parametrize(("field", "value"), [
    ("battery_capacity_wh", 0.0),
    ("charge_efficiency", 1.5),
    ("discharge_efficiency", 0.0),
    ("min_soc_pct", 100.0),
    ("initial_soc_pct", 1.0),
    ("pv_kwp", -1.0),
    ("sunrise_utc_h", 21.0),
])
def test_config_validation_names_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        PhysicsConfig(**{field: value})  # type: ignore[arg-type]


def test_command_validation() -> None:
    with pytest.raises(ValueError):
        BatteryCommand(lower_w=math.nan)
    with pytest.raises(ValueError):
        BatteryCommand(reserve_pct=120.0)


def test_pv_limit_caps_production_and_keeps_balance() -> None:
    from datetime import datetime

    from simulator.physics import HousePhysics, PhysicsConfig

    noon = datetime(2024, 6, 1, 13, 0, tzinfo=UTC)
    phys = HousePhysics(PhysicsConfig(pv_kwp=8.0), noon)
    assert phys.snapshot.pv_power_w < -5_000.0
    s = phys.set_pv_limit(1_000.0, noon)
    assert s.pv_power_w == -1_000.0
    assert s.grid_power_w == pytest.approx(s.load_power_w + s.battery_power_w + s.pv_power_w)
    assert phys.set_pv_limit(None, noon).pv_power_w < -5_000.0
    with pytest.raises(ValueError):
        phys.set_pv_limit(-5.0, noon)


def test_other_devices_join_the_balance_and_the_battery_covers_them() -> None:
    """``other_w`` (plugs > 0, micro-inverters < 0: simulator/mix_house.py) is in the grid reading, its
    energy in the counters, and the battery's self-consumption covers it; a NaN from it counts as 0."""
    other = {"w": 1_500.0}
    p = HousePhysics(constant(pv_w=0.0, load_w=300.0, battery_max_discharge_w=1_000.0), NOON)
    p.other_w = lambda _t: other["w"]
    s = p.step(NOON)
    assert s.other_power_w == 1_500.0 and s.battery_power_w == -1_000.0  # at its nameplate
    assert s.grid_power_w == pytest.approx(300.0 + 1_500.0 - 1_000.0)
    s = p.set_command(BatteryCommand(lower_w=0.0, upper_w=0.0), NOON)
    assert s.grid_power_w == 1_800.0
    s = p.step(NOON + HOUR)
    assert s.grid_imported_wh == pytest.approx(1_800.0) and s.load_energy_wh == pytest.approx(300.0)
    other["w"] = -2_000.0  # a micro-inverter's export beyond the load
    s = p.set_command(BatteryCommand(), NOON + HOUR)
    assert s.battery_power_w == pytest.approx(1_700.0) and s.grid_power_w == pytest.approx(0.0)
    other["w"] = math.nan
    s = p.step(NOON + 2 * HOUR)
    assert s.other_power_w == 0.0 and s.grid_power_w == pytest.approx(0.0) and s.battery_power_w == -300.0
    assert s.grid_exported_wh == pytest.approx(0.0) and math.isfinite(s.grid_imported_wh)
