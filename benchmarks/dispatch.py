#!/usr/bin/env python3
"""How long the fleet dispatch optimiser takes, from scratch and on a re-plan, and how far
decomposition is from one LP.

    python benchmarks/dispatch.py [--houses 100,1000,10000] [--workers 2] [--json FILE]
                                  [--single-future] [--max-memory-mb MB]
                                  [--mono-max 1000] [--shift-max N] [--shift-soc planned|unchanged]
                                  [--export-limit-w 2500]
                                  [--solver highs|glop] [--event [--event-reduce-w 300]]

The planning configuration is the aggregator's default (``aggregator.config.PlanningConfig``):
its slot (15 min), horizon (96 slots) and futures (``DEFAULT_FUTURES``: two, each a copy of
every house in the LP), departing from the forecasts after the slots of one cycle
(``aggregator.fleet.cycle.tied_slots``), made from each house's forecasts by the same
function as the aggregator's cycle (``futures_fields``).  ``--single-future``: the
forecasts alone (the aggregator's ``futures = []``, with its night reserve).  Every row
names its configuration (``config``, ``futures``, ``tied_slots``, ``workers``).  The
aggregator itself solves in one solver process (``aggregator.fleet.solver``), not in
``--workers`` processes.

For each fleet size N (feeders of ``--per-feeder`` houses, feeder export limit
``--export-limit-w`` per house) a fresh ``WarmSolverPool`` of ``--workers`` processes is
started (``pool_start_s``, not part of the figures), then:

* ``scratch``: prepare the problem (random fleet, seeded, and its futures) and plan it with
  ``optimise`` (one LP per feeder in the workers, plans built while they solve);
* ``replan``: the normal cycle, a forecast update (load and PV perturbed by a few
  %) of the same fleet, its futures made again, planned with the pool that solved it
  (warm starts);
* ``shift`` (every size unless ``--shift-max``): the scratch fleet one slot later (horizon
  moved by 15 min, forecasts rolled, futures made again, each battery where the scratch
  plan's first slot took it; ``--shift-soc unchanged``: where it was, as before 2026-12-07,
  a plan not followed), again with the same pool, after
  the scratch problem was solved once more (not reported) so that it starts from the
  scratch basis, as a cycle does.

Sizes whose estimated peak memory exceeds ``--max-memory-mb`` (default: 80 % of the memory
available at start) are named at the start and skipped, not run into the OOM killer.

Printed per run, one JSON object per line: prepare_s (problem and blocks),
build_s and solve_s (summed over blocks, wall inside the workers), plans_s,
total_s (wall, prepare to plans), cpu_s (CPU of this process and the workers
over the run), cpu_own_s (this process's part), peak_mb (peak RSS of this process since the size began plus each worker's peak RSS: an
upper bound of the joint peak), warm_blocks (started from their own previous basis),
seeded_blocks (no basis of their own yet: started from a sibling feeder's basis of the
same run; the first block per worker and shape starts cold), gap_pct (cost gap of the decomposed
plan to one monolithic LP of the same problem, N <= ``--mono-max``).

``--event``: one more run per size, ``event``: the scratch problem with a binding fleet
export event ("reduce export by ``--event-reduce-w`` W per house from 11:00 to 14:00",
measured from the event-free plan), planned with ``optimise(..., events=...)`` and the same
pool.  Extra figures: event_rounds (pricing rounds), event_gap_pct (certified bound: plan
cost minus the Lagrangian lower bound), event_mono_gap_pct (plan cost vs one LP with the
event rows, N <= ``--mono-max``), event_extra_s (wall time beyond the event-free solve),
event_excess_w (largest fleet export above the cap; <= 1 W expected).  Then ``event_replan``:
the replan's forecast update with the same event, its coordination started from the
``event`` run's prices (``optimise(event_prices=...)``, as the planner does cycle to cycle).
Peak RSS includes the previous run's plans that are still held (a planner keeps
them too).  The machine load (1-minute load average) is printed before and after, and is in
every row (``load_1min``); ``--json`` writes the rows, the skipped sizes and the load.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregator.config import PlanningConfig
from aggregator.dispatch.events import FleetEvent
from aggregator.dispatch.events_monolithic import monolithic_with_events
from aggregator.dispatch.futures import futures_fields
from aggregator.dispatch.highs_block import start_highs_quietly
from aggregator.dispatch.optimise import DispatchResult, event_prices_for, optimise
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.solve import solve_fleet
from aggregator.dispatch.solver_pool import WarmSolverPool
from aggregator.fleet.cycle import tied_slots
from tests.synthetic_fleet import clear_sky_pv_w, random_fleet

# Peak RSS (this process + the workers' peaks) per house and future, the fixed part, and what the
# monolithic reference LP adds per house and future, MB: fitted with a margin to runs of this
# benchmark (docs/performance.md), used only to skip sizes up front.
PEAK_MB_PER_HOUSE_FUTURE = 0.03
PEAK_MB_FIXED = 600.0
PEAK_MB_MONO_PER_HOUSE_FUTURE = 0.4
T = TypeVar("T")


def _workers() -> list[psutil.Process]:
    return [c for c in psutil.Process().children(recursive=True) if "resource_tracker" not in " ".join(c.cmdline())]


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and the live solver workers."""
    total = time.process_time()
    for w in _workers():
        try:
            t = w.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _hwm_mb(pid: int | str) -> float:
    """A process's peak RSS (VmHWM), MB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):  # kB
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _reset_own_peak() -> None:
    """Start this process's peak RSS afresh (Linux: clear_refs 5), so that a size's rows do not
    carry the previous size's monolithic reference LP; the workers are new for every size."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_mb() -> float:
    return _hwm_mb("self") + sum(_hwm_mb(w.pid) for w in _workers())


