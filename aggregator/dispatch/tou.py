"""A simple time-of-use plan for one house (pure; no I/O).

The fleet optimiser (OR-Tools, a later layer) replaces this; this rule is the
baseline and the embedded default:

* cheap slots (price in the lowest tenth of the horizon's range): charge from
  the grid just enough to reach ``grid_charge_target_soc_pct`` (fixed setpoints,
  envelope [P, P], in the cheapest and, among equals, latest cheap slots: the
  charge waits as long as it can); the other cheap slots only store PV surplus.
  Without forecasts this rule cannot know how much PV is coming, so it leaves
  the rest of the battery for the sun; the fleet optimiser does this properly;
* peak slots (highest tenth): cover the house's load from the battery, never
  charge (target 0, envelope [-P_dis, 0]);
* other slots: keep the charge for the peak but store PV surplus
  (target 0, envelope [0, P_ch]);
* a flat tariff gives plain self-consumption (envelope [-P_dis, P_ch]).

Within a non-degenerate envelope the agent follows the house balance
(self-consumption) clamped to the envelope.  Powers in W, charging > 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from vpp_common.messages import (
    DispatchPlan,
    Envelope,
    FallbackMode,
    PlanSlot,
    Setpoint,
    StorageFlexibility,
)


@dataclass(frozen=True, slots=True)
class TouPlanInput:
    """Everything the rule needs, prepared by the caller."""

    start: datetime  # first slot start, aligned to slot_s
    slot_s: int
    import_price_per_kwh: np.ndarray  # one per slot
    storage: StorageFlexibility
    max_import_w: float  # site limit, positive magnitude
    grid_charge_target_soc_pct: float = 50.0  # charge from the grid up to this SoC in cheap slots


def plan_slots(inp: TouPlanInput) -> tuple[PlanSlot, ...]:
    prices = np.asarray(inp.import_price_per_kwh, dtype=float)
    if prices.ndim != 1 or prices.size == 0:
        raise ValueError("import_price_per_kwh must be a non-empty 1-D array")
    lo, hi = float(prices.min()), float(prices.max())
    span = hi - lo
    p_ch = min(inp.storage.max_charge_power_w, inp.max_import_w)
    p_dis = inp.storage.max_discharge_power_w
    rid = inp.storage.resource_id
    slot_h = inp.slot_s / 3600
    cheap = [i for i, price in enumerate(prices) if span > 1e-9 and price <= lo + 0.1 * span]
    peaks = [i for i, price in enumerate(prices) if span > 1e-9 and price >= hi - 0.1 * span]
    # grid-charge only for the next peak: cheap slots after it are planned by a later cycle
    first_peak = peaks[0] if peaks else len(prices)
    charge_w = dict.fromkeys((i for i in cheap if i < first_peak), 0.0)
    st = inp.storage
    need_wh = max(0.0, inp.grid_charge_target_soc_pct - st.soc_pct) / 100 * st.capacity_wh / st.charge_efficiency
    for i in sorted(charge_w, key=lambda k: (prices[k], -k)):  # cheapest first; among equals, latest first
        if need_wh <= 1e-6 or p_ch <= 0:
            break
        charge_w[i] = min(p_ch, need_wh / slot_h)
        need_wh -= charge_w[i] * slot_h
    slots = []
    for i, price in enumerate(prices):
        start = inp.start + timedelta(seconds=i * inp.slot_s)
        if span <= 1e-9:
            sp, why = Setpoint(rid, 0.0, Envelope(-p_dis, p_ch)), "flat price: self-consumption"
        elif charge_w.get(i, 0.0) > 0:
            p = charge_w[i]
            sp, why = Setpoint(rid, p, Envelope(p, p)), f"cheap import ({price:.2f}/kWh): charge"
        elif i in cheap:
            sp, why = Setpoint(rid, 0.0, Envelope(0.0, p_ch)), f"cheap import ({price:.2f}/kWh): charge target reached"
        elif price >= hi - 0.1 * span:
            sp, why = Setpoint(rid, 0.0, Envelope(-p_dis, 0.0)), f"peak price ({price:.2f}/kWh): cover load from battery"
        else:
            sp, why = Setpoint(rid, 0.0, Envelope(0.0, p_ch)), "hold charge for the peak; store PV surplus"
        slots.append(PlanSlot(start, (sp,), None, why))
    return tuple(slots)


def make_plan(plan_id: str, version: int, now: datetime, inp: TouPlanInput, lease_s: int,
              fallback_max_export_w: float = 0.0) -> DispatchPlan:
    """Wrap the slots in a lease starting at the first slot."""
    slots = plan_slots(inp)
    horizon_end = inp.start + timedelta(seconds=inp.slot_s * len(slots))
    valid_until = min(horizon_end, inp.start + timedelta(seconds=lease_s))
    return DispatchPlan(plan_id=plan_id, version=version, created_at=now, valid_from=inp.start,
                        valid_until=valid_until, slot_duration_s=inp.slot_s, slots=slots,
                        fallback=FallbackMode.SELF_CONSUMPTION, fallback_max_export_w=fallback_max_export_w)
