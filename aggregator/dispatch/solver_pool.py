"""Long-lived solver workers that keep each block's HiGHS basis between cycles.

The normal cycle re-plans the same fleet after a forecast update: the same
blocks with the same matrices and new bounds, costs and right-hand sides.  A
block whose basis is still in memory re-solves from it
(``highs_block.HighsBlock``), ~5x faster than from scratch; a block without a
basis of its own starts from a sibling's of the same shape that its worker
solved before (~4x faster than cold).  For that a block
must always go to the worker that holds its basis (block affinity); plain
``ProcessPoolExecutor`` hands tasks to whichever worker is free, so this pool
is one single-process executor per worker and routes each block itself.

Processes use the "spawn" context (no inherited locks or gRPC state) and end
in ``shutdown`` (or on leaving a ``with`` block).  ``workers=0`` keeps the
bases in the calling process and solves there, one block after another.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import TypeVar

import numpy as np

from aggregator.dispatch.block_solve import BlockResult, InfeasibleError, solve_block
from aggregator.dispatch.highs_block import (
    HighsBlock,
    SavedStart,
    ShapeKey,
    keep_freed_memory,
    start_highs_quietly,
)
from aggregator.dispatch.problem import DispatchOptions, FleetProblem

BlockKey = Hashable
T = TypeVar("T")


def block_key(sub: FleetProblem) -> BlockKey:
    """A block is known by its feeders (and transformers).  Other houses on it change the
    matrix, which ``HighsBlock`` notices by its fingerprint (it then starts from a sibling's
    basis, or cold)."""
    return (sub.feeder_ids, sub.transformer_ids)


class _BlockModels:
    """The warm-start memory (``HighsBlock``) one process holds, by block key."""

    def __init__(self) -> None:
        self.models: dict[BlockKey, HighsBlock] = {}
        self.seeds: dict[ShapeKey, SavedStart] = {}  # latest basis per block shape, a start for new blocks

    def retain(self, keys: set[BlockKey]) -> None:
        """Forget blocks that are gone."""
        for k in set(self.models) - keys:
            del self.models[k]

    def solve(self, key: BlockKey, houses: np.ndarray, sub: FleetProblem, options: DispatchOptions) -> BlockResult:
        model = self.models.setdefault(key, HighsBlock(self.seeds)) if options.solver == "highs" else None
        try:
            return solve_block(houses, sub, options, model=model)
        except InfeasibleError as exc:
            return str(exc)


_PROCESS_MODELS = _BlockModels()  # in a worker process: the blocks routed to it


def exit_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """In a pool worker: exit once the process that started it is gone.  A parent killed
    with SIGKILL (an aggregator replica taken down hard) cannot shut its pool down, and
    its workers would otherwise wait on their call queue for ever (seen as orphans)."""
    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(0)  # nothing of this worker's is worth keeping without its parent

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker_init(parent_pid: int | None = None) -> None:
    """Start of a worker process: import the solvers now, not in the first cycle."""
    if parent_pid is not None:
        exit_with_parent(parent_pid)
    keep_freed_memory()
    start_highs_quietly()


def _worker_ready() -> bool:
    return True


def _worker_retain(keys: set[BlockKey]) -> None:
    _PROCESS_MODELS.retain(keys)


def _worker_solve(key: BlockKey, houses: np.ndarray, sub: FleetProblem, options: DispatchOptions) -> BlockResult:
    return _PROCESS_MODELS.solve(key, houses, sub, options)


class WarmSolverPool:
    """Solver workers with block affinity; pass it as ``optimise(..., pool=...)``.

    One fleet solve at a time (the routing is not thread-safe): a planner owns one.
    """

    def __init__(self, workers: int = 2) -> None:
        if workers < 0:
            raise ValueError("workers must be >= 0")
        self._ctx = multiprocessing.get_context("spawn")
        self._ready: list[Future[bool]] = []
        self._executors: list[ProcessPoolExecutor] = [self._start() for _ in range(workers)]
        self._local = _BlockModels()  # workers == 0
        self._worker_of: dict[BlockKey, int] = {}
        self._closed = False

    @property
    def workers(self) -> int:
        return len(self._executors)

    def _start(self) -> ProcessPoolExecutor:
        ex = ProcessPoolExecutor(max_workers=1, mp_context=self._ctx, initializer=_worker_init,
                                 initargs=(os.getpid(),))
        self._ready.append(ex.submit(_worker_ready))  # start the process and its imports now, in the background
        return ex

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until every worker has started and imported the solvers."""
        for fut in self._ready:
            fut.result(timeout=timeout_s)
        self._ready = []

    def solve_blocks(
        self, tasks: list[tuple[np.ndarray, FleetProblem]], options: DispatchOptions
    ) -> Iterator[tuple[int, BlockResult]]:
        """(task index, result) per block as they finish; never raises for a failed block."""
        if self._closed:
            raise RuntimeError("cannot solve after shutdown")
        keys = [block_key(sub) for _, sub in tasks]
        if not self._executors:
            self._local.retain(set(keys))
            for i, ((h, sub), k) in enumerate(zip(tasks, keys, strict=True)):
                yield i, self._local.solve(k, h, sub, options)
            return
        route = self._route(keys, [len(h) for h, _ in tasks])
        for w in range(len(self._executors)):  # tasks of one worker run in order: retain first
            self._submit(w, _worker_retain, {k for k, r in zip(keys, route, strict=True) if r == w})
        futures: dict[Future[BlockResult], tuple[int, int]] = {}
        for i, ((h, sub), k, w) in enumerate(zip(tasks, keys, route, strict=True)):
            futures[self._submit(w, _worker_solve, k, h, sub, options)] = (i, w)
        broken: set[int] = set()
        for fut in as_completed(futures):
            i, w = futures[fut]
            try:
                yield i, fut.result()
            except BrokenProcessPool:  # a worker died (e.g. out of memory): its blocks fail, it restarts
                broken.add(w)
                yield i, "solver worker process died"
        for w in broken:
            self._restart(w)

    def _submit(self, w: int, fn: Callable[..., T], *args: object) -> Future[T]:
        """Submit to worker ``w``; a worker that died since the last cycle is restarted
        first (its blocks then start cold)."""
        try:
            return self._executors[w].submit(fn, *args)
        except BrokenProcessPool:
            self._restart(w)
            return self._executors[w].submit(fn, *args)

    def _route(self, keys: list[BlockKey], sizes: list[int]) -> list[int]:
        """Worker per block: the one it went to last time, new blocks to the least loaded."""
        current = set(keys)
        for k in [k for k in self._worker_of if k not in current]:
            del self._worker_of[k]
        houses_on = [0] * len(self._executors)  # houses routed to each worker, to balance new blocks
        for k, n in zip(keys, sizes, strict=True):
            if k in self._worker_of:
                houses_on[self._worker_of[k]] += n
        route = []
        for k, n in zip(keys, sizes, strict=True):
            if k not in self._worker_of:
                w = int(np.argmin(houses_on))
                self._worker_of[k] = w
                houses_on[w] += n
            route.append(self._worker_of[k])
        return route

    def _restart(self, w: int) -> None:
        """A new process for worker ``w``; its blocks stay routed to it (they start cold once)."""
        self._executors[w].shutdown(wait=True, cancel_futures=True)
        self._executors[w] = self._start()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = True) -> None:
        """End the worker processes (and drop the bases they keep); idempotent.
        Same signature as ``Executor.shutdown`` so callers can swap pools."""
        for ex in self._executors:
            ex.shutdown(wait=wait, cancel_futures=cancel_futures)
        self._executors = []
        self._closed = True
        self._local.models.clear()
        self._local.seeds.clear()
        self._worker_of.clear()

    def __enter__(self) -> WarmSolverPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.shutdown()
