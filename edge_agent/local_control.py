"""Settings and overrides from the house itself (Home Assistant today), checked and applied.

One path for every local command: the new value is validated by the same config models as the
file (``ControlConfig``, ``BatteryConfig``: reserve below max SoC, known mode, tou needs a
tariff), an override becomes a local plan checked like the aggregator's plans
(``plan_problem`` and the house's own checks), and the control loop then runs it through
``decide``, whose safety clamp (nameplate, SoC reserve/max, import limit, export cap) is still
applied last.  A refused value is logged (rate-limited) and counted as
``vpp_edge_refused_total{source=...}``; nothing of it is applied.

Pure: each command gives the config and override that follow from it (``LocalChange``) or why it
is refused; the agent applies the change.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import ValidationError

from edge_agent.config import AgentConfig, BatteryConfig, ControlConfig
from edge_agent.energy_manager.history import FORECAST_HORIZON_SLOTS, FORECAST_SLOT_S
from edge_agent.energy_manager.plan_check import Problem, plan_problem
from vpp_common.messages import DispatchPlan, Envelope, FallbackMode, PlanSlot, Setpoint

if TYPE_CHECKING:
    from edge_agent.energy_manager.local_tou import LocalTouPlanner

OVERRIDE_ID = "local-override"

Refused = tuple[str, str]  # (reason label, detail)


@dataclass(frozen=True, slots=True)
class LocalChange:
    """What holds once a local command is applied."""

    config: AgentConfig
    override: DispatchPlan | None


@dataclass(frozen=True, slots=True)
class HouseNow:
    """What a local command is checked against."""

    config: AgentConfig
    override: DispatchPlan | None
    now: datetime
    battery_id: str
    max_charge_w: float | None  # the battery's charge rating, None while not known
    plan_problem: Callable[[DispatchPlan], Problem | None]  # why the house cannot follow a plan


def _first_error(exc: ValidationError) -> str:
    e = exc.errors()[0]
    return f"{'.'.join(str(x) for x in e['loc']) or 'value'}: {e['msg']}"


def override_plan(kind: str, hours: float, now: datetime, battery_id: str, target_w: float) -> DispatchPlan:
    """A one-slot local plan: the battery at ``target_w`` (0 = hold) for ``hours`` from ``now``."""
    duration_s = max(1, round(hours * 3600))
    reason = "override: hold the battery" if target_w == 0 else "override: charge now"
    return DispatchPlan(f"{OVERRIDE_ID}-{kind}", 1, now, now, now + timedelta(seconds=duration_s), duration_s,
                        (PlanSlot(now, (Setpoint(battery_id, target_w, Envelope(target_w, target_w)),),
                                  reason=reason),),
                        fallback=FallbackMode.SELF_CONSUMPTION)


def local_tou_planner(config: AgentConfig) -> LocalTouPlanner | None:
    """tou mode: the agent's own plan on its tariff and forecasts, followed like an aggregator's."""
    tariff = config.tariff
    if config.control.mode != "tou" or tariff is None:
        return None
    # imported here: the local planner and its tariff are for tou-mode houses only
    from edge_agent.energy_manager.local_tou import LocalTouPlanner

    return LocalTouPlanner(tariff.price_source(), FORECAST_SLOT_S, FORECAST_HORIZON_SLOTS)


def live_override(override: DispatchPlan | None, now: datetime) -> DispatchPlan | None:
    """The override while it lasts; None once it ran out (back to the mode's own behaviour)."""
    return override if override is not None and override.is_valid_at(now) else None


def plan_in_force(override: DispatchPlan | None, mode: str, plan: DispatchPlan | None,
                  stream_ok: bool) -> tuple[DispatchPlan | None, bool]:
    """What the control loop follows: a live local override, no plan in self-consumption mode,
    else what it had."""
    if override is not None:
        return override, True
    if mode == "self_consumption":
        return None, stream_ok
    return plan, stream_ok


def local_change(house: HouseNow, name: str, value: str | float | None) -> LocalChange | Refused:
    """Check one local command: what holds once it is applied, or why it is refused."""
    if name == "control_mode":
        return _control_mode(house, value)
    if name == "reserve_soc":
        try:
            battery = BatteryConfig.model_validate({**house.config.battery.model_dump(), "reserve_soc_pct": value})
        except ValidationError as exc:
            return "invalid_setting", f"battery.reserve_soc_pct: {_first_error(exc)}"
        return LocalChange(house.config.model_copy(update={"battery": battery}), house.override)
    if name == "cancel_override":
        return LocalChange(house.config, None)
    if name in ("hold_battery", "charge_now"):
        return _override(house, name, value)
    return "unknown_command", f"no setting {name!r}"


def _control_mode(house: HouseNow, value: str | float | None) -> LocalChange | Refused:
    cfg = house.config
    try:
        control = ControlConfig.model_validate({**cfg.control.model_dump(), "mode": value})
    except ValidationError as exc:
        return "invalid_setting", f"control.mode: {_first_error(exc)}"
    if control.mode == "tou" and cfg.tariff is None:
        return "invalid_setting", "control.mode = tou needs a [tariff] in the config"
    return LocalChange(cfg.model_copy(update={"control": control}), house.override)


def _override(house: HouseNow, name: str, value: str | float | None) -> LocalChange | Refused:
    if not isinstance(value, float) or not math.isfinite(value) or value <= 0:
        return "invalid_setting", f"{name}: duration {value!r} h"
    target = 0.0
    if name == "charge_now":
        target = house.max_charge_w if house.max_charge_w is not None else 0.0
        if not target > 0:
            return "not_controllable", "charge_now: the battery's charge rating is not known yet"
    plan = override_plan("hold" if target == 0 else "charge", value, house.now, house.battery_id, target)
    problem = plan_problem(plan) or house.plan_problem(plan)
    if problem is not None:
        return problem.label, f"{name}: {problem.detail}"
    return LocalChange(house.config, plan)