def _forecast_update(p: FleetProblem) -> FleetProblem:
    rng = np.random.default_rng(1)
    return replace(p, load_w=p.load_w * rng.uniform(0.95, 1.05, p.load_w.shape),
                   pv_power_w=p.pv_power_w * rng.uniform(0.9, 1.0, p.pv_power_w.shape))


def _followed_soc(p: FleetProblem, res: DispatchResult) -> np.ndarray:
    """Each battery's SoC after following its plan's first slot (W, charging > 0), %."""
    w = np.array([res.plans[h].slots[0].setpoints[0].target_power_w for h in p.house_ids])
    wh = np.where(w > 0, w * p.charge_efficiency, w / p.discharge_efficiency) * p.slot_s / 3600.0
    moved = np.divide(100.0 * wh, p.capacity_wh, out=np.zeros_like(wh), where=p.capacity_wh > 0)
    return np.clip(p.soc_pct + moved, p.soc_min_pct, p.soc_max_pct)


def _shift_one_slot(p: FleetProblem, soc_pct: np.ndarray | None = None) -> FleetProblem:
    """The same fleet 15 min later: every (N, T)/(F, T)/(T,) series rolled by one slot, the
    batteries at ``soc_pct`` (default: where they were)."""
    roll = lambda a: np.roll(a, -1, axis=-1)  # noqa: E731
    return replace(
        p, start=p.start + timedelta(seconds=p.slot_s), soc_pct=p.soc_pct if soc_pct is None else soc_pct,
        load_w=roll(p.load_w), pv_power_w=roll(p.pv_power_w), max_import_w=roll(p.max_import_w),
        max_export_w=roll(p.max_export_w), feeder_import_limit_w=roll(p.feeder_import_limit_w),
        feeder_export_limit_w=roll(p.feeder_export_limit_w), import_price_per_kwh=roll(p.import_price_per_kwh),
        export_price_per_kwh=roll(p.export_price_per_kwh),
        ev_deadline_slot=np.maximum(p.ev_deadline_slot - 1, 0) if p.ev_deadline_slot.size else p.ev_deadline_slot,
    )


