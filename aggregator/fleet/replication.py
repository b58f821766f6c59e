"""Replication between aggregator replicas: the shared queues in the state store.

Only the dispatch leader plans (``fleet.leadership``), but a house may be connected to any
replica, so:

* re-plan requests a follower receives go to the shared ``replan`` queue, which the
  leader consumes;
* a plan for a house held by another replica goes to that replica's ``dispatch:<replica>``
  queue; every replica consumes its own and hands the house's *current* plan from the store
  to the stream (latest wins, so a late or repeated delivery can never move an agent
  backwards).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aggregator.fleet.leadership import LeaderElector
from aggregator.metrics import AggregatorMetrics
from aggregator.store import StateStore, StoreError
from vpp_common.clock import wait_event

log = logging.getLogger(__name__)

REPLAN_QUEUE = "replan"

# A dispatch-queue item with this prefix asks the replica to send the house its grid signal
# only (a new feeder envelope), not its plan.  ":" never occurs in a house id.
SIGNAL_ITEM = "signal:"
# A re-plan-queue item that asks for a re-plan of the whole fleet (fleet events changed).
FLEET_ITEM = "fleet:"


def dispatch_queue(replica_id: str) -> str:
    return f"dispatch:{replica_id}"


class Replication:
    """This replica's ends of the shared queues."""

    def __init__(self, store: StateStore, replica_id: str, elector: LeaderElector,
                 metrics: AggregatorMetrics) -> None:
        self._store = store
        self._replica_id = replica_id
        self._elector = elector
        self._metrics = metrics

    async def ask_leader(self, house_ids: set[str] | None, fleet: bool) -> None:
        """A follower's re-plan requests, for the leader to consume."""
        for house_id in house_ids or ():
            await self._store.queue_push(REPLAN_QUEUE, house_id)
        if fleet:
            await self._store.queue_push(REPLAN_QUEUE, FLEET_ITEM)

    async def other_replica(self, house_id: str) -> str | None:
        """The replica holding the house's stream, if it is another one."""
        route = await self._store.get_route(house_id)
        return route if route is not None and route != self._replica_id else None

    async def tell(self, replica_id: str, house_id: str, *, signal_only: bool = False,
                   fencing_token: int | None = None) -> None:
        """Ask ``replica_id`` to send the house its current plan and signal (or its signal only);
        with the leader's ``fencing_token`` the push is fenced (StaleFencingToken once the lease is lost)."""
        await self._store.queue_push(dispatch_queue(replica_id), SIGNAL_ITEM + house_id if signal_only else house_id,
                                     fencing_token)

    async def consume_replans(self, on_house: Callable[[str], None], on_fleet: Callable[[], None]) -> None:
        """Leader only: re-plan requests that reached other replicas."""
        while True:
            if not self._elector.is_leader:
                self._elector.changed.clear()
                await wait_event(self._elector.changed, 1.0)
                continue
            try:
                items = await self._store.queue_pull(REPLAN_QUEUE, self._replica_id, block_s=1.0)
                if items:
                    for _, house_id in items:
                        if house_id == FLEET_ITEM:
                            on_fleet()
                        else:
                            on_house(house_id)
                    await self._store.queue_ack(REPLAN_QUEUE, [i for i, _ in items])
            except StoreError as exc:
                self._metrics.store_errors.inc()
                log.warning("replan queue unavailable: %s", exc)
                await asyncio.sleep(1.0)

    async def consume_dispatch(self, send_signal: Callable[[str], Awaitable[None]],
                               send_current: Callable[[str], Awaitable[None]]) -> None:
        """Every replica: plans the leader made for houses whose streams are here."""
        queue = dispatch_queue(self._replica_id)
        while True:
            try:
                items = await self._store.queue_pull(queue, self._replica_id, block_s=1.0)
                for _, item in items:
                    if item.startswith(SIGNAL_ITEM):  # a feeder envelope the leader left in the store
                        await send_signal(item.removeprefix(SIGNAL_ITEM))
                    else:
                        await send_current(item)
                if items:
                    await self._store.queue_ack(queue, [i for i, _ in items])
            except StoreError as exc:
                self._metrics.store_errors.inc()
                log.warning("dispatch queue unavailable: %s", exc)
                await asyncio.sleep(1.0)
