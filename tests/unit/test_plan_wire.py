"""Plans whose slots were encoded in the solver process go on the wire exactly as plans
encoded slot by slot on the event loop; a cache that does not fit the slots is ignored."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np

from aggregator.dispatch.plans import LazyPlans, PackedPlans
from aggregator.service.convert import packed_slots_wire, plan_to_proto
from aggregator.store.codec import PLAN

T0 = datetime(2026, 6, 1, 10, 15, tzinfo=UTC)


def packed(n: int = 4, t: int = 96) -> PackedPlans:
    rng = np.random.default_rng(3)
    tgt = rng.uniform(-3000, 3000, (n, t)).round(1)
    return PackedPlans(
        house_ids=tuple(f"h{i}" for i in range(n)), battery_ids=("battery",) * n,
        plan_ids=tuple(f"p{i}" for i in range(n)), start=T0, slot_s=900, version=7, created_at=T0,
        valid_for=timedelta(hours=24), target_w=tgt, env_lo_w=tgt - 500.5, env_hi_w=tgt + 250.25,
        grid_lo_w=tgt - 4000, grid_hi_w=tgt + 4000, reason_codes=rng.integers(0, 3, (n, t)),
        reasons=("self-consumption", "charge: cheap import", "feeder export limit binds (-12.3 kW)"))


def test_encoded_slots_give_the_same_message_as_slot_by_slot() -> None:
    pk = packed()
    fast = LazyPlans([pk], {}, pk.house_ids).with_wire(packed_slots_wire)
    slow = LazyPlans([pk], {}, pk.house_ids)
    for h in pk.house_ids:
        a, b = fast[h], slow[h]
        assert a.wire_slots is not None and b.wire_slots is None
        assert a == b  # the cache is not part of the plan
        # as the planner stamps each plan before sending it
        a = replace(a, plan_id="x", version=9, created_at=T0 + timedelta(seconds=1.5), fallback_max_export_w=4600)
        b = replace(b, plan_id="x", version=9, created_at=T0 + timedelta(seconds=1.5), fallback_max_export_w=4600)
        assert plan_to_proto(a) == plan_to_proto(b)
        assert plan_to_proto(a).SerializeToString(deterministic=True) == \
            plan_to_proto(b).SerializeToString(deterministic=True)


def test_a_cache_that_does_not_fit_the_slots_is_not_used() -> None:
    pk = packed()
    plans = LazyPlans([pk], {}, pk.house_ids).with_wire(packed_slots_wire)
    a = plans["h0"]
    shorter = replace(a, slots=a.slots[4:])  # e.g. a plan shifted by an hour, cache carried along
    assert plan_to_proto(shorter) == plan_to_proto(replace(shorter, wire_slots=None))


def test_the_cache_is_neither_stored_nor_lost_on_the_way_from_the_solver_process() -> None:
    pk = packed()
    plans = pickle.loads(pickle.dumps(LazyPlans([pk], {}, pk.house_ids).with_wire(packed_slots_wire)))
    a = plans["h2"]
    assert a.wire_slots is not None
    stored = PLAN.encode(a)
    assert "wire_slots" not in stored
    assert PLAN.decode(stored) == a and PLAN.decode(stored).wire_slots is None
