"""One contract for every ``StateStore`` backend.

Each test runs against ``MemoryStore`` and against ``RedisStore`` on a
throwaway redis-server (a unique namespace per test keeps them apart).  Expiry
is driven by the injected clock for memory and by real (sub-second) Redis TTLs
with bounded polling for Redis: never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
import redis.asyncio as aioredis

from aggregator.store import (
    PLAN_LEASE,
    FleetEventRecord,
    HouseRecord,
    MemoryStore,
    PlanVersionConflict,
    RedisStore,
    StaleFencingToken,
    StateStore,
    StoreError,
)
from aggregator.store.base import version_base_ms
from tests.conftest import RedisServer, free_port
from vpp_common.messages import (
    ControlType,
    CurtailmentFlexibility,
    DispatchPlan,
    Envelope,
    FallbackMode,
    Flexibility,
    Hello,
    LimitOverride,
    Measurement,
    PlanSlot,
    PlanState,
    PlanStatus,
    ResourceInfo,
    ResourceKind,
    Setpoint,
    SiteLimits,
    SiteTelemetry,
    StorageFlexibility,
    Validity,
)

UTC = UTC
CET = timezone(timedelta(hours=1))
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

# Real-time TTL for the Redis expiry tests, and the bound on waiting for it.
SHORT_TTL_S = 0.2
EXPIRY_BOUND_S = 3.0
LONG_TTL_S = 60.0


class FakeClock:
    """Monotonic time that only moves when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    """The store under test plus how to let time pass for it."""

    store: StateStore
    clock: FakeClock | None  # None: real time (Redis)

    async def eventually(self, check: Callable[[], Awaitable[bool]], after_s: float) -> bool:
        """True once ``check`` holds after ``after_s`` seconds have passed.

        Memory: jump the clock just past ``after_s`` and check once.  Redis:
        poll with a bound, since expiry there is real time.
        """
        if self.clock is not None:
            self.clock.advance(after_s + 0.001)
            return await check()
        deadline = time.monotonic() + after_s + EXPIRY_BOUND_S
        while True:
            if await check():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)


