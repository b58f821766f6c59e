"""``open_store`` picks the backend from the URL and refuses anything else."""

from __future__ import annotations

import pytest

from aggregator.store import MemoryStore, RedisStore, StateStore, open_store


@pytest.mark.parametrize("url", [None, "memory://", "MEMORY://"])
async def test_memory_store_for_none_or_memory_scheme(url: str | None) -> None:
    store = open_store(url)
    try:
        assert isinstance(store, MemoryStore)
        assert isinstance(store, StateStore)
    finally:
        await store.close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6390/0", "rediss://user:pw@redis.example:6380/2"])
async def test_redis_store_for_redis_schemes(url: str) -> None:
    # Construction does not connect: no server is needed here.
    store = open_store(url)
    try:
        assert isinstance(store, RedisStore)
        assert isinstance(store, StateStore)
    finally:
        await store.close()


@pytest.mark.parametrize("url", ["", "postgres://db/vpp", "http://localhost:6379", "localhost:6379", "unix:///tmp/redis.sock"])
def test_other_schemes_rejected_naming_accepted_ones(url: str) -> None:
    with pytest.raises(ValueError) as info:
        open_store(url)
    message = str(info.value)
    assert "memory://" in message and "redis://" in message and "rediss://" in message
