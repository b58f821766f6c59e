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

Everything that must check-then-write (lease acquire/renew/release, route
clear, the fenced writes) is a Lua script, so it is atomic across replicas.  A
fenced write first reads the dispatch lease's hash and goes on only if its token
is the writer's: the *current* lease, not the highest token ever used, so a
leader paused past its lease cannot write even before the next leader's first
write.
The plan's version sits beside its JSON in a hash so the script can compare it
without decoding JSON.

JSON comes from pydantic, straight from the frozen dataclasses.  Each codec is
a ``RootModel`` subclass built once at import (schema building is slow) with
``ser_json_inf_nan="constants"``: pydantic's default writes NaN/inf as ``null``,
which would silently turn an implausible reading of NaN into "no value".  (A
``TypeAdapter`` cannot carry that setting for dataclass types.)  Naive and aware
datetimes keep their offset; enums are stored by value.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

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
    StoreError,
    version_base_ms,
)
from .codec import FLEET_EVENT, FLEXIBILITY, HELLO, LIMIT_OVERRIDE, PLAN, PLAN_STATUS, TELEMETRY
from .memory import DEFAULT_TELEMETRY_HISTORY_S, check_ttl

__all__ = ["RedisStore"]

def _ttl_ms(ttl_s: float) -> int:
    """Seconds to Redis milliseconds; at least 1 ms (PX 0 is an error)."""
    return max(1, round(check_ttl(ttl_s) * 1000))


def _parse_datetime(raw: str) -> datetime:
    try:
        return datetime.fromisoformat(raw)
    except ValueError as exc:
        raise StoreError(f"undecodable datetime in redis: {raw!r}") from exc


# KEYS[1] lease hash, KEYS[2] fence counter; ARGV[1] owner, ARGV[2] ttl ms, ARGV[3] counter base.
# Returns the token, or nil (-> None) if another owner holds the lease.  The counter
# starts at wall-clock ms, so tokens after a loss of the store's data are new ones.
_ACQUIRE_LUA = """
local holder = redis.call('HGET', KEYS[1], 'owner')
if holder == false then
  redis.call('SET', KEYS[2], ARGV[3], 'NX')
  local token = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return token
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('HGET', KEYS[1], 'token'))
end
return false
"""

# KEYS[1] lease hash; ARGV[1] owner.
_RELEASE_LUA = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1] route; ARGV[1] replica.
_CLEAR_ROUTE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: latest, history.  ARGV: JSON, measured_at ms, ttl ms, history ms.
_PUT_TELEMETRY_LUA = """
local ms = tonumber(ARGV[2])
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local newest = ms
if top[2] and tonumber(top[2]) > ms then newest = tonumber(top[2]) end
redis.call('ZADD', KEYS[2], ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (newest - tonumber(ARGV[4])))
redis.call('PEXPIRE', KEYS[2], math.max(tonumber(ARGV[4]), tonumber(ARGV[3])))
if newest == ms then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
end
return 1
"""

# Every fenced script starts with this: KEYS[1] is the dispatch lease's hash, ARGV[1] the
# writer's token ('' = unfenced).  A stale token returns {1, current token or 0}.
_FENCE_LUA = """
if ARGV[1] ~= '' then
  local current = redis.call('HGET', KEYS[1], 'token')
  if current == false or tonumber(current) ~= tonumber(ARGV[1]) then
    return {1, tonumber(current or '0')}
  end
end
"""

# KEYS[2] plan hash; ARGV[2] version, ARGV[3] plan JSON.  {0, 0} on success, {2, stored
# version} on a version conflict.  Nothing is written unless both checks pass.
_PUT_PLAN_LUA = _FENCE_LUA + """
local version = tonumber(ARGV[2])
local stored = redis.call('HGET', KEYS[2], 'version')
if stored ~= false and version <= tonumber(stored) then
  return {2, tonumber(stored)}
end
redis.call('HSET', KEYS[2], 'version', ARGV[2], 'plan', ARGV[3])
return {0, 0}
"""

# KEYS[2] version counter; ARGV[2] where a missing counter starts.  {0, new version}.
_NEXT_VERSION_LUA = _FENCE_LUA + """
redis.call('SET', KEYS[2], ARGV[2], 'NX')
return {0, redis.call('INCR', KEYS[2])}
"""

# KEYS[2] key; ARGV[2] value, ARGV[3] ttl ms.
_FENCED_SET_LUA = _FENCE_LUA + """
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return {0, 0}
"""

