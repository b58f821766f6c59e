"""Physics inputs from per-slot series: exact piecewise integration and slot-boundary observation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from simulator.fleet.devices import DeviceSpec, SlotRecorder, physics_for
from simulator.physics import BatteryCommand, HousePhysics, PhysicsConfig, SlotSeries

T0 = datetime(2026, 6, 21, 8, 0, tzinfo=UTC)


def test_slot_series_holds_each_slot_and_the_ends() -> None:
    s = SlotSeries(T0, 900, [100.0, 200.0, 300.0])
    assert s.at(T0 - timedelta(hours=1)) == 100.0  # before: the first value
    assert s.at(T0) == 100.0
    assert s.at(T0 + timedelta(seconds=899.9)) == 100.0
    assert s.at(T0 + timedelta(seconds=900)) == 200.0  # a boundary belongs to the next slot
    assert s.at(T0 + timedelta(hours=5)) == 300.0  # after: the last value
    assert s.next_breakpoint(T0) == T0 + timedelta(seconds=900)
    assert s.next_breakpoint(T0 - timedelta(seconds=10)) == T0
    assert s.next_breakpoint(T0 + timedelta(seconds=1800)) == T0 + timedelta(seconds=2700)  # the end
    assert s.next_breakpoint(T0 + timedelta(seconds=2700)) is None
    assert s.end == T0 + timedelta(seconds=2700)


@pytest.mark.parametrize("values", [[], [1.0, -1.0], [float("nan")]])
def test_slot_series_refuses_bad_values(values: list[float]) -> None:
    with pytest.raises(ValueError):
        SlotSeries(T0, 900, values)


def test_series_replace_the_built_in_profiles_and_scale() -> None:
    cfg = PhysicsConfig(pv_series=SlotSeries(T0, 900, [5000.0, 7000.0]),
                        load_series=SlotSeries(T0, 900, [400.0, 300.0]))
    phys = HousePhysics(cfg, T0)
    assert phys.snapshot.pv_power_w == -5000.0
    assert phys.snapshot.load_power_w == 400.0
    assert cfg.pv_peak_w == 7000.0 and cfg.load_max_w == 400.0


def test_energy_is_exact_across_slot_boundaries_with_one_long_step() -> None:
    """One step over two slots integrates each slot with its own values (no hold across the boundary)."""
    cfg = PhysicsConfig(pv_series=SlotSeries(T0, 900, [4000.0, 0.0]), load_series=SlotSeries(T0, 900, [1000.0, 2000.0]),
                        battery_capacity_wh=100_000.0, initial_soc_pct=50.0)
    phys = HousePhysics(cfg, T0, BatteryCommand(lower_w=0.0, upper_w=0.0))  # battery idle
    seen = []
    phys.observer = seen.append
    s = phys.step(T0 + timedelta(seconds=1800))
    assert s.pv_energy_wh == pytest.approx(1000.0)  # 4000 W x 0.25 h, then nothing
    assert s.load_energy_wh == pytest.approx(250.0 + 500.0)
    assert s.grid_exported_wh == pytest.approx(750.0)
    assert s.grid_imported_wh == pytest.approx(500.0)
    assert [x.at for x in seen] == [T0 + timedelta(seconds=900), T0 + timedelta(seconds=1800)]
    assert seen[0].pv_energy_wh == pytest.approx(1000.0) and seen[0].grid_exported_wh == pytest.approx(750.0)


def test_self_consumption_battery_follows_each_slot() -> None:
    cfg = PhysicsConfig(pv_series=SlotSeries(T0, 900, [3000.0, 0.0]), load_series=SlotSeries(T0, 900, [1000.0, 1000.0]),
                        battery_capacity_wh=10_000.0, initial_soc_pct=50.0, charge_efficiency=1.0,
                        discharge_efficiency=1.0)
    phys = HousePhysics(cfg, T0)
    phys.step(T0 + timedelta(seconds=1800))
    s = phys.snapshot
    assert s.battery_charged_wh == pytest.approx(500.0)  # 2000 W surplus for 0.25 h
    assert s.battery_discharged_wh == pytest.approx(250.0)  # 1000 W deficit for 0.25 h
    assert s.soc_pct == pytest.approx(52.5)
    assert s.grid_imported_wh == pytest.approx(0.0) and s.grid_exported_wh == pytest.approx(0.0)


def test_curtailment_caps_series_pv() -> None:
    cfg = PhysicsConfig(pv_series=SlotSeries(T0, 900, [6000.0]), load_series=SlotSeries(T0, 900, [500.0]))
    phys = HousePhysics(cfg, T0, BatteryCommand(lower_w=0.0, upper_w=0.0))
    phys.set_pv_limit(2000.0, T0)
    s = phys.step(T0 + timedelta(seconds=900))
    assert s.pv_energy_wh == pytest.approx(500.0)
    assert s.grid_exported_wh == pytest.approx(375.0)


def test_slot_recorder_gives_slot_means_and_end_soc() -> None:
    spec = DeviceSpec("h1", pv_kwp=5.0, battery_kwh=10.0, battery_kw=5.0, efficiency=0.95, initial_soc_pct=50.0)
    cfg = physics_for(spec, T0, 900, np.array([1000.0, 1000.0, 500.0]), np.array([0.0, 3000.0, 0.0]))
    phys = HousePhysics(cfg, T0, BatteryCommand(lower_w=0.0, upper_w=0.0))
    rec = SlotRecorder(T0, 900, 3, phys.snapshot)
    phys.observer = rec
    phys.step(T0 + timedelta(seconds=1500))  # mid slot 1
    phys.set_command(BatteryCommand(lower_w=1000.0, upper_w=1000.0), T0 + timedelta(seconds=1500))
    phys.step(T0 + timedelta(seconds=2700))
    m = rec.slot_means()
    assert m["grid_w"][0] == pytest.approx(1000.0)
    assert m["pv_used_w"][1] == pytest.approx(3000.0)
    # slot 1: 600 s idle then 300 s charging 1000 W -> mean 333 W; grid = load - pv + battery
    assert m["battery_w"][1] == pytest.approx(1000.0 / 3)
    assert m["grid_w"][1] == pytest.approx(1000.0 - 3000.0 + 1000.0 / 3)
    assert m["battery_w"][2] == pytest.approx(1000.0)
    assert m["soc_pct"][2] == pytest.approx(50.0 + (1000 * 0.95 * (1200 / 3600)) / 10_000 * 100)


def test_no_battery_house_gets_a_negligible_one() -> None:
    spec = DeviceSpec("h2", pv_kwp=0.0, battery_kwh=0.0, battery_kw=0.0, efficiency=0.95, initial_soc_pct=50.0)
    cfg = physics_for(spec, T0, 900, np.array([500.0]), np.array([0.0]))
    assert cfg.battery_capacity_wh == 1.0 and cfg.battery_max_charge_w == 1.0
