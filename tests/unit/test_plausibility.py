"""Plausibility from the house, not a constant (issue 19, item 3): edge_agent.resources.plausibility
and edge_agent.resources.capabilities, pure."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.resources.capabilities import plan_refusal, sunspec_capabilities
from edge_agent.resources.plausibility import (
    SOC_RANGE,
    BalanceWatch,
    HouseBounds,
    load_from_balance,
    out_of_range,
    rating,
)
from vpp_common.messages import DispatchPlan, Envelope, PlanSlot, Setpoint

HOUSE = HouseBounds(max_import_w=11_000.0, battery_max_w=5_000.0, pv_rating_w=10_000.0)
T0 = datetime(2026, 6, 21, 12, tzinfo=UTC)


def test_32767_w_on_an_11_kw_fuse_is_implausible() -> None:
    # the issue: grid and battery at 32,767 W passed as valid (the bound was +-1 MW)
    assert out_of_range("grid", 32_767.0, *HOUSE.grid_range()) is not None
    assert out_of_range("grid", -32_767.0, *HOUSE.grid_range()) is not None
    assert out_of_range("battery", 32_767.0, *HOUSE.battery_range()) is not None
    assert out_of_range("battery", -32_767.0, *HOUSE.battery_range()) is not None
    refused = out_of_range("grid", 32_767.0, *HOUSE.grid_range())
    assert refused is not None and refused.reason == "grid_implausible" and "32767" in refused.detail


def test_real_house_readings_pass() -> None:
    for grid in (-9_000.0, -4_600.0, 0.0, 11_000.0, 16_000.0):  # past the limit for a while: still a reading
        assert out_of_range("grid", grid, *HOUSE.grid_range()) is None
    for battery in (-5_000.0, 0.0, 5_500.0):
        assert out_of_range("battery", battery, *HOUSE.battery_range()) is None
    for pv in (-14_000.0, -6_000.0, 0.0):  # a DC array oversized against its inverter
        assert out_of_range("pv", pv, *HOUSE.pv_range()) is None
    assert out_of_range("pv", 500.0, *HOUSE.pv_range()) is not None  # PV does not consume 500 W


def test_export_beyond_what_the_house_generates_is_implausible() -> None:
    small = HouseBounds(max_import_w=25_000.0, battery_max_w=3_000.0, pv_rating_w=4_000.0)
    lo, hi = small.grid_range()
    assert hi == 50_100.0 and lo > -14_000.0  # 2 x 4 kW PV + 3 kW battery, with margins
    assert out_of_range("grid", -20_000.0, lo, hi) is not None


def test_soc_outside_0_100_is_implausible() -> None:
    refused = out_of_range("soc", 300.0, *SOC_RANGE, unit="%")
    assert refused is not None and "300 %" in refused.detail
    assert out_of_range("soc", -1.0, *SOC_RANGE, unit="%") is not None
    assert out_of_range("soc", 100.0, *SOC_RANGE, unit="%") is None


def test_unknown_house_falls_back_to_a_home_bound() -> None:
    lo, hi = HouseBounds().grid_range()
    assert (lo, hi) == (-100_000.0, 100_000.0)
    assert out_of_range("grid", 1e6, lo, hi) is not None


def test_nameplate_beyond_any_home_is_not_passed_on() -> None:
    value, refused = rating("model 120 WRtg", 10_000_000.0)
    assert value is None and refused is not None and refused.reason == "nameplate_implausible"
    assert rating("model 120 WRtg", 10_000.0) == (10_000.0, None)
    assert rating("model 120 WRtg", None) == (None, None)  # not implemented: nothing to refuse
    for bad in (math.nan, math.inf, -5_000.0):
        assert rating("model 120 WRtg", bad)[0] is None
    assert rating("WHRtg", 10_000_000.0, 200_000.0, "Wh")[0] is None


def test_energy_balance() -> None:
    load, refused = load_from_balance(-1_000.0, -3_000.0, 1_500.0)
    assert load == 500.0 and refused is None
    # grid importing 32 kW while PV makes 3 kW and the battery charges 1.5 kW: load 33.5 kW, possible
    assert load_from_balance(32_000.0, -3_000.0, 1_500.0)[1] is None
    # exporting 5 kW with PV at 1 kW and the battery charging: a load of -5.5 kW cannot be
    load, refused = load_from_balance(-5_000.0, -1_000.0, 1_500.0)
    assert load == -5_500.0 and refused is not None and refused.reason == "energy_balance"
    assert load_from_balance(-200.0, 0.0, 0.0)[1] is None  # meter and inverter read apart: tolerated


def test_balance_watch_tolerates_one_poll_not_three() -> None:
    watch = BalanceWatch(3)
    assert [watch.update(u) for u in (True, True, False, True, True, True, True)] == \
        [False, False, False, False, False, True, True]
    assert watch.update(False) is False


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_every_value_is_in_range_or_refused(value: float) -> None:
    for lo, hi in (HOUSE.grid_range(), HOUSE.battery_range(), HOUSE.pv_range(), SOC_RANGE):
        refused = out_of_range("x", value, lo, hi)
        assert (refused is None) == (math.isfinite(value) and lo <= value <= hi)


# -- capabilities ---------------------------------------------------------------

def _hybrid(*models: int) -> dict[str, frozenset[int]]:
    m = frozenset(models)
    return {"battery": m, "pv": m, "meter": m}


def test_no_model_802_battery_not_controllable_and_says_why() -> None:
    caps = sunspec_capabilities(_hybrid(1, 120, 124, 203, 103), hybrid=True)  # the image
    assert caps.battery_reason is not None and "802" in caps.battery_reason
    assert caps.pv_reason is not None and "123" in caps.pv_reason
    assert set(caps.can) == {"grid_power", "battery_soc", "battery_control"}
    assert set(caps.cannot) == {"battery_power", "pv_power", "pv_curtailment"}
    assert caps.to_dict()["battery_controllable"] is False


def test_full_hybrid_can_everything() -> None:
    caps = sunspec_capabilities(_hybrid(1, 103, 120, 123, 124, 160, 203, 802), hybrid=True)
    assert caps.battery_reason is None and caps.pv_reason is None and not caps.cannot
    der = sunspec_capabilities(_hybrid(1, 701, 702, 713, 704, 203, 160, 802), hybrid=True)
    assert der.battery_reason is None and der.can["pv_curtailment"] == "model 704 WMaxLimPct"
    # 702 capacity and 160 PV but no 802: still no battery power
    assert sunspec_capabilities(_hybrid(1, 701, 702, 713, 704, 203, 160), hybrid=True).battery_reason is not None
    assert caps.without("battery_control", "WChaMax 10 MW").battery_reason == \
        "battery not controllable (battery control: WChaMax 10 MW)"


def _plan(resource: str) -> DispatchPlan:
    slot = PlanSlot(T0, (Setpoint(resource, 1_000.0, Envelope(-5_000.0, 5_000.0)),))
    return DispatchPlan("p", 1, T0, T0, T0 + timedelta(hours=1), 3600, (slot,))


def test_plan_refused_for_what_the_house_cannot_deliver() -> None:
    reasons = {"battery": "battery not controllable (battery power: no model 802)", "grid_meter": "measured only"}
    assert plan_refusal(_plan("battery"), reasons.get, "battery") == reasons["battery"]
    able = {"grid_meter": "measured only"}
    assert plan_refusal(_plan("battery"), able.get, "battery") is None
    assert plan_refusal(_plan("grid_meter"), able.get, "battery") == "setpoint for grid_meter: measured only"
