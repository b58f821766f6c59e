"""The leader's live feeder envelopes (``aggregator.feeder_control``) and their way to the
houses: a round every ``feeder_control_s`` while this replica leads, each new envelope sent on
this replica's stream of the house, or left in the store for the replica that holds it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aggregator.config import FeederConfig
from aggregator.feeder_control import Feeder, FeederController, FeederEnvelope
from aggregator.fleet.cycle import feeder_limits_w
from aggregator.fleet.leadership import LeaderElector
from aggregator.fleet.outbox import PlanOutbox
from aggregator.fleet.replication import Replication
from aggregator.metrics import AggregatorMetrics
from aggregator.store import StaleFencingToken, StateStore, StoreError
from vpp_common.clock import Clock
from vpp_common.messages import LimitOverride

log = logging.getLogger(__name__)


class LiveEnvelopes:
    """``interval_s`` <= 0: feeder loads are measured (metrics) but no envelope is sent.
    ``send_signal``: the planner's, which sends a house its grid signal with its envelope."""

    def __init__(self, *, store: StateStore, outbox: PlanOutbox, clock: Clock, elector: LeaderElector,
                 replication: Replication, metrics: AggregatorMetrics, feeders: Sequence[FeederConfig],
                 interval_s: float, send_signal: Callable[[str], Awaitable[None]]) -> None:
        self._store = store
        self._outbox = outbox
        self._clock = clock
        self._elector = elector
        self._replication = replication
        self._metrics = metrics
        self._send_signal = send_signal
        self._sending = interval_s > 0
        self.control = FeederController(
            store, [Feeder(f.id, tuple(f.houses), *feeder_limits_w(f)) for f in feeders],
            interval_s=interval_s or 30.0, stale_after_s=max(3 * (interval_s or 30.0), 600.0),
            deliver=self._deliver, send_envelopes=self._sending)
        self._limited_houses = frozenset(
            h for f in feeders if f.import_limit_w is not None or f.export_limit_w is not None for h in f.houses)

    async def envelope(self, house_id: str) -> FeederEnvelope | None:
        """The house's live feeder envelope: the leader's own, or (on a follower) the one the
        leader left in the store for this replica to send."""
        if not self._sending or house_id not in self._limited_houses:
            return None
        now = self._clock.now()
        env = self.control.envelope(house_id, now)
        if env is not None or self._elector.is_leader:
            return env
        stored = await self._store.get_feeder_envelope(house_id)
        if stored is None or stored.valid_until <= now:
            return None
        return FeederEnvelope(stored.limits, stored.valid_until)

    async def _deliver(self, house_id: str) -> None:
        """The leader's new envelope for a house: sent here if its stream is here, else left in
        the store and announced on its replica's dispatch queue (that replica sends it)."""
        if self._outbox.has_stream(house_id):
            await self._send_signal(house_id)
            return
        env = self.control.current.get(house_id)
        route = await self._replication.other_replica(house_id)
        if env is None or route is None:
            return
        ttl_s = (env.valid_until - self._clock.now()).total_seconds() / self._clock.speed
        if ttl_s <= 0:
            return
        try:  # fenced: a leader paused past its lease must not send its old envelopes
            await self._store.put_feeder_envelope(house_id, LimitOverride(env.limits, env.valid_until,
                                                                          "feeder envelope"), ttl_s,
                                                  self._elector.token)
            await self._replication.tell(route, house_id, signal_only=True, fencing_token=self._elector.token)
        except StaleFencingToken as exc:
            log.warning("not the dispatch leader any more: %s", exc)

    async def run(self) -> None:
        """While this replica leads: measure every feeder's load (metrics) and, if sending,
        send live feeder envelopes."""
        period = self.control.interval_s / self._clock.speed
        while True:
            await asyncio.sleep(period)
            if not self._elector.is_leader:
                self._metrics.set_feeder_loads({})  # only the leader's view is published
                continue
            try:
                await self.control.step(self._clock.now())
            except StoreError as exc:
                self._metrics.store_errors.inc()
                log.warning("feeder round skipped: %s", exc)
                continue
            self._metrics.set_feeder_loads(self.control.loads)
