"""The service's plan encoder: a cycle's plans whose slots were encoded ahead, in an encoder
process, go on the wire exactly as plans encoded where they are written; slots encoded ahead
that do not fit the plan are not used."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from aggregator.dispatch.plans import LazyPlans, PackedPlans
from aggregator.service import plan_encoder
from aggregator.service.convert import packed_slots_to_wire, plan_to_proto, slots_to_wire
from aggregator.service.plan_encoder import PlanEncoder, encode_packs_job

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


def stamped(plan):  # type: ignore[no-untyped-def]
    """As the planner stamps each solved plan before sending it (its id stays)."""
    return replace(plan, version=9, created_at=T0 + timedelta(seconds=1.5), fallback_max_export_w=4600)


def test_slots_encoded_from_the_arrays_are_those_of_the_plan() -> None:
    pk = packed()
    plans = LazyPlans([pk], {}, pk.house_ids)
    encoded = packed_slots_to_wire(pk)
    assert encoded == {plans[h].plan_id: slots_to_wire(plans[h]) for h in pk.house_ids}


async def test_plans_encoded_ahead_in_a_process_give_the_same_message_as_encoded_in_place(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_encoder, "MIN_PLANS_AHEAD", 2)
    pk = packed()
    plans = LazyPlans([pk], {}, pk.house_ids)
    encoder = PlanEncoder(workers=2)
    try:
        await encoder.prepare(plans)
        assert sorted(encoder._ahead) == sorted(pk.plan_ids)
        for h in pk.house_ids:
            plan = stamped(plans[h])
            fast = encoder.to_proto(plan)
            assert fast == plan_to_proto(plan)
            assert fast.SerializeToString(deterministic=True) == plan_to_proto(plan).SerializeToString(deterministic=True)
        assert encoder._ahead == {}  # each used once, then let go
    finally:
        encoder.close()


def test_slots_encoded_ahead_that_do_not_fit_the_plan_are_not_used() -> None:
    pk = packed()
    plans = LazyPlans([pk], {}, pk.house_ids)
    encoder = PlanEncoder(workers=0)
    encoder._ahead = encode_packs_job([pk])  # as prepare() leaves them
    a = plans["h0"]
    shorter = replace(a, slots=a.slots[4:])  # e.g. a plan shifted by an hour under the same id
    assert encoder.to_proto(shorter) == plan_to_proto(shorter)
    b = plans["h1"]
    later = replace(b, slots=tuple(replace(s, start=s.start + timedelta(hours=1)) for s in b.slots))
    assert encoder.to_proto(later) == plan_to_proto(later)


async def test_a_small_cycle_is_encoded_where_it_is_written() -> None:
    pk = packed()
    encoder = PlanEncoder(workers=1)
    await encoder.prepare(LazyPlans([pk], {}, pk.house_ids))
    assert encoder._ahead == {} and encoder._pool is None  # no process started for 4 plans


async def test_a_dead_encoder_process_costs_one_cycle_its_head_start_not_the_cycle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    monkeypatch.setattr(plan_encoder, "MIN_PLANS_AHEAD", 2)
    pk = packed()
    plans = LazyPlans([pk], {}, pk.house_ids)
    encoder = PlanEncoder(workers=1)
    try:
        await encoder.prepare(plans)
        assert encoder._pool is not None
        for pid in list(encoder._pool._processes):  # type: ignore[union-attr]
            os.kill(pid, signal.SIGKILL)
        await encoder.prepare(plans)  # the pool is found broken: plans are encoded as they are sent
        assert encoder._ahead == {} and encoder._pool is None
        assert encoder.to_proto(stamped(plans["h0"])) == plan_to_proto(stamped(plans["h0"]))
        await encoder.prepare(plans)  # a new process
        assert sorted(encoder._ahead) == sorted(pk.plan_ids)
    finally:
        encoder.close()


async def test_a_plan_encoded_ahead_is_sent_as_the_bytes_of_the_same_response(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from vpp.v1 import fleet_service_pb2 as fs
    from vpp_common.messages import RunStart

    monkeypatch.setattr(plan_encoder, "MIN_PLANS_AHEAD", 2)
    pk = packed()
    plans = LazyPlans([pk], {}, pk.house_ids)
    encoder = PlanEncoder(workers=1)
    try:
        await encoder.prepare(plans)
        for seq, h in enumerate(pk.house_ids, start=3):
            plan = replace(stamped(plans[h]), run_starts=(RunStart("washer", T0 + timedelta(hours=2)),))
            sent = encoder.response(plan, seq)
            expected = fs.ConnectResponse(sequence=seq, dispatch_plan=plan_to_proto(plan))
            assert isinstance(sent, bytes)
            assert sent == expected.SerializeToString()
            assert fs.ConnectResponse.FromString(sent) == expected
        # not encoded ahead (or used already): a message, the same
        plan = stamped(plans["h0"])
        again = encoder.response(plan, 9)
        assert again == fs.ConnectResponse(sequence=9, dispatch_plan=plan_to_proto(plan))
    finally:
        encoder.close()


def test_slots_encoded_ahead_that_do_not_fit_the_plan_are_not_sent() -> None:
    from vpp.v1 import fleet_service_pb2 as fs

    pk = packed()
    plans = LazyPlans([pk], {}, pk.house_ids)
    encoder = PlanEncoder(workers=0)
    encoder._ahead = encode_packs_job([pk])
    encoder._shapes = {pid: (96, T0) for pid in pk.plan_ids}
    shorter = replace(plans["h0"], slots=plans["h0"].slots[4:])
    assert encoder.response(shorter, 5) == fs.ConnectResponse(sequence=5, dispatch_plan=plan_to_proto(shorter))


def test_slots_with_zeros_signed_zeros_and_non_finite_numbers_are_encoded_as_protobuf_does() -> None:
    """+0.0 is left out, -0.0, NaN and infinities kept, an envelope of zeros still present; long
    resource ids and reasons take longer length prefixes; an empty reason is left out."""
    pk = packed(n=3, t=8)
    pk = replace(pk, battery_ids=("battery", "b" * 200, "x"), reasons=("", "r" * 300, "charge"))
    for arr in (pk.target_w, pk.env_lo_w, pk.env_hi_w, pk.grid_lo_w, pk.grid_hi_w):
        arr[0, 0] = 0.0
        arr[1, 1] = -0.0
    pk.target_w[0, 2], pk.env_lo_w[0, 3], pk.grid_lo_w[1, 4] = 0.0, -0.0, float("-inf")
    pk.grid_hi_w[2, 5], pk.target_w[2, 6] = float("inf"), float("nan")
    pk.reason_codes[:, :] = [0, 1, 2, 0, 1, 2, 0, 1]
    plans = LazyPlans([pk], {}, pk.house_ids)
    encoded = packed_slots_to_wire(pk)
    for h in pk.house_ids:
        assert encoded[plans[h].plan_id] == slots_to_wire(plans[h]), h
