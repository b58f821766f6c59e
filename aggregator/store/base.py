"""The ``StateStore`` protocol: everything the aggregator keeps about the fleet.

Two implementations run through one contract suite
(``tests/integration/test_store_contract.py``): ``MemoryStore`` (embedded
default, one process) and ``RedisStore`` (several replicas).  Keys in Redis are
namespaced ``vpp:``.  TTLs are in real seconds (Redis expiry is wall time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from vpp_common.messages import (
    DispatchPlan,
    Flexibility,
    Hello,
    LimitOverride,
    PlanStatus,
    SiteTelemetry,
)


class StoreError(Exception):
    """The store could not be reached or answered unexpectedly (transient)."""


class StaleFencingToken(Exception):
    """A leader-only write carried a fencing token that is not the current dispatch
    lease's (the lease expired, or another replica holds it now): the writer is no
    longer the dispatch leader and must stop writing."""


# The lease whose current token fences every leader-only write (plans, plan versions,
# feeder envelopes, dispatch queue items).
PLAN_LEASE = "dispatch"


def version_base_ms() -> int:
    """Where a house's plan-version counter (and a lease's token counter) starts when the
    store has none: wall-clock milliseconds.  A store that lost its data (restarted empty)
    then still hands out versions above every version handed out before, as long as fewer
    plans were made for a house than milliseconds passed since its counter started, so
    agents never refuse the new plans as older (issue 20)."""
    return int(time.time() * 1000)


class PlanVersionConflict(Exception):
    """A plan write did not carry a version newer than the stored plan's."""


@dataclass(frozen=True, slots=True)
class HouseRecord:
    """What the fleet knows of a house, from its last ``Hello``."""

    house_id: str
    hello: Hello
    first_seen: datetime
    last_hello: datetime


@dataclass(frozen=True, slots=True)
class FleetEventRecord:
    """An operator's fleet event: a cap on the whole fleet's net export or import in every
    plan slot that overlaps [start, end).  Powers are positive magnitudes in W; exactly one
    of ``max_w`` (the cap) and ``reduce_by_w`` (below the plan without events) is set."""

    event_id: str
    direction: str  # "export" (caps net export, grid power < 0) or "import" (caps net import)
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    max_w: float | None = None
    reduce_by_w: float | None = None
    reason: str = ""
    created_at: datetime | None = None


