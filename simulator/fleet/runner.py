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


# All but the fleet strategy: with a spare core they run in a process of their own beside
# it (its main thread waits on the solver pool much of the time; perfect foresight is one
# LP per transformer, solved in that process: simulator.fleet.bound).  The default run
# took 102 s one after another on 2 cores.
SIDE_STRATEGIES = ("no_battery", "battery_idle", "self_consumption", "tou", "perfect_foresight")
_side_progress: Any = None  # in the side process: slots done per strategy (a shared array)


def _side_init(progress: Any) -> None:
    global _side_progress
    _side_progress = progress


def _side_job(sc: Scenario, names: tuple[str, ...], options: StrategyOptions) -> dict[str, Trace]:
    """Runs in the side process: ``names`` one after another, progress into the shared array."""
    clear_sky = clear_sky_table(sc)
    out = {}
    for k, name in enumerate(names):
        def progress(n: int, k: int = k) -> None:
            _side_progress[k] = n

        out[name] = simulate(sc, name, options, clear_sky=clear_sky, progress=progress)
    return out


def run_fast(sc: Scenario, strategies: tuple[str, ...] = STRATEGIES, *, warmup_slots: int = 0,
             options: StrategyOptions | None = None, workers: int | None = None, show_progress: bool = True,
             out: TextIO = sys.stderr) -> RunResult:
    """Every strategy over the whole scenario; figures count slots from ``warmup_slots`` on.

    With ``workers`` > 1 the strategies other than ``fleet`` run in a process beside it."""
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: bars update from the loop itself
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
    sc.validate()
    options = replace(options or StrategyOptions(), plan_from_slot=warmup_slots)
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    side = tuple(s for s in strategies if s in SIDE_STRATEGIES)
    if workers <= 1 or len(side) == len(strategies):
        side = ()
    here = tuple(s for s in strategies if s not in side)
    traces: dict[str, Trace] = {}
    needs_pool = "fleet" in here
    pool = _solver_pool(workers) if needs_pool else None
    bars = {name: tqdm(total=sc.t, desc=f"{name:>17}", unit="slot", file=out, disable=not show_progress,
                       leave=True, dynamic_ncols=True, mininterval=0.5, position=i)
            for i, name in enumerate(strategies)}
    side_ex: ProcessPoolExecutor | None = None
    stop = threading.Event()
    try:
        side_job = None
        if side:
            ctx = multiprocessing.get_context("spawn")  # no inherited locks, as the solver pool
            shared = ctx.Array("l", len(side), lock=False)
            side_ex = ProcessPoolExecutor(1, mp_context=ctx, initializer=_side_init, initargs=(shared,))
            side_job = side_ex.submit(_side_job, sc, side, options)

            def watch() -> None:  # the side process's progress onto its bars
                started: set[str] = set()
                while True:
                    for k, name in enumerate(side):
                        done = shared[k]
                        if done and name not in started:  # its clock from its first slot
                            started.add(name)
                            bars[name].reset(total=sc.t)
                        if done > bars[name].n:
                            bars[name].update(done - bars[name].n)
                    if stop.wait(0.5):
                        return

            threading.Thread(target=watch, name="side-progress", daemon=True).start()
        clear_sky = clear_sky_table(sc)
        for name in here:
            bar = bars[name]

            def progress(n: int, bar: Any = bar) -> None:
                bar.update(n - bar.n)

            bar.reset(total=sc.t)  # its clock from now
            traces[name] = simulate(sc, name, options, clear_sky=clear_sky, pool=pool, progress=progress)
            bar.refresh()
        if side_job is not None:
            traces.update(side_job.result())
    finally:
        stop.set()
        if side_ex is not None:
            side_ex.shutdown(cancel_futures=True)
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        for name in side:
            if name in traces:
                bars[name].update(sc.t - bars[name].n)
        for bar in bars.values():
            bar.close()
    traces = {name: traces[name] for name in strategies}  # the order asked for
    figures = {name: kpis(sc if tr.load_w is None else replace(sc, load_w=tr.load_w), tr.grid_w, tr.battery_w,
                          tr.soc_pct, tr.pv_used_w, first_slot=warmup_slots)
               for name, tr in traces.items()}
    for name, tr in traces.items():
        figures[name]["run"] = {"wall_s": round(tr.wall_s, 1), "plans": tr.solves, "solve_s": round(tr.solve_s, 1),
                                "fallback_plans": tr.fallbacks}
        if tr.runs is not None:
            figures[name]["appliance_runs"] = tr.runs
    add_savings(figures)
    return RunResult(sc, warmup_slots, traces, figures)
