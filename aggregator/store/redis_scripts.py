"""The Redis store's scripts: everything that must check-then-write (lease acquire/renew/release,
route clear, the fenced writes) is a Lua script, so it is atomic across replicas.

A fenced write first reads the dispatch lease's hash and goes on only if its token is the
writer's: the *current* lease, not the highest token ever used, so a leader paused past its
lease cannot write even before the next leader's first write.  The plan's version sits beside
its JSON in a hash so the script can compare it without decoding JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.exceptions import RedisError

from vpp_common.clock import cancellation_kept

from .base import StaleFencingToken, StoreError

# KEYS[1] lease hash, KEYS[2] fence counter; ARGV[1] owner, ARGV[2] ttl ms, ARGV[3] counter base.
# Returns the token, or nil (-> None) if another owner holds the lease.  The counter
# starts at wall-clock ms, so tokens after a loss of the store's data are new ones.
ACQUIRE_LUA = """
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
RELEASE_LUA = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1] route; ARGV[1] replica.
CLEAR_ROUTE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: latest, history.  ARGV: JSON, measured_at ms, ttl ms, history ms.
PUT_TELEMETRY_LUA = """
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
FENCE_LUA = """
if ARGV[1] ~= '' then
  local current = redis.call('HGET', KEYS[1], 'token')
  if current == false or tonumber(current) ~= tonumber(ARGV[1]) then
    return {1, tonumber(current or '0')}
  end
end
"""

# KEYS[2] plan hash; ARGV[2] version, ARGV[3] plan JSON.  {0, 0} on success, {2, stored
# version} on a version conflict.  Nothing is written unless both checks pass.
PUT_PLAN_LUA = FENCE_LUA + """
local version = tonumber(ARGV[2])
local stored = redis.call('HGET', KEYS[2], 'version')
if stored ~= false and version <= tonumber(stored) then
  return {2, tonumber(stored)}
end
redis.call('HSET', KEYS[2], 'version', ARGV[2], 'plan', ARGV[3])
return {0, 0}
"""

# KEYS[2] version counter; ARGV[2] where a missing counter starts.  {0, new version}.
NEXT_VERSION_LUA = FENCE_LUA + """
redis.call('SET', KEYS[2], ARGV[2], 'NX')
return {0, redis.call('INCR', KEYS[2])}
"""

# KEYS[2] key; ARGV[2] value, ARGV[3] ttl ms.
FENCED_SET_LUA = FENCE_LUA + """
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return {0, 0}
"""

# KEYS[2] stream; ARGV[2] item, ARGV[3] approximate max length.
FENCED_XADD_LUA = FENCE_LUA + """
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'item', ARGV[2])
return {0, 0}
"""

RESULT_STALE = 1
RESULT_CONFLICT = 2


def fence_arg(fencing_token: int | None) -> str:
    return "" if fencing_token is None else str(int(fencing_token))


def raise_if_stale(result: Any, what: str, fencing_token: int | None) -> int:
    """The script's {code, value}: StaleFencingToken for a stale token, else the value."""
    code, value = (int(x) for x in result)
    if code == RESULT_STALE:
        raise StaleFencingToken(f"{what} with fencing token {fencing_token}: the current dispatch lease's token "
                                f"is {value or 'none (expired)'}")
    return value


@asynccontextmanager
async def guard(what: str) -> AsyncIterator[None]:
    """Turn client failures into :class:`StoreError`, keeping the cause.

    ``RedisError`` covers connection errors, timeouts and error replies;
    ``OSError`` covers socket failures the client lets through.  Our own
    exceptions (fencing, version conflicts) pass untouched.  A cancellation redis-py lost
    (Python 3.11's ``asyncio.wait_for`` around each command's write) is raised after the
    command: else a cancelled task ran on (docs/cancellation.md).
    """
    with cancellation_kept():
        try:
            yield
        except (RedisError, OSError) as exc:
            # Redis's own words (e.g. "NOGROUP No such key ..."), not only the class name
            raise StoreError(f"redis {what} failed: {type(exc).__name__}: {exc or repr(exc)}") from exc
