"""Time-of-use plans for one house (pure; no I/O), for fixed tariffs and dynamic prices.

Shared by the aggregator (its ``tou`` optimiser, the fleet simulator's ``tou``
strategy) and the edge agent's local ``tou`` mode.  Two planners, chosen by
whether the caller has forecasts:

**With PV and load forecasts** (``load_forecast_w``/``pv_forecast_w``, the edge
agent's own): a dynamic programme over the battery's SoC (1 % steps) finds the
cheapest schedule over the known horizon: it charges in cheap slots up to the
SoC the expensive ones need (net of the PV expected to be stored first) and
discharges at the peaks, with round-trip losses, the import limit, the export
cap (curtailed PV is lost), the reserve and a small cycling cost.  Each slot's
envelope keeps the plan's intent while the agent corrects for real PV and load:
grid charging [P, P_ch], covering the load [-P_dis, P_ch], holding the charge
for later [0, P_ch] (PV surplus is always stored).

**Without forecasts**, the price rule below (the fleet optimiser, OR-Tools,
replaces it in ``vpp`` mode; it is the aggregator's baseline):

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
    grid_charge_target_soc_pct: float = 50.0  # rule only: charge from the grid up to this SoC in cheap slots
    # with forecasts (magnitudes >= 0, W per slot) the SoC programme plans instead of the rule
    load_forecast_w: np.ndarray | None = None
    pv_forecast_w: np.ndarray | None = None
    export_price_per_kwh: np.ndarray | None = None  # one per slot; None = 0 (export earns nothing)
    max_export_w: float | None = None  # export cap, positive magnitude; None = none
    cycle_cost_per_kwh: float = 0.005  # wear per kWh through the battery: no churn for tiny spreads
    terminal_value_per_kwh: float | None = None  # energy left at the end; None = the horizon's cheapest import


def plan_slots(inp: TouPlanInput) -> tuple[PlanSlot, ...]:
    if inp.load_forecast_w is not None or inp.pv_forecast_w is not None:
        return _forecast_plan_slots(inp)
    return _rule_plan_slots(inp)


def _rule_plan_slots(inp: TouPlanInput) -> tuple[PlanSlot, ...]:
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


SOC_STEPS = 100  # SoC grid of the programme: 1 % steps
PLAN_TOLERANCE_W = 250.0  # about half a 1 % step in a 15 min slot: below it, power is rounding


def soc_schedule(inp: TouPlanInput) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest battery schedule under the forecasts: AC power per slot (W, charging > 0)
    and the SoC (%) at each slot boundary (``len + 1`` values, the first the present SoC
    on the programme's 1 % grid).

    Backward dynamic programme over SoC states; a state below the reserve (or the
    storage's minimum) may be held or left upward only, so a battery below its
    reserve is never discharged by the plan.
    """
    imp = np.asarray(inp.import_price_per_kwh, dtype=float)
    n = imp.size
    if imp.ndim != 1 or n == 0:
        raise ValueError("import_price_per_kwh must be a non-empty 1-D array")
    exp = np.zeros(n) if inp.export_price_per_kwh is None else np.asarray(inp.export_price_per_kwh, dtype=float)
    load = np.zeros(n) if inp.load_forecast_w is None else np.maximum(np.asarray(inp.load_forecast_w, float), 0)
    pv = np.zeros(n) if inp.pv_forecast_w is None else np.maximum(np.asarray(inp.pv_forecast_w, float), 0)
    if not exp.size == load.size == pv.size == n:
        raise ValueError("prices and forecasts must have one value per slot")
    st = inp.storage
    h = inp.slot_s / 3600
    cap_wh = st.capacity_wh
    levels = np.linspace(0.0, 100.0, SOC_STEPS + 1)
    floor = max(st.reserve_soc_pct, st.soc_min_pct)
    top = st.soc_max_pct
    p_ch = min(st.max_charge_power_w, inp.max_import_w)
    p_dis = st.max_discharge_power_w
    net = load - pv  # house without battery, W (import > 0)

    # A step's cost depends on the SoC change d = to - from only (and the slot), so it is
    # built per slot over the changes the battery's power allows (a band, not all pairs):
    # a few dozen values instead of levels x levels.  The order of candidates (ascending
    # target) and every float operation are those of the full (from, to) table.
    d_all = np.arange(-SOC_STEPS, SOC_STEPS + 1)
    d_wh_all = (levels[d_all.clip(0)] - levels[(-d_all).clip(0)]) / 100 * cap_wh
    p_all = np.where(d_wh_all > 0, d_wh_all / st.charge_efficiency, d_wh_all * st.discharge_efficiency) / h
    ok = (p_all <= p_ch + 1e-6) & (p_all >= -p_dis - 1e-6)
    d = d_all[ok]  # contiguous: power grows with d (always contains 0: holding)
    d_wh, p = d_wh_all[ok], p_all[ok]
    wear = inp.cycle_cost_per_kwh * np.abs(d_wh) / 1000
    grid = net[:, None] + p[None, :]  # (slots, changes)
    fuse = (p[None, :] > 1e-6) & (grid > inp.max_import_w + 1e-6)  # never charge through the fuse
    if inp.max_export_w is not None:  # PV over the cap is curtailed: lost, not sold
        grid = np.maximum(grid, -inp.max_export_w)
    step = h / 1000 * (imp[:, None] * np.maximum(grid, 0) + exp[:, None] * np.minimum(grid, 0)) + wear[None, :]
    step = np.where(fuse, np.inf, step)
    to = np.arange(levels.size)[:, None] + d[None, :]  # (from, change) -> target level
    inside = (to >= 0) & (to <= SOC_STEPS)
    to = to.clip(0, SOC_STEPS)
    # outside [floor, top] a state may be held or left towards the range only; holding is
    # always feasible, so every state has a way on
    blocked = ~inside | ((levels[to] < floor - 1e-9) & (d_wh[None, :] < -1e-9))  # below the reserve: never lower
    blocked |= (levels[to] > top + 1e-9) & (d_wh[None, :] > 1e-9)  # above soc_max: never higher
    barrier = np.where(blocked, np.inf, 0.0)

    tv = max(0.0, float(imp.min())) if inp.terminal_value_per_kwh is None else inp.terminal_value_per_kwh
    value = -tv * st.discharge_efficiency * np.maximum(levels - floor, 0) / 100 * cap_wh / 1000
    policy = np.zeros((n, levels.size), dtype=int)
    rows = np.arange(levels.size)
    for i in range(n - 1, -1, -1):
        total = (step[i][None, :] + barrier) + value[to]
        best = np.argmin(total, axis=1)
        policy[i] = to[rows, best]
        value = total[rows, best]
    # the present SoC snapped to the grid (half a step: 0.5 % of the capacity)
    j = int(round(float(np.clip(st.soc_pct, 0.0, 100.0)) * SOC_STEPS / 100))
    socs = [float(levels[j])]
    for i in range(n):
        j = int(policy[i, j])
        socs.append(float(levels[j]))
    soc_path = np.array(socs)
    d_wh = np.diff(soc_path) / 100 * cap_wh
    power = np.where(d_wh > 0, d_wh / st.charge_efficiency, d_wh * st.discharge_efficiency) / h
    return power, soc_path


