"""Fast-mode runs of several strategies on one scenario, with progress bars."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from typing import Any, TextIO

from aggregator.dispatch.solver_pool import WarmSolverPool
from simulator.fleet.engine import Trace, clear_sky_table, simulate
from simulator.fleet.kpis import kpis
from simulator.fleet.model import Scenario
from simulator.fleet.strategies import STRATEGIES, StrategyOptions


@dataclass(frozen=True)
class RunResult:
    scenario: Scenario
    first_slot: int  # slots before it were warm-up (not counted)
    traces: dict[str, Trace]
    figures: dict[str, dict[str, Any]]


def _solver_pool(workers: int) -> WarmSolverPool | None:
    if workers <= 1:
        return None
    # spawn processes (no inherited locks, as in the aggregator) that keep each feeder's
    # basis, so the re-plans of a run start from the previous plan's basis
    return WarmSolverPool(workers)


def add_savings(figures: dict[str, dict[str, Any]]) -> None:
    """Saving against an idle battery, and the share of the perfect-foresight saving each strategy gets."""
    base = figures.get("battery_idle", {}).get("cost")
    best = figures.get("perfect_foresight", {}).get("cost")
    for f in figures.values():
        if base is None:
            continue
        f["saving_vs_battery_idle"] = round(base - f["cost"], 2)
        if best is not None and base - best > 1e-9:
            f["share_of_perfect_foresight_saving"] = round((base - f["cost"]) / (base - best), 4)


def run_fast(sc: Scenario, strategies: tuple[str, ...] = STRATEGIES, *, warmup_slots: int = 0,
             options: StrategyOptions | None = None, workers: int | None = None, show_progress: bool = True,
             out: TextIO = sys.stderr) -> RunResult:
    """Every strategy over the whole scenario; figures count slots from ``warmup_slots`` on."""
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: bars update from the loop itself
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
    sc.validate()
    options = replace(options or StrategyOptions(), plan_from_slot=warmup_slots)
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    clear_sky = clear_sky_table(sc)
    traces: dict[str, Trace] = {}
    needs_pool = any(s in ("fleet", "perfect_foresight") for s in strategies)
    pool = _solver_pool(workers) if needs_pool else None
    try:
        for name in strategies:
            with tqdm(total=sc.t, desc=f"{name:>17}", unit="slot", file=out, disable=not show_progress,
                      leave=True, dynamic_ncols=True, mininterval=0.5) as bar:
                done = 0

                def progress(n: int) -> None:
                    nonlocal done
                    bar.update(n - done)
                    done = n

                traces[name] = simulate(sc, name, options, clear_sky=clear_sky, pool=pool, progress=progress)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    figures = {name: kpis(sc, tr.grid_w, tr.battery_w, tr.soc_pct, tr.pv_used_w, first_slot=warmup_slots)
               for name, tr in traces.items()}
    for name, tr in traces.items():
        figures[name]["run"] = {"wall_s": round(tr.wall_s, 1), "plans": tr.solves, "solve_s": round(tr.solve_s, 1),
                                "fallback_plans": tr.fallbacks}
    add_savings(figures)
    return RunResult(sc, warmup_slots, traces, figures)
