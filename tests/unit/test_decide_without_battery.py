"""decide() for a house without a battery (a house of LAN devices only): the PV limit is its one lever,
for the export cap, a plan slot's grid envelope and the fallback's export cap; a grid reading that is
not usable decides nothing (no write on stale data), a hostile number is refused."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.energy_manager.decide import (
    INVALID_INPUT,
    decide,
    decide_without_battery,
    fresh_for_control,
)
from vpp_common.messages import (
    DispatchPlan,
    Envelope,
    Measurement,
    PlanSlot,
    SiteLimits,
    SiteTelemetry,
    Validity,
)

T0 = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
LIMITS = SiteLimits(11_000.0, 300.0)


def tele(grid: float | None, pv: float | None = -1600.0, grid_validity: Validity = Validity.VALID) -> SiteTelemetry:
    def m(v: float | None, validity: Validity = Validity.VALID) -> Measurement:
        return Measurement(v, validity, T0) if v is not None else Measurement.missing()

    return SiteTelemetry(T0, m(grid, grid_validity), m(pv), Measurement.missing(), Measurement.missing(),
                         m(None if grid is None or pv is None else grid - pv))


def test_the_export_cap_becomes_the_pv_limit() -> None:
    d = decide(T0, tele(-870.0), None, True, LIMITS, None)  # battery None: the house has none
    assert d.battery_w == 0.0 and d.mode == "fallback" and d.clamped_by == ("export_cap",)
    assert d.pv_limit_w == pytest.approx(1030.0)  # 1600 W less the 570 W over the cap
    assert decide_without_battery(T0, tele(200.0), None, True, LIMITS).pv_limit_w is None  # importing: none


def test_a_limit_in_force_follows_the_cap_and_is_lifted_with_a_margin() -> None:
    held = decide_without_battery(T0, tele(-300.0, -1030.0), None, True, LIMITS, active_pv_limit_w=1030.0)
    assert held.pv_limit_w == pytest.approx(1030.0)  # at the cap: kept
    more_load = decide_without_battery(T0, tele(100.0, -1030.0), None, True, LIMITS, active_pv_limit_w=1030.0)
    assert more_load.pv_limit_w == pytest.approx(1430.0)  # rises by the headroom
    lifted = decide_without_battery(T0, tele(800.0, -1030.0), None, True, LIMITS, active_pv_limit_w=1030.0)
    assert lifted.pv_limit_w is None  # 1100 W below the cap: lifted


@pytest.mark.parametrize("validity", [Validity.STALE, Validity.MISSING, Validity.IMPLAUSIBLE])
def test_no_usable_grid_reading_decides_no_limit(validity: Validity) -> None:
    t = tele(-870.0, grid_validity=validity)
    assert not fresh_for_control(t, has_battery=False)
    d = decide(T0, t, None, True, LIMITS, None)
    assert d.mode == "safe_idle" and d.pv_limit_w is None and d.battery_w == 0.0


def test_without_a_battery_only_the_grid_must_be_fresh() -> None:
    t = tele(-870.0)
    assert fresh_for_control(t, has_battery=False) and not fresh_for_control(t)


@pytest.mark.parametrize("grid", [math.nan, math.inf, -math.inf])
def test_a_grid_reading_that_is_not_a_number_is_refused(grid: float) -> None:
    d = decide_without_battery(T0, tele(grid), None, True, LIMITS)
    assert d.clamped_by == (INVALID_INPUT,) and d.pv_limit_w is None and d.battery_w == 0.0


@pytest.mark.parametrize("limits", [SiteLimits(11_000.0, math.nan), SiteLimits(11_000.0, -1.0),
                                    SiteLimits(math.nan, 300.0)])
def test_limits_that_are_not_limits_are_refused(limits: SiteLimits) -> None:
    assert decide_without_battery(T0, tele(-870.0), None, True, limits).clamped_by == (INVALID_INPUT,)


def test_a_huge_export_curtails_all_and_a_huge_pv_stays_finite() -> None:
    assert decide_without_battery(T0, tele(-1e300, -1e300), None, True, LIMITS).pv_limit_w == 0.0
    d = decide_without_battery(T0, tele(1e300, -1e300), None, True, LIMITS)
    assert d.pv_limit_w is None or math.isfinite(d.pv_limit_w)


def _plan(envelope: Envelope | None, fallback_cap: float = 0.0) -> DispatchPlan:
    slots = tuple(PlanSlot(T0 + timedelta(minutes=15 * i), (), envelope, "feeder") for i in range(4))
    return DispatchPlan("p", 1, T0, T0, T0 + timedelta(hours=1), 900, slots, fallback_max_export_w=fallback_cap)


def test_a_plan_slots_grid_envelope_tightens_the_cap() -> None:
    d = decide_without_battery(T0, tele(-870.0), _plan(Envelope(-100.0, 11_000.0)), True, LIMITS)
    assert d.mode == "plan" and d.pv_limit_w == pytest.approx(830.0)  # export 100 W: 770 W to curtail
    live = decide_without_battery(T0, tele(-870.0), _plan(Envelope(-100.0, 11_000.0)), True, LIMITS,
                                  plan_grid_envelope=False)  # a live feeder envelope replaces it
    assert live.pv_limit_w == pytest.approx(1030.0)


def test_the_fallbacks_export_cap_holds_when_the_stream_is_down() -> None:
    d = decide_without_battery(T0, tele(-870.0), _plan(None, fallback_cap=200.0), False, LIMITS)
    assert d.mode == "fallback" and "stream down" in d.reason and d.pv_limit_w == pytest.approx(930.0)


def test_a_house_limit_is_split_over_micro_inverters_by_rating() -> None:
    from edge_agent.micro_inverter import split_limit

    assert split_limit(1200.0, [800.0, 1600.0]) == pytest.approx([400.0, 800.0])
    assert split_limit(1700.0, [800.0, 1600.0], others_w=500.0) == pytest.approx([400.0, 800.0])
    assert split_limit(300.0, [800.0, 1600.0], others_w=500.0) == [0.0, 0.0]  # the others alone exceed it
    assert split_limit(None, [800.0, 1600.0]) == [None, None]  # lifted
    assert split_limit(900.0, [0.0, 0.0]) == [450.0, 450.0]  # no rating known: equal shares
    assert split_limit(900.0, []) == []
    assert split_limit(900.0, [800.0], others_w=-200.0) == [900.0]  # a reading below 0 is no production