def _forecast_plan_slots(inp: TouPlanInput) -> tuple[PlanSlot, ...]:
    power, soc_path = soc_schedule(inp)
    n = power.size
    load = np.zeros(n) if inp.load_forecast_w is None else np.asarray(inp.load_forecast_w, float)
    pv = np.zeros(n) if inp.pv_forecast_w is None else np.asarray(inp.pv_forecast_w, float)
    st = inp.storage
    p_ch = min(st.max_charge_power_w, inp.max_import_w)
    p_dis = st.max_discharge_power_w
    tol = PLAN_TOLERANCE_W
    slots = []
    for i in range(n):
        p = float(power[i])
        balance = float(np.clip(pv[i] - load[i], -p_dis, p_ch))  # the battery power that zeroes the grid
        price = float(inp.import_price_per_kwh[i])
        to = soc_path[i + 1]
        if p > max(balance, 0.0) + tol:
            # grid charging: at least the planned power, more if PV brings more
            env, why = Envelope(min(p, p_ch), p_ch), f"cheap import ({price:.2f}/kWh): charge to {to:.0f} %"
        elif p < min(balance, 0.0) - tol:
            env, why = Envelope(p, p), f"high price ({price:.2f}/kWh): discharge to the grid"
        elif p < -tol:
            # covering the load; all of it (as it comes) or up to the planned part
            lo = -p_dis if p <= balance + tol else p
            env, why = Envelope(lo, p_ch), f"expensive ({price:.2f}/kWh): cover load from battery"
        elif balance < -tol:
            env, why = Envelope(0.0, p_ch), f"hold charge for dearer slots ({price:.2f}/kWh); store PV surplus"
        else:
            env, why = Envelope(0.0, p_ch), "store PV surplus"
        start = inp.start + timedelta(seconds=i * inp.slot_s)
        slots.append(PlanSlot(start, (Setpoint(st.resource_id, round(p, 1), env),), None, why))
    return tuple(slots)
