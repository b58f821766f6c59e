"""Plan following and the safety envelope (pure decisions)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.energy_manager.decide import BatteryLimits, decide, safety_clamp
from edge_agent.energy_manager.plans import PlanBook
from vpp_common.clock import UTC
from vpp_common.messages import (
    DispatchPlan,
    Envelope,
    FallbackMode,
    Measurement,
    PlanSlot,
    PlanState,
    Setpoint,
    SiteLimits,
    SiteTelemetry,
    Validity,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LIMITS = SiteLimits(max_import_w=10_000, max_export_w=4_000)
BATTERY = BatteryLimits(max_charge_w=5_000, max_discharge_w=5_000, reserve_soc_pct=10)


def telemetry(grid: float, battery: float, soc: float, pv: float = -3000.0) -> SiteTelemetry:
    v = lambda x: Measurement(x, Validity.VALID, T0)  # noqa: E731
    return SiteTelemetry(T0, v(grid), v(pv), v(battery), v(soc), v(grid - pv - battery))


def plan(version: int, target: float, env: Envelope, lease_s: int = 3600) -> DispatchPlan:
    slots = tuple(PlanSlot(T0 + timedelta(seconds=900 * i), (Setpoint("battery", target, env),), None, "test")
                  for i in range(lease_s // 900))
    return DispatchPlan(f"p{version}", version, T0, T0, T0 + timedelta(seconds=lease_s), 900, slots)


def test_fixed_setpoint_is_applied() -> None:
    d = decide(T0, telemetry(grid=500, battery=0, soc=50), plan(1, 2000, Envelope(2000, 2000)), True, LIMITS, BATTERY)
    assert d.mode == "plan" and d.battery_w == 2000


def test_envelope_follows_house_balance() -> None:
    # house exports 1500 W without battery; envelope allows charging only up to 1000 W
    d = decide(T0, telemetry(grid=-1500, battery=0, soc=50), plan(1, 0, Envelope(0, 1000)), True, LIMITS, BATTERY)
    assert d.battery_w == 1000


def test_expired_plan_falls_back_to_self_consumption() -> None:
    p = plan(1, 2000, Envelope(2000, 2000), lease_s=900)
    d = decide(T0 + timedelta(seconds=901), telemetry(grid=-1200, battery=0, soc=50), p, True, LIMITS, BATTERY)
    assert d.mode == "fallback" and d.battery_w == 1200


def test_stream_down_past_grace_forces_fallback() -> None:
    d = decide(T0, telemetry(grid=300, battery=0, soc=50), plan(1, 2000, Envelope(2000, 2000)), False, LIMITS,
               BATTERY)
    assert d.mode == "fallback" and "stream down" in d.reason


def test_missing_measurement_idles() -> None:
    t = telemetry(grid=300, battery=0, soc=50)
    t = SiteTelemetry(T0, Measurement.missing(), t.pv_power_w, t.battery_power_w, t.battery_soc_pct, t.load_power_w)
    d = decide(T0, t, None, True, LIMITS, BATTERY)
    assert d.mode == "safe_idle" and d.battery_w == 0


def test_reserve_blocks_discharge_and_import_limit_caps_charging() -> None:
    d = decide(T0, telemetry(grid=500, battery=0, soc=10), plan(1, -3000, Envelope(-3000, -3000)), True, LIMITS,
               BATTERY)
    assert d.battery_w == 0 and "soc_reserve" in d.clamped_by
    d = decide(T0, telemetry(grid=8000, battery=0, soc=50), plan(1, 5000, Envelope(5000, 5000)), True, LIMITS,
               BATTERY)
    assert d.battery_w == 2000 and "import_limit" in d.clamped_by


@settings(max_examples=300, deadline=None)
@given(desired=st.floats(-20_000, 20_000), base=st.floats(-15_000, 15_000), soc=st.floats(0, 100))
def test_safety_clamp_properties(desired: float, base: float, soc: float) -> None:
    value, _ = safety_clamp(desired, base, soc, LIMITS, BATTERY)
    assert -BATTERY.max_discharge_w <= value <= BATTERY.max_charge_w
    if soc <= BATTERY.reserve_soc_pct:
        assert value >= 0
    grid = base + value
    # the grid limits hold wherever the battery alone can hold them
    if -BATTERY.max_discharge_w <= LIMITS.max_import_w - base and (soc > BATTERY.reserve_soc_pct or base <= LIMITS.max_import_w):
        assert grid <= LIMITS.max_import_w + 1e-6
    if -LIMITS.max_export_w - base <= BATTERY.max_charge_w and (soc < 100 or base >= -LIMITS.max_export_w):
        assert grid >= -LIMITS.max_export_w - 1e-6


def test_planbook_adopts_only_newer_versions_and_reports_expiry() -> None:
    book = PlanBook()
    assert book.offer(plan(2, 0, Envelope(0, 0), 900), T0).state is PlanState.ACCEPTED
    assert book.offer(plan(1, 0, Envelope(0, 0)), T0).state is PlanState.REJECTED
    assert book.offer(plan(2, 0, Envelope(0, 0), 900), T0).state is PlanState.ACCEPTED  # re-sent after reconnect
    assert book.current is not None and book.current.version == 2
    assert book.expiry(T0 + timedelta(seconds=100)) is None
    expired = book.expiry(T0 + timedelta(seconds=900))
    assert expired is not None and expired.state is PlanState.EXPIRED
    assert book.expiry(T0 + timedelta(seconds=901)) is None  # reported once
    assert book.active(T0 + timedelta(seconds=900)) is None
    idle = DispatchPlan("x", 3, T0, T0, T0 + timedelta(seconds=900), 900,
                        (PlanSlot(T0, (), None),), FallbackMode.IDLE)
    assert book.offer(idle, T0 + timedelta(seconds=1000)).state is PlanState.REJECTED  # already expired


def test_pv_is_curtailed_only_when_the_battery_cannot_absorb_the_surplus() -> None:
    # 7 kW PV, 1 kW load: 6 kW surplus, export cap 4 kW
    t = telemetry(grid=-6000, battery=0, soc=50, pv=-7000)
    d = decide(T0, t, plan(1, 0, Envelope(0, 0)), True, LIMITS, BATTERY)  # the plan says idle...
    assert d.battery_w == 2000 and d.pv_limit_w is None  # ...the export cap makes the battery take 2 kW
    full = decide(T0, telemetry(grid=-6000, battery=0, soc=100, pv=-7000), None, True, LIMITS, BATTERY)
    assert full.battery_w == 0 and full.pv_limit_w == 5000  # full battery: PV limited to load + cap
    big = decide(T0, telemetry(grid=-12000, battery=0, soc=50, pv=-13000), None, True, LIMITS, BATTERY)
    assert big.battery_w == 5000 and big.pv_limit_w == 10000  # battery at its limit, the rest curtailed


@settings(max_examples=300, deadline=None)
@given(pv=st.floats(-15_000, 0), load=st.floats(0, 15_000), soc=st.floats(0, 100))
def test_export_cap_holds_with_curtailment(pv: float, load: float, soc: float) -> None:
    t = telemetry(grid=load + pv, battery=0, soc=soc, pv=pv)
    d = decide(T0, t, None, True, LIMITS, BATTERY)
    curtailed_pv = pv if d.pv_limit_w is None else max(pv, -d.pv_limit_w)
    assert load + curtailed_pv + d.battery_w >= -LIMITS.max_export_w - 1e-6
    if d.pv_limit_w is not None:  # never curtail while the battery could take more
        assert d.battery_w == BATTERY.max_charge_w or soc >= BATTERY.max_soc_pct


def test_ramp_limit_yields_to_the_export_cap() -> None:
    ramped = BatteryLimits(5_000, 5_000, 10, max_ramp_w_per_s=100)
    d = decide(T0, telemetry(grid=500, battery=0, soc=50), plan(1, 3000, Envelope(3000, 3000)), True, LIMITS, ramped,
               previous_w=0.0, dt_s=5.0)
    assert d.battery_w == 500 and "ramp" in d.clamped_by  # 100 W/s for 5 s
    # 9 kW surplus, cap 4 kW: the battery must take 5 kW now, ramp or not
    d = decide(T0, telemetry(grid=-9000, battery=0, soc=50, pv=-9500), None, True, LIMITS, ramped,
               previous_w=0.0, dt_s=5.0)
    assert d.battery_w == 5000


def test_charge_tapers_so_that_a_battery_does_not_fill_up_mid_period() -> None:
    """A battery that fills mid-period stops charging at once and its surplus reaches the grid until
    the next tick: near full it charges no more than fills it in one period, and PV takes the rest."""
    b = BatteryLimits(5_000, 5_000, reserve_soc_pct=10, capacity_wh=10_000, control_period_s=10)
    # 0.05 % of 10 kWh = 5 Wh of room: 1.8 kW for 10 s
    value, rules = safety_clamp(5_000, -6_000, 99.95, SiteLimits(17_000, 10_000), b)
    assert value == pytest.approx(1_800) and rules == ("soc_max",)
    # with a 4 kW export cap, PV is curtailed for what the tapered battery cannot take
    d = decide(T0, telemetry(grid=-6_000, battery=0, soc=99.95, pv=-7_000), None, True, LIMITS, b)
    assert d.battery_w == pytest.approx(1_800)
    assert d.pv_limit_w is not None and -6_000 + d.battery_w + (7_000 - d.pv_limit_w) >= -LIMITS.max_export_w - 1e-6
    # far from full the nameplate holds as before
    assert safety_clamp(5_000, -6_000, 50.0, SiteLimits(17_000, 10_000), b)[0] == 5_000
