"""One block of the fleet LP: build it, solve it (HiGHS, or GLOP via model_builder), re-solve
with fixed modes until no slot charges and discharges at once.

Split from ``solve`` so that ``solver_pool`` (which solves blocks in its workers) and
``solve`` (which hands blocks to a pool) do not import each other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
from ortools.linear_solver.python import model_builder as mb
from ortools.linear_solver.python import model_builder_helper as mbh

from aggregator.dispatch.highs_block import HighsBlock, HighsFailed
from aggregator.dispatch.lp_build import BlockLP, build
from aggregator.dispatch.problem import DispatchOptions, FleetProblem


class InfeasibleError(RuntimeError):
    """Internal only: a block LP returned no usable solution (time limit, solver failure)."""


@dataclass(frozen=True)
class BlockSolution:
    """Optimal schedule of one block.  Powers in W as (N, T) arrays; see lp_build for signs."""

    houses: np.ndarray  # indices into the full problem
    charge_w: np.ndarray
    discharge_w: np.ndarray
    energy_wh: np.ndarray
    import_w: np.ndarray
    export_w: np.ndarray
    curtail_w: np.ndarray
    ev_w: np.ndarray
    over_import_w: np.ndarray  # above the house's import cap (relaxation)
    over_export_w: np.ndarray
    feeder_over_import_w: np.ndarray  # (F_b, T)
    feeder_over_export_w: np.ndarray
    transformer_over_import_w: np.ndarray  # (X_b, T)
    transformer_over_export_w: np.ndarray
    fairness_level: np.ndarray  # (F_b, T) largest curtailment share
    feeder_ids: tuple[str, ...]
    transformer_ids: tuple[str, ...]
    objective: float  # currency, LP objective incl. penalties and terminal value
    lp_objective: float  # objective of the first LP (before mode fixing), for comparisons
    mode_fix_passes: int
    build_s: float
    solve_s: float
    # how the first LP started (solver_pool): "warm" (the block's previous basis), "mapped"
    # (it, moved to a new horizon or fairness rows), "seeded" (a sibling block's), "cold"
    start: str = "cold"

    @property
    def warm(self) -> bool:
        """Started from this block's own previous basis."""
        return self.start in ("warm", "mapped")


BlockResult = BlockSolution | str  # a solution, or why the block has none


def solve_lp_glop(lp: BlockLP, time_limit_s: float) -> tuple[np.ndarray, float]:
    model = mb.Model()
    model.helper.fill_model_from_sparse_data(lp.var_lb, lp.var_ub, lp.cost, lp.row_lb, lp.row_ub, lp.matrix)  # type: ignore[arg-type]  # OR-Tools stub spells the dtype wrong
    solver = mbh.ModelSolverHelper("glop")
    solver.set_time_limit_in_seconds(time_limit_s)
    solver.solve(model.helper)
    if solver.status() != mbh.SolveStatus.OPTIMAL:
        # GLOP stopped early gives no guaranteed-feasible point: treat as no solution
        raise InfeasibleError(f"GLOP status {solver.status().name}")
    return np.asarray(solver.variable_values()), float(solver.objective_value())


