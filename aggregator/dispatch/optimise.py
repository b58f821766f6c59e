"""Public entry point of the fleet optimiser: problem in, per-house plans out.

Never raises for infeasibility: limits that cannot all be met are relaxed with
penalties and reported; a block whose solve fails or hits its time limit gets
the previous plan shifted in time, or a self-consumption plan if there is none.
"""

from __future__ import annotations

import gc
import time
from concurrent.futures import ProcessPoolExecutor
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aggregator.dispatch.plans import (
    LazyPlans,
    PackedPlans,
    Relaxation,
    pack_plans,
    relaxations,
    self_consumption_plan,
    shift_plan,
)
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.solve import BlockResult, FleetSolution, block_tasks, iter_blocks
from aggregator.dispatch.solver_pool import WarmSolverPool
from vpp_common.messages import DispatchPlan


@dataclass(frozen=True)
class DispatchResult:
    """Plans for every house; ``status`` is "optimal", "partial" (some fallbacks) or "fallback"."""

    plans: Mapping[str, DispatchPlan]  # fleet order; made from packed arrays on first lookup (LazyPlans)
    cost: float  # currency over the horizon, solved blocks only; includes penalties, minus terminal value
    relaxations: list[Relaxation]
    status: str
    fallback_houses: tuple[str, ...] = ()  # houses on a shifted previous plan or self-consumption
    timings: dict[str, float] = field(default_factory=dict)  # prepare_s, build_s, solve_s, plans_s, total_s


def optimise(
    problem: FleetProblem,
    options: DispatchOptions | None = None,
    previous: dict[str, DispatchPlan] | None = None,
    *,
    version: int = 1,
    now: datetime | None = None,
    pool: ProcessPoolExecutor | WarmSolverPool | None = None,
) -> DispatchResult:
    """Plan the fleet.  ``previous``: last cycle's plans, used when a block has no solution.

    ``pool``: a ``WarmSolverPool`` (re-solves each block from its previous basis), an
    executor the caller owns (cold solves), or None (see ``DispatchOptions.workers``).
    """
    options = options or DispatchOptions()
    now = now or datetime.now(UTC)
    t0 = time.perf_counter()
    problem.validate()
    tasks = block_tasks(problem)
    sol = FleetSolution(prepare_s=time.perf_counter() - t0)
    results: dict[int, BlockResult] = {}
    by_block: dict[int, PackedPlans] = {}
    plans_s = 0.0
    # Plans of a solved block are built while the workers solve the others: on a warm
    # re-plan building plans takes longer than solving.  The plans are millions of small
    # objects without reference cycles; the cyclic garbage collector would scan the
    # growing heap again and again while they are made (more than half of the time,
    # measured), so it pauses until they are built.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for i, r in iter_blocks(tasks, options, pool):
            results[i] = r
            if not isinstance(r, str):
                tp = time.perf_counter()
                by_block[i] = pack_plans(problem, r, created_at=now, version=version)
                plans_s += time.perf_counter() - tp
    finally:
        if gc_was_on:
            gc.enable()
    for i, (h, _) in enumerate(tasks):  # block order, whatever order they finished in
        sol.add(h, results[i])
    t1 = time.perf_counter()
    sol.wall_s = t1 - t0
    built: dict[str, DispatchPlan] = {}  # fallbacks
    fallback: list[str] = []
    for houses, why in sol.failed:
        for h in houses:
            hid = problem.house_ids[h]
            old = (previous or {}).get(hid)
            shifted = shift_plan(old, now, version) if old is not None else None
            built[hid] = shifted or self_consumption_plan(problem, int(h), created_at=now, version=version, why=why)
            fallback.append(hid)
    plans = LazyPlans([by_block[i] for i in sorted(by_block)], built, problem.house_ids)  # fleet order
    status = "optimal" if not sol.failed else ("fallback" if not sol.blocks else "partial")
    t2 = time.perf_counter()
    return DispatchResult(
        plans=plans,
        cost=sol.objective,
        relaxations=relaxations(problem, sol.blocks),
        status=status,
        fallback_houses=tuple(fallback),
        timings={
            "prepare_s": sol.prepare_s,
            "build_s": sol.build_s,
            "solve_s": sol.solve_s,
            "solve_wall_s": t1 - t0,  # includes the plans built while blocks were solving
            "plans_s": plans_s + (t2 - t1),
            "total_s": t2 - t0,
            "warm_blocks": float(sol.warm_blocks),
            "seeded_blocks": float(sol.seeded_blocks),
            "blocks": float(len(tasks)),
        },
    )
