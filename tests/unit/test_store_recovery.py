"""A store found with a new epoch (it lost its data): the replica says NOT_SERVING, writes back
every house streaming to it (Hello, route, flexibility), asks for a re-plan of the fleet and
says SERVING again."""

from __future__ import annotations

from datetime import UTC, datetime

from aggregator.metrics import AggregatorMetrics
from aggregator.service.sessions import SessionRegistry
from aggregator.service.store_recovery import StoreRecovery
from aggregator.store import MemoryStore
from vpp_common.clock import ManualClock
from vpp_common.messages import (
    ControlType,
    Flexibility,
    Hello,
    ResourceInfo,
    ResourceKind,
    SiteLimits,
    StorageFlexibility,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HELLO = Hello("test", SiteLimits(11_000, 4_600), (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC,
                                                                5_000, 10_000),))
FLEX = Flexibility(T0, (StorageFlexibility("battery", 50, 0, 100, 10, 10_000, 5_000, 5_000),))


class LosingStore(MemoryStore):
    """A memory store that can lose its data, as a Redis restarted empty does."""

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0

    async def epoch(self) -> str:
        return f"epoch-{self.generation}"

    def lose_data(self) -> None:
        generation = self.generation + 1
        self.__init__()  # type: ignore[misc]
        self.generation = generation


async def test_a_store_that_lost_its_data_is_rebuilt_from_the_streams() -> None:
    store = LosingStore()
    sessions = SessionRegistry()
    with_flex = sessions.open("h1")
    with_flex.hello, with_flex.flexibility = HELLO, FLEX
    sessions.open("h2").hello = HELLO
    sessions.open("h3")  # its stream is still starting: no Hello yet
    events: list[str] = []

    async def set_serving(serving: bool) -> None:
        events.append("serving" if serving else "not serving")

    async def replan() -> None:
        events.append(f"replan with {[h.house_id for h in await store.list_houses()]}")

    metrics = AggregatorMetrics()
    recovery = StoreRecovery(store=store, sessions=sessions, clock=ManualClock(T0), replica_id="r0",
                             route_ttl_s=30.0, metrics=metrics, set_serving=set_serving, replan_fleet=replan)
    assert not await recovery.check()  # the first look
    assert not await recovery.check() and events == []
    store.lose_data()
    assert await recovery.check()
    assert events == ["not serving", "replan with ['h1', 'h2']", "serving"]
    assert await store.get_flexibility("h1") == FLEX and await store.get_flexibility("h2") is None
    assert await store.get_route("h1") == "r0" and await store.get_route("h2") == "r0"
    assert metrics.store_data_lost._value.get() == 1
    assert not await recovery.check()
