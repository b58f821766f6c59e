"""The fleet LP in solver processes, off the service's event loop.

A solver process lives as long as the planner's pool, so it keeps each block's basis and
re-plans start warm.  Processes are spawned, not forked: forking a process that holds gRPC
channels and threads is unsafe."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime

from aggregator.dispatch.events import FleetEvent
from aggregator.dispatch.highs_block import keep_freed_memory, start_highs_quietly
from aggregator.dispatch.optimise import DispatchResult, EventReport, event_prices_for, optimise
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.solver_pool import WarmSolverPool, exit_with_parent

_WARM_BLOCKS: WarmSolverPool | None = None  # per solver process: each block's basis, kept between cycles


def optimise_job(problem: FleetProblem, now: datetime, events: Sequence[FleetEvent] = (),
                 last_events: Sequence[EventReport] = ()) -> DispatchResult:
    """Runs in a solver process (a module-level function, so it pickles).
    ``last_events``: the previous cycle's event reports; their prices start the coordination.

    The previous plans stay in the service: sending every house's plan to the solver
    process each cycle costs more than the solve (seconds at thousands of houses); the few
    houses whose block fails get their previous plan shifted in the service instead."""
    global _WARM_BLOCKS
    if _WARM_BLOCKS is None:
        start_highs_quietly()  # a dedicated process: HiGHS' banner does not go into the service's log
        keep_freed_memory()  # a dedicated process: it may keep its peak (HiGHS' models, made anew each solve)
        _WARM_BLOCKS = WarmSolverPool(workers=0)  # in this process: no processes to shut down
    result = optimise(problem, DispatchOptions(), None, now=now, pool=_WARM_BLOCKS, events=events,
                      event_prices=event_prices_for(problem, last_events) if events and last_events else None)
    return result


def warm_up_job() -> bool:
    """Runs in a solver process at startup: the imports (OR-Tools) happen now, not in the first cycle."""
    from aggregator.dispatch import solve  # noqa: F401

    return True


class SolverProcesses:
    """The planner's solver processes, started on first use."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self._workers,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=exit_with_parent, initargs=(os.getpid(),))
        return self._pool

    async def warm_up(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor(), warm_up_job)

    async def optimise(self, problem: FleetProblem, now: datetime, events: Sequence[FleetEvent],
                       last_events: Sequence[EventReport]) -> DispatchResult:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor(), optimise_job, problem, now, events, last_events)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
