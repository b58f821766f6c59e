#!/usr/bin/env python3
"""How long the fleet dispatch optimiser takes, from scratch and on a re-plan, and how far
decomposition is from one LP.

    python benchmarks/dispatch.py [--houses 100,1000,10000] [--workers 2] [--json FILE]
                                  [--mono-max 1000] [--shift-max 1000] [--export-limit-w 2500]
                                  [--solver highs|glop] [--event [--event-reduce-w 300]]

For each fleet size N (x 96 slots of 15 min, feeders of ``--per-feeder`` houses,
feeder export limit ``--export-limit-w`` per house) a fresh ``WarmSolverPool`` of
``--workers`` processes is started (``pool_start_s``, not part of the figures), then:

* ``scratch``: prepare the problem (random fleet, seeded) and plan it with
  ``optimise`` (one LP per feeder in the workers, plans built while they solve);
* ``replan``: the normal cycle, a forecast update (load and PV perturbed by a few
  %) of the same fleet, planned with the pool that solved it (warm starts);
* ``shift`` (N <= ``--shift-max``): the scratch problem one slot later (horizon
  moved by 15 min, forecasts rolled), again with the same pool.

Printed per run, one JSON object per line: prepare_s (problem and blocks),
build_s and solve_s (summed over blocks, wall inside the workers), plans_s,
total_s (wall, prepare to plans), cpu_s (CPU of this process and the workers
over the run), peak_mb (peak RSS of this process plus each worker's peak RSS: an
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
them too).  The machine load (1-minute load average) is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregator.dispatch.events import FleetEvent
from aggregator.dispatch.events_monolithic import monolithic_with_events
from aggregator.dispatch.highs_block import start_highs_quietly
from aggregator.dispatch.optimise import DispatchResult, event_prices_for, optimise
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.solve import solve_fleet
from aggregator.dispatch.solver_pool import WarmSolverPool
from tests.synthetic_fleet import random_fleet


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


def _peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    kids = 0.0
    for w in _workers():
        try:
            for line in Path(f"/proc/{w.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):  # the worker's peak RSS, kB
                    kids += int(line.split()[1]) / 1024.0
        except (OSError, psutil.Error):
            pass
    return own + kids


def _forecast_update(p: FleetProblem) -> FleetProblem:
    rng = np.random.default_rng(1)
    return replace(p, load_w=p.load_w * rng.uniform(0.95, 1.05, p.load_w.shape),
                   pv_power_w=p.pv_power_w * rng.uniform(0.9, 1.0, p.pv_power_w.shape))


def _shift_one_slot(p: FleetProblem) -> FleetProblem:
    """The same fleet 15 min later: every (N, T)/(F, T)/(T,) series rolled by one slot."""
    roll = lambda a: np.roll(a, -1, axis=-1)  # noqa: E731
    return replace(
        p, start=p.start + timedelta(seconds=p.slot_s),
        load_w=roll(p.load_w), pv_power_w=roll(p.pv_power_w), max_import_w=roll(p.max_import_w),
        max_export_w=roll(p.max_export_w), feeder_import_limit_w=roll(p.feeder_import_limit_w),
        feeder_export_limit_w=roll(p.feeder_export_limit_w), import_price_per_kwh=roll(p.import_price_per_kwh),
        export_price_per_kwh=roll(p.export_price_per_kwh),
        ev_deadline_slot=np.maximum(p.ev_deadline_slot - 1, 0) if p.ev_deadline_slot.size else p.ev_deadline_slot,
    )


def _gap_pct(p: FleetProblem, res: DispatchResult, args: argparse.Namespace) -> float | None:
    """Cost of the decomposed plan vs one LP of the whole fleet (both after mode fixing), %."""
    if p.n > args.mono_max:
        return None
    mono = solve_fleet(p, DispatchOptions(time_limit_s=600, solver=args.solver), monolithic=True)
    if mono.failed:
        return None
    return float(f"{100.0 * (res.cost - mono.objective) / abs(mono.objective):.2e}")


def _one(kind: str, n: int, make, pool: WarmSolverPool,
         args: argparse.Namespace) -> tuple[dict, FleetProblem, DispatchResult]:
    opts = DispatchOptions(workers=args.workers, solver=args.solver)
    c0, t0 = _cpu_s(), time.perf_counter()
    p = make()
    p.validate()
    made_s = time.perf_counter() - t0
    res = optimise(p, opts, pool=pool, now=p.start)
    total_s = time.perf_counter() - t0
    cpu_s = _cpu_s() - c0
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
        "peak_mb": round(_peak_mb(), 1),
        "gap_pct": None,  # filled in after the timed runs (the monolithic LP's memory is not the optimiser's)
        "cost": round(res.cost, 2),
        "load_1min": round(os.getloadavg()[0], 2),
    }
    return row, p, res


def _row_head(n: int, kind: str, p: FleetProblem, tm: dict[str, float]) -> dict[str, object]:
    """The keys every printed row starts with."""
    return {"houses": n, "run": kind, "slots": p.t, "blocks": int(tm["blocks"])}


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
        mono = monolithic_with_events(p, DispatchOptions(time_limit_s=600, solver=args.solver), [event])
        row["event_mono_gap_pct"] = float(f"{100.0 * (res.cost - mono) / abs(mono):.2e}")
    return row, res


def run_size(n: int, args: argparse.Namespace) -> list[dict]:
    t0 = time.perf_counter()
    with WarmSolverPool(workers=args.workers) as pool:
        pool.wait_ready()
        start_s = round(time.perf_counter() - t0, 2)

        def scratch() -> FleetProblem:
            return random_fleet(n, houses_per_feeder=args.per_feeder, seed=n,
                                feeder_export_limit_w_per_house=args.export_limit_w, ev_share=0.1)

        rows = []
        row, p, res = _one("scratch", n, scratch, pool, args)
        row["pool_start_s"] = start_s
        rows.append(row)
        replan, p2, res2 = _one("replan", n, lambda: _forecast_update(p), pool, args)
        rows.append(replan)
        if n <= args.shift_max:
            _one("scratch", n, lambda: p, pool, args)  # back to the base basis (not reported)
            rows.append(_one("shift", n, lambda: _shift_one_slot(p), pool, args)[0])
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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--houses", default="100,1000,10000")
    ap.add_argument("--workers", type=int, default=2, help="solver processes (0: in this process)")
    ap.add_argument("--per-feeder", type=int, default=50)
    ap.add_argument("--export-limit-w", type=float, default=2500.0, help="feeder export limit per house, W")
    ap.add_argument("--mono-max", type=int, default=1000, help="largest fleet to also solve as one LP")
    ap.add_argument("--shift-max", type=int, default=1000, help="largest fleet to also re-plan one slot later")
    ap.add_argument("--solver", choices=("highs", "glop"), default="highs")
    ap.add_argument("--event", action="store_true", help="also plan with a binding fleet export event")
    ap.add_argument("--event-reduce-w", type=float, default=300.0,
                    help="the event reduces fleet export by this many W per house, 11:00-14:00")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    start_highs_quietly()  # the monolithic reference LP is solved in this process
    print(f"# load average before: {os.getloadavg()}, cores: {os.cpu_count()}", flush=True)
    out = []
    for n in (int(x) for x in args.houses.split(",")):
        for row in run_size(n, args):
            out.append(row)
            print(json.dumps(row), flush=True)
    print(f"# load average after: {os.getloadavg()}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
