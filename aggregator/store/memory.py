"""In-process :class:`~aggregator.store.base.StateStore`: the embedded default.

One aggregator process, no Redis.  Everything lives in dicts; every method
runs to completion without awaiting, so on one event loop each call is atomic
(the same guarantee the Redis Lua scripts give).

Expiry is measured with an injectable monotonic clock (``time_fn``) instead of
wall time so that tests can move time forward without sleeping, and so that a
wall-clock jump (NTP, DST) cannot expire or resurrect a lease.  Expired entries
are dropped lazily when read, plus an occasional sweep so that houses that go
silent for good do not keep their last telemetry forever.
"""

from __future__ import annotations

import asyncio
import bisect
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from vpp_common.messages import (
    DispatchPlan,
    Flexibility,
    Hello,
    LimitOverride,
    PlanStatus,
    SiteTelemetry,
)

from .base import (
    PLAN_LEASE,
    FleetEventRecord,
    HouseRecord,
    PlanVersionConflict,
    StaleFencingToken,
    version_base_ms,
)
from .codec import PLAN

__all__ = ["DEFAULT_TELEMETRY_HISTORY_S", "MemoryStore"]

# Telemetry history per house, in seconds of measured time: off by default (0: only the
# newest sample is kept), because it costs ~0.5 kB a sample in Redis and ~2 kB in memory
# (10 s telemetry, 10 min: 30-120 kB a house).
DEFAULT_TELEMETRY_HISTORY_S = 0.0

_V = TypeVar("_V")

# TTL'd writes between two full sweeps of expired entries (or the entries' number, if more):
# often enough to bound memory for a fleet whose houses come and go, rare enough to be free.
_SWEEP_EVERY = 1024


def check_ttl(ttl_s: float) -> float:
    """Reject TTLs that are not a positive number.

    Redis refuses a zero or negative expiry; refusing it here too keeps both
    backends behaving the same (and ``not ttl_s > 0`` also catches NaN).
    """
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be a positive number of seconds, got {ttl_s!r}")
    return ttl_s


@dataclass(slots=True)
class _Expiring(Generic[_V]):
    """A value and the ``time_fn`` instant from which it no longer exists."""

    value: _V
    expires_at: float


@dataclass(slots=True)
class _Lease:
    owner: str
    token: int
    expires_at: float


def _drop_expired(table: dict[str, _Expiring[_V]], now: float) -> None:
    for key in [k for k, e in table.items() if now >= e.expires_at]:
        del table[key]