@pytest.fixture(scope="session", params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend_kind(request: pytest.FixtureRequest) -> RedisServer | None:
    """Which backend: None for memory, else the redis-server to use.

    Session-scoped so that the redis-server starts before the per-test leak
    check takes its snapshot (it is shared, not leaked), and so that memory
    tests still run where no redis-server is installed.
    """
    if request.param == "memory":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return server


@pytest.fixture
async def backend(backend_kind: RedisServer | None) -> AsyncIterator[Backend]:
    if backend_kind is None:
        clock = FakeClock()
        mem = MemoryStore(time_fn=clock)
        yield Backend(mem, clock)
        await mem.close()
        return
    red = RedisStore(backend_kind.url, namespace=f"test-{uuid.uuid4().hex}")
    try:
        yield Backend(red, None)
    finally:
        await red.close()


@pytest.fixture
def store(backend: Backend) -> StateStore:
    return backend.store


# -- sample messages ---------------------------------------------------------


def hello(version: str = "1.0.0") -> Hello:
    return Hello(
        agent_version=version,
        limits=SiteLimits(max_import_w=17250.0, max_export_w=4600.0),
        resources=(
            ResourceInfo("bat1", ResourceKind.BATTERY, ControlType.FRBC, 5000.0, 10000.0),
            ResourceInfo("pv1", ResourceKind.PV, ControlType.PEBC, 6000.0),
            ResourceInfo("meter", ResourceKind.GRID_METER, ControlType.NOT_CONTROLLABLE),
        ),
        last_plan_id="p-7",
        last_plan_version=7,
    )


def telemetry() -> SiteTelemetry:
    return SiteTelemetry(
        measured_at=T0,
        grid_power_w=Measurement(-1234.5, Validity.VALID, T0 - timedelta(milliseconds=250)),
        pv_power_w=Measurement(-4000.0, Validity.STALE, datetime(2025, 3, 1, 12, 59, 58, 123456, tzinfo=CET)),
        battery_power_w=Measurement(None, Validity.MISSING, None),
        battery_soc_pct=Measurement(55.5, Validity.VALID, T0),
        load_power_w=Measurement(99999.0, Validity.IMPLAUSIBLE, T0),
    )


def flexibility() -> Flexibility:
    return Flexibility(
        valid_from=T0,
        storages=(
            StorageFlexibility(
                resource_id="bat1",
                soc_pct=55.5,
                soc_min_pct=5.0,
                soc_max_pct=100.0,
                reserve_soc_pct=20.0,
                capacity_wh=10000.0,
                max_charge_power_w=5000.0,
                max_discharge_power_w=4500.0,
                charge_efficiency=0.96,
            ),
        ),
        curtailments=(CurtailmentFlexibility("pv1", -3500.0, -6000.0),),
    )


def plan(version: int, plan_id: str | None = None) -> DispatchPlan:
    return DispatchPlan(
        plan_id=plan_id or f"plan-{version}",
        version=version,
        created_at=T0,
        valid_from=T0,
        valid_until=T0 + timedelta(minutes=30),
        slot_duration_s=900,
        slots=(
            PlanSlot(
                start=T0,
                setpoints=(Setpoint("bat1", 2500.0, Envelope(-500.0, 5000.0)),),
                grid_envelope=Envelope(-4600.0, 17250.0),
                reason="cheap import",
            ),
            PlanSlot(start=T0 + timedelta(minutes=15), setpoints=(Setpoint("bat1", -1000.0, Envelope(-4500.0, 0.0)),)),
        ),
        fallback=FallbackMode.IDLE,
        fallback_max_export_w=3000.0,
    )


# -- houses ------------------------------------------------------------------


async def test_upsert_and_get_house(store: StateStore) -> None:
    assert await store.get_house("h1") is None
    rec = await store.upsert_house("h1", hello(), T0)
    assert rec == HouseRecord("h1", hello(), T0, T0)
    assert await store.get_house("h1") == rec


async def test_reupsert_keeps_first_seen(store: StateStore) -> None:
    await store.upsert_house("h1", hello("1.0.0"), T0)
    later = T0 + timedelta(hours=2)
    rec = await store.upsert_house("h1", hello("1.1.0"), later)
    assert rec.first_seen == T0
    assert rec.last_hello == later
    assert rec.hello.agent_version == "1.1.0"
    assert await store.get_house("h1") == rec


async def test_list_houses_sorted(store: StateStore) -> None:
    assert await store.list_houses() == []
    for house_id in ["h3", "h1", "h2"]:
        await store.upsert_house(house_id, hello(), T0)
    houses = await store.list_houses()
    assert [h.house_id for h in houses] == ["h1", "h2", "h3"]
    assert all(h.hello == hello() for h in houses)


async def test_house_datetimes_keep_offset(store: StateStore) -> None:
    at = datetime(2025, 7, 1, 8, 30, 15, 42, tzinfo=CET)
    await store.upsert_house("h1", hello(), at)
    rec = await store.get_house("h1")
    assert rec is not None
    assert rec.first_seen == at and rec.first_seen.utcoffset() == timedelta(hours=1)


# -- routes ------------------------------------------------------------------


async def test_route_set_get_and_refresh(store: StateStore) -> None:
    assert await store.get_route("h1") is None
    await store.set_route("h1", "replica-a", LONG_TTL_S)
    assert await store.get_route("h1") == "replica-a"
    await store.set_route("h1", "replica-b", LONG_TTL_S)
    assert await store.get_route("h1") == "replica-b"


async def test_clear_route_only_if_still_ours(store: StateStore) -> None:
    await store.set_route("h1", "replica-b", LONG_TTL_S)
    await store.clear_route("h1", "replica-a")  # stale replica: must not remove b's route
    assert await store.get_route("h1") == "replica-b"
    await store.clear_route("h1", "replica-b")
    assert await store.get_route("h1") is None
    await store.clear_route("h1", "replica-b")  # already gone: no error


async def test_route_expires(backend: Backend) -> None:
    store = backend.store
    await store.set_route("h1", "replica-a", SHORT_TTL_S)
    assert await store.get_route("h1") == "replica-a"

    async def gone() -> bool:
        return await store.get_route("h1") is None

    assert await backend.eventually(gone, SHORT_TTL_S)


async def test_route_refresh_resets_ttl(backend: Backend) -> None:
    """A heartbeat re-setting the route with a short TTL replaces the long one."""
    store = backend.store
    await store.set_route("h1", "replica-a", LONG_TTL_S)
    await store.set_route("h1", "replica-a", SHORT_TTL_S)

    async def gone() -> bool:
        return await store.get_route("h1") is None

    assert await backend.eventually(gone, SHORT_TTL_S)


async def test_memory_route_alive_until_ttl() -> None:
    clock = FakeClock()
    store = MemoryStore(time_fn=clock)
    await store.set_route("h1", "replica-a", 30.0)
    clock.advance(29.9)
    assert await store.get_route("h1") == "replica-a"
    clock.advance(0.1)
    assert await store.get_route("h1") is None


@pytest.mark.parametrize("ttl_s", [0.0, -1.0, math.nan])
async def test_non_positive_ttl_rejected(store: StateStore, ttl_s: float) -> None:
    with pytest.raises(ValueError):
        await store.set_route("h1", "replica-a", ttl_s)
    with pytest.raises(ValueError):
        await store.put_telemetry("h1", telemetry(), ttl_s)
    with pytest.raises(ValueError):
        await store.acquire_lease("leader", "a", ttl_s)


# -- telemetry and flexibility -----------------------------------------------


async def test_telemetry_roundtrip(store: StateStore) -> None:
    assert await store.get_telemetry("h1") is None
    sent = telemetry()
    await store.put_telemetry("h1", sent, LONG_TTL_S)
    got = await store.get_telemetry("h1")
    assert got == sent
    assert got is not None
    assert got.battery_power_w.value is None and got.battery_power_w.measured_at is None
    assert got.pv_power_w.validity is Validity.STALE
    assert got.pv_power_w.measured_at is not None
    assert got.pv_power_w.measured_at.utcoffset() == timedelta(hours=1)
    assert got.pv_power_w.measured_at.microsecond == 123456


async def test_telemetry_keeps_non_finite_values(store: StateStore) -> None:
    """An implausible NaN/inf reading must not come back as "no value"."""
    sent = SiteTelemetry(
        measured_at=T0,
        grid_power_w=Measurement(math.inf, Validity.IMPLAUSIBLE, T0),
        pv_power_w=Measurement(-math.inf, Validity.IMPLAUSIBLE, T0),
        battery_power_w=Measurement(math.nan, Validity.IMPLAUSIBLE, T0),
        battery_soc_pct=Measurement.missing(),
        load_power_w=Measurement(0.0, Validity.VALID, T0),
    )
    await store.put_telemetry("h1", sent, LONG_TTL_S)
    got = await store.get_telemetry("h1")
    assert got is not None
    assert got.grid_power_w.value == math.inf
    assert got.pv_power_w.value == -math.inf
    assert got.battery_power_w.value is not None and math.isnan(got.battery_power_w.value)


async def test_telemetry_latest_wins(store: StateStore) -> None:
    await store.put_telemetry("h1", telemetry(), LONG_TTL_S)
    newer = SiteTelemetry(
        T0 + timedelta(seconds=1), *(Measurement.missing() for _ in range(5))
    )
    await store.put_telemetry("h1", newer, LONG_TTL_S)
    assert await store.get_telemetry("h1") == newer


async def test_telemetry_expires(backend: Backend) -> None:
    store = backend.store
    await store.put_telemetry("h1", telemetry(), SHORT_TTL_S)
    assert await store.get_telemetry("h1") == telemetry()

    async def gone() -> bool:
        return await store.get_telemetry("h1") is None

    assert await backend.eventually(gone, SHORT_TTL_S)


async def test_flexibility_roundtrip(store: StateStore) -> None:
    assert await store.get_flexibility("h1") is None
    await store.put_flexibility("h1", flexibility())
    assert await store.get_flexibility("h1") == flexibility()
    empty = Flexibility(valid_from=T0 + timedelta(minutes=1))
    await store.put_flexibility("h1", empty)
    assert await store.get_flexibility("h1") == empty


# -- plans -------------------------------------------------------------------


async def test_plan_versions_strictly_increase_per_house(store: StateStore) -> None:
    before = version_base_ms()
    a = [await store.next_plan_version("h1") for _ in range(5)]
    assert a == list(range(a[0], a[0] + 5))
    assert a[0] > before  # starts at wall-clock ms: above any version of a store that lost its data
    assert await store.next_plan_version("h2") > before


async def test_plan_versions_concurrent_are_unique(store: StateStore) -> None:
    versions = await asyncio.gather(*(store.next_plan_version("h1") for _ in range(50)))
    assert sorted(versions) == list(range(min(versions), min(versions) + 50))


async def test_plan_roundtrip(store: StateStore) -> None:
    assert await store.get_plan("h1") is None
    token = await store.acquire_lease("dispatch", "leader-a", LONG_TTL_S)
    assert token is not None
    await store.put_plan("h1", plan(1), token)
    got = await store.get_plan("h1")
    assert got == plan(1)
    assert got is not None and got.fallback is FallbackMode.IDLE
    assert got.slots[1].grid_envelope is None


async def test_plan_version_must_increase(store: StateStore) -> None:
    token = await store.acquire_lease("dispatch", "leader-a", LONG_TTL_S)
    assert token is not None
    await store.put_plan("h1", plan(2), token)
    with pytest.raises(PlanVersionConflict):
        await store.put_plan("h1", plan(2, "dup"), token)
    with pytest.raises(PlanVersionConflict):
        await store.put_plan("h1", plan(1), token)
    assert await store.get_plan("h1") == plan(2)
    await store.put_plan("h1", plan(3), token)
    assert await store.get_plan("h1") == plan(3)
    await store.put_plan("h2", plan(1), token)  # versions are per house


async def test_stale_fencing_token_rejected(store: StateStore) -> None:
    old = await store.acquire_lease("dispatch", "leader-a", LONG_TTL_S)
    assert old is not None
    await store.put_plan("h1", plan(1), old)
    await store.release_lease("dispatch", "leader-a")
    new = await store.acquire_lease("dispatch", "leader-b", LONG_TTL_S)
    assert new is not None and new > old
    await store.put_plan("h1", plan(2), new)
    # The deposed leader, still believing it leads, writes another house: rejected.
    with pytest.raises(StaleFencingToken):
        await store.put_plan("h2", plan(1), old)
    with pytest.raises(StaleFencingToken):
        await store.put_plan("h1", plan(9), old)
    assert await store.get_plan("h2") is None
    assert await store.get_plan("h1") == plan(2)
    # The current leader keeps writing with the same token.
    await store.put_plan("h1", plan(3), new)
    await store.put_plan("h2", plan(1), new)


async def test_stale_token_checked_before_version(store: StateStore) -> None:
    old = await store.acquire_lease("dispatch", "leader-a", LONG_TTL_S)
    assert old is not None
    await store.release_lease("dispatch", "leader-a")
    new = await store.acquire_lease("dispatch", "leader-b", LONG_TTL_S)
    assert new is not None
    await store.put_plan("h1", plan(5), new)
    with pytest.raises(StaleFencingToken):
        await store.put_plan("h1", plan(5), old)


async def test_stale_write_changes_nothing(store: StateStore) -> None:
    """A write refused for its token uses no version and leaves the current leader writing."""
    token = await store.acquire_lease(PLAN_LEASE, "leader-a", LONG_TTL_S)
    assert token is not None
    await store.put_plan("h1", plan(5), token)
    with pytest.raises(StaleFencingToken):
        await store.put_plan("h1", plan(6), token + 7)
    with pytest.raises(StaleFencingToken):
        await store.put_plan("h2", plan(1), token - 1)
    assert await store.get_plan("h1") == plan(5) and await store.get_plan("h2") is None
    await store.put_plan("h2", plan(1), token)


async def test_no_write_without_a_current_lease(backend: Backend) -> None:
    """The fence is the *current* lease: once a leader's lease has run out (paused, cut off)
    it cannot write, even before another replica takes the lease or writes (issue 20)."""
    store = backend.store
    token = await store.acquire_lease(PLAN_LEASE, "leader-a", SHORT_TTL_S)
    assert token is not None
    await store.put_plan("h1", plan(1), token)

    written = [1]

    async def refused() -> bool:
        try:
            await store.put_plan("h1", plan(written[-1] + 1), token)
        except StaleFencingToken:
            return True
        written.append(written[-1] + 1)  # still within the lease (Redis: real time)
        return False

    assert await backend.eventually(refused, SHORT_TTL_S)
    with pytest.raises(StaleFencingToken):
        await store.next_plan_version("h1", token)
    with pytest.raises(StaleFencingToken):
        await store.put_feeder_envelope("h1", LimitOverride(SiteLimits(1000.0, 1000.0), T0, "feeder"), LONG_TTL_S,
                                        fencing_token=token)
    with pytest.raises(StaleFencingToken):
        await store.queue_push("dispatch:r1", "h1", fencing_token=token)
    assert await store.get_plan("h1") == plan(written[-1])
    assert await store.get_feeder_envelope("h1") is None
    assert await store.queue_pull("dispatch:r1", "r1", block_s=0) == []
    # the lease taken again (by anyone) is a new token: the old one stays refused
    again = await store.acquire_lease(PLAN_LEASE, "leader-a", LONG_TTL_S)
    assert again is not None and again != token
    with pytest.raises(StaleFencingToken):
        await store.put_plan("h1", plan(written[-1] + 1), token)
    await store.put_plan("h1", plan(written[-1] + 1), again)


async def test_fenced_writes_of_the_current_leader(store: StateStore) -> None:
    token = await store.acquire_lease(PLAN_LEASE, "leader-a", LONG_TTL_S)
    assert token is not None
    v = await store.next_plan_version("h1", token)
    assert await store.next_plan_version("h1") == v + 1  # unfenced: anyone (tests, tools)
    env = LimitOverride(SiteLimits(1000.0, 1000.0), T0, "feeder")
    await store.put_feeder_envelope("h1", env, LONG_TTL_S, fencing_token=token)
    assert await store.get_feeder_envelope("h1") == env
    await store.queue_push("dispatch:r1", "h1", fencing_token=token)
    assert [item for _, item in await store.queue_pull("dispatch:r1", "r1", block_s=0)] == ["h1"]


async def test_epoch_is_stable(store: StateStore) -> None:
    first = await store.epoch()
    assert first and await store.epoch() == first


async def test_plan_status_roundtrip(store: StateStore) -> None:
    assert await store.get_plan_status("h1") is None
    status = PlanStatus("plan-3", 3, PlanState.REJECTED, T0, reason="soc below reserve")
    await store.put_plan_status("h1", status)
    assert await store.get_plan_status("h1") == status
    active = PlanStatus("plan-4", 4, PlanState.ACTIVE, T0 + timedelta(seconds=5))
    await store.put_plan_status("h1", active)
    got = await store.get_plan_status("h1")
    assert got == active and got is not None and got.state is PlanState.ACTIVE


# -- leases ------------------------------------------------------------------


async def test_lease_acquire_renew_contend_release(store: StateStore) -> None:
    first = await store.acquire_lease("dispatch", "a", LONG_TTL_S)
    assert first is not None and first >= 1
    assert await store.acquire_lease("dispatch", "a", LONG_TTL_S) == first  # renewal
    assert await store.acquire_lease("dispatch", "b", LONG_TTL_S) is None  # contention
    await store.release_lease("dispatch", "b")  # not b's: no effect
    assert await store.acquire_lease("dispatch", "b", LONG_TTL_S) is None
    await store.release_lease("dispatch", "a")
    second = await store.acquire_lease("dispatch", "b", LONG_TTL_S)
    assert second is not None and second > first
    assert await store.acquire_lease("dispatch", "a", LONG_TTL_S) is None


async def test_lease_token_strictly_increases_even_for_same_owner(store: StateStore) -> None:
    tokens = []
    for _ in range(4):
        token = await store.acquire_lease("dispatch", "a", LONG_TTL_S)
        assert token is not None
        tokens.append(token)
        await store.release_lease("dispatch", "a")
    assert tokens == sorted(set(tokens))


async def test_leases_are_independent(store: StateStore) -> None:
    assert await store.acquire_lease("dispatch", "a", LONG_TTL_S) is not None
    assert await store.acquire_lease("forecast", "b", LONG_TTL_S) is not None


async def test_lease_expires_and_next_holder_gets_newer_token(backend: Backend) -> None:
    store = backend.store
    first = await store.acquire_lease("dispatch", "a", SHORT_TTL_S)
    assert first is not None
    tokens: list[int] = []

    async def taken_by_b() -> bool:
        token = await store.acquire_lease("dispatch", "b", LONG_TTL_S)
        if token is not None:
            tokens.append(token)
        return token is not None

    assert await backend.eventually(taken_by_b, SHORT_TTL_S)
    assert tokens[0] > first
    assert await store.acquire_lease("dispatch", "a", LONG_TTL_S) is None


async def test_lease_renewal_resets_ttl(backend: Backend) -> None:
    """Renewal sets a new TTL (here a shorter one, so the test need not wait long)."""
    store = backend.store
    first = await store.acquire_lease("dispatch", "a", LONG_TTL_S)
    assert await store.acquire_lease("dispatch", "a", SHORT_TTL_S) == first

    async def free() -> bool:
        return await store.acquire_lease("dispatch", "b", LONG_TTL_S) is not None

    assert await backend.eventually(free, SHORT_TTL_S)


async def test_memory_renewal_extends_lease() -> None:
    clock = FakeClock()
    store = MemoryStore(time_fn=clock)
    token = await store.acquire_lease("dispatch", "a", 10.0)
    clock.advance(8.0)
    assert await store.acquire_lease("dispatch", "a", 10.0) == token
    clock.advance(8.0)  # 16 s after the first acquisition, 8 s after renewal
    assert await store.acquire_lease("dispatch", "b", 10.0) is None
    clock.advance(2.0)
    assert await store.acquire_lease("dispatch", "b", 10.0) == token + 1  # type: ignore[operator]


async def test_memory_reacquire_after_own_expiry_is_new_token() -> None:
    """As with Redis: once expired, taking the lease again is a new acquisition."""
    clock = FakeClock()
    store = MemoryStore(time_fn=clock)
    first = await store.acquire_lease("dispatch", "a", 5.0)
    clock.advance(5.0)
    again = await store.acquire_lease("dispatch", "a", 5.0)
    assert first is not None and again is not None and again > first


# -- redis specifics ---------------------------------------------------------


@pytest.mark.redis
async def test_redis_keys_are_namespaced(redis_server: RedisServer) -> None:
    namespace = f"test-{uuid.uuid4().hex}"
    store = RedisStore(redis_server.url, namespace=namespace)
    raw = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await store.upsert_house("h1", hello(), T0)
        await store.set_route("h1", "r", LONG_TTL_S)
        await store.put_telemetry("h1", telemetry(), LONG_TTL_S)
        await store.put_flexibility("h1", flexibility())
        token = await store.acquire_lease("dispatch", "a", LONG_TTL_S)
        assert token is not None
        await store.next_plan_version("h1")
        await store.put_plan("h1", plan(1), token)
        await store.put_plan_status("h1", PlanStatus("plan-1", 1, PlanState.ACCEPTED, T0))
        keys = {k async for k in raw.scan_iter(match=f"{namespace}:*")}
        assert keys == {
            f"{namespace}:{k}"
            for k in [
                "houses", "house:h1", "route:h1", "telemetry:h1", "telhist:h1", "flex:h1", "lease:dispatch",
                "fence:dispatch", "planver:h1", "plan:h1", "planstatus:h1",
            ]
        }
        assert 0 < await raw.pttl(f"{namespace}:telemetry:h1") <= LONG_TTL_S * 1000
        assert 0 < await raw.pttl(f"{namespace}:route:h1") <= LONG_TTL_S * 1000
        assert 0 < await raw.pttl(f"{namespace}:lease:dispatch") <= LONG_TTL_S * 1000
        assert await raw.pttl(f"{namespace}:plan:h1") == -1  # plans do not expire
    finally:
        await raw.aclose()
        await store.close()


@pytest.mark.redis
async def test_redis_store_that_lost_its_data(redis_server: RedisServer) -> None:
    """Redis restarted empty (here: FLUSHDB): a new epoch; plan versions and lease tokens still
    above the ones handed out before; the work queues' consumer groups are made again
    (before: remembered as made, NOGROUP for ever); Redis's own message in the StoreError."""
    namespace = f"test-{uuid.uuid4().hex}"
    store = RedisStore(redis_server.url, namespace=namespace)
    raw = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        epoch = await store.epoch()
        token = await store.acquire_lease(PLAN_LEASE, "a", LONG_TTL_S)
        assert token is not None
        versions = [await store.next_plan_version("h1", token) for _ in range(3)]
        await store.queue_push("replan", "h1")
        assert [i for _, i in await store.queue_pull("replan", "r1", block_s=0)] == ["h1"]
        async for key in raw.scan_iter(match=f"{namespace}:*"):
            await raw.delete(key)
        assert await store.epoch() != epoch
        again = await store.acquire_lease(PLAN_LEASE, "a", LONG_TTL_S)
        assert again is not None and again > token
        assert await store.next_plan_version("h1", again) > versions[-1]
        assert await store.queue_pull("replan", "r1", block_s=0) == []  # the group made again
        await store.queue_push("replan", "h2")
        assert [i for _, i in await store.queue_pull("replan", "r1", block_s=0)] == ["h2"]
        await raw.delete(f"{namespace}:q:replan")  # lost under a pull already made: NOGROUP, made again
        assert await store.queue_pull("replan", "r1", block_s=0) == []
        await raw.set(f"{namespace}:q:other", "not a stream")
        with pytest.raises(StoreError, match="WRONGTYPE"):  # Redis's own words, not only the class
            await store.queue_push("other", "x")
    finally:
        await raw.aclose()
        await store.close()


@pytest.mark.redis
async def test_redis_undecodable_value_is_store_error(redis_server: RedisServer) -> None:
    namespace = f"test-{uuid.uuid4().hex}"
    store = RedisStore(redis_server.url, namespace=namespace)
    raw = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await raw.set(f"{namespace}:telemetry:h1", '{"not": "telemetry"}')
        with pytest.raises(StoreError):
            await store.get_telemetry("h1")
    finally:
        await raw.aclose()
        await store.close()


async def test_redis_unreachable_raises_store_error() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", namespace=f"test-{uuid.uuid4().hex}")
    try:
        with pytest.raises(StoreError) as info:
            await store.get_house("h1")
        assert info.value.__cause__ is not None
        with pytest.raises(StoreError):
            await store.acquire_lease("dispatch", "a", 1.0)
    finally:
        await store.close()


# -- work queues ---------------------------------------------------------------


async def test_queue_delivers_each_item_once_across_consumers(store: StateStore) -> None:
    for i in range(5):
        await store.queue_push("dispatch:r1", f"house-{i}")
    a = await store.queue_pull("dispatch:r1", "a", max_items=3, block_s=0.1)
    b = await store.queue_pull("dispatch:r1", "b", max_items=10, block_s=0.1)
    assert [item for _, item in a] == ["house-0", "house-1", "house-2"]
    assert [item for _, item in b] == ["house-3", "house-4"]
    await store.queue_ack("dispatch:r1", [i for i, _ in a + b])
    assert await store.queue_pull("dispatch:r1", "a", block_s=0.05) == []


async def test_queue_pull_waits_for_a_push(store: StateStore) -> None:
    await store.queue_pull("replan", "a", block_s=0.01)  # creates the queue
    waiter = asyncio.create_task(store.queue_pull("replan", "a", block_s=3.0))
    await asyncio.sleep(0.05)  # let the pull block (a push before it would also be fine)
    await store.queue_push("replan", "house-9")
    got = await waiter
    assert [item for _, item in got] == ["house-9"]


async def test_unacked_items_of_a_dead_consumer_are_reclaimed(backend: Backend) -> None:
    store = backend.store
    await store.queue_push("dispatch:r2", "house-1")
    taken = await store.queue_pull("dispatch:r2", "dead", block_s=0.1)
    assert [item for _, item in taken] == ["house-1"]
    assert await store.queue_pull("dispatch:r2", "alive", block_s=0.05, reclaim_idle_s=60) == []
    if backend.clock is not None:
        backend.clock.advance(0.2)
    else:
        await asyncio.sleep(0.25)  # Redis measures idle time itself (real seconds)
    again = await store.queue_pull("dispatch:r2", "alive", block_s=0.05, reclaim_idle_s=0.2)
    assert [item for _, item in again] == ["house-1"]
    await store.queue_ack("dispatch:r2", [i for i, _ in again])
    backend.clock and backend.clock.advance(1.0)
    assert await store.queue_pull("dispatch:r2", "alive", block_s=0.05, reclaim_idle_s=0.2) == []


async def test_limit_override_roundtrip_and_expiry(backend: Backend) -> None:
    store = backend.store
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    override = LimitOverride(SiteLimits(8_000.0, 0.0), at, "feeder maintenance")
    await store.put_limit_override("h1", override, ttl_s=0.2)
    assert await store.get_limit_override("h1") == override
    assert await store.get_limit_override("h2") is None
    if backend.clock is not None:
        backend.clock.advance(0.3)
        assert await store.get_limit_override("h1") is None
    else:
        deadline = time.monotonic() + 3
        while await store.get_limit_override("h1") is not None:
            assert time.monotonic() < deadline, "override did not expire"
            await asyncio.sleep(0.05)


async def test_feeder_envelope_roundtrip_expiry_and_apart_from_overrides(backend: Backend) -> None:
    store = backend.store
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    env = LimitOverride(SiteLimits(17_000.0, 2_500.0), at, "feeder envelope")
    await store.put_feeder_envelope("h1", env, ttl_s=0.2)
    assert await store.get_feeder_envelope("h1") == env
    assert await store.get_limit_override("h1") is None  # an envelope is not an operator's override
    assert await store.get_feeder_envelope("h2") is None
    if backend.clock is not None:
        backend.clock.advance(0.3)
        assert await store.get_feeder_envelope("h1") is None
    else:
        deadline = time.monotonic() + 3
        while await store.get_feeder_envelope("h1") is not None:
            assert time.monotonic() < deadline, "envelope did not expire"
            await asyncio.sleep(0.05)


async def test_fleet_events_roundtrip_replace_delete_and_expiry(backend: Backend) -> None:
    store = backend.store
    at = datetime(2026, 11, 27, 12, tzinfo=UTC)
    a = FleetEventRecord("ev-a", "export", at, at + timedelta(hours=2), max_w=2_000_000.0, reason="DSO call",
                         created_at=at - timedelta(hours=1))
    b = FleetEventRecord("ev-b", "import", at - timedelta(hours=1), at, reduce_by_w=1_000.0)
    assert await store.list_fleet_events() == []
    await store.put_fleet_event(a, ttl_s=LONG_TTL_S)
    await store.put_fleet_event(b, ttl_s=0.2)
    assert await store.list_fleet_events() == [b, a]  # by start
    a2 = FleetEventRecord("ev-a", "export", at, at + timedelta(hours=3), reduce_by_w=500_000.0)
    await store.put_fleet_event(a2, ttl_s=LONG_TTL_S)  # same id: replaced
    if backend.clock is not None:
        backend.clock.advance(0.3)
        assert await store.list_fleet_events() == [a2]
    else:
        deadline = time.monotonic() + 3
        while await store.list_fleet_events() != [a2]:
            assert time.monotonic() < deadline, "fleet event did not expire"
            await asyncio.sleep(0.05)
    assert await store.delete_fleet_event("ev-a") is True
    assert await store.delete_fleet_event("ev-a") is False
    assert await store.list_fleet_events() == []


@pytest.fixture
async def history_store(backend_kind: RedisServer | None) -> AsyncIterator[StateStore]:
    """A store that keeps 600 s of telemetry history."""
    store: StateStore = (MemoryStore(telemetry_history_s=600.0) if backend_kind is None else
                         RedisStore(backend_kind.url, namespace=f"test-{uuid.uuid4().hex}", telemetry_history_s=600.0))
    try:
        yield store
    finally:
        await store.close()


async def test_telemetry_history_keeps_every_sample_once_in_order(history_store: StateStore) -> None:
    """Resends after a lost ack do not duplicate; a late older sample joins the history but never
    replaces the newer latest; samples older than the history window (by measured time) are trimmed."""
    store = history_store

    def sample(s: float) -> SiteTelemetry:
        m = Measurement.missing()
        return SiteTelemetry(T0 + timedelta(seconds=s), Measurement(100.0 + s, Validity.VALID, T0), m, m, m, m)

    for s in (0, 10, 30):
        await store.put_telemetry("h1", sample(s), LONG_TTL_S)
    await store.put_telemetry("h1", sample(10), LONG_TTL_S)  # a resend
    await store.put_telemetry("h1", sample(20), LONG_TTL_S)  # late, older than the latest
    assert await store.get_telemetry("h1") == sample(30)
    assert await store.telemetry_history("h1") == [sample(s) for s in (0, 10, 20, 30)]
    assert await store.telemetry_history("h2") == []
    await store.put_telemetry("h1", sample(615), LONG_TTL_S)  # window 600 s: 0 and 10 fall out
    assert await store.telemetry_history("h1") == [sample(s) for s in (20, 30, 615)]


async def test_without_history_a_late_sample_never_replaces_a_newer_one(store: StateStore) -> None:
    def sample(s: float) -> SiteTelemetry:
        m = Measurement.missing()
        return SiteTelemetry(T0 + timedelta(seconds=s), m, m, m, m, m)

    await store.put_telemetry("h1", sample(30), LONG_TTL_S)
    await store.put_telemetry("h1", sample(20), LONG_TTL_S)  # delivered late (a resend after an outage)
    assert await store.get_telemetry("h1") == sample(30)
    assert await store.telemetry_history("h1") == [sample(30)]
