"""Public entry point of the fleet optimiser: problem in, per-house plans out.

Never raises for infeasibility: limits that cannot all be met are relaxed with
penalties and reported; a block whose solve fails or hits its time limit gets
the previous plan shifted in time, or a self-consumption plan if there is none.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aggregator.dispatch.plans import Relaxation, build_plans, relaxations, self_consumption_plan, shift_plan
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.solve import FleetSolution, solve_fleet
from vpp_common.messages import DispatchPlan


@dataclass(frozen=True)
class DispatchResult:
    """Plans for every house; ``status`` is "optimal", "partial" (some fallbacks) or "fallback"."""

    plans: dict[str, DispatchPlan]
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
    pool: ProcessPoolExecutor | None = None,
) -> DispatchResult:
    """Plan the fleet.  ``previous``: last cycle's plans, used when a block has no solution."""
    options = options or DispatchOptions()
    now = now or datetime.now(UTC)
    t0 = time.perf_counter()
    problem.validate()
    sol: FleetSolution = solve_fleet(problem, options, pool=pool)
    t1 = time.perf_counter()
    plans = build_plans(problem, sol.blocks, created_at=now, version=version)
    fallback: list[str] = []
    for houses, why in sol.failed:
        for h in houses:
            hid = problem.house_ids[h]
            old = (previous or {}).get(hid)
            shifted = shift_plan(old, now, version) if old is not None else None
            plans[hid] = shifted or self_consumption_plan(problem, int(h), created_at=now, version=version, why=why)
            fallback.append(hid)
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
            "solve_wall_s": t1 - t0,
            "plans_s": t2 - t1,
            "total_s": t2 - t0,
        },
    )