@dataclass
class _Queue:
    seq: int = 0
    new: deque[tuple[str, str]] = field(default_factory=deque)
    pending: dict[str, tuple[str, str, float]] = field(default_factory=dict)  # id -> (item, consumer, taken at)
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryStore:
    """Fleet state in this process; see the module docstring."""

    def __init__(self, *, time_fn: Callable[[], float] = time.monotonic,
                 telemetry_history_s: float = DEFAULT_TELEMETRY_HISTORY_S) -> None:
        self._now = time_fn
        if not telemetry_history_s >= 0:
            raise ValueError(f"telemetry_history_s must be >= 0, got {telemetry_history_s}")
        self._history_s = telemetry_history_s
        self._history: dict[str, list[SiteTelemetry]] = {}  # by measured_at
        self._houses: dict[str, HouseRecord] = {}
        self._routes: dict[str, _Expiring[str]] = {}
        self._telemetry: dict[str, _Expiring[SiteTelemetry]] = {}
        self._flexibility: dict[str, Flexibility] = {}
        # (version, JSON): a plan as objects is ~600 tracked objects (its slots); 5,000 kept as
        # objects made every full garbage collection take ~1 s and stalled the streams
        self._plans: dict[str, tuple[int, str]] = {}
        self._plan_versions: dict[str, int] = {}
        self._plan_status: dict[str, PlanStatus] = {}
        self._leases: dict[str, _Lease] = {}
        # Per lease name: last token handed out.  Kept after release/expiry so
        # that the next holder always gets a larger token, as with Redis INCR.
        self._fence_counters: dict[str, int] = {}
        self._epoch = uuid.uuid4().hex  # lives and dies with this process, as the data does
        self._ttl_writes = 0
        self._queues: dict[str, _Queue] = {}
        self._overrides: dict[str, _Expiring[LimitOverride]] = {}
        self._envelopes: dict[str, _Expiring[LimitOverride]] = {}
        self._fleet_events: dict[str, _Expiring[FleetEventRecord]] = {}

    # -- expiry helpers ---------------------------------------------------

    def _live(self, table: dict[str, _Expiring[_V]], key: str) -> _V | None:
        """The value under ``key`` unless it has expired (then it is dropped)."""
        entry = table.get(key)
        if entry is None:
            return None
        if self._now() >= entry.expires_at:
            del table[key]
            return None
        return entry.value

    def _note_ttl_write(self) -> None:
        """Count a TTL'd write and sweep everything expired now and then."""
        self._ttl_writes += 1
        # at least as many writes as entries: a sweep walks them all (10,000 houses: 4 sweeps a second)
        if self._ttl_writes < max(_SWEEP_EVERY, len(self._routes) + len(self._telemetry)):
            return
        self._ttl_writes = 0
        now = self._now()
        _drop_expired(self._routes, now)
        _drop_expired(self._telemetry, now)
        for name in [n for n, lease in self._leases.items() if now >= lease.expires_at]:
            del self._leases[name]

    # -- houses -------------------------------------------------------------

    async def upsert_house(self, house_id: str, hello: Hello, at: datetime) -> HouseRecord:
        """Record a house's ``Hello``; ``first_seen`` survives reconnects."""
        previous = self._houses.get(house_id)
        first_seen = previous.first_seen if previous is not None else at
        record = HouseRecord(house_id=house_id, hello=hello, first_seen=first_seen, last_hello=at)
        self._houses[house_id] = record
        return record

    async def get_house(self, house_id: str) -> HouseRecord | None:
        return self._houses.get(house_id)

    async def list_houses(self) -> list[HouseRecord]:
        return [self._houses[k] for k in sorted(self._houses)]

    # -- routes -------------------------------------------------------------

    async def set_route(self, house_id: str, replica_id: str, ttl_s: float) -> None:
        self._routes[house_id] = _Expiring(replica_id, self._now() + check_ttl(ttl_s))
        self._note_ttl_write()

    async def get_route(self, house_id: str) -> str | None:
        return self._live(self._routes, house_id)

    async def clear_route(self, house_id: str, replica_id: str) -> None:
        """Drop the route only if it still names ``replica_id``."""
        if self._live(self._routes, house_id) == replica_id:
            del self._routes[house_id]

    # -- telemetry and flexibility -------------------------------------------

    async def put_telemetry(self, house_id: str, telemetry: SiteTelemetry, ttl_s: float) -> None:
        expires = self._now() + check_ttl(ttl_s)
        history = self._history.setdefault(house_id, [])
        # a resend is equal, so at the same instant: look only there (an agent back-fills a day of
        # samples after an outage, and a scan of the whole history per sample made that quadratic)
        lo = bisect.bisect_left(history, telemetry.measured_at, key=lambda t: t.measured_at)
        hi = bisect.bisect_right(history, telemetry.measured_at, lo=lo, key=lambda t: t.measured_at)
        if telemetry in history[lo:hi]:
            return  # a resend
        history.insert(hi, telemetry)
        newest = history[-1].measured_at
        cut = bisect.bisect_left(history, newest - timedelta(seconds=self._history_s), key=lambda t: t.measured_at)
        del history[:cut]
        if history[-1] is telemetry:
            self._telemetry[house_id] = _Expiring(telemetry, expires)
        self._note_ttl_write()

    async def get_telemetry(self, house_id: str) -> SiteTelemetry | None:
        return self._live(self._telemetry, house_id)

    async def telemetry_history(self, house_id: str) -> list[SiteTelemetry]:
        return list(self._history.get(house_id, ()))

    async def put_flexibility(self, house_id: str, flexibility: Flexibility) -> None:
        self._flexibility[house_id] = flexibility

    async def get_flexibility(self, house_id: str) -> Flexibility | None:
        return self._flexibility.get(house_id)

    # -- leases ---------------------------------------------------------------

    async def acquire_lease(self, name: str, owner: str, ttl_s: float) -> int | None:
        """Take or renew ``name``; a new acquisition gets a new, larger token.

        An owner whose lease already expired gets a *new* token when it takes
        the lease again: someone else may have held it in between.
        """
        expires_at = self._now() + check_ttl(ttl_s)
        current = self._leases.get(name)
        if current is not None and self._now() >= current.expires_at:
            del self._leases[name]
            current = None
        if current is None:
            token = self._fence_counters.get(name, 0) + 1
            self._fence_counters[name] = token
            self._leases[name] = _Lease(owner=owner, token=token, expires_at=expires_at)
            self._note_ttl_write()
            return token
        if current.owner == owner:
            current.expires_at = expires_at
            return current.token
        return None

    async def release_lease(self, name: str, owner: str) -> None:
        current = self._leases.get(name)
        if current is not None and current.owner == owner:
            del self._leases[name]

    # -- plans ----------------------------------------------------------------

    def _check_fence(self, what: str, fencing_token: int | None) -> None:
        """Raise StaleFencingToken unless ``fencing_token`` is None (unfenced) or the current
        dispatch lease's token (the same check as the Redis scripts)."""
        if fencing_token is None:
            return
        lease = self._leases.get(PLAN_LEASE)
        current = lease.token if lease is not None and self._now() < lease.expires_at else None
        if current != fencing_token:
            raise StaleFencingToken(f"{what} with fencing token {fencing_token}: the current dispatch lease's "
                                    f"token is {current if current is not None else 'none (expired)'}")

    async def next_plan_version(self, house_id: str, fencing_token: int | None = None) -> int:
        self._check_fence(f"plan version for {house_id}", fencing_token)
        version = self._plan_versions.get(house_id, version_base_ms()) + 1
        self._plan_versions[house_id] = version
        return version

    async def put_plan(self, house_id: str, plan: DispatchPlan, fencing_token: int) -> None:
        """Fenced, versioned write; checks in the same order as the Redis script."""
        self._check_fence(f"plan write for {house_id}", fencing_token)
        stored = self._plans.get(house_id)
        if stored is not None and plan.version <= stored[0]:
            raise PlanVersionConflict(
                f"plan version {plan.version} for {house_id} is not newer than stored {stored[0]}"
            )
        self._plans[house_id] = (plan.version, PLAN.encode(plan))

    async def get_plan(self, house_id: str) -> DispatchPlan | None:
        stored = self._plans.get(house_id)
        return None if stored is None else PLAN.decode(stored[1])

    async def put_plan_status(self, house_id: str, status: PlanStatus) -> None:
        self._plan_status[house_id] = status

    async def get_plan_status(self, house_id: str) -> PlanStatus | None:
        return self._plan_status.get(house_id)

    # -- limit overrides ----------------------------------------------------

    async def put_limit_override(self, house_id: str, override: LimitOverride, ttl_s: float) -> None:
        self._overrides[house_id] = _Expiring(override, self._now() + check_ttl(ttl_s))

    async def get_limit_override(self, house_id: str) -> LimitOverride | None:
        return self._live(self._overrides, house_id)

    async def put_feeder_envelope(self, house_id: str, envelope: LimitOverride, ttl_s: float,
                                  fencing_token: int | None = None) -> None:
        self._check_fence(f"feeder envelope for {house_id}", fencing_token)
        self._envelopes[house_id] = _Expiring(envelope, self._now() + check_ttl(ttl_s))

    async def get_feeder_envelope(self, house_id: str) -> LimitOverride | None:
        return self._live(self._envelopes, house_id)

    # -- fleet events -------------------------------------------------------

    async def put_fleet_event(self, event: FleetEventRecord, ttl_s: float) -> None:
        self._fleet_events[event.event_id] = _Expiring(event, self._now() + check_ttl(ttl_s))

    async def list_fleet_events(self) -> list[FleetEventRecord]:
        _drop_expired(self._fleet_events, self._now())
        return sorted((e.value for e in self._fleet_events.values()), key=lambda e: (e.start, e.event_id))

    async def delete_fleet_event(self, event_id: str) -> bool:
        found = self._live(self._fleet_events, event_id) is not None
        self._fleet_events.pop(event_id, None)
        return found

    # -- work queues --------------------------------------------------------

    def _queue(self, queue: str) -> _Queue:
        q = self._queues.get(queue)
        if q is None:
            q = self._queues[queue] = _Queue()
        return q

    async def queue_push(self, queue: str, item: str, fencing_token: int | None = None) -> None:
        self._check_fence(f"push to queue {queue}", fencing_token)
        q = self._queue(queue)
        q.seq += 1
        q.new.append((f"{q.seq}-0", item))
        q.ready.set()

    async def queue_pull(self, queue: str, consumer: str, max_items: int = 100, block_s: float = 1.0,
                         reclaim_idle_s: float = 30.0) -> list[tuple[str, str]]:
        q = self._queue(queue)
        now = self._now()
        out: list[tuple[str, str]] = []
        for item_id, (item, _owner, taken_at) in list(q.pending.items()):
            if len(out) < max_items and now - taken_at >= reclaim_idle_s:
                q.pending[item_id] = (item, consumer, now)
                out.append((item_id, item))
        if not out and not q.new and block_s > 0:
            q.ready.clear()
            try:
                async with asyncio.timeout(block_s):
                    await q.ready.wait()
            except TimeoutError:
                return []
        while q.new and len(out) < max_items:
            item_id, item = q.new.popleft()
            q.pending[item_id] = (item, consumer, self._now())
            out.append((item_id, item))
        return out

    async def queue_ack(self, queue: str, ids: list[str]) -> None:
        q = self._queue(queue)
        for item_id in ids:
            q.pending.pop(item_id, None)

    async def ping(self) -> None:
        return None  # always here: it lives in this process

    async def epoch(self) -> str:
        return self._epoch

    async def close(self) -> None:
        """Nothing to release: the state lives and dies with the process."""