def solve_block(
    houses: np.ndarray,
    sub: FleetProblem,
    options: DispatchOptions,
    grid_price_per_kwh: np.ndarray | None = None,
    model: HighsBlock | None = None,
) -> BlockSolution:
    """Solve one block; re-solve with fixed modes until no slot charges and discharges at once.

    ``model``: the block's HiGHS warm-start memory from the previous cycle (its
    basis is used when the matrix is unchanged); None solves from scratch with
    ``options.solver``.  ``grid_price_per_kwh``: an extra price on grid power (fleet
    events); the objective reported is the true cost, without it.
    """
    t0 = time.perf_counter()
    lp = build(sub, options, grid_price_per_kwh)
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    highs = model if model is not None else (HighsBlock() if options.solver == "highs" else None)
    lp, x, obj, first_obj, passes = _solve_fixing_modes(lp, highs, options)
    solve_s = time.perf_counter() - t1
    if grid_price_per_kwh is not None:
        # report the true cost: take the coordination price back out
        gsum = (lp.group(x, "imp") - lp.group(x, "exp") - lp.group(x, "xb") + lp.group(x, "oi") - lp.group(x, "oe")).sum(axis=0)
        obj -= float(np.dot(grid_price_per_kwh, gsum)) * sub.slot_h / 1000.0
    # a scenario LP: the plans follow its first future; the
    # objective is the mean over the futures
    first = lp.first_future
    fi, fe = lp.feeder_slacks(x)
    xi, xe = lp.transformer_slacks(x)

    def g(x: np.ndarray, name: str) -> np.ndarray:
        return first(lp.group(x, name))

    return BlockSolution(
        houses=houses,
        charge_w=g(x, "c"),
        discharge_w=g(x, "d"),
        energy_wh=g(x, "e"),
        import_w=g(x, "imp"),
        export_w=g(x, "exp") + g(x, "xb"),
        curtail_w=g(x, "cur"),
        ev_w=g(x, "ev"),
        over_import_w=g(x, "oi"),
        over_export_w=g(x, "oe"),
        feeder_over_import_w=first(fi),
        feeder_over_export_w=first(fe),
        transformer_over_import_w=first(xi),
        transformer_over_export_w=first(xe),
        fairness_level=first(lp.fairness_level(x)),
        feeder_ids=sub.feeder_ids,
        transformer_ids=sub.transformer_ids,
        objective=obj / lp.scenarios,
        lp_objective=first_obj / lp.scenarios,
        mode_fix_passes=passes,
        build_s=build_s,
        solve_s=solve_s,
        start=highs.last_start if highs is not None else "cold",
    )


def _solve_fixing_modes(lp: BlockLP, highs: HighsBlock | None,
                        options: DispatchOptions) -> tuple[BlockLP, np.ndarray, float, float, int]:
    """(the LP as last solved, its solution, objective, the first LP's objective, re-solves).

    Why the re-solves: with a throughput cost, simultaneous charge/discharge is
    never optimal unless burning energy in battery losses earns money (a
    negative import price, or negative export price with no curtailment
    headroom).  Then, for each flagged (house, slot), we forbid the minority
    direction (upper bound 0) and re-solve; the LP stays feasible because
    every limit has a penalised slack.  This is the LP with the binaries fixed
    to the direction the relaxation preferred, so the result is feasible but
    may cost slightly more than a true MILP optimum.
    """
    try:
        x, obj = highs.solve(lp, options.time_limit_s) if highs is not None else solve_lp_glop(lp, options.time_limit_s)
        first_obj = obj
        passes = 0
        while passes < options.fix_modes_max_passes:
            ub = _forbid_simultaneous(lp, x, options.simultaneous_tol_w)
            if ub is None:
                break
            passes += 1
            lp = replace(lp, var_ub=ub)
            # HiGHS: only the bounds change, so the re-solve starts from the basis just found
            x, obj = highs.resolve_with_upper(ub, options.time_limit_s) if highs is not None else solve_lp_glop(lp, options.time_limit_s)
    except HighsFailed as exc:
        raise InfeasibleError(str(exc)) from None
    finally:
        if highs is not None:
            highs.release()  # keep the basis only: a live model holds ~35 MB
    return lp, x, obj, first_obj, passes


def _forbid_simultaneous(lp: BlockLP, x: np.ndarray, tol_w: float) -> np.ndarray | None:
    """Upper bounds that forbid the minority direction where a slot charges and discharges, or None."""
    c, d = lp.group(x, "c"), lp.group(x, "d")
    both = np.minimum(c, d) > tol_w
    if not both.any():
        return None
    nt = lp.n * lp.t
    ub = lp.var_ub.copy()
    flat = np.flatnonzero(both.ravel())
    c_wins = (c >= d).ravel()[flat]
    ub[1 * nt + flat[c_wins]] = 0.0  # forbid discharge where charge dominates
    ub[0 * nt + flat[~c_wins]] = 0.0  # forbid charge where discharge dominates
    return ub


def block_task(args: tuple) -> BlockResult:
    houses, sub, options, *price = args
    try:
        return solve_block(houses, sub, options, price[0] if price else None)
    except InfeasibleError as exc:
        return str(exc)
