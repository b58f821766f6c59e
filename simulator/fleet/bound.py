"""Perfect foresight: the lower bound the strategies are measured against (no I/O).

The fleet LP (``aggregator.dispatch``) with the real future, solved feeder by feeder, and
its own solution taken as the run: not a plan sent through the edge's decision, whose rules
(the reserve checked at a slot's start, the write deadband, curtailment only against an
export cap) its plans could not follow exactly.  Its model is the engine's physics or
looser, so every strategy's run is a solution of it:

* SoC between soc_min and 100 % (``battery_step``); the reserve the edge keeps is a rule
  of the edge's, not of the battery: a battery above it at a slot's start goes below it;
* the same one-way efficiencies, charge and discharge limits, per-house caps (penalised
  where a load exceeds the import cap, as the engine cannot help it either);
* PV curtailed anywhere (the engine only against an export cap), charge and discharge in
  the same slot (no mode fixing: burning energy in the losses is allowed);
* the objective is what the report counts and nothing else: grid cost, stored energy at
  the report's value (mean export price over the counted slots), and the penalty on
  energy over the feeder limits (``DispatchOptions.penalty_per_kwh``); no wear,
  curtailment, holding or fairness cost, no night reserve.

So its cost plus the penalty on its energy over limits is at most any strategy's; it is the
least cost among strategies with no more energy over limits.  The warm-up runs
self-consumption as every battery strategy does (the same SoC at the plan's start).
Periods longer than ``perfect_foresight_window_days`` are solved in windows valued at the
seam as the fleet's plans are: the bound is then exact only within each window.

Shiftable runs (``Scenario.appliance_runs``) are placed before the LP by the aggregator's own
placement (``aggregator.dispatch.runs``) on the real future (load, PV, prices), then held as load:
the bound for these starts, not over every start (no joint choice of starts and battery), so with
runs it is not proven below a strategy that placed them otherwise (docs/fleet-strategy.md).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from aggregator.dispatch.block_solve import solve_block
from aggregator.dispatch.problem import DispatchOptions
from simulator.fleet.appliance_runs import RunLog
from simulator.fleet.engine import Trace, simulate
from simulator.fleet.model import DEFAULT_SOC_MIN_PCT, ApplianceRun, Scenario
from simulator.fleet.strategies import StrategyOptions, fleet_problem_and_runs
from vpp_common.messages import ShiftableRunFlexibility

NAME = "perfect_foresight"


def bound_options(dispatch: DispatchOptions) -> DispatchOptions:
    """The dispatch options with only what the report counts in the objective."""
    return replace(dispatch, holding_cost_per_kwh_h=0.0, night_load_margin=1.0, throughput_cost_per_kwh=0.0,
                   curtail_cost_per_kwh=0.0, fairness_weight=0.0, fix_modes_max_passes=0)


def perfect_foresight(sc: Scenario, options: StrategyOptions) -> Trace:
    """The run of the bound over ``sc``: self-consumption before ``options.plan_from_slot``, the
    LP's solution after it."""
    t0 = time.perf_counter()
    n, t = sc.n, sc.t
    grid, bat, socs, pv_used = np.zeros((n, t)), np.zeros((n, t)), np.zeros((n, t)), np.zeros((n, t))
    p0 = min(max(options.plan_from_slot, 0), t)
    soc = np.array([h.initial_soc_pct for h in sc.houses], dtype=float)
    warm: Trace | None = None
    if p0 > 0:
        warm = simulate(sc.window(0, p0), "self_consumption", options)
        for a, w in ((grid, warm.grid_w), (bat, warm.battery_w), (socs, warm.soc_pct), (pv_used, warm.pv_used_w)):
            a[:, :p0] = w
        soc = warm.soc_pct[:, -1].copy()
    window = max(1, options.perfect_foresight_window_days * 86400 // sc.slot_s)
    value_per_kwh = float(np.mean(sc.export_price_per_kwh[p0:])) if p0 < t else 0.0
    solves, solve_s = 0, 0.0
    dispatch = bound_options(options.dispatch)
    cap_wh = np.array([h.battery_kwh * 1000 if h.has_battery else 0.0 for h in sc.houses])
    load = sc.load_w.copy()
    starts: dict[tuple[int, str], object] = {}
    warm_missed = 0
    if warm is not None and warm.load_w is not None and warm.runs is not None:
        load[:, :p0] = warm.load_w
        warm_missed = warm.runs["deadlines_missed"]
    for s0 in range(p0, t, window):
        s1 = min(t, s0 + window)
        # a window that is not the last looks a day further (the seam costs a little optimality)
        horizon = min(t, s1 + (86400 // sc.slot_s if s1 < t else 0))
        tv: float | str = value_per_kwh if horizon >= t else "mean_price"
        runs = _window_runs(sc, s0, s1)
        p, placement = fleet_problem_and_runs(sc, s0, horizon, soc, sc.load_w[:, s0:horizon], sc.pv_w[:, s0:horizon],
                                              terminal_value_per_kwh=tv, reserve_soc_pct=DEFAULT_SOC_MIN_PCT,
                                              shiftable_runs=runs)
        row = {hid: k for k, hid in enumerate(p.house_ids)}
        order = np.array([row[h.house_id] for h in sc.houses])
        k = s1 - s0
        if runs is not None:
            load[:, s0:s1] += placement.load_w[order, :k]
            starts.update({(i, rs.resource_id): rs.start for i, h in enumerate(sc.houses)
                           for rs in placement.starts(h.house_id)})
        for x in range(len(p.transformer_ids)):  # houses share limits only within a transformer
            houses = np.flatnonzero(p.transformer_of[p.feeder_of] == x)
            b = solve_block(houses, p.subset(houses), dispatch)
            solves += 1
            solve_s += b.solve_s
            at = {int(j): i for i, j in enumerate(houses)}
            for i in range(n):
                j = at.get(int(order[i]))
                if j is None:
                    continue
                grid[i, s0:s1] = (b.import_w[j] - b.export_w[j] + b.over_import_w[j] - b.over_export_w[j])[:k]
                bat[i, s0:s1] = (b.charge_w[j] - b.discharge_w[j])[:k]
                pv_used[i, s0:s1] = sc.pv_w[i, s0:s1] - b.curtail_w[j][:k]
                socs[i, s0:s1] = b.energy_wh[j][:k] / cap_wh[i] * 100 if cap_wh[i] > 0 else soc[i]
        soc = socs[:, s1 - 1].copy()
    if not sc.appliance_runs:
        return Trace(NAME, grid, bat, socs, pv_used, solves, solve_s, 0, time.perf_counter() - t0)
    row = {h.house_id: i for i, h in enumerate(sc.houses)}
    first = sc.slot_start(p0)
    log = RunLog(starts, [(row[r.house_id], r) for r in sc.appliance_runs if r.armed >= first], sc.end)  # type: ignore[arg-type]
    summary = log.summary(first)
    summary["deadlines_missed"] += warm_missed  # the warm-up's runs, as self-consumption started them
    return Trace(NAME, grid, bat, socs, pv_used, solves, solve_s, 0, time.perf_counter() - t0, load, summary)


def _window_runs(sc: Scenario, s0: int, s1: int) -> list[tuple[ShiftableRunFlexibility, ...]] | None:
    """Each house's runs armed in slots [s0, s1), waiting (None without runs)."""
    if not sc.appliance_runs:
        return None
    lo, hi = sc.slot_start(s0), sc.slot_start(s1)
    out: dict[str, list[ApplianceRun]] = {}
    for r in sc.appliance_runs:
        if lo <= r.armed < hi:
            out.setdefault(r.house_id, []).append(r)
    return [tuple(ShiftableRunFlexibility(r.run_id, r.profile, r.armed, r.ready_by) for r in out.get(h.house_id, ()))
            for h in sc.houses]