# KEYS[2] stream; ARGV[2] item, ARGV[3] approximate max length.
_FENCED_XADD_LUA = _FENCE_LUA + """
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'item', ARGV[2])
return {0, 0}
"""

_RESULT_STALE = 1
_RESULT_CONFLICT = 2
_QUEUE_MAXLEN = 100_000  # a queue nobody reads cannot grow without bound


def _fence_arg(fencing_token: int | None) -> str:
    return "" if fencing_token is None else str(int(fencing_token))


def _raise_if_stale(result: Any, what: str, fencing_token: int | None) -> int:
    """The script's {code, value}: StaleFencingToken for a stale token, else the value."""
    code, value = (int(x) for x in result)
    if code == _RESULT_STALE:
        raise StaleFencingToken(f"{what} with fencing token {fencing_token}: the current dispatch lease's token "
                                f"is {value or 'none (expired)'}")
    return value


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
        self._put_telemetry = self._redis.register_script(_PUT_TELEMETRY_LUA)
        self._acquire = self._redis.register_script(_ACQUIRE_LUA)
        self._release = self._redis.register_script(_RELEASE_LUA)
        self._clear_route = self._redis.register_script(_CLEAR_ROUTE_LUA)
        self._put_plan = self._redis.register_script(_PUT_PLAN_LUA)
        self._next_version = self._redis.register_script(_NEXT_VERSION_LUA)
        self._fenced_set = self._redis.register_script(_FENCED_SET_LUA)
        self._fenced_xadd = self._redis.register_script(_FENCED_XADD_LUA)
        # streams whose consumer group this client made; forgotten when the store lost its data
        # (a new epoch) or answers NOGROUP, else followers never got a plan again (issue 20)
        self._groups: set[str] = set()
        self._epoch: str | None = None

    def _key(self, *parts: str) -> str:
        return ":".join((self._ns, *parts))

    @asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        """Turn client failures into :class:`StoreError`, keeping the cause.

        ``RedisError`` covers connection errors, timeouts and error replies;
        ``OSError`` covers socket failures the client lets through.  Our own
        exceptions (fencing, version conflicts) pass untouched.
        """
        try:
            yield
        except (RedisError, OSError) as exc:
            # Redis's own words (e.g. "NOGROUP No such key ..."), not only the class name
            raise StoreError(f"redis {what} failed: {type(exc).__name__}: {exc or repr(exc)}") from exc

    # -- houses -------------------------------------------------------------

    async def upsert_house(self, house_id: str, hello: Hello, at: datetime) -> HouseRecord:
        """HSETNX keeps ``first_seen``; MULTI makes the read-back see our write."""
        key = self._key("house", house_id)
        at_s = at.isoformat()
        async with self._guard("upsert_house"):
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
        async with self._guard("get_house"):
            fields = await cast(Any, self._redis.hgetall(self._key("house", house_id)))
        return self._house_from_hash(house_id, fields)

    async def list_houses(self) -> list[HouseRecord]:
        async with self._guard("list_houses"):
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
        async with self._guard("set_route"):
            await self._redis.set(self._key("route", house_id), replica_id, px=ttl_ms)

    async def get_route(self, house_id: str) -> str | None:
        async with self._guard("get_route"):
            return cast("str | None", await self._redis.get(self._key("route", house_id)))

    async def clear_route(self, house_id: str, replica_id: str) -> None:
        """Compare-and-delete in Lua: a newer replica's route must survive."""
        async with self._guard("clear_route"):
            await self._clear_route(keys=[self._key("route", house_id)], args=[replica_id])

    # -- telemetry and flexibility -------------------------------------------

    async def put_telemetry(self, house_id: str, telemetry: SiteTelemetry, ttl_s: float) -> None:
        ttl_ms = _ttl_ms(ttl_s)
        at_ms = round(telemetry.measured_at.timestamp() * 1000)
        async with self._guard("put_telemetry"):
            await self._put_telemetry(keys=[self._key("telemetry", house_id), self._key("telhist", house_id)],
                                      args=[TELEMETRY.encode(telemetry), at_ms, ttl_ms, self._history_ms])

    async def get_telemetry(self, house_id: str) -> SiteTelemetry | None:
        async with self._guard("get_telemetry"):
            raw = await self._redis.get(self._key("telemetry", house_id))
        return None if raw is None else TELEMETRY.decode(raw)

    async def telemetry_history(self, house_id: str) -> list[SiteTelemetry]:
        async with self._guard("telemetry_history"):
            raw = await self._redis.zrange(self._key("telhist", house_id), 0, -1)
        return [TELEMETRY.decode(cast(str, r)) for r in raw]

    async def put_flexibility(self, house_id: str, flexibility: Flexibility) -> None:
        async with self._guard("put_flexibility"):
            await self._redis.set(self._key("flex", house_id), FLEXIBILITY.encode(flexibility))

    async def get_flexibility(self, house_id: str) -> Flexibility | None:
        async with self._guard("get_flexibility"):
            raw = await self._redis.get(self._key("flex", house_id))
        return None if raw is None else FLEXIBILITY.decode(raw)

    # -- leases ---------------------------------------------------------------

    async def acquire_lease(self, name: str, owner: str, ttl_s: float) -> int | None:
        """Acquire or renew in one script; the token lives in the lease hash so
        a renewal returns it unchanged, and the counter never goes back."""
        ttl_ms = _ttl_ms(ttl_s)
        async with self._guard("acquire_lease"):
            token = await self._acquire(
                keys=[self._key("lease", name), self._key("fence", name)], args=[owner, ttl_ms, version_base_ms()]
            )
        return None if token is None else int(token)

    async def release_lease(self, name: str, owner: str) -> None:
        async with self._guard("release_lease"):
            await self._release(keys=[self._key("lease", name)], args=[owner])

    # -- plans ----------------------------------------------------------------

    async def next_plan_version(self, house_id: str, fencing_token: int | None = None) -> int:
        async with self._guard("next_plan_version"):
            result = await self._next_version(
                keys=[self._key("lease", PLAN_LEASE), self._key("planver", house_id)],
                args=[_fence_arg(fencing_token), version_base_ms()])
        return _raise_if_stale(result, f"plan version for {house_id}", fencing_token)

    async def put_plan(self, house_id: str, plan: DispatchPlan, fencing_token: int) -> None:
        body = PLAN.encode(plan)
        async with self._guard("put_plan"):
            result = await self._put_plan(
                keys=[self._key("lease", PLAN_LEASE), self._key("plan", house_id)],
                args=[_fence_arg(fencing_token), int(plan.version), body],
            )
        code, value = (int(x) for x in result)
        _raise_if_stale(result, f"plan write for {house_id}", fencing_token)
        if code == _RESULT_CONFLICT:
            raise PlanVersionConflict(
                f"plan version {plan.version} for {house_id} is not newer than stored {value}"
            )

    async def get_plan(self, house_id: str) -> DispatchPlan | None:
        async with self._guard("get_plan"):
            raw = await cast(Any, self._redis.hget(self._key("plan", house_id), "plan"))
        return None if raw is None else PLAN.decode(raw)

    async def put_plan_status(self, house_id: str, status: PlanStatus) -> None:
        async with self._guard("put_plan_status"):
            await self._redis.set(self._key("planstatus", house_id), PLAN_STATUS.encode(status))

    async def get_plan_status(self, house_id: str) -> PlanStatus | None:
        async with self._guard("get_plan_status"):
            raw = await self._redis.get(self._key("planstatus", house_id))
        return None if raw is None else PLAN_STATUS.decode(raw)

    # -- limit overrides ------------------------------------------------------

    async def put_limit_override(self, house_id: str, override: LimitOverride, ttl_s: float) -> None:
        async with self._guard("put_limit_override"):
            await self._redis.set(self._key("limits", house_id), LIMIT_OVERRIDE.encode(override), px=_ttl_ms(ttl_s))

    async def get_limit_override(self, house_id: str) -> LimitOverride | None:
        async with self._guard("get_limit_override"):
            raw = await self._redis.get(self._key("limits", house_id))
        return None if raw is None else LIMIT_OVERRIDE.decode(raw)

    async def put_feeder_envelope(self, house_id: str, envelope: LimitOverride, ttl_s: float,
                                  fencing_token: int | None = None) -> None:
        async with self._guard("put_feeder_envelope"):
            result = await self._fenced_set(
                keys=[self._key("lease", PLAN_LEASE), self._key("envelope", house_id)],
                args=[_fence_arg(fencing_token), LIMIT_OVERRIDE.encode(envelope), _ttl_ms(ttl_s)])
        _raise_if_stale(result, f"feeder envelope for {house_id}", fencing_token)

    async def get_feeder_envelope(self, house_id: str) -> LimitOverride | None:
        async with self._guard("get_feeder_envelope"):
            raw = await self._redis.get(self._key("envelope", house_id))
        return None if raw is None else LIMIT_OVERRIDE.decode(raw)

    # -- fleet events -------------------------------------------------------

    async def put_fleet_event(self, event: FleetEventRecord, ttl_s: float) -> None:
        ttl_ms = _ttl_ms(ttl_s)
        async with self._guard("put_fleet_event"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._key("fleetevent", event.event_id), FLEET_EVENT.encode(event), px=ttl_ms)
                pipe.sadd(self._key("fleetevents"), event.event_id)
                await pipe.execute()

    async def list_fleet_events(self) -> list[FleetEventRecord]:
        async with self._guard("list_fleet_events"):
            ids = sorted(str(i) for i in await self._redis.smembers(self._key("fleetevents")))
            raws = await self._redis.mget([self._key("fleetevent", i) for i in ids]) if ids else []
            gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
            if gone:  # expired
                await self._redis.srem(self._key("fleetevents"), *gone)
        events = [FLEET_EVENT.decode(raw) for raw in raws if raw is not None]
        return sorted(events, key=lambda e: (e.start, e.event_id))

    async def delete_fleet_event(self, event_id: str) -> bool:
        async with self._guard("delete_fleet_event"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._key("fleetevent", event_id))
                pipe.srem(self._key("fleetevents"), event_id)
                deleted, _ = await pipe.execute()
        return bool(deleted)

    # -- work queues (Redis Streams with one consumer group) ---------------

    _GROUP = "workers"

    async def _ensure_group(self, key: str) -> None:
        if key in self._groups:
            return
        try:
            await self._redis.xgroup_create(key, self._GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(key)

    async def queue_push(self, queue: str, item: str, fencing_token: int | None = None) -> None:
        key = self._key("q", queue)
        async with self._guard("queue push"):
            await self._ensure_group(key)
            result = await self._fenced_xadd(keys=[self._key("lease", PLAN_LEASE), key],
                                             args=[_fence_arg(fencing_token), item, _QUEUE_MAXLEN])
        _raise_if_stale(result, f"push to queue {queue}", fencing_token)

    async def queue_pull(self, queue: str, consumer: str, max_items: int = 100, block_s: float = 1.0,
                         reclaim_idle_s: float = 30.0) -> list[tuple[str, str]]:
        key = self._key("q", queue)
        async with self._guard("queue pull"):
            try:
                return await self._pull(key, consumer, max_items, block_s, reclaim_idle_s)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # the store lost the stream or its group (restarted empty): make them again
                self._groups.discard(key)
                return await self._pull(key, consumer, max_items, block_s, reclaim_idle_s)

    async def _pull(self, key: str, consumer: str, max_items: int, block_s: float,
                    reclaim_idle_s: float) -> list[tuple[str, str]]:
        await self._ensure_group(key)
        # entries a dead consumer took and never acked come first (XAUTOCLAIM)
        claimed = await self._redis.xautoclaim(key, self._GROUP, consumer, int(reclaim_idle_s * 1000),
                                               start_id="0-0", count=max_items)
        out = [(i, f["item"]) for i, f in claimed[1] if f]
        if out:
            return out
        block_ms = int(block_s * 1000) if block_s > 0 else None
        resp: Any = await self._redis.xreadgroup(self._GROUP, consumer, {key: ">"}, count=max_items,
                                                 block=block_ms)
        return [(i, f["item"]) for _stream, entries in (resp or []) for i, f in entries]

    async def queue_ack(self, queue: str, ids: list[str]) -> None:
        if not ids:
            return
        async with self._guard("queue ack"):
            try:
                await self._redis.xack(self._key("q", queue), self._GROUP, *ids)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._groups.discard(self._key("q", queue))  # lost with the store's data: nothing to ack

    async def ping(self) -> None:
        async with self._guard("ping"):
            await self._redis.ping()

    async def epoch(self) -> str:
        """SET NX GET (Redis >= 7.0): the stored epoch, or ours if there was none."""
        mine = uuid.uuid4().hex
        async with self._guard("epoch"):
            stored = await self._redis.set(self._key("epoch"), mine, nx=True, get=True)
        epoch = mine if stored is None else str(stored)
        if self._epoch is not None and epoch != self._epoch:
            self._groups.clear()  # the streams and their groups went with the data
        self._epoch = epoch
        return epoch

    async def close(self) -> None:
        """Close the connection pool (the client owns it: built by from_url)."""
        async with self._guard("close"):
            await self._redis.aclose()
