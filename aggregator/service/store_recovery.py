"""A state store that lost its data (Redis restarted empty): notice it, write back what this
replica knows, re-plan at once.

Before (issue 20): the house set came back only as streams reconnected (default maximum
connection age 45 min), so nothing was planned, while health said SERVING.  Now every probe
reads the store's epoch (:meth:`StateStore.epoch`, a random id set at the store's first use);
another value than the one seen before means the data is gone.  Each replica then:

* says NOT_SERVING while it rebuilds;
* writes back every house whose stream it holds: its Hello, its route and its last
  flexibility (the planner plans a house only with these);
* asks for a re-plan of the whole fleet (the leader's own, or through the re-plan queue);
* says SERVING again.

The work queues' consumer groups are made again by the store itself (a new epoch or a
``NOGROUP`` answer), and plan versions stay above every version an agent holds because
the store's version counters start at wall-clock milliseconds (``version_base_ms``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aggregator.metrics import AggregatorMetrics
from aggregator.service.sessions import SessionRegistry
from aggregator.store import StateStore
from vpp_common.clock import Clock

log = logging.getLogger(__name__)


class StoreRecovery:
    def __init__(self, *, store: StateStore, sessions: SessionRegistry, clock: Clock, replica_id: str,
                 route_ttl_s: float, metrics: AggregatorMetrics,
                 set_serving: Callable[[bool], Awaitable[None]], replan_fleet: Callable[[], Awaitable[None]]) -> None:
        self._store = store
        self._sessions = sessions
        self._clock = clock
        self._replica_id = replica_id
        self._route_ttl_s = route_ttl_s
        self._metrics = metrics
        self._set_serving = set_serving
        self._replan_fleet = replan_fleet
        self.epoch: str | None = None
        self._rebuilding = False

    async def check(self) -> bool:
        """Read the epoch (a probe of the store: raises StoreError like ``ping``); rebuild if it
        changed, or if a rebuild was cut short by a store error.  True if it rebuilt."""
        epoch = await self._store.epoch()
        if self.epoch is None:
            self.epoch = epoch  # the first look: nothing to compare with
            return False
        if epoch == self.epoch and not self._rebuilding:
            return False
        if not self._rebuilding:
            log.warning("the state store lost its data (epoch %s, was %s): writing back the %d houses streaming "
                        "here and re-planning", epoch, self.epoch, len(self._sessions))
            self._metrics.store_data_lost.inc()
        self.epoch = epoch
        self._rebuilding = True
        await self._set_serving(False)
        await self.rebuild()  # a StoreError leaves _rebuilding set: the next probe tries again
        self._rebuilding = False
        await self._set_serving(True)
        return True

    async def rebuild(self) -> None:
        now = self._clock.now()
        for session in self._sessions.all():
            if session.hello is None:
                continue  # its stream is still starting: it writes its own Hello
            await self._store.upsert_house(session.house_id, session.hello, now)
            await self._store.set_route(session.house_id, self._replica_id, self._route_ttl_s)
            if session.flexibility is not None:
                await self._store.put_flexibility(session.house_id, session.flexibility)
        await self._replan_fleet()
