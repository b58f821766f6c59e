"""Dispatch leadership: one replica at a time holds the ``dispatch`` lease.

The holder renews every third of the TTL; its fencing token goes with every
leader-only write, so a replica that lost the lease (paused, partitioned) cannot
write: the store refuses any token but the current lease's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aggregator.metrics import AggregatorMetrics
from aggregator.store import PLAN_LEASE, StateStore, StoreError

log = logging.getLogger(__name__)

LEASE_NAME = PLAN_LEASE


class LeaderElector:
    def __init__(self, store: StateStore, replica_id: str, ttl_s: float, metrics: AggregatorMetrics) -> None:
        self._store = store
        self._replica_id = replica_id
        self._ttl_s = ttl_s
        self._metrics = metrics
        self.token: int | None = None
        self.changed = asyncio.Event()
        # called when this replica takes the lease (a new token): a new leader plans at once
        # instead of at its next cycle (42-52 s after a failover were measured, issue 20)
        self.on_lead: list[Callable[[], None]] = []

    @property
    def is_leader(self) -> bool:
        return self.token is not None

    async def try_acquire(self) -> int | None:
        """Take or renew the lease once; on a store error we cannot prove
        leadership, so we act as a follower until the store answers again."""
        try:
            token = await self._store.acquire_lease(LEASE_NAME, self._replica_id, self._ttl_s)
        except StoreError as exc:
            self._metrics.store_errors.inc()
            log.warning("cannot renew the dispatch lease: %s", exc)
            token = None
        if token != self.token:
            log.info("replica %s is %s", self._replica_id, "the dispatch leader" if token else "a follower")
            self.token = token
            self.changed.set()
            if token is not None:
                for callback in self.on_lead:
                    callback()
        self._metrics.leader.set(1 if token is not None else 0)
        return token

    async def run(self) -> None:
        while True:
            await self.try_acquire()
            await asyncio.sleep(self._ttl_s / 3)

    async def resign(self) -> None:
        if self.token is None:
            return
        self.token = None
        self._metrics.leader.set(0)
        try:
            await self._store.release_lease(LEASE_NAME, self._replica_id)
        except StoreError as exc:
            log.warning("could not release the dispatch lease (it will expire): %s", exc)
