"""Solve a fleet problem block by block (HiGHS, or GLOP via model_builder), or monolithically.

Without fleet-wide rows the LP is block-diagonal (blocks = feeders, or
transformers that carry a limit), so solving the blocks separately is exact and
the cost grows linearly with the number of houses.

Blocks run in the calling process, in a caller's ``ProcessPoolExecutor`` (cold
solves), or in a ``solver_pool.WarmSolverPool`` whose long-lived workers keep
each block's HiGHS basis and start the next cycle's solve from it (see
``highs_block``).  A block without a basis of its own starts from a sibling
block's of the same shape (in a pool, or within one in-process call).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from aggregator.dispatch.block_solve import BlockResult, BlockSolution, block_task
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.solver_pool import WarmSolverPool


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
    def warm_blocks(self) -> int:
        return sum(b.warm for b in self.blocks)

    @property
    def seeded_blocks(self) -> int:
        return sum(b.start == "seeded" for b in self.blocks)

    def add(self, houses: np.ndarray, result: BlockResult) -> None:
        if isinstance(result, str):
            self.failed.append((houses, result))
        else:
            self.blocks.append(result)
            self.build_s += result.build_s
            self.solve_s += result.solve_s

    @property
    def lp_objective(self) -> float:
        return float(sum(b.lp_objective for b in self.blocks))


def block_tasks(p: FleetProblem, monolithic: bool = False) -> list[tuple[np.ndarray, FleetProblem]]:
    """(house indices, sub-problem) per block, or one task for the monolithic LP."""
    groups = [np.arange(p.n)] if monolithic else p.blocks()
    return [(h, p.subset(h)) for h in groups]


def iter_blocks(
    tasks: list[tuple[np.ndarray, FleetProblem]],
    options: DispatchOptions,
    pool: ProcessPoolExecutor | WarmSolverPool | None = None,
) -> Iterator[tuple[int, BlockResult]]:
    """(task index, result) per block, as they finish, so the caller can turn solved
    blocks into plans while the workers solve the rest.  Never raises for a failed block.

    ``pool``: a warm pool or an executor the caller owns (and shuts down); otherwise
    ``options.workers > 1`` creates an executor for this call and shuts it down.
    """
    if isinstance(pool, WarmSolverPool):
        yield from pool.solve_blocks(tasks, options)
        return
    args = [(h, sub, options) for h, sub in tasks]
    if pool is not None:
        yield from enumerate(pool.map(block_task, args, chunksize=_chunksize(len(args), options.workers)))
    elif options.workers > 1 and len(args) > 1:
        with ProcessPoolExecutor(max_workers=options.workers) as ex:
            yield from enumerate(ex.map(block_task, args, chunksize=_chunksize(len(args), options.workers)))
    elif options.solver == "highs":
        # in this process, one after another: a throwaway warm pool, so that blocks after
        # the first start from a sibling's basis (~4x fewer iterations), no state kept
        yield from WarmSolverPool(workers=0).solve_blocks(tasks, options)
    else:
        yield from enumerate(block_task(a) for a in args)


def _chunksize(n_tasks: int, workers: int) -> int:
    return max(1, n_tasks // (8 * max(1, workers)))


def solve_fleet(
    p: FleetProblem,
    options: DispatchOptions,
    *,
    monolithic: bool = False,
    pool: ProcessPoolExecutor | WarmSolverPool | None = None,
) -> FleetSolution:
    """Solve every block (or one monolithic LP).  Never raises for infeasibility or time limits.

    ``pool``: see ``iter_blocks``.
    """
    t0 = time.perf_counter()
    tasks = block_tasks(p, monolithic)
    sol = FleetSolution(prepare_s=time.perf_counter() - t0)
    results: dict[int, BlockResult] = dict(iter_blocks(tasks, options, pool))
    for i, (h, _) in enumerate(tasks):  # task order, whatever order the blocks finished in
        sol.add(h, results[i])
    sol.wall_s = time.perf_counter() - t0
    return sol
