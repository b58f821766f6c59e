#!/usr/bin/env python3
"""How long the fleet dispatch optimiser takes, and how far decomposition is from one LP.

    python benchmarks/dispatch.py [--houses 100,1000,10000] [--workers 2] [--json FILE]
                                  [--mono-max 1000] [--export-limit-w 2500]

For each fleet size N (x 96 slots of 15 min, feeders of ``--per-feeder`` houses,
feeder export limit ``--export-limit-w`` per house): prepare the problem (random
fleet, seeded), then solve it block by block (one GLOP LP per feeder in a pool of
``--workers`` processes) and turn it into per-house plans.  Then a re-plan after
a forecast update (load and PV perturbed by a few %), and, up to ``--mono-max``
houses, one monolithic LP of the same problem for the cost gap.

Printed per size: prepare_s, build_s and solve_s (summed over blocks, CPU in the
workers), solve_wall_s, plans_s, total_s (wall, prepare to plans), peak_mb (max RSS
of this process and its workers), gap_pct (decomposed vs monolithic), and the
re-plan figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregator.dispatch.plans import build_plans  # noqa: E402
from aggregator.dispatch.problem import DispatchOptions  # noqa: E402
from aggregator.dispatch.solve import solve_fleet  # noqa: E402
from aggregator.dispatch.synthetic import random_fleet  # noqa: E402


def _peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # largest finished child
    return (own + kids) / 1024.0


def run(n: int, args: argparse.Namespace, pool: ProcessPoolExecutor | None) -> dict:
    opts = DispatchOptions(workers=args.workers)
    t0 = time.perf_counter()
    p = random_fleet(n, houses_per_feeder=args.per_feeder, seed=n, feeder_export_limit_w_per_house=args.export_limit_w, ev_share=0.1)
    p.validate()
    prepare_s = time.perf_counter() - t0
    sol = solve_fleet(p, opts, pool=pool)
    t1 = time.perf_counter()
    plans = build_plans(p, sol.blocks, created_at=p.start, version=1)
    plans_s = time.perf_counter() - t1
    total_s = time.perf_counter() - t0
    assert len(plans) == n and not sol.failed, sol.failed[:1]
    # re-plan after a forecast update: new load and PV forecasts, same fleet
    rng = np.random.default_rng(1)
    p2 = replace(p, load_w=p.load_w * rng.uniform(0.95, 1.05, p.load_w.shape), pv_power_w=p.pv_power_w * rng.uniform(0.9, 1.0, p.pv_power_w.shape))
    t2 = time.perf_counter()
    sol2 = solve_fleet(p2, opts, pool=pool)
    r_solve = time.perf_counter() - t2
    build_plans(p2, sol2.blocks, created_at=p2.start, version=2)
    r_total = time.perf_counter() - t2
    gap = None
    mono_s = None
    if n <= args.mono_max:
        t3 = time.perf_counter()
        mono = solve_fleet(p, DispatchOptions(time_limit_s=600), monolithic=True)
        mono_s = time.perf_counter() - t3
        if not mono.failed:
            gap = 100.0 * (sol.lp_objective - mono.lp_objective) / abs(mono.lp_objective)
    return {
        "houses": n,
        "slots": p.t,
        "blocks": len(sol.blocks),
        "prepare_s": round(prepare_s, 3),
        "build_s": round(sol.build_s, 3),
        "solve_s": round(sol.solve_s, 3),
        "solve_wall_s": round(sol.wall_s, 3),
        "plans_s": round(plans_s, 3),
        "total_s": round(total_s, 3),
        "replan_solve_wall_s": round(r_solve, 3),
        "replan_total_s": round(r_total, 3),
        "peak_mb": round(_peak_mb(), 1),
        "gap_pct": None if gap is None else float(f"{gap:.2e}"),
        "monolithic_s": None if mono_s is None else round(mono_s, 2),
        "cost": round(sol.objective, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--houses", default="100,1000,10000")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--per-feeder", type=int, default=50)
    ap.add_argument("--export-limit-w", type=float, default=2500.0, help="feeder export limit per house, W")
    ap.add_argument("--mono-max", type=int, default=1000, help="largest fleet to also solve as one LP")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = []
    pool = ProcessPoolExecutor(max_workers=args.workers) if args.workers > 1 else None
    try:
        for n in (int(x) for x in args.houses.split(",")):
            row = run(n, args, pool)
            out.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
