"""Plans as wire messages, a cycle's thousands encoded off the service's event loop.

The slots are the bulk of a plan's message (0.36 ms of Python per plan on the event loop, more
than thousands of streams leave it).  A cycle's solved plans reach the service before they are
sent (``PlanOutbox.prepare``): the slots of the solved blocks are encoded then, from their
arrays, in encoder processes (``plan_wire``); a stream that writes one of these plans sends
the header, which the planner sets as it sends each plan (version, lease), joined to those
bytes (``response``: no message built on the event loop).  Any other plan is encoded where it
is written."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime

from aggregator.dispatch.plans import LazyPlans, PackedPlans
from aggregator.dispatch.solver_pool import exit_with_parent
from aggregator.service import convert
from vpp.timestamps import timestamp as _ts
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import plan_pb2 as pl
from vpp_common.messages import DispatchPlan

log = logging.getLogger(__name__)

# fewer plans than this are encoded as they are written: a process hop costs more
MIN_PLANS_AHEAD = 100


def encode_packs_job(packs: Sequence[PackedPlans]) -> dict[str, bytes]:
    """Runs in an encoder process: plan id -> the plan's slots encoded."""
    out: dict[str, bytes] = {}
    for pk in packs:
        out.update(convert.packed_slots_to_wire(pk))
    return out


class PlanEncoder:
    """``DispatchPlan`` -> ``vpp.v1.DispatchPlan`` for the streams; ``workers`` encoder processes
    (started on first use; 0: everything is encoded where it is written)."""

    def __init__(self, workers: int = 1) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._ahead: dict[str, bytes] = {}  # plan id -> its slots, encoded ahead
        self._shapes: dict[str, tuple[int, datetime]] = {}  # plan id -> its slots' count and first start

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:  # spawned: forking a process that holds gRPC threads is unsafe
            self._pool = ProcessPoolExecutor(max_workers=self._workers,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=exit_with_parent, initargs=(os.getpid(),))
        return self._pool

    async def prepare(self, plans: Mapping[str, DispatchPlan]) -> None:
        """Encode the slots of a cycle's solved blocks ahead, a share of the blocks per process
        (what the previous cycle left unsent is dropped).  A failed encoder process only means
        its plans are encoded as they are written."""
        self._ahead, self._shapes = {}, {}
        packs = plans.packs if isinstance(plans, LazyPlans) else ()
        if self._workers <= 0 or sum(len(pk.plan_ids) for pk in packs) < MIN_PLANS_AHEAD:
            return
        self._shapes = {pid: (pk.target_w.shape[1], pk.start) for pk in packs for pid in pk.plan_ids}
        loop = asyncio.get_running_loop()
        shares = [packs[i::self._workers] for i in range(self._workers)]
        try:
            jobs = [loop.run_in_executor(self._executor(), encode_packs_job, share) for share in shares if share]
            for encoded in await asyncio.gather(*jobs):
                self._ahead.update(encoded)
        except Exception as exc:
            log.warning("plan encoder failed (this cycle's plans are encoded as they are sent): %r", exc)
            if isinstance(exc, BrokenProcessPool):  # a worker died: the next cycle starts new ones
                self.close(wait=False)

    def to_proto(self, plan: DispatchPlan) -> pl.DispatchPlan:
        """The plan's message, from its slots encoded ahead if there are (a plan id names one
        plan's slots: a plan made from another with other slots gets a new id, as shift_plan's)."""
        encoded = self._ahead.pop(plan.plan_id, None)
        if encoded is None:
            return convert.plan_to_proto(plan)
        msg = convert.plan_to_proto(plan, encoded)
        if len(msg.slots) != len(plan.slots) or (plan.slots and msg.slots[0].start != _ts(plan.slots[0].start)):
            return convert.plan_to_proto(plan)  # a guard: never the slots of another plan
        return msg

    def response(self, plan: DispatchPlan, sequence: int) -> fs.ConnectResponse | bytes:
        """The ConnectResponse carrying ``plan``: serialized from its slots encoded ahead, if there
        are (no message built: parsing and copying them cost ~70 us a plan on the event loop), or
        as a message to serialize.  The same guard as :meth:`to_proto`."""
        encoded, shape = self._ahead.pop(plan.plan_id, None), self._shapes.pop(plan.plan_id, None)
        if encoded is not None and shape is not None and plan.slots and shape == (len(plan.slots), plan.slots[0].start):
            return convert.plan_response_bytes(plan, encoded, sequence)
        return fs.ConnectResponse(sequence=sequence, dispatch_plan=convert.plan_to_proto(plan))

    def close(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None
