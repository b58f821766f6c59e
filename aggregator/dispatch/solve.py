"""Solve a fleet problem block by block (GLOP via model_builder), or monolithically.

Without fleet-wide rows the LP is block-diagonal (blocks = feeders, or
transformers that carry a limit), so solving the blocks separately is exact and
the cost grows linearly with the number of houses.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from ortools.linear_solver.python import model_builder as mb
from ortools.linear_solver.python import model_builder_helper as mbh

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


def _solve_lp(lp: BlockLP, time_limit_s: float) -> tuple[np.ndarray, float]:
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
    houses: np.ndarray, sub: FleetProblem, options: DispatchOptions, grid_price_per_kwh: np.ndarray | None = None
) -> BlockSolution:
    """Solve one block; re-solve with fixed modes until no slot charges and discharges at once.

    Why the re-solve: with a throughput cost, simultaneous charge/discharge is
    never optimal unless burning energy in battery losses earns money (a
    negative import price, or negative export price with no curtailment
    headroom).  Then, for each flagged (house, slot), we forbid the minority
    direction (upper bound 0) and re-solve; the LP stays feasible because
    every limit has a penalised slack.  This is the LP with the binaries fixed
    to the direction the relaxation preferred, so the result is feasible but
    may cost slightly more than a true MILP optimum.
    """
    t0 = time.perf_counter()
    lp = build(sub, options, grid_price_per_kwh)
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    x, obj = _solve_lp(lp, options.time_limit_s)
    first_obj = obj
    passes = 0
    nt = lp.n * lp.t
    while passes < options.fix_modes_max_passes:
        c, d = lp.group(x, "c"), lp.group(x, "d")
        both = np.minimum(c, d) > options.simultaneous_tol_w
        if not both.any():
            break
        passes += 1
        ub = lp.var_ub.copy()
        flat = np.flatnonzero(both.ravel())
        c_wins = (c >= d).ravel()[flat]
        ub[1 * nt + flat[c_wins]] = 0.0  # forbid discharge where charge dominates
        ub[0 * nt + flat[~c_wins]] = 0.0  # forbid charge where discharge dominates
        lp = BlockLP(lp.var_lb, ub, lp.cost, lp.row_lb, lp.row_ub, lp.matrix, lp.n, lp.t, lp.n_feeders, lp.n_transformers)
        x, obj = _solve_lp(lp, options.time_limit_s)
    solve_s = time.perf_counter() - t1
    if grid_price_per_kwh is not None:
        # report the true cost: take the coordination price back out
        gsum = (lp.group(x, "imp") - lp.group(x, "exp") + lp.group(x, "oi") - lp.group(x, "oe")).sum(axis=0)
        obj -= float(np.dot(grid_price_per_kwh, gsum)) * sub.slot_h / 1000.0
    fi, fe = lp.feeder_slacks(x)
    xi, xe = lp.transformer_slacks(x)
    g = lp.group
    return BlockSolution(
        houses=houses,
        charge_w=g(x, "c"),
        discharge_w=g(x, "d"),
        energy_wh=g(x, "e"),
        import_w=g(x, "imp"),
        export_w=g(x, "exp"),
        curtail_w=g(x, "cur"),
        ev_w=g(x, "ev"),
        over_import_w=g(x, "oi"),
        over_export_w=g(x, "oe"),
        feeder_over_import_w=fi,
        feeder_over_export_w=fe,
        transformer_over_import_w=xi,
        transformer_over_export_w=xe,
        fairness_level=lp.fairness_level(x),
        feeder_ids=sub.feeder_ids,
        transformer_ids=sub.transformer_ids,
        objective=obj,
        lp_objective=first_obj,
        mode_fix_passes=passes,
        build_s=build_s,
        solve_s=solve_s,
    )


def _block_task(args: tuple) -> BlockSolution | str:
    houses, sub, options, *price = args
    try:
        return solve_block(houses, sub, options, price[0] if price else None)
    except InfeasibleError as exc:
        return str(exc)


@dataclass
class FleetSolution:
    """Per-block solutions; failed blocks map their house indices to an error text."""

    blocks: list[BlockSolution] = field(default_factory=list)
    failed: list[tuple[np.ndarray, str]] = field(default_factory=list)
    prepare_s: float = 0.0
    build_s: float = 0.0  # summed over blocks (CPU, not wall)
    solve_s: float = 0.0  # summed over blocks
    wall_s: float = 0.0

    @property
    def objective(self) -> float:
        return float(sum(b.objective for b in self.blocks))

    @property
    def lp_objective(self) -> float:
        return float(sum(b.lp_objective for b in self.blocks))


def solve_fleet(p: FleetProblem, options: DispatchOptions, *, monolithic: bool = False, pool: ProcessPoolExecutor | None = None) -> FleetSolution:
    """Solve every block (or one monolithic LP).  Never raises for infeasibility or time limits.

    ``pool``: an executor the caller owns (and shuts down); otherwise
    ``options.workers > 1`` creates one for this call and shuts it down.
    """
    t0 = time.perf_counter()
    groups = [np.arange(p.n)] if monolithic else p.blocks()
    tasks = [(h, p.subset(h), options) for h in groups]
    prepare_s = time.perf_counter() - t0
    if pool is not None:
        results = list(pool.map(_block_task, tasks, chunksize=max(1, len(tasks) // (8 * max(1, options.workers)))))
    elif options.workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=options.workers) as ex:
            results = list(ex.map(_block_task, tasks, chunksize=max(1, len(tasks) // (8 * options.workers))))
    else:
        results = [_block_task(tk) for tk in tasks]
    sol = FleetSolution(prepare_s=prepare_s)
    for (h, _, _), r in zip(tasks, results, strict=True):
        if isinstance(r, str):
            sol.failed.append((h, r))
        else:
            sol.blocks.append(r)
            sol.build_s += r.build_s
            sol.solve_s += r.solve_s
    sol.wall_s = time.perf_counter() - t0
    return sol
