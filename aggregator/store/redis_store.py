"""Redis :class:`~aggregator.store.base.StateStore`: shared state for several replicas.

Key layout (``ns`` is the namespace, ``vpp`` by default)::

    {ns}:houses               SET of known house ids (so listing needs no SCAN)
    {ns}:house:{id}           HASH hello (JSON), first_seen, last_hello (ISO 8601)
    {ns}:route:{id}           STRING replica id, PX ttl
    {ns}:telemetry:{id}       STRING SiteTelemetry JSON (the newest), PX ttl
    {ns}:telhist:{id}         ZSET SiteTelemetry JSON by measured_at (ms): the last telemetry_history_s
                              (0, the default: the newest only, to tell a late sample from a new one)
    {ns}:flex:{id}            STRING Flexibility JSON
    {ns}:plan:{id}            HASH version (int), plan (DispatchPlan JSON)
    {ns}:planver:{id}         INCR counter behind next_plan_version (starts at wall-clock ms: version_base_ms)
    {ns}:planstatus:{id}      STRING PlanStatus JSON
    {ns}:lease:{name}         HASH owner, token; PX ttl
    {ns}:fence:{name}         INCR counter: fencing tokens of lease ``name`` (starts at wall-clock ms)
    {ns}:epoch                the store's epoch: a random id set at first use (SET NX); a new one = data lost
    {ns}:fleetevents          SET of fleet event ids (expired ones are dropped when listed)
    {ns}:fleetevent:{id}      STRING FleetEventRecord JSON, PX ttl

Telemetry is one JSON string written with ``SET ... PX`` rather than a hash plus
``EXPIRE``: the whole message is replaced at once, and a single command leaves
no window in which the key exists without its TTL.  TTLs are sent in
milliseconds so that sub-second TTLs (tests, fast heartbeats) keep their value.

A telemetry sample is added to the history and, if it is the newest, written as
the latest, in one script: a resend of the same sample is the same member (no
duplicate), and a late older sample never replaces a newer latest.

Everything that must check-then-write is a Lua script (``redis_scripts``), atomic
across replicas; the work queues are Redis Streams (``redis_queues``).

JSON comes from pydantic, straight from the frozen dataclasses.  Each codec is
a ``RootModel`` subclass built once at import (schema building is slow) with
``ser_json_inf_nan="constants"``: pydantic's default writes NaN/inf as ``null``,
which would silently turn an implausible reading of NaN into "no value".  (A
``TypeAdapter`` cannot carry that setting for dataclass types.)  Naive and aware
datetimes keep their offset; enums are stored by value.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

import redis.asyncio as aioredis

from vpp_common.messages import (
    DispatchPlan,
    Flexibility,
    Hello,
    LimitOverride,
    PlanStatus,
    SiteTelemetry,
)

from . import redis_scripts as scripts
from .base import (
    PLAN_LEASE,
    FleetEventRecord,
    HouseRecord,
    PlanVersionConflict,
    StoreError,
    version_base_ms,
)
from .codec import FLEET_EVENT, FLEXIBILITY, HELLO, LIMIT_OVERRIDE, PLAN, PLAN_STATUS, TELEMETRY
from .memory import DEFAULT_TELEMETRY_HISTORY_S, check_ttl
from .redis_queues import RedisQueues
from .redis_scripts import RESULT_CONFLICT, fence_arg, guard, raise_if_stale

__all__ = ["RedisStore"]

def _ttl_ms(ttl_s: float) -> int:
    """Seconds to Redis milliseconds; at least 1 ms (PX 0 is an error)."""
    return max(1, round(check_ttl(ttl_s) * 1000))


def _parse_datetime(raw: str) -> datetime:
    try:
        return datetime.fromisoformat(raw)
    except ValueError as exc:
        raise StoreError(f"undecodable datetime in redis: {raw!r}") from exc


class RedisStore:
    """Fleet state in Redis, shared by aggregator replicas.

    ``namespace`` prefixes every key, so several fleets (or tests) can share a
    server.  Leader-only writes are fenced by the current ``dispatch`` lease
    (:data:`PLAN_LEASE`).
    """

    def __init__(
        self,
        url: str,
        namespace: str = "vpp",
        *,
        socket_timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
        telemetry_history_s: float = DEFAULT_TELEMETRY_HISTORY_S,
    ) -> None:
        # Bounded timeouts: a hung Redis must surface as StoreError to the
        # caller's retry logic instead of blocking a replica forever.
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
        )
        self._ns = namespace
        if not telemetry_history_s >= 0:
            raise ValueError(f"telemetry_history_s must be >= 0, got {telemetry_history_s}")
        self._history_ms = round(telemetry_history_s * 1000)
        self._put_telemetry = self._redis.register_script(scripts.PUT_TELEMETRY_LUA)
        self._acquire = self._redis.register_script(scripts.ACQUIRE_LUA)
        self._release = self._redis.register_script(scripts.RELEASE_LUA)
        self._clear_route = self._redis.register_script(scripts.CLEAR_ROUTE_LUA)
        self._put_plan = self._redis.register_script(scripts.PUT_PLAN_LUA)
        self._next_version = self._redis.register_script(scripts.NEXT_VERSION_LUA)
        self._fenced_set = self._redis.register_script(scripts.FENCED_SET_LUA)
        self._queues = RedisQueues(self._redis, self._key)
        self._epoch: str | None = None

    def _key(self, *parts: str) -> str:
        return ":".join((self._ns, *parts))

    # -- houses -------------------------------------------------------------

    async def upsert_house(self, house_id: str, hello: Hello, at: datetime) -> HouseRecord:
        """HSETNX keeps ``first_seen``; MULTI makes the read-back see our write."""
        key = self._key("house", house_id)
        at_s = at.isoformat()
        async with guard("upsert_house"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(key, "first_seen", at_s)
                pipe.hset(key, mapping={"hello": HELLO.encode(hello), "last_hello": at_s})
                pipe.sadd(self._key("houses"), house_id)
                pipe.hget(key, "first_seen")
                results = await pipe.execute()
        first_seen = _parse_datetime(cast(str, results[-1]))
        return HouseRecord(house_id=house_id, hello=hello, first_seen=first_seen, last_hello=at)

    def _house_from_hash(self, house_id: str, fields: dict[str, str]) -> HouseRecord | None:
        if not fields:
            return None
        try:
            hello, first_seen, last_hello = fields["hello"], fields["first_seen"], fields["last_hello"]
        except KeyError as exc:
            raise StoreError(f"house {house_id} in redis lacks field {exc}") from exc
        return HouseRecord(
            house_id=house_id,
            hello=HELLO.decode(hello),
            first_seen=_parse_datetime(first_seen),
            last_hello=_parse_datetime(last_hello),
        )

    async def get_house(self, house_id: str) -> HouseRecord | None:
        async with guard("get_house"):
            fields = await cast(Any, self._redis.hgetall(self._key("house", house_id)))
        return self._house_from_hash(house_id, fields)

    async def list_houses(self) -> list[HouseRecord]:
        async with guard("list_houses"):
            ids = sorted(await cast(Any, self._redis.smembers(self._key("houses"))))
            if not ids:
                return []
            async with self._redis.pipeline(transaction=False) as pipe:
                for house_id in ids:
                    pipe.hgetall(self._key("house", house_id))
                hashes = await pipe.execute()
        records = (self._house_from_hash(h, f) for h, f in zip(ids, hashes, strict=True))
        return [r for r in records if r is not None]

    # -- routes -------------------------------------------------------------

    async def set_route(self, house_id: str, replica_id: str, ttl_s: float) -> None:
        ttl_ms = _ttl_ms(ttl_s)
        async with guard("set_route"):
            await self._redis.set(self._key("route", house_id), replica_id, px=ttl_ms)

    async def get_route(self, house_id: str) -> str | None:
        async with guard("get_route"):
            return cast("str | None", await self._redis.get(self._key("route", house_id)))

    async def clear_route(self, house_id: str, replica_id: str) -> None:
        """Compare-and-delete in Lua: a newer replica's route must survive."""
        async with guard("clear_route"):
            await self._clear_route(keys=[self._key("route", house_id)], args=[replica_id])

    # -- telemetry and flexibility -------------------------------------------

    async def put_telemetry(self, house_id: str, telemetry: SiteTelemetry, ttl_s: float) -> None:
        ttl_ms = _ttl_ms(ttl_s)
        at_ms = round(telemetry.measured_at.timestamp() * 1000)
        async with guard("put_telemetry"):
            await self._put_telemetry(keys=[self._key("telemetry", house_id), self._key("telhist", house_id)],
                                      args=[TELEMETRY.encode(telemetry), at_ms, ttl_ms, self._history_ms])

    async def get_telemetry(self, house_id: str) -> SiteTelemetry | None:
        async with guard("get_telemetry"):
            raw = await self._redis.get(self._key("telemetry", house_id))
        return None if raw is None else TELEMETRY.decode(raw)

    async def telemetry_history(self, house_id: str) -> list[SiteTelemetry]:
        async with guard("telemetry_history"):
            raw = await self._redis.zrange(self._key("telhist", house_id), 0, -1)
        return [TELEMETRY.decode(cast(str, r)) for r in raw]

    async def put_flexibility(self, house_id: str, flexibility: Flexibility) -> None:
        async with guard("put_flexibility"):
            await self._redis.set(self._key("flex", house_id), FLEXIBILITY.encode(flexibility))

    async def get_flexibility(self, house_id: str) -> Flexibility | None:
        async with guard("get_flexibility"):
            raw = await self._redis.get(self._key("flex", house_id))
        return None if raw is None else FLEXIBILITY.decode(raw)

    # -- leases ---------------------------------------------------------------

    async def acquire_lease(self, name: str, owner: str, ttl_s: float) -> int | None:
        """Acquire or renew in one script; the token lives in the lease hash so
        a renewal returns it unchanged, and the counter never goes back."""
        ttl_ms = _ttl_ms(ttl_s)
        async with guard("acquire_lease"):
            token = await self._acquire(
                keys=[self._key("lease", name), self._key("fence", name)], args=[owner, ttl_ms, version_base_ms()]
            )
        return None if token is None else int(token)

    async def release_lease(self, name: str, owner: str) -> None:
        async with guard("release_lease"):
            await self._release(keys=[self._key("lease", name)], args=[owner])

    # -- plans ----------------------------------------------------------------

    async def next_plan_version(self, house_id: str, fencing_token: int | None = None) -> int:
        async with guard("next_plan_version"):
            result = await self._next_version(
                keys=[self._key("lease", PLAN_LEASE), self._key("planver", house_id)],
                args=[fence_arg(fencing_token), version_base_ms()])
        return raise_if_stale(result, f"plan version for {house_id}", fencing_token)

    async def put_plan(self, house_id: str, plan: DispatchPlan, fencing_token: int) -> None:
        body = PLAN.encode(plan)
        async with guard("put_plan"):
            result = await self._put_plan(
                keys=[self._key("lease", PLAN_LEASE), self._key("plan", house_id)],
                args=[fence_arg(fencing_token), int(plan.version), body],
            )
        code, value = (int(x) for x in result)
        raise_if_stale(result, f"plan write for {house_id}", fencing_token)
        if code == RESULT_CONFLICT:
            raise PlanVersionConflict(
                f"plan version {plan.version} for {house_id} is not newer than stored {value}"
            )

    async def get_plan(self, house_id: str) -> DispatchPlan | None:
        async with guard("get_plan"):
            raw = await cast(Any, self._redis.hget(self._key("plan", house_id), "plan"))
        return None if raw is None else PLAN.decode(raw)

    async def put_plan_status(self, house_id: str, status: PlanStatus) -> None:
        async with guard("put_plan_status"):
            await self._redis.set(self._key("planstatus", house_id), PLAN_STATUS.encode(status))

    async def get_plan_status(self, house_id: str) -> PlanStatus | None:
        async with guard("get_plan_status"):
            raw = await self._redis.get(self._key("planstatus", house_id))
        return None if raw is None else PLAN_STATUS.decode(raw)

    # -- limit overrides ------------------------------------------------------

    async def put_limit_override(self, house_id: str, override: LimitOverride, ttl_s: float) -> None:
        async with guard("put_limit_override"):
            await self._redis.set(self._key("limits", house_id), LIMIT_OVERRIDE.encode(override), px=_ttl_ms(ttl_s))

    async def get_limit_override(self, house_id: str) -> LimitOverride | None:
        async with guard("get_limit_override"):
            raw = await self._redis.get(self._key("limits", house_id))
        return None if raw is None else LIMIT_OVERRIDE.decode(raw)

    async def put_feeder_envelope(self, house_id: str, envelope: LimitOverride, ttl_s: float,
                                  fencing_token: int | None = None) -> None:
        async with guard("put_feeder_envelope"):
            result = await self._fenced_set(
                keys=[self._key("lease", PLAN_LEASE), self._key("envelope", house_id)],
                args=[fence_arg(fencing_token), LIMIT_OVERRIDE.encode(envelope), _ttl_ms(ttl_s)])
        raise_if_stale(result, f"feeder envelope for {house_id}", fencing_token)

    async def get_feeder_envelope(self, house_id: str) -> LimitOverride | None:
        async with guard("get_feeder_envelope"):
            raw = await self._redis.get(self._key("envelope", house_id))
        return None if raw is None else LIMIT_OVERRIDE.decode(raw)

    # -- fleet events -------------------------------------------------------

    async def put_fleet_event(self, event: FleetEventRecord, ttl_s: float) -> None:
        ttl_ms = _ttl_ms(ttl_s)
        async with guard("put_fleet_event"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._key("fleetevent", event.event_id), FLEET_EVENT.encode(event), px=ttl_ms)
                pipe.sadd(self._key("fleetevents"), event.event_id)
                await pipe.execute()

    async def list_fleet_events(self) -> list[FleetEventRecord]:
        async with guard("list_fleet_events"):
            ids = sorted(str(i) for i in await self._redis.smembers(self._key("fleetevents")))
            raws = await self._redis.mget([self._key("fleetevent", i) for i in ids]) if ids else []
            gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
            if gone:  # expired
                await self._redis.srem(self._key("fleetevents"), *gone)
        events = [FLEET_EVENT.decode(raw) for raw in raws if raw is not None]
        return sorted(events, key=lambda e: (e.start, e.event_id))

    async def delete_fleet_event(self, event_id: str) -> bool:
        async with guard("delete_fleet_event"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._key("fleetevent", event_id))
                pipe.srem(self._key("fleetevents"), event_id)
                deleted, _ = await pipe.execute()
        return bool(deleted)

    # -- work queues (redis_queues) -----------------------------------------

    async def queue_push(self, queue: str, item: str, fencing_token: int | None = None) -> None:
        await self._queues.push(queue, item, fencing_token)

    async def queue_pull(self, queue: str, consumer: str, max_items: int = 100, block_s: float = 1.0,
                         reclaim_idle_s: float = 30.0) -> list[tuple[str, str]]:
        return await self._queues.pull(queue, consumer, max_items, block_s, reclaim_idle_s)

    async def queue_ack(self, queue: str, ids: list[str]) -> None:
        await self._queues.ack(queue, ids)

    async def ping(self) -> None:
        async with guard("ping"):
            await self._redis.ping()

    async def epoch(self) -> str:
        """SET NX GET (Redis >= 7.0): the stored epoch, or ours if there was none."""
        mine = uuid.uuid4().hex
        async with guard("epoch"):
            stored = await self._redis.set(self._key("epoch"), mine, nx=True, get=True)
        epoch = mine if stored is None else str(stored)
        if self._epoch is not None and epoch != self._epoch:
            self._queues.forget_groups()  # the streams and their groups went with the data
        self._epoch = epoch
        return epoch

    async def close(self) -> None:
        """Close the connection pool (the client owns it: built by from_url)."""
        async with guard("close"):
            await self._redis.aclose()
