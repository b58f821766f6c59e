"""Fast mode: the fleet on a simulated clock, in-process, slot by slot.

Each slot every house's edge decision (``decide``) is taken on what its meters
show (the slot's real load and PV: the agent's control loop runs every few
seconds, far faster than a slot) and written as the agent's write policy says
(``write_policy``; with the agent's defaults every slot's decision is due: a slot
is longer than the refresh period), the battery follows the setpoint within its
physics, and PV is curtailed where the export cap needs it.  The plan source
(strategy) re-plans on its own schedule.  No network, no processes but the solver pool.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from aggregator.dispatch.realtime import HousesNow, battery_room_w, feeder_envelopes
from aggregator.dispatch.solver_pool import WarmSolverPool
from edge_agent.config import BatteryConfig, ControlConfig
from edge_agent.energy_manager.decide import (
    BatteryLimits,
    decide,
    pv_limit_for_export_cap,
    slot_limits,
)
from edge_agent.energy_manager.write_policy import WritePolicy, Written
from simulator.fleet.appliance_runs import RunDriver
from simulator.fleet.model import DEFAULT_RESERVE_SOC_PCT, DEFAULT_SOC_MIN_PCT, Scenario
from simulator.fleet.strategies import (
    BATTERY_ID,
    PlanSource,
    StrategyOptions,
    known_prices_until,
    make_source,
)
from vpp_common.messages import Measurement, SiteLimits, SiteTelemetry, Validity

# the agent's defaults: deadband, and the refresh at half the device's revert time
WRITES = WritePolicy.for_revert(ControlConfig().deadband_w, BatteryConfig().revert_s)


@dataclass(frozen=True)
class Trace:
    """What happened, per house x slot (W means over the slot; SoC at the slot's end)."""

    strategy: str
    grid_w: np.ndarray  # import > 0
    battery_w: np.ndarray  # charging > 0
    soc_pct: np.ndarray
    pv_used_w: np.ndarray  # PV produced after curtailment (magnitude)
    solves: int = 0
    solve_s: float = 0.0
    fallbacks: int = 0
    wall_s: float = 0.0
    load_w: np.ndarray | None = None  # household load with the shiftable runs' power (None: the scenario's)
    runs: dict[str, Any] | None = None  # the runs' summary (simulator.fleet.appliance_runs.RunLog)


def battery_step(soc_pct: float, capacity_wh: float, setpoint_w: float, efficiency: float, slot_h: float,
                 soc_min_pct: float = DEFAULT_SOC_MIN_PCT, soc_max_pct: float = 100.0) -> tuple[float, float]:
    """The power the battery really holds over the slot and its SoC after: the setpoint,
    limited by the energy there is (discharge) or the room left (charge)."""
    if capacity_wh <= 0 or setpoint_w == 0:
        return 0.0, soc_pct
    if setpoint_w > 0:
        room_wh = max(0.0, (soc_max_pct - soc_pct) / 100 * capacity_wh)
        p = min(setpoint_w, room_wh / (efficiency * slot_h))
        return p, min(soc_max_pct, soc_pct + p * efficiency * slot_h / capacity_wh * 100)
    have_wh = max(0.0, (soc_pct - soc_min_pct) / 100 * capacity_wh)
    p = max(setpoint_w, -have_wh * efficiency / slot_h)
    return p, max(soc_min_pct, soc_pct + p / efficiency * slot_h / capacity_wh * 100)


def clear_sky_table(sc: Scenario, extra_days: int = 2) -> Callable[[list[datetime]], np.ndarray]:
    """pvlib clear-sky GHI at each slot's middle over the scenario (+ ``extra_days``), as the
    forecaster computes it, but once: a lookup instead of a pvlib call per forecast."""
    import pandas as pd
    from pvlib.location import Location

    n = sc.t + extra_days * 86400 // sc.slot_s
    first = sc.start - timedelta(days=8)  # forecaster history reaches back up to its window
    m = n + 8 * 86400 // sc.slot_s
    mid = pd.date_range(first + timedelta(seconds=sc.slot_s / 2), periods=m, freq=f"{sc.slot_s}s")
    ghi = Location(sc.latitude, sc.longitude).get_clearsky(mid, model="ineichen")["ghi"]
    table = np.nan_to_num(ghi.to_numpy(dtype=float), nan=0.0)
    slot_s = sc.slot_s

    def lookup(starts: list[datetime]) -> np.ndarray:
        if not starts:
            return np.zeros(0)
        i0 = int((starts[0] - first).total_seconds()) // slot_s
        idx = i0 + np.array([int((t - starts[0]).total_seconds()) // slot_s for t in starts])
        if idx.min() < 0 or idx.max() >= m:
            raise IndexError("clear-sky table does not reach these slots")
        return table[idx]

    return lookup


def feeder_limits_now(sc: Scenario, s: int, soc: np.ndarray, cap: list[float], blim: list[BatteryLimits],
                      eff: list[float], grid_wanted_w: np.ndarray | None = None,
                      load_w: np.ndarray | None = None) -> list[SiteLimits]:
    """Each house's site limits tightened by the aggregator's live feeder envelope for slot ``s``
    (``aggregator.dispatch.realtime``), from what the meters show at the slot's start: the
    aggregator's control loop runs every few seconds, far faster than a slot.
    ``grid_wanted_w``: (n,) each house's exchange if it followed its plan within its own limits."""
    base = (sc.load_w[:, s] if load_w is None else load_w) - sc.pv_w[:, s]
    cap_a, eff_a = np.asarray(cap), np.asarray(eff)
    p_ch = np.array([b.max_charge_w for b in blim])
    p_dis = np.array([b.max_discharge_w for b in blim])
    ch, dis = battery_room_w(soc, cap_a, p_ch, p_dis, slot_h=sc.slot_h, charge_efficiency=eff_a,
                             discharge_efficiency=eff_a, soc_min_pct=DEFAULT_SOC_MIN_PCT, soc_max_pct=100.0,
                             reserve_soc_pct=DEFAULT_RESERVE_SOC_PCT)
    floor = np.maximum(dis, battery_room_w(soc, cap_a, p_ch, p_dis, slot_h=sc.slot_h, charge_efficiency=eff_a,
                                           discharge_efficiency=eff_a, soc_min_pct=DEFAULT_SOC_MIN_PCT,
                                           soc_max_pct=100.0, reserve_soc_pct=DEFAULT_SOC_MIN_PCT)[1])
    fidx = sc.feeder_index()
    out: list[SiteLimits] = []
    max_exp = np.array([h.export_cap_w for h in sc.houses], dtype=float)
    max_imp = np.array([h.import_limit_w for h in sc.houses], dtype=float)
    rated = np.array([h.pv_kwp * 1000 for h in sc.houses])
    for f in range(len(sc.feeder_ids)):
        on = fidx == f
        e, i = feeder_envelopes(HousesNow(base[on], ch[on], dis[on], rated[on], max_imp[on], max_exp[on], floor[on]),
                                float(sc.feeder_export_limit_w[f, s]), float(sc.feeder_import_limit_w[f, s]),
                                grid_wanted_w=None if grid_wanted_w is None else grid_wanted_w[on])
        max_exp[on] = np.minimum(max_exp[on], e)
        max_imp[on] = np.maximum(np.minimum(max_imp[on], i), -max_exp[on])  # "export at least" within the cap
    out = [SiteLimits(float(a), float(b)) for a, b in zip(max_imp, max_exp, strict=True)]
    return out


def run_driver(sc: Scenario, src: PlanSource) -> RunDriver | None:
    """The runs' driver of a strategy's simulation (None without runs): the edge's scheduler where
    the strategy places runs (the plan's starts, the house's forecaster), else started when armed."""
    if not sc.appliance_runs:
        return None
    drv = RunDriver(sc, "edge" if src.places_runs else "armed", lambda now: known_prices_until(sc, now),
                    refresh_slots=src.replan_slots)
    src.shiftable = drv.shiftable
    return drv


def _run_forecast(src: PlanSource) -> Callable[[int, datetime, int], Any] | None:
    fcs = getattr(src, "forecasters", None)
    if fcs is None:
        return None
    return lambda i, now, n: fcs[i].forecast(now, n)


def _m(v: float, at: datetime) -> Measurement:
    return Measurement(v, Validity.VALID, at)


def simulate(sc: Scenario, strategy: str, options: StrategyOptions | None = None, *,
             clear_sky: Callable[[list[datetime]], np.ndarray] | None = None,
             pool: ProcessPoolExecutor | WarmSolverPool | None = None,
             progress: Callable[[int], None] | None = None) -> Trace:
    """Run one strategy over the whole scenario; ``progress(slots_done)`` after each slot."""
    import time

    options = options or StrategyOptions()
    if strategy == "perfect_foresight":  # not a plan source: the bound's own solution (bound.py)
        from simulator.fleet.bound import perfect_foresight

        tr = perfect_foresight(sc, options)
        if progress is not None:
            progress(sc.t)
        return tr
    clear_sky = clear_sky or clear_sky_table(sc)
    src: PlanSource = make_source(strategy, sc, options, clear_sky)
    if hasattr(src, "pool"):
        src.pool = pool  # type: ignore[attr-defined]
    n, t, slot_h = sc.n, sc.t, sc.slot_h
    grid = np.zeros((n, t))
    bat = np.zeros((n, t))
    socs = np.zeros((n, t))
    pv_used = np.zeros((n, t))
    soc = np.array([h.initial_soc_pct for h in sc.houses], dtype=float)
    limits = [SiteLimits(h.import_limit_w, h.export_cap_w) for h in sc.houses]
    use = [src.uses_battery and h.has_battery for h in sc.houses]
    # the feeder floor as an agent's default (edge_agent.config: battery.feeder_floor_soc_pct); it
    # acts only under the live feeder envelopes (the fleet strategy's)
    blim = [BatteryLimits(h.battery_kw * 1000 if u else 0.0, h.battery_kw * 1000 if u else 0.0,
                          DEFAULT_RESERVE_SOC_PCT, feeder_floor_soc_pct=DEFAULT_SOC_MIN_PCT)
            for h, u in zip(sc.houses, use, strict=True)]
    cap = [h.battery_kwh * 1000 if u else 0.0 for h, u in zip(sc.houses, use, strict=True)]
    eff = [h.efficiency for h in sc.houses]
    load_all, pv_all = sc.load_w, sc.pv_w
    live = src.realtime_feeders and options.realtime_feeder_control
    written: list[Written | None] = [None] * n  # the setpoint each device holds
    runs, run_fc = run_driver(sc, src), _run_forecast(src)
    loads = load_all.copy() if runs is not None else load_all
    t0 = time.perf_counter()
    for s in range(t):
        now = sc.slot_start(s)
        src.update(s, soc)
        if runs is not None:
            loads[:, s] += runs.step(s, load_all[:, s], pv_all[:, s], src.run_start, run_fc)
        slot_lim = limits
        if live:
            # what each house would do following its plan within its own limits: the live
            # aggregator measures it; the envelopes only ever cut into it where the feeder needs
            wanted = np.zeros(n)
            for i in range(n):
                base = float(loads[i, s] - pv_all[i, s])
                tele = SiteTelemetry(now, _m(base, now), _m(-float(pv_all[i, s]), now), _m(0.0, now),
                                     _m(float(soc[i]), now), _m(float(loads[i, s]), now))
                d = decide(now, tele, src.plans[i], True, limits[i], blim[i], BATTERY_ID, plan_grid_envelope=False)
                b, _ = battery_step(float(soc[i]), cap[i], d.battery_w, eff[i], slot_h)
                wanted[i] = base + b
            slot_lim = feeder_limits_now(sc, s, soc, cap, blim, eff, wanted, loads[:, s])
        for i in range(n):
            load, pv = float(loads[i, s]), float(pv_all[i, s])
            base = load - pv
            tele = SiteTelemetry(now, _m(base, now), _m(-pv, now), _m(0.0, now), _m(float(soc[i]), now),
                                 _m(load, now))
            plan = src.plans[i]
            d = decide(now, tele, plan, True, slot_lim[i], blim[i], BATTERY_ID, plan_grid_envelope=not live)
            held = written[i]
            if held is None or WRITES.battery_due(d.battery_w, held, now, d.clamped_by):
                held = written[i] = (d.battery_w, now)
            setpoint_w = held[0]
            b, soc[i] = battery_step(float(soc[i]), cap[i], setpoint_w, eff[i], slot_h)
            pv_cap = d.pv_limit_w
            if b != setpoint_w or pv_cap is not None:
                # the battery took less than decided (full or empty): the export cap falls to PV
                eff_limits = (slot_lim[i] if live else
                              slot_limits(limits[i], plan.slot_at(now) if plan is not None else None))
                pv_cap = pv_limit_for_export_cap(base, -pv, b, eff_limits.max_export_w)
            used = min(pv, pv_cap) if pv_cap is not None else pv
            pv_used[i, s] = used
            bat[i, s] = b
            grid[i, s] = load - used + b
            socs[i, s] = soc[i]
        src.observe(s, loads[:, s], pv_used[:, s])
        if progress is not None:
            progress(s + 1)
    return Trace(strategy, grid, bat, socs, pv_used, src.solves, src.solve_s, src.fallbacks,
                 time.perf_counter() - t0, loads if runs is not None else None,
                 runs.log().summary(sc.slot_start(min(options.plan_from_slot, t - 1))) if runs is not None else None)
