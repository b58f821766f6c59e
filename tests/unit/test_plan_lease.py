"""A plan's lease counts from when the plan is made, not from the start of its first slot
(issue 20: with lease_s < slot_s a plan made at 07:09:09 expired at 07:10:00); a replica
that takes the dispatch lease plans at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest.mock import MagicMock

from aggregator.config import PlanningConfig
from aggregator.dispatch.plans import lease_end
from aggregator.dispatch.tariff import DEFAULT_TARIFF
from aggregator.fleet.leadership import LeaderElector
from aggregator.metrics import AggregatorMetrics
from aggregator.planner import Planner
from aggregator.service.plan_encoder import PlanEncoder
from aggregator.service.sessions import SessionRegistry
from aggregator.service.stream_outbox import StreamOutbox
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

UTC = UTC
MADE = datetime(2026, 6, 1, 7, 9, 9, tzinfo=UTC)
HELLO = Hello("test", SiteLimits(11_000, 4_600), (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC,
                                                                5_000, 10_000),))
FLEX = Flexibility(MADE, (StorageFlexibility("battery", 50, 0, 100, 10, 10_000, 5_000, 5_000),))


def test_lease_counts_from_when_the_plan_is_made() -> None:
    horizon_end = datetime(2026, 6, 2, 7, 0, tzinfo=UTC)
    assert lease_end(horizon_end, MADE, 300) == MADE + timedelta(seconds=300)
    assert lease_end(MADE + timedelta(seconds=60), MADE, 300) == MADE + timedelta(seconds=60)  # never past the slots


class _Clock:
    """A monotonic clock for the memory store that tests move by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _planner(store: MemoryStore, elector: LeaderElector, clock: ManualClock, **planning: object) -> Planner:
    return Planner(store=store, outbox=StreamOutbox(SessionRegistry(), MagicMock(), PlanEncoder(workers=0)), clock=clock,
                   tariff=DEFAULT_TARIFF,
                   config=PlanningConfig(**planning), metrics=AggregatorMetrics(), replica_id="r0",  # type: ignore[arg-type]
                   elector=elector)


async def test_a_plan_made_mid_slot_is_valid_for_its_lease_from_then() -> None:
    store = MemoryStore()
    clock = ManualClock(MADE)
    elector = LeaderElector(store, "r0", 30.0, AggregatorMetrics())
    await elector.try_acquire()
    planner = _planner(store, elector, clock, optimiser="tou", slot_s=900, lease_s=300)
    await store.upsert_house("h1", HELLO, MADE)
    await store.put_flexibility("h1", FLEX)
    assert await planner.cycle() == 1
    plan = await store.get_plan("h1")
    assert plan is not None
    assert plan.valid_from == datetime(2026, 6, 1, 7, 0, tzinfo=UTC)  # the slot it starts in
    assert plan.created_at == MADE
    assert plan.valid_until == MADE + timedelta(seconds=300)  # before: 07:05:00, expired when made


async def test_a_new_leader_plans_at_once() -> None:
    ticks = _Clock()
    store = MemoryStore(time_fn=ticks)
    elector = LeaderElector(store, "r0", 10.0, AggregatorMetrics())
    planner = _planner(store, elector, ManualClock(MADE), optimiser="tou")
    elector.on_lead.append(planner.request_fleet)
    assert await store.acquire_lease("dispatch", "r1", 10.0) is not None
    await elector.try_acquire()
    assert not elector.is_leader and not planner.schedule.fleet_pending
    ticks.now += 10.0  # r1's lease ran out
    await elector.try_acquire()
    assert elector.is_leader and planner.schedule.fleet_pending
    planner.schedule.fleet_pending = False
    await elector.try_acquire()  # a renewal is no new leadership
    assert not planner.schedule.fleet_pending
