"""Key figures of a strategy's run (pure: arrays in, numbers out).

* ``cost``: what the fleet pays for grid energy (import x import price - export x
  export price), minus the value of energy left in the batteries at the end over
  what was there at the start (at the period's mean export price: stored energy is
  worth at least what it would fetch on export), so a strategy cannot look cheap
  by emptying the batteries;
* ``self_consumption_ratio``: share of the PV produced that the houses used
  themselves (directly or through the battery): 1 - export / PV produced;
* ``self_sufficiency``: share of the load not bought from the grid: 1 - import / load
  (a battery charged from the grid can bring this below the no-battery figure);
* ``peak_feeder_load_w``: the largest net power through any feeder, either way;
* ``peak_import`` and ``peak_export``: each the feeder and slot where the net power in that
  direction is highest against the feeder's limit at the time (``feeder``, ``w``,
  ``limit_w``, ``pct_of_limit``, ``at``); where no feeder has a limit that way, the highest
  power (``limit_w`` and ``pct_of_limit`` None);
* ``energy_over_limits_kwh``: energy through feeders above their limits;
* ``export_cap_violations``: house-slots exporting more than the house's cap (+ tolerance);
* ``equivalent_cycles``: battery throughput / (2 x capacity), mean over batteries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.fleet.model import Scenario

EXPORT_CAP_TOLERANCE_W = 10.0  # measurement noise of a real meter; the fast mode is exact


def kpis(sc: Scenario, grid_w: np.ndarray, battery_w: np.ndarray, soc_pct: np.ndarray, pv_used_w: np.ndarray,
         *, first_slot: int = 0) -> dict[str, Any]:
    """Figures over slots ``first_slot``.. (a warm-up before it is not counted)."""
    sl = slice(first_slot, None)
    g, b, pv, load = grid_w[:, sl], battery_w[:, sl], pv_used_w[:, sl], sc.load_w[:, sl]
    pi, pe = sc.import_price_per_kwh[sl], sc.export_price_per_kwh[sl]
    h = sc.slot_h
    imp = np.maximum(g, 0.0)
    exp = np.maximum(-g, 0.0)
    grid_cost = float((imp @ pi - exp @ pe).sum() * h / 1000)
    cap_wh = np.array([x.battery_kwh * 1000 for x in sc.houses])
    soc_start = (soc_pct[:, first_slot - 1] if first_slot > 0
                 else np.array([x.initial_soc_pct for x in sc.houses]))
    # a battery the strategy did not use keeps its start SoC: stored energy only counts where it changed
    stored_change_kwh = float(((soc_pct[:, -1] - soc_start) / 100 * cap_wh).sum() / 1000)
    stored_change_kwh *= float(np.any(b != 0))
    value = float(pe.mean()) if pe.size else 0.0
    cost = grid_cost - stored_change_kwh * value

    pv_kwh = float(pv.sum() * h / 1000)
    avail_kwh = float(sc.pv_w[:, sl].sum() * h / 1000)
    load_kwh = float(load.sum() * h / 1000)
    imp_kwh = float(imp.sum() * h / 1000)
    exp_kwh = float(exp.sum() * h / 1000)

    fidx = sc.feeder_index()
    net = np.zeros((len(sc.feeder_ids), g.shape[1]))
    np.add.at(net, fidx, g)
    lim_i, lim_e = sc.feeder_import_limit_w[:, sl], sc.feeder_export_limit_w[:, sl]
    over_i = np.maximum(net - lim_i, 0.0)
    over_e = np.maximum(-net - lim_e, 0.0)
    caps = np.array([x.export_cap_w for x in sc.houses])[:, None]
    violations = int((exp > caps + EXPORT_CAP_TOLERANCE_W).sum())
    has = cap_wh > 0
    throughput_wh = np.abs(b).sum(axis=1) * h
    cycles = float((throughput_wh[has] / (2 * cap_wh[has])).mean()) if has.any() and np.any(b != 0) else 0.0
    per_feeder = {
        f: {
            "peak_import_w": round(float(max(net[k].max(), 0.0))),
            "peak_export_w": round(float(max(-net[k].min(), 0.0))),
            "import_limit_w": None if not np.isfinite(lim_i[k]).any() else round(float(lim_i[k].min())),
            "export_limit_w": None if not np.isfinite(lim_e[k]).any() else round(float(lim_e[k].min())),
            "slots_over_limit": int(((over_i[k] > 1.0) | (over_e[k] > 1.0)).sum()),
            "energy_over_limits_kwh": round(float((over_i[k] + over_e[k]).sum() * h / 1000), 3),
        }
        for k, f in enumerate(sc.feeder_ids)
    }
    return {
        "cost": round(cost, 2),
        "grid_cost": round(grid_cost, 2),
        "stored_energy_change_kwh": round(stored_change_kwh, 2),
        "self_consumption_ratio": round(1 - exp_kwh / pv_kwh, 4) if pv_kwh > 0 else None,
        "self_sufficiency": round(1 - imp_kwh / load_kwh, 4) if load_kwh > 0 else None,
        "peak_feeder_load_w": round(float(np.abs(net).max())),
        "peak_import": _peak(sc, net, lim_i, first_slot),
        "peak_export": _peak(sc, -net, lim_e, first_slot),
        "energy_over_limits_kwh": round(float((over_i + over_e).sum() * h / 1000), 3),
        "slots_over_limits": int(((over_i > 1.0) | (over_e > 1.0)).any(axis=0).sum()),
        "export_cap_violations": violations,
        "equivalent_cycles": round(cycles, 3),
        "grid_import_kwh": round(imp_kwh, 1),
        "grid_export_kwh": round(exp_kwh, 1),
        "pv_produced_kwh": round(pv_kwh, 1),
        "pv_curtailed_kwh": round(avail_kwh - pv_kwh, 1),
        "load_kwh": round(load_kwh, 1),
        "feeders": per_feeder,
    }


def _peak(sc: Scenario, power: np.ndarray, lim: np.ndarray, first_slot: int) -> dict[str, Any]:
    """The feeder-slot of ``power`` (F, T; > 0 in the direction of ``lim``) highest against ``lim``."""
    p = np.maximum(power, 0.0)
    limited = np.isfinite(lim)
    if limited.any():
        frac = np.where(limited, p / np.where(limited, lim, 1.0), -1.0)
        k, s = np.unravel_index(int(np.argmax(frac)), frac.shape)
    else:
        k, s = np.unravel_index(int(np.argmax(p)), p.shape)
    return {
        "feeder": sc.feeder_ids[k],
        "w": round(float(p[k, s])),
        "limit_w": round(float(lim[k, s])) if limited[k, s] else None,
        "pct_of_limit": round(float(p[k, s] / lim[k, s]) * 100, 1) if limited[k, s] else None,
        "at": sc.slot_start(first_slot + int(s)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