class Planning:
    """The planning configuration a run plans with: the aggregator's defaults, or the
    forecasts alone (``--single-future``)."""

    def __init__(self, args: argparse.Namespace) -> None:
        cfg = PlanningConfig()
        self.slot_s, self.slots = cfg.slot_s, cfg.horizon_slots
        self.futures = () if args.single_future else tuple(cfg.futures)
        self.tied = tied_slots(cfg.cycle_s, cfg.slot_s) if self.futures else 0
        self.terminal_value = cfg.terminal_value_per_kwh
        self.workers, self.solver = args.workers, args.solver

    @property
    def k(self) -> int:
        """Copies of every house in the LP."""
        return max(1, len(self.futures))

    def label(self) -> dict[str, object]:
        name = "single-future" if not self.futures else f"default ({len(self.futures)} futures)"
        return {"config": name, "futures": len(self.futures), "tied_slots": self.tied,
                "workers": self.workers, "solver": self.solver}

    def problem(self, forecast: FleetProblem, clear: np.ndarray) -> FleetProblem:
        """The problem the aggregator's cycle makes of these forecasts (``prepare_problem``)."""
        assert isinstance(self.terminal_value, float), "the benchmark plans with a fixed terminal value"
        return replace(forecast, terminal_value_per_kwh=self.terminal_value,
                       **futures_fields(forecast.load_w, forecast.pv_power_w, np.minimum(clear, forecast.pv_power_w),
                                        self.futures, self.tied))

    def peak_mb(self, n: int, mono_max: int) -> float:
        """Estimated peak RSS of one size's runs (the monolithic reference LP counted too)."""
        mono = PEAK_MB_MONO_PER_HOUSE_FUTURE if n <= mono_max else 0.0
        return PEAK_MB_FIXED + (PEAK_MB_PER_HOUSE_FUTURE + mono) * n * self.k


