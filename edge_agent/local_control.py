"""Settings and overrides from the house itself (Home Assistant today), checked and applied.

One path for every local command: the new value is validated by the same config models as the
file (``ControlConfig``, ``BatteryConfig``: reserve below max SoC, known mode, tou needs a
tariff), an override becomes a local plan checked like the aggregator's plans
(``plan_problem`` and the house's own checks), and the control loop then runs it through
``decide``, whose safety clamp (nameplate, SoC reserve/max, import limit, export cap) is still
applied last.  A refused value is logged (rate-limited) and counted as
``vpp_edge_refused_total{source=...}``; nothing of it is applied.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import ValidationError

from edge_agent.config import BatteryConfig, ControlConfig
from edge_agent.energy_manager.plan_check import plan_problem
from vpp_common.messages import (
    DispatchPlan,
    Envelope,
    FallbackMode,
    PlanSlot,
    PlanState,
    PlanStatus,
    Setpoint,
)

if TYPE_CHECKING:
    from edge_agent.agent import EdgeAgent

OVERRIDE_ID = "local-override"


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


def plan_in_force(agent: EdgeAgent, now: datetime, plan: DispatchPlan | None,
                  stream_ok: bool) -> tuple[DispatchPlan | None, bool]:
    """What the control loop follows: a local override while it lasts, no plan in
    self-consumption mode, else what it had."""
    ov = agent.override
    if ov is not None:
        if ov.is_valid_at(now):
            return ov, True
        agent.override = None  # ran out: back to the mode's own behaviour
    if agent.config.control.mode == "self_consumption":
        return None, stream_ok
    return plan, stream_ok


def apply_local(agent: EdgeAgent, name: str, value: str | float | None, source: str) -> str | None:
    """Check and apply one local command; returns None once applied, else why it was refused
    (already logged and counted)."""
    problem = _apply(agent, name, value, source)
    if problem is not None:
        agent.refusals.refuse(source, problem[0], problem[1])
        return problem[1]
    agent._wake.set()  # decide on the new setting now, not at the next tick
    return None


def _apply(agent: EdgeAgent, name: str, value: str | float | None, source: str) -> tuple[str, str] | None:
    cfg = agent.config
    now = agent.clock.now()
    if name == "control_mode":
        try:
            control = ControlConfig.model_validate({**cfg.control.model_dump(), "mode": value})
        except ValidationError as exc:
            return "invalid_setting", f"control.mode: {_first_error(exc)}"
        if control.mode == "tou" and cfg.tariff is None:
            return "invalid_setting", "control.mode = tou needs a [tariff] in the config"
        _set_mode(agent, control, now, source)
        return None
    if name == "reserve_soc":
        try:
            battery = BatteryConfig.model_validate({**cfg.battery.model_dump(), "reserve_soc_pct": value})
        except ValidationError as exc:
            return "invalid_setting", f"battery.reserve_soc_pct: {_first_error(exc)}"
        agent.config = cfg.model_copy(update={"battery": battery})
        return None
    if name == "cancel_override":
        agent.override = None
        return None
    if name in ("hold_battery", "charge_now"):
        if not isinstance(value, float) or not math.isfinite(value) or value <= 0:
            return "invalid_setting", f"{name}: duration {value!r} h"
        target = 0.0
        if name == "charge_now":
            nameplate = getattr(agent.device, "nameplate", None)
            snap = agent.snapshot
            target = (nameplate.max_charge_w if nameplate is not None
                      else snap.max_charge_w if snap is not None else 0.0)
            if not target > 0:
                return "not_controllable", "charge_now: the battery's charge rating is not known yet"
        plan = override_plan("hold" if target == 0 else "charge", value, now, agent.device.battery_id, target)
        problem = plan_problem(plan) or agent._plan_problem(plan)
        if problem is not None:
            return problem.label, f"{name}: {problem.detail}"
        agent.override = plan
        return None
    return "unknown_command", f"no setting {name!r}"


def _set_mode(agent: EdgeAgent, control: ControlConfig, now: datetime, source: str) -> None:
    from edge_agent.agent import FORECAST_HORIZON_SLOTS, FORECAST_SLOT_S
    from edge_agent.energy_manager.local_tou import LocalTouPlanner

    old = agent.config.control.mode
    agent.config = agent.config.model_copy(update={"control": control})
    if control.mode == old:
        return
    tariff = agent.config.tariff
    agent.local_tou = (LocalTouPlanner(tariff.price_source(), FORECAST_SLOT_S, FORECAST_HORIZON_SLOTS)
                       if control.mode == "tou" and tariff is not None else None)
    current = agent.plans.current
    if old == "vpp" and current is not None:
        # the aggregator must not believe the house still follows its plan
        agent.uplink.send(PlanStatus(current.plan_id, current.version, PlanState.REJECTED, now,
                                     f"agent switched to {control.mode} mode ({source})"))
        agent.plans.current = None
    if control.mode == "vpp":
        agent._last_flex_sent = None  # flexibility re-sent: the aggregator plans for the house again
