"""Block solves of fleet-event coordination: pricing rounds and the finish (docs/fleet-events.md).

With a pool the blocks are solved in its workers in parallel (a ``WarmSolverPool`` starts each
from its basis of the previous solve, an executor solves cold); without one they are solved
here one after another, each from its own HiGHS basis of the previous round.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np

from aggregator.dispatch.block_solve import BlockResult, BlockSolution, InfeasibleError, solve_block
from aggregator.dispatch.events_master import EventRows, block_grid_w
from aggregator.dispatch.highs_block import HighsBlock
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.solve import iter_blocks
from aggregator.dispatch.solver_pool import WarmSolverPool

Tasks = list[tuple[np.ndarray, FleetProblem]]  # (house indices, sub-problem) per block
Pool = ProcessPoolExecutor | WarmSolverPool | None
SHARE_TOL_W = 1e-3  # a block's share of a cap, W: slack for the LP tolerances


def priced_problem(sub: FleetProblem, price_per_kwh: np.ndarray) -> FleetProblem:
    """``sub`` with the coordination price on grid power folded into its energy prices: the
    same LP as ``build(sub, o, price)``, so a pool that takes no price argument can solve it."""
    return replace(sub, import_price_per_kwh=sub.import_price_per_kwh + price_per_kwh,
                   export_price_per_kwh=sub.export_price_per_kwh + price_per_kwh)


def pricing_round(
    tasks: Tasks,
    blocks: list[int],
    options: DispatchOptions,
    price_per_kwh: np.ndarray,
    pool: Pool,
    models: dict[int, HighsBlock],
) -> Iterator[tuple[int, BlockResult]]:
    """(block index, result) for ``blocks`` priced at ``price_per_kwh``.  A result's
    ``objective`` is its true cost (the price term taken out), ``lp_objective`` the priced
    LP's optimum (for the Lagrangian bound).  ``models``: each block's HiGHS basis (no pool)."""
    if pool is not None:
        kwh = tasks[0][1].slot_h / 1000.0
        priced = [(tasks[j][0], priced_problem(tasks[j][1], price_per_kwh)) for j in blocks]
        for i, r in iter_blocks(priced, options, pool):
            if isinstance(r, str):
                yield blocks[i], r
            else:
                true_cost = r.objective - float(np.dot(price_per_kwh, block_grid_w(r))) * kwh
                yield blocks[i], replace(r, objective=true_cost)
        return
    for j in blocks:
        yield j, _solve_here(j, *tasks[j], options, models, price_per_kwh)


def solve_each(tasks: Tasks, keys: list[int], options: DispatchOptions, pool: Pool,
               models: dict[int, HighsBlock]) -> Iterator[tuple[int, BlockResult]]:
    """(task index, result): in ``pool``, or here one after another, task ``i`` from the basis
    of block ``keys[i]`` in ``models``."""
    if pool is not None:
        yield from iter_blocks(tasks, options, pool)
        return
    for i, (h, sub) in enumerate(tasks):
        yield i, _solve_here(keys[i], h, sub, options, models)


def _solve_here(key: int, houses: np.ndarray, sub: FleetProblem, options: DispatchOptions,
                models: dict[int, HighsBlock], price_per_kwh: np.ndarray | None = None) -> BlockResult:
    model = models.setdefault(key, HighsBlock()) if options.solver == "highs" else None
    try:
        return solve_block(houses, sub, options, price_per_kwh, model=model)
    except InfeasibleError as exc:
        return str(exc)


def allocated_problem(sub: FleetProblem, mixed: BlockSolution, rows: EventRows) -> FleetProblem:
    """``sub`` with its share of every event cap (its grid power in ``mixed`` in that slot) as a
    limit of the block's own transformer (a block by transformer) or feeder (a block by feeder)."""
    by_x = bool(np.isfinite(sub.transformer_export_limit_w).any() or np.isfinite(sub.transformer_import_limit_w).any())
    names = ("transformer_export_limit_w", "transformer_import_limit_w") if by_x else (
        "feeder_export_limit_w", "feeder_import_limit_w")
    limit_w = {-1.0: getattr(sub, names[0]).copy(), 1.0: getattr(sub, names[1]).copy()}  # by row sign
    share_w = rows.sign * block_grid_w(mixed)[rows.slot] + SHARE_TOL_W
    for slot, sign, share in zip(rows.slot.tolist(), rows.sign.tolist(), share_w.tolist(), strict=True):
        lim = limit_w[sign]
        lim[:, slot] = np.minimum(lim[:, slot], share)
    return replace(sub, **{names[0]: limit_w[-1.0], names[1]: limit_w[1.0]})
