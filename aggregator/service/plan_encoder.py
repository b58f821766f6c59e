"""Plans as wire messages, a cycle's thousands encoded off the service's event loop.

The slots are the bulk of a plan's message (0.36 ms of Python per plan on the event loop, more
than thousands of streams leave it).  A cycle's solved plans reach the service before they are
sent (``PlanOutbox.prepare``): their slots are encoded in encoder processes then, and a stream
that writes one of these plans parses its slots (C) and adds the header, which the planner sets
as it sends each plan (id, version, lease).  Any other plan is encoded where it is written."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor

from aggregator.dispatch.solver_pool import exit_with_parent
from aggregator.service import convert
from vpp.timestamps import timestamp as _ts
from vpp.v1 import plan_pb2 as pl
from vpp_common.messages import DispatchPlan

log = logging.getLogger(__name__)

# fewer plans than this are encoded as they are written: a process hop costs more
MIN_PLANS_AHEAD = 100


def encode_slots_job(plans: Mapping[str, DispatchPlan], house_ids: Sequence[str]) -> dict[str, bytes]:
    """Runs in an encoder process: plan id -> the plan's slots encoded (``convert.slots_to_wire``).
    ``plans`` pickles cheaply when it is the solver's ``LazyPlans`` (arrays)."""
    out = {}
    for house_id in house_ids:
        plan = plans[house_id]
        out[plan.plan_id] = convert.slots_to_wire(plan)
    return out


class PlanEncoder:
    """``DispatchPlan`` -> ``vpp.v1.DispatchPlan`` for the streams; ``workers`` encoder processes
    (started on first use; 0: everything is encoded where it is written)."""

    def __init__(self, workers: int = 1) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._ahead: dict[str, bytes] = {}  # plan id -> its slots, encoded ahead

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:  # spawned: forking a process that holds gRPC threads is unsafe
            self._pool = ProcessPoolExecutor(max_workers=self._workers,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=exit_with_parent, initargs=(os.getpid(),))
        return self._pool

    async def prepare(self, plans: Mapping[str, DispatchPlan]) -> None:
        """Encode the slots of a cycle's plans ahead, one share of the houses per process (what
        the previous cycle left unsent is dropped).  A failed encoder process only means the
        plans are encoded as they are written."""
        self._ahead = {}
        if self._workers <= 0 or len(plans) < MIN_PLANS_AHEAD:
            return
        order = sorted(plans)
        share = -(-len(order) // self._workers)
        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(self._executor(), encode_slots_job, plans, order[i:i + share])
                for i in range(0, len(order), share)]
        for done in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(done, BaseException):
                log.warning("plan encoder process failed (plans are encoded as they are sent): %r", done)
            else:
                self._ahead.update(done)

    def to_proto(self, plan: DispatchPlan) -> pl.DispatchPlan:
        """The plan's message, from its slots encoded ahead if there are (a plan id names one
        plan's slots: the planner gives a new id to any plan it changes)."""
        encoded = self._ahead.pop(plan.plan_id, None)
        if encoded is None:
            return convert.plan_to_proto(plan)
        msg = convert.plan_to_proto(plan, encoded)
        if len(msg.slots) != len(plan.slots) or (plan.slots and msg.slots[0].start != _ts(plan.slots[0].start)):
            return convert.plan_to_proto(plan)  # a guard: never the slots of another plan
        return msg

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
