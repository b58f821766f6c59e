"""Fleet state storage: the :class:`StateStore` protocol and its two backends.

``open_store`` picks the backend from a URL so that deployment configuration
(one embedded process vs. several replicas sharing Redis) is a single setting.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import (
    PLAN_LEASE,
    FleetEventRecord,
    HouseRecord,
    PlanVersionConflict,
    StaleFencingToken,
    StateStore,
    StoreError,
)
from .memory import DEFAULT_TELEMETRY_HISTORY_S, MemoryStore
from .redis_store import RedisStore

__all__ = [
    "FleetEventRecord",
    "HouseRecord",
    "MemoryStore",
    "PLAN_LEASE",
    "PlanVersionConflict",
    "RedisStore",
    "StaleFencingToken",
    "StateStore",
    "StoreError",
    "open_store",
]

_REDIS_SCHEMES = ("redis", "rediss")


def open_store(url: str | None, *, telemetry_history_s: float = DEFAULT_TELEMETRY_HISTORY_S) -> StateStore:
    """The store a URL names.

    ``None`` or ``memory://`` -> :class:`MemoryStore` (embedded default);
    ``redis://...`` or ``rediss://...`` (TLS) -> :class:`RedisStore`.  Anything
    else raises ``ValueError`` rather than silently falling back to memory: a
    typo must not turn a replicated deployment into split-brain in-process
    stores.
    """
    if url is None:
        return MemoryStore(telemetry_history_s=telemetry_history_s)
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        return MemoryStore(telemetry_history_s=telemetry_history_s)
    if scheme in _REDIS_SCHEMES:
        return RedisStore(url, telemetry_history_s=telemetry_history_s)
    raise ValueError(
        f"unsupported store URL {url!r}: accepted schemes are memory:// (or no URL), redis:// and rediss://"
    )