def _forked(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a forked child (a reference LP's heap stays out of this process)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as ex:
        return ex.submit(fn, *args).result()


def _mono_objective(p: FleetProblem, solver: str) -> float | None:
    mono = solve_fleet(p, DispatchOptions(time_limit_s=600, solver=solver), monolithic=True)
    return None if mono.failed else mono.objective


def _gap_pct(p: FleetProblem, res: DispatchResult, args: argparse.Namespace) -> float | None:
    """Cost of the decomposed plan vs one LP of the whole fleet (both after mode fixing), %.
    The LP is solved in a forked child: glibc keeps its heap, and this process's peak RSS
    would otherwise carry it into the next size's rows."""
    if p.n > args.mono_max:
        return None
    mono = _forked(_mono_objective, p, args.solver)
    if mono is None:
        return None
    return float(f"{100.0 * (res.cost - mono) / abs(mono):.2e}")


def _one(kind: str, n: int, make, pool: WarmSolverPool,
         args: argparse.Namespace) -> tuple[dict, FleetProblem, DispatchResult]:
    opts = DispatchOptions(workers=args.workers, solver=args.solver)
    c0, own0, t0 = _cpu_s(), time.process_time(), time.perf_counter()
    p = make()
    p.validate()
    made_s = time.perf_counter() - t0
    res = optimise(p, opts, pool=pool, now=p.start)
    total_s = time.perf_counter() - t0
    cpu_s, own_s = _cpu_s() - c0, time.process_time() - own0
    assert len(res.plans) == n and res.status == "optimal", res.status
    tm = res.timings
    row = {
        **_row_head(n, kind, p, tm),
        "warm_blocks": int(tm["warm_blocks"]),
        "seeded_blocks": int(tm["seeded_blocks"]),
        "prepare_s": round(made_s + tm["prepare_s"], 3),
        "build_s": round(tm["build_s"], 3),
        "solve_s": round(tm["solve_s"], 3),
        "plans_s": round(tm["plans_s"], 3),
        "total_s": round(total_s, 3),
        "cpu_s": round(cpu_s, 2),
        "cpu_own_s": round(own_s, 2),  # this process alone: the problem, blocks handed out, plans
        "peak_mb": round(_peak_mb(), 1),
        "peak_own_mb": round(_hwm_mb("self"), 1),  # this process alone (plans, problems; a previous reference LP's heap)
        "gap_pct": None,  # filled in after the timed runs (the monolithic LP's memory is not the optimiser's)
        "cost": round(res.cost, 2),
        "load_1min": round(os.getloadavg()[0], 2),
    }
    return row, p, res


def _row_head(n: int, kind: str, p: FleetProblem, tm: dict[str, float]) -> dict[str, object]:
    """The keys every printed row starts with: which configuration ran, then the fleet."""
    return {**PLANNING.label(), "houses": n, "run": kind, "slots": p.t, "blocks": int(tm["blocks"])}


def _event_row(n: int, p: FleetProblem, pool: WarmSolverPool, args: argparse.Namespace, kind: str = "event",
               last: DispatchResult | None = None) -> tuple[dict, DispatchResult]:
    """``p`` with a fleet export event (see the module docstring); ``last``: a previous
    event run whose prices start the coordination (as the planner does cycle to cycle)."""
    per_h = 3600 // p.slot_s
    event = FleetEvent(11 * per_h, 14 * per_h, reduce_w=args.event_reduce_w * n, event_id="bench")
    opts = DispatchOptions(workers=args.workers, solver=args.solver)
    t0 = time.perf_counter()
    res = optimise(p, opts, pool=pool, now=p.start, events=[event],
                   event_prices=event_prices_for(p, last.events) if last is not None else None)
    total_s = time.perf_counter() - t0
    assert len(res.plans) == n and res.status == "optimal", res.status
    rep = res.events[0]
    tm = res.timings
    row = {
        **_row_head(n, kind, p, tm),
        "total_s": round(total_s, 3),
        "event_baseline_s": round(tm["event_baseline_s"], 3),
        "event_extra_s": round(total_s - tm["event_baseline_s"], 3),
        "event_pricing_s": round(tm["event_pricing_s"], 3),
        "event_master_s": round(tm["event_master_s"], 3),
        "event_polish_s": round(tm["event_polish_s"], 3),
        "event_rounds": rep.rounds,
        "event_converged": rep.converged,
        "event_binding": rep.binding,
        "event_gap_pct": float(f"{100 * rep.gap_rel:.2e}"),
        "event_mono_gap_pct": None,
        "event_excess_w": round(max(a - c for a, c in zip(rep.achieved_w, rep.cap_w, strict=True)), 3),
        "event_price_max_per_kwh": round(max(rep.price_per_kwh), 4),
        "cost": round(res.cost, 2),
        "load_1min": round(os.getloadavg()[0], 2),
    }
    if n <= args.mono_max:
        mono = _forked(monolithic_with_events, p, DispatchOptions(time_limit_s=600, solver=args.solver), [event])
        row["event_mono_gap_pct"] = float(f"{100.0 * (res.cost - mono) / abs(mono):.2e}")
    return row, res


def run_size(n: int, args: argparse.Namespace) -> list[dict]:
    _reset_own_peak()
    t0 = time.perf_counter()
    plan = PLANNING.problem
    with WarmSolverPool(workers=args.workers) as pool:
        pool.wait_ready()
        start_s = round(time.perf_counter() - t0, 2)
        fc: FleetProblem | None = None
        clear = np.zeros(0)

        def scratch() -> FleetProblem:
            nonlocal fc, clear
            fc = random_fleet(n, t=PLANNING.slots, slot_s=PLANNING.slot_s, houses_per_feeder=args.per_feeder, seed=n,
                              feeder_export_limit_w_per_house=args.export_limit_w, ev_share=0.1)
            clear = clear_sky_pv_w(fc)
            return plan(fc, clear)

        rows = []
        row, p, res = _one("scratch", n, scratch, pool, args)
        assert fc is not None
        base = fc
        row["pool_start_s"] = start_s
        rows.append(row)
        replan, p2, res2 = _one("replan", n, lambda: plan(_forecast_update(base), clear), pool, args)
        rows.append(replan)
        if args.shift_max is None or n <= args.shift_max:
            _one("scratch", n, lambda: p, pool, args)  # back to the base basis (not reported)
            soc = _followed_soc(base, res) if args.shift_soc == "planned" else None
            shift = _one("shift", n, lambda: plan(_shift_one_slot(base, soc), np.roll(clear, -1, axis=-1)), pool,
                         args)[0]
            rows.append({**shift, "shift_soc": args.shift_soc})
        if args.event:
            _one("scratch", n, lambda: p, pool, args)  # the event-free solve starts from p's basis, as in a cycle
            ev_row, ev_res = _event_row(n, p, pool, args)
            rows.append(ev_row)
            # the next cycle: a forecast update, coordination started from this cycle's event prices
            _one("replan", n, lambda: p2, pool, args)  # the event-free basis of p2, as in a cycle
            rows.append(_event_row(n, p2, pool, args, "event_replan", ev_res)[0])
    row["gap_pct"] = _gap_pct(p, res, args)
    replan["gap_pct"] = _gap_pct(p2, res2, args)
    return rows


def main() -> int:
    global PLANNING
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--houses", default="100,1000,10000")
    ap.add_argument("--workers", type=int, default=2, help="solver processes (0: in this process)")
    ap.add_argument("--single-future", action="store_true",
                    help="plan on the forecasts alone (futures = []), not the aggregator's default futures")
    ap.add_argument("--per-feeder", type=int, default=50)
    ap.add_argument("--export-limit-w", type=float, default=2500.0, help="feeder export limit per house, W")
    ap.add_argument("--mono-max", type=int, default=1000, help="largest fleet to also solve as one LP")
    ap.add_argument("--shift-max", type=int, default=None,
                    help="largest fleet to also re-plan one slot later (default: every size)")
    ap.add_argument("--shift-soc", choices=("planned", "unchanged"), default="planned",
                    help="the shift's batteries: where the scratch plan's first slot took them (default), "
                         "or where they were (a plan not followed)")
    ap.add_argument("--max-memory-mb", type=float, default=None,
                    help="skip sizes whose estimated peak RSS exceeds this (default: 80 %% of the available memory)")
    ap.add_argument("--solver", choices=("highs", "glop"), default="highs")
    ap.add_argument("--event", action="store_true", help="also plan with a binding fleet export event")
    ap.add_argument("--event-reduce-w", type=float, default=300.0,
                    help="the event reduces fleet export by this many W per house, 11:00-14:00")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    try:
        sizes = [int(x) for x in args.houses.split(",")]
    except ValueError:
        ap.error(f"--houses: comma-separated house counts, got {args.houses!r}")
    if any(n < 1 for n in sizes):
        ap.error(f"--houses: every size must be >= 1, got {args.houses!r}")
    if args.max_memory_mb is not None and not (math.isfinite(args.max_memory_mb) and args.max_memory_mb > 0):
        ap.error(f"--max-memory-mb must be a positive number, got {args.max_memory_mb}")
    PLANNING = Planning(args)
    start_highs_quietly()  # also for the reference LPs' forked children
    available_mb = psutil.virtual_memory().available / 2**20
    limit_mb = args.max_memory_mb if args.max_memory_mb is not None else 0.8 * available_mb
    load0 = os.getloadavg()
    print(f"# configuration: {json.dumps(PLANNING.label())}", flush=True)
    print(f"# load average before: {load0}, cores: {os.cpu_count()}, memory available: {available_mb:.0f} MB",
          flush=True)
    skipped = []
    for n in sizes:
        if (est := PLANNING.peak_mb(n, args.mono_max)) > limit_mb:
            skipped.append({"houses": n, "estimated_peak_mb": round(est), "max_memory_mb": round(limit_mb)})
            print(f"# SKIPPED {n} houses: estimated peak {est:.0f} MB > {limit_mb:.0f} MB "
                  f"(--max-memory-mb; {PLANNING.k} copies of every house in the LP)", flush=True)
    out = []
    for n in sizes:
        if any(s["houses"] == n for s in skipped):
            continue
        for row in run_size(n, args):
            out.append(row)
            print(json.dumps(row), flush=True)
    load1 = os.getloadavg()
    print(f"# load average after: {load1}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"configuration": PLANNING.label(), "rows": out, "skipped": skipped,
                                         "load_average_before": load0, "load_average_after": load1,
                                         "cores": os.cpu_count()}, indent=2))
    return 0


PLANNING: Planning  # set by main() from the arguments


if __name__ == "__main__":
    raise SystemExit(main())
