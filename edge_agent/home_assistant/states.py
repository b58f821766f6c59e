"""Entity states from what the agent knows (pure): one text payload per entity key.

A measurement that is not valid (stale, missing, implausible) is published as ``None``: Home
Assistant shows the sensor as unknown, never as 0 W.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from edge_agent.energy_manager.decide import Decision
from vpp_common.messages import DispatchPlan, Measurement, SiteTelemetry

NONE = "None"  # Home Assistant's MQTT sensor: state unknown
STATE_MAX = 255  # Home Assistant truncates nothing: a longer state is refused
PLAN_HOURS = 6  # the plan's next hours shown as attributes of the reason sensor
PLAN_SLOTS_MAX = 48


@dataclass(frozen=True, slots=True)
class HouseView:
    telemetry: SiteTelemetry | None
    ev_id: str | None
    kwh: dict[str, float]
    saved_today: float | None  # None: no tariff
    decision: Decision | None
    override: DispatchPlan | None  # the local override in force
    plan: DispatchPlan | None  # the plan the house follows (override, local tou or the aggregator's)
    mode: str
    reserve_soc_pct: float
    override_hours: float
    now: datetime


def _w(m: Measurement | None, sign: float = 1.0) -> str:
    if m is None or not m.usable or m.value is None or not math.isfinite(m.value):
        return NONE
    return f"{sign * m.value + 0.0:.0f}"  # + 0.0: never "-0"


def activity(v: HouseView) -> str:
    d = v.decision
    if d is None:
        return "waiting"
    if d.mode == "plan" and v.override is not None and v.override.is_valid_at(v.now):
        return "override"
    return d.mode


def plan_attributes(v: HouseView) -> dict[str, object]:
    d, p = v.decision, v.plan
    slots = []
    if p is not None:
        end = v.now + timedelta(hours=PLAN_HOURS)
        step = timedelta(seconds=p.slot_duration_s)
        for s in p.slots:
            if s.start + step > v.now and s.start < end and s.start < p.valid_until:
                sps = {sp.resource_id: sp.target_power_w for sp in s.setpoints}
                slots.append({"start": s.start.isoformat(), "battery_w": next(iter(sps.values()), None)
                              if len(sps) == 1 else sps, "reason": s.reason})
            if len(slots) >= PLAN_SLOTS_MAX:
                break
    return {
        "mode": d.mode if d else None, "reason": d.reason if d else None,
        "limits_binding": list(d.clamped_by) if d else [],
        "battery_setpoint_w": d.battery_w if d else None,
        "pv_limit_w": d.pv_limit_w if d else None,
        "control_mode": v.mode,
        "plan_id": p.plan_id if p else None,
        "plan_valid_until": p.valid_until.isoformat() if p else None,
        "override_until": v.override.valid_until.isoformat() if v.override is not None else None,
        "plan": slots,
    }


def states(v: HouseView) -> dict[str, str]:
    """Entity key -> state payload (the reason's attributes under ``reason/attributes``)."""
    t = v.telemetry
    out = {
        "grid_power": _w(t.grid_power_w if t else None),
        "pv_power": _w(t.pv_power_w if t else None, -1.0),  # production > 0 in Home Assistant
        "battery_power": _w(t.battery_power_w if t else None),
        "load_power": _w(t.load_power_w if t else None),
        "battery_soc": (f"{t.battery_soc_pct.value:.1f}" if t and t.battery_soc_pct.usable
                        and t.battery_soc_pct.value is not None and math.isfinite(t.battery_soc_pct.value) else NONE),
        "activity": activity(v),
        "reason": (v.decision.reason if v.decision else "waiting for the first device reading")[:STATE_MAX],
        "reason/attributes": json.dumps(plan_attributes(v)),
        "control_mode": v.mode,
        "reserve_soc": f"{v.reserve_soc_pct:g}",
        "override_hours": f"{v.override_hours:g}",
    }
    if v.ev_id is not None:
        ev = next((r.power_w for r in t.resources if r.resource_id == v.ev_id), None) if t else None
        out["ev_power"] = _w(ev)
    for key, kwh in v.kwh.items():
        out[key] = f"{kwh:.4f}"
    if v.saved_today is not None:
        out["money_saved_today"] = f"{round(v.saved_today, 2) + 0.0:.2f}"  # + 0.0: no "-0.00" for a tiny loss
    return out
