"""Local commands checked without an agent: what holds once applied, or why refused."""

from __future__ import annotations

from datetime import datetime, timedelta

from edge_agent.config import AgentConfig
from edge_agent.energy_manager.plan_check import Problem
from edge_agent.local_control import (
    HouseNow,
    LocalChange,
    live_override,
    local_change,
    override_plan,
    plan_in_force,
)
from vpp_common.clock import UTC

T0 = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
CFG = AgentConfig(house_id="h1", insecure=True, metrics_port=None)


def house(max_charge_w: float | None = 5000.0, problem: Problem | None = None) -> HouseNow:
    return HouseNow(CFG, None, T0, "battery", max_charge_w, lambda _plan: problem)


def test_settings_give_a_new_config_and_nothing_else() -> None:
    change = local_change(house(), "control_mode", "self_consumption")
    assert isinstance(change, LocalChange) and change.config.control.mode == "self_consumption"
    assert change.override is None and CFG.control.mode == "vpp"  # the old config untouched
    assert local_change(house(), "control_mode", "tou") == (
        "invalid_setting", "control.mode = tou needs a [tariff] in the config")
    change = local_change(house(), "reserve_soc", 25.0)
    assert isinstance(change, LocalChange) and change.config.battery.reserve_soc_pct == 25.0
    assert local_change(house(), "nonsense", 1.0) == ("unknown_command", "no setting 'nonsense'")


def test_overrides_are_checked_like_plans() -> None:
    change = local_change(house(), "charge_now", 1.5)
    assert isinstance(change, LocalChange) and change.override is not None
    assert change.override.slots[0].setpoints[0].target_power_w == 5000.0
    assert change.override.valid_until == T0 + timedelta(hours=1.5)
    refused = local_change(house(max_charge_w=None), "charge_now", 1.0)
    assert isinstance(refused, tuple) and refused[0] == "not_controllable"
    refused = local_change(house(problem=Problem("not_controllable", "no battery")), "hold_battery", 1.0)
    assert refused == ("not_controllable", "hold_battery: no battery")
    held = local_change(house(), "hold_battery", 2.0)
    assert isinstance(held, LocalChange) and held.override is not None
    cancelled = local_change(HouseNow(CFG, held.override, T0, "battery", 5000.0, lambda _p: None),
                             "cancel_override", None)
    assert isinstance(cancelled, LocalChange) and cancelled.override is None


def test_an_override_holds_while_it_lasts_then_the_mode_decides() -> None:
    ov = override_plan("hold", 1.0, T0, "battery", 0.0)
    assert live_override(ov, T0 + timedelta(minutes=59)) is ov
    assert live_override(ov, T0 + timedelta(hours=1)) is None
    assert plan_in_force(ov, "vpp", None, False) == (ov, True)
    assert plan_in_force(None, "self_consumption", ov, True) == (None, True)
    assert plan_in_force(None, "vpp", ov, False) == (ov, False)
