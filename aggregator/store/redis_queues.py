"""The Redis store's work queues: Redis Streams with one consumer group each.  An entry a
consumer took and never acked is claimed again by another after ``reclaim_idle_s``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from .base import PLAN_LEASE
from .redis_scripts import FENCED_XADD_LUA, fence_arg, guard, raise_if_stale

GROUP = "workers"
QUEUE_MAXLEN = 100_000  # a queue nobody reads cannot grow without bound


class RedisQueues:
    """The ``queue_*`` methods of :class:`~aggregator.store.redis_store.RedisStore`; a push is
    fenced like the store's other leader-only writes."""

    def __init__(self, redis: aioredis.Redis, key: Callable[..., str]) -> None:
        self._redis = redis
        self._key = key
        self._fenced_xadd = redis.register_script(FENCED_XADD_LUA)
        # streams whose consumer group this client made; forgotten when the store lost its data
        # (a new epoch) or answers NOGROUP, else followers never got a plan again (issue 20)
        self._groups: set[str] = set()

    def forget_groups(self) -> None:
        self._groups.clear()

    async def _ensure_group(self, key: str) -> None:
        if key in self._groups:
            return
        try:
            await self._redis.xgroup_create(key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(key)

    async def push(self, queue: str, item: str, fencing_token: int | None = None) -> None:
        key = self._key("q", queue)
        async with guard("queue push"):
            await self._ensure_group(key)
            result = await self._fenced_xadd(keys=[self._key("lease", PLAN_LEASE), key],
                                             args=[fence_arg(fencing_token), item, QUEUE_MAXLEN])
        raise_if_stale(result, f"push to queue {queue}", fencing_token)

    async def pull(self, queue: str, consumer: str, max_items: int = 100, block_s: float = 1.0,
                         reclaim_idle_s: float = 30.0) -> list[tuple[str, str]]:
        key = self._key("q", queue)
        async with guard("queue pull"):
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
        claimed = await self._redis.xautoclaim(key, GROUP, consumer, int(reclaim_idle_s * 1000),
                                               start_id="0-0", count=max_items)
        out = [(i, f["item"]) for i, f in claimed[1] if f]
        if out:
            return out
        block_ms = int(block_s * 1000) if block_s > 0 else None
        resp: Any = await self._redis.xreadgroup(GROUP, consumer, {key: ">"}, count=max_items,
                                                 block=block_ms)
        return [(i, f["item"]) for _stream, entries in (resp or []) for i, f in entries]

    async def ack(self, queue: str, ids: list[str]) -> None:
        if not ids:
            return
        async with guard("queue ack"):
            try:
                await self._redis.xack(self._key("q", queue), GROUP, *ids)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._groups.discard(self._key("q", queue))  # lost with the store's data: nothing to ack