@runtime_checkable
class StateStore(Protocol):
    """Async fleet state.  All methods may raise :class:`StoreError`."""

    async def upsert_house(self, house_id: str, hello: Hello, at: datetime) -> HouseRecord:
        """Record a house's ``Hello``; keeps ``first_seen`` of an existing house."""
        ...

    async def get_house(self, house_id: str) -> HouseRecord | None: ...

    async def list_houses(self) -> list[HouseRecord]:
        """All known houses, sorted by ``house_id``."""
        ...

    async def set_route(self, house_id: str, replica_id: str, ttl_s: float) -> None:
        """Say that ``replica_id`` holds the stream of ``house_id``, for ``ttl_s``
        real seconds unless refreshed.  A TTL that is not > 0 raises ValueError
        (as in every TTL'd method: Redis refuses one)."""
        ...

    async def get_route(self, house_id: str) -> str | None: ...

    async def clear_route(self, house_id: str, replica_id: str) -> None:
        """Remove the route only if it still names ``replica_id`` (a newer
        replica may already hold the house)."""
        ...

    async def put_telemetry(self, house_id: str, telemetry: SiteTelemetry, ttl_s: float) -> None:
        """Store one telemetry sample; when this returns it is stored (the aggregator acks it then).

        The sample becomes the latest unless a newer one is in (by
        ``measured_at``); the latest disappears after ``ttl_s`` real seconds.
        With a history (``telemetry_history_s`` > 0) it also joins the
        house's history, the samples of that many seconds before the newest;
        a late older sample takes its place there.  Storing an identical
        sample again changes nothing, so an agent may resend a sample whose
        ack it did not get.
        """
        ...

    async def get_telemetry(self, house_id: str) -> SiteTelemetry | None:
        """The newest sample, None if there is none within its TTL."""
        ...

    async def telemetry_history(self, house_id: str) -> list[SiteTelemetry]:
        """The kept samples, oldest first (without a history: the newest, if any)."""
        ...

    async def put_flexibility(self, house_id: str, flexibility: Flexibility) -> None: ...

    async def get_flexibility(self, house_id: str) -> Flexibility | None: ...

    async def acquire_lease(self, name: str, owner: str, ttl_s: float) -> int | None:
        """Take (or renew, if ``owner`` holds it) the lease ``name``.

        Returns the fencing token (strictly increasing on each new
        acquisition, unchanged on renewal) or None if another owner holds it.
        """
        ...

    async def release_lease(self, name: str, owner: str) -> None:
        """Give up the lease if ``owner`` holds it."""
        ...

    async def next_plan_version(self, house_id: str, fencing_token: int | None = None) -> int:
        """A new, strictly increasing plan version for the house.  The first one (no counter
        stored) is above :func:`version_base_ms`, so versions keep growing across a store that
        lost its data.  With ``fencing_token``: :class:`StaleFencingToken` (and no version
        used) unless it is the current ``dispatch`` lease's token."""
        ...

    async def put_plan(self, house_id: str, plan: DispatchPlan, fencing_token: int) -> None:
        """Store ``plan`` as the house's current plan.

        Raises :class:`StaleFencingToken` unless ``fencing_token`` is the token of the
        *current* holder of the ``dispatch`` lease (:data:`PLAN_LEASE`; an expired lease
        has none), and :class:`PlanVersionConflict` unless ``plan.version`` is greater
        than the stored plan's.  Both checks and the write are atomic, so a leader that
        was paused or cut off past its lease cannot write a single plan, even before the
        next leader's first write.

        The token check comes first; a rejected write changes nothing.  With no stored
        plan, any version is accepted.
        """
        ...

    async def get_plan(self, house_id: str) -> DispatchPlan | None: ...

    async def put_plan_status(self, house_id: str, status: PlanStatus) -> None: ...

    async def get_plan_status(self, house_id: str) -> PlanStatus | None: ...

    async def put_limit_override(self, house_id: str, override: LimitOverride, ttl_s: float) -> None:
        """Temporary limits for a house; gone after ``ttl_s`` real seconds."""
        ...

    async def get_limit_override(self, house_id: str) -> LimitOverride | None: ...

    async def put_feeder_envelope(self, house_id: str, envelope: LimitOverride, ttl_s: float,
                                  fencing_token: int | None = None) -> None:
        """The leader's live feeder envelope for a house streaming to another replica (that
        replica sends it); gone after ``ttl_s`` real seconds.  With ``fencing_token``: fenced
        as :meth:`put_plan` is."""
        ...

    async def get_feeder_envelope(self, house_id: str) -> LimitOverride | None: ...

    async def put_fleet_event(self, event: FleetEventRecord, ttl_s: float) -> None:
        """Store (or replace, by ``event_id``) a fleet event; gone after ``ttl_s`` real seconds."""
        ...

    async def list_fleet_events(self) -> list[FleetEventRecord]:
        """All stored fleet events, sorted by (start, event_id)."""
        ...

    async def delete_fleet_event(self, event_id: str) -> bool:
        """Remove a fleet event; False if there was none."""
        ...

    async def queue_push(self, queue: str, item: str, fencing_token: int | None = None) -> None:
        """Append ``item`` to the work queue ``queue`` (shared by all replicas).  With
        ``fencing_token`` (the leader's pushes): fenced as :meth:`put_plan` is."""
        ...

    async def queue_pull(self, queue: str, consumer: str, max_items: int = 100, block_s: float = 1.0,
                         reclaim_idle_s: float = 30.0) -> list[tuple[str, str]]:
        """Up to ``max_items`` ``(id, item)`` for ``consumer``: first items another
        consumer took but did not ack within ``reclaim_idle_s`` real seconds (it
        died), then new ones; waits up to ``block_s`` real seconds when there are
        none.  Delivery is at least once: ack with :meth:`queue_ack`."""
        ...

    async def queue_ack(self, queue: str, ids: list[str]) -> None:
        """Mark items done; they are never delivered again."""
        ...

    async def ping(self) -> None:
        """Raise :class:`StoreError` unless the store answers now."""
        ...

    async def epoch(self) -> str:
        """The store's epoch: a random id written at its first use (set if absent) and kept
        with its data.  Another value than a replica saw before means the store lost its
        data (restarted empty): every replica must then write back what it knows (see
        ``aggregator.service.store_recovery``).  Raises :class:`StoreError` as :meth:`ping`."""
        ...

    async def close(self) -> None: ...
