"""The fleet layer's pieces (issue 24): the cycle's pure functions, and the planner driving
the service's outbox with wire slots still encoded in the solver process."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from aggregator.config import AggregatorConfig
from aggregator.feeder_control import FeederEnvelope
from aggregator.fleet import cycle
from aggregator.fleet.schedule import next_aligned_epoch_s
from aggregator.fleet.signals import with_limits
from aggregator.server import AggregatorServer
from aggregator.service.sessions import ControlItem, PlanItem
from vpp_common.clock import ManualClock
from vpp_common.messages import (
    ControlType,
    DispatchPlan,
    FallbackMode,
    Flexibility,
    GridSignal,
    Hello,
    LimitOverride,
    ResourceInfo,
    ResourceKind,
    SiteLimits,
    StorageFlexibility,
)

T0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
BATTERY = StorageFlexibility("battery", 40, 0, 100, 10, 10_000, 5_000, 5_000)
HELLO = Hello("t", SiteLimits(11_000, 4_600), (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC,
                                                            5_000, 10_000),
                                               ResourceInfo("pv", ResourceKind.PV, ControlType.PEBC, 6_000, 0)))


def test_tied_slots_and_aligned_cycles() -> None:
    assert cycle.tied_slots(3600, 900) == 4
    assert cycle.tied_slots(1000, 900) == 2  # a cycle every 1000 s is followed into a second slot
    assert cycle.tied_slots(60, 900) == 1
    assert next_aligned_epoch_s(3600 * 5 + 20 * 60, 3600, 60) == 3600 * 6 + 60
    assert next_aligned_epoch_s(3600 * 5 + 60, 3600, 60) == 3600 * 6 + 60  # exactly on it: the next one


def test_overrides_and_envelopes_only_tighten() -> None:
    until = T0 + timedelta(hours=1)
    override = LimitOverride(SiteLimits(3_000, 6_000), until)
    assert cycle.tightened(SiteLimits(11_000, 4_600), override) == SiteLimits(3_000, 4_600)
    assert cycle.tightened(SiteLimits(11_000, 4_600), None) == SiteLimits(11_000, 4_600)
    base = GridSignal(issued_at=T0, currency="EUR", prices=())
    assert with_limits(base, None, None) is base
    env = FeederEnvelope(SiteLimits(5_000, 1_000), T0 + timedelta(minutes=5))
    both = with_limits(base, override, env)
    assert both.limits == SiteLimits(3_000, 1_000) and both.limits_valid_until == env.valid_until
    assert both.limits_are_feeder_envelope


def test_house_input_and_flexibility() -> None:
    from aggregator.store import HouseRecord

    house = HouseRecord("h1", HELLO, T0, T0)
    inp = cycle.house_input(house, Flexibility(T0, (BATTERY,)), LimitOverride(SiteLimits(3_000, 0), T0), "f1")
    assert inp.limits == SiteLimits(3_000, 0) and inp.pv_rated_w == 6_000 and inp.feeder_id == "f1"
    assert cycle.flexibility_w(BATTERY) == (5_000, 5_000)
    assert cycle.flexibility_w(replace(BATTERY, soc_pct=10)) == (5_000, 0.0)  # at reserve: nothing to shed


def test_a_solved_plan_gets_its_version_and_a_lease_no_longer_than_lease_s() -> None:
    plan = DispatchPlan(plan_id="p", version=0, created_at=T0, valid_from=T0, valid_until=T0 + timedelta(hours=24),
                        slot_duration_s=900, slots=(), fallback=FallbackMode.SELF_CONSUMPTION)
    out = cycle.leased(plan, version=7, created_at=T0, lease_s=3600, fallback_max_export_w=0.0)
    assert (out.plan_id, out.version, out.valid_until, out.fallback_max_export_w) == ("p", 7, T0 + timedelta(hours=1), 0.0)
    imp, exp = np.array([0.30, 0.20]), np.array([0.10, 0.0])
    assert cycle.terminal_value("mean_price", imp, exp) == pytest.approx(0.15)
    assert cycle.terminal_value(0.05, imp, exp) == 0.05


async def test_the_planner_hands_plans_to_the_service_outbox() -> None:
    """Constructor-injected outbox: the LP cycle's plan and the house's signal reach the house's
    session, the signal already encoded, the plan as the domain type (the stream encodes it)."""
    cfg = AggregatorConfig(listen="127.0.0.1:0", insecure=True, metrics_port=None, replica_id="r1")
    srv = AggregatorServer(cfg, clock=ManualClock(T0))
    try:
        await srv.store.upsert_house("h1", HELLO, T0)
        await srv.store.put_flexibility("h1", Flexibility(T0, (BATTERY,)))
        session = srv.sessions.open("h1")
        await srv.elector.try_acquire()
        assert await srv.planner.cycle() == 1
        await srv.planner.send_signal("h1")
        item = await session.outbox.get()
        assert isinstance(item, ControlItem) and item.message.WhichOneof("payload") == "grid_signal"
        item = await session.outbox.get()
        assert isinstance(item, PlanItem) and item.plan.version >= 1 and len(item.plan.slots) > 0
        assert item.plan.valid_until - item.plan.valid_from == timedelta(seconds=cfg.planning.lease_s)
    finally:
        srv.planner.close()
        await srv.elector.resign()
        await srv.store.close()
