"""Issue 19 acceptance, plan side: arbitrary plans and grid signals from the aggregator (any
float: NaN, inf, huge, negative; overlapping, missing or misplaced slots; unknown resources;
empty ids) reach the real agent as protobuf messages, decoded as the uplink client decodes
them, between control steps on arbitrary house readings.  Properties:

* the device never receives a write outside the house's envelope: finite, within the
  battery's nameplate, no discharge at or below the SoC reserve, no charge at or above the
  SoC maximum, no charge that takes the import over the site limit, no discharge that takes
  the export over the site cap; PV limits finite and >= 0 (or lifted);
* every plan gets exactly one PlanStatus; one the agent does not adopt is REJECTED with a
  non-empty reason naming the plan as sent; one it adopts passes an independent check
  (battery values finite and within the nameplate, battery only, grid envelopes and the
  fallback cap not NaN (an infinite one is no bound), slots covering the lease);
* a grid signal is stored only if every limit is a limit (>= 0, not NaN; a feeder envelope's
  import limit may be below 0, "export at least", finite and within its export limit) and every
  price finite; the limits in force are never NaN, looser than the configured ones, or an import
  limit below 0 past the export limit in force.
"""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta

from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edge_agent.energy_manager.plan_check import NAMEPLATE_TOLERANCE, NAMEPLATE_TOLERANCE_W
from edge_agent.uplink import convert
from tests.unit.test_plan_input_safety import (
    MAX_CHARGE_W,
    MAX_DISCHARGE_W,
    MAX_EXPORT_W,
    MAX_IMPORT_W,
    MAX_SOC_PCT,
    RESERVE_PCT,
    T0,
    make_agent,
    snapshot,
    statuses,
)
from vpp.v1 import grid_pb2, plan_pb2
from vpp_common.clock import ManualClock
from vpp_common.messages import DispatchPlan, GridSignal, PlanState, PriceSlot, SiteLimits

TOL_W = 1e-6
SPECIAL = st.sampled_from([math.nan, -math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0, -0.0, 5e-324])


def numbers(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Mostly plausible values (so that plans get adopted and followed), else anything."""
    return st.one_of(st.floats(lo, hi), st.floats(lo, hi), st.floats(), SPECIAL)


powers = numbers(-7_000, 7_000)
limits = numbers(0, 20_000)


def _any_float(draw: st.DrawFn) -> float:
    return draw(st.one_of(st.floats(), SPECIAL, st.floats(-20_000, 20_000)))


def _setpoint_values(draw: st.DrawFn) -> tuple[float, float, float]:
    """A target and envelope as the aggregator makes them: fixed, or around the target, within the nameplate."""
    target = draw(st.floats(-MAX_DISCHARGE_W, MAX_CHARGE_W))
    if draw(st.booleans()):
        return target, target, target
    return target, draw(st.floats(-MAX_DISCHARGE_W, target)), draw(st.floats(target, MAX_CHARGE_W))


MUTATIONS = ("target", "env_min", "env_max", "swap_env", "grid_min", "grid_max", "swap_grid", "overlap", "gap",
             "drop_last", "misplace", "resource", "duplicate", "fallback", "plan_id", "version", "slot_duration",
             "lease")


@st.composite
def plan_msgs(draw: st.DrawFn) -> plan_pb2.DispatchPlan:
    """A plan as the aggregator makes it, then none, one or a few things broken in it."""
    slot_s = draw(st.sampled_from([900, 300]))
    n = draw(st.integers(1, 4))
    valid_from = T0 + timedelta(seconds=draw(st.integers(-slot_s, 600)))
    msg = plan_pb2.DispatchPlan(plan_id=draw(st.sampled_from(["p1", "p2"])), version=draw(st.integers(1, 4)))
    msg.created_at.FromDatetime(T0)
    msg.valid_from.FromDatetime(valid_from)
    msg.valid_until.FromDatetime(valid_from + timedelta(seconds=n * slot_s))
    msg.slot_duration.FromTimedelta(timedelta(seconds=slot_s))
    for i in range(n):
        slot = msg.slots.add(reason="r")
        slot.start.FromDatetime(valid_from + timedelta(seconds=i * slot_s))
        if draw(st.integers(0, 4)):
            target, lo, hi = _setpoint_values(draw)
            slot.setpoints.add(resource_id="battery", target_power_w=target,
                               envelope=plan_pb2.PowerEnvelope(min_w=lo, max_w=hi))
        if draw(st.booleans()):
            slot.grid_envelope.CopyFrom(plan_pb2.PowerEnvelope(min_w=-draw(st.floats(0, 20_000)),
                                                               max_w=draw(st.floats(0, 20_000))))
    msg.fallback.mode = draw(st.sampled_from([0, 1, 2]))
    msg.fallback.max_export_w = draw(st.sampled_from([0.0, 0.0, 3_000.0]))
    for what in draw(st.lists(st.sampled_from(MUTATIONS), max_size=3)):
        i = draw(st.integers(0, len(msg.slots) - 1)) if msg.slots else None
        slot = msg.slots[i] if i is not None else None
        sp = slot.setpoints[0] if slot is not None and slot.setpoints else None
        if what == "target" and sp is not None:
            sp.target_power_w = _any_float(draw)
        elif what == "env_min" and sp is not None:
            sp.envelope.min_w = _any_float(draw)
        elif what == "env_max" and sp is not None:
            sp.envelope.max_w = _any_float(draw)
        elif what == "swap_env" and sp is not None:
            sp.envelope.min_w, sp.envelope.max_w = sp.envelope.max_w, sp.envelope.min_w
        elif what == "grid_min" and slot is not None:
            slot.grid_envelope.min_w = _any_float(draw)
        elif what == "grid_max" and slot is not None:
            slot.grid_envelope.max_w = _any_float(draw)
        elif what == "swap_grid" and slot is not None and slot.HasField("grid_envelope"):
            slot.grid_envelope.min_w, slot.grid_envelope.max_w = slot.grid_envelope.max_w, slot.grid_envelope.min_w
        elif what == "overlap" and i:
            slot.start.CopyFrom(msg.slots[i - 1].start)  # type: ignore[union-attr]
        elif what == "gap" and i is not None and len(msg.slots) > 1:
            del msg.slots[i]
        elif what == "drop_last" and msg.slots:
            del msg.slots[-1]
        elif what == "misplace" and slot is not None:
            slot.start.FromDatetime(T0 + timedelta(seconds=draw(st.integers(-7_200, 7_200))))
        elif what == "resource" and slot is not None:
            target, lo, hi = _setpoint_values(draw)
            slot.setpoints.add(resource_id=draw(st.sampled_from(["pv", "grid_meter", "battery-2", ""])),
                               target_power_w=target, envelope=plan_pb2.PowerEnvelope(min_w=lo, max_w=hi))
        elif what == "duplicate" and sp is not None:
            slot.setpoints.add().CopyFrom(sp)  # type: ignore[union-attr]
        elif what == "fallback":
            msg.fallback.max_export_w = _any_float(draw)
        elif what == "plan_id":
            msg.plan_id = ""
        elif what == "version":
            msg.version = 0
        elif what == "slot_duration":
            msg.slot_duration.FromTimedelta(timedelta(seconds=draw(st.sampled_from([0, -900, 1, 1_800]))))
        elif what == "lease":
            msg.valid_until.FromDatetime(valid_from + timedelta(seconds=draw(st.integers(-3_600, 7_200))))
    return msg


@st.composite
def signal_msgs(draw: st.DrawFn) -> grid_pb2.GridSignal:
    msg = grid_pb2.GridSignal(currency="EUR")
    msg.issued_at.FromDatetime(T0)
    if draw(st.booleans()):
        msg.limits.CopyFrom(grid_pb2.SiteLimits(max_import_w=draw(st.one_of(limits, powers)),
                                                max_export_w=draw(st.one_of(limits, powers))))
        msg.limits_valid_until.FromDatetime(T0 + timedelta(seconds=draw(st.integers(-600, 7_200))))
        msg.limits_are_feeder_envelope = draw(st.booleans())
    for i in range(draw(st.integers(0, 2))):
        p = msg.prices.add(import_price_per_kwh=draw(numbers(-1, 1)), export_price_per_kwh=draw(numbers(-1, 1)))
        p.start.FromDatetime(T0 + timedelta(seconds=900 * i))
        p.duration.FromTimedelta(timedelta(seconds=900))
    return msg


readings = st.tuples(numbers(-15_000, 15_000), numbers(-8_000, 0), numbers(-5_000, 5_000),
                     st.one_of(st.floats(0, 100), st.sampled_from([0.0, RESERVE_PCT, MAX_SOC_PCT, 100.0, 300.0]),
                               SPECIAL))
actions = st.one_of(st.tuples(st.just("plan"), plan_msgs()), st.tuples(st.just("signal"), signal_msgs()),
                    st.tuples(st.just("reading"), readings), st.tuples(st.just("advance"), st.integers(1, 1_800)))


def plan_is_sound(plan: DispatchPlan) -> bool:
    """An independent statement of what an adopted plan must be."""
    hi = MAX_CHARGE_W * (1 + NAMEPLATE_TOLERANCE) + NAMEPLATE_TOLERANCE_W
    lo = -MAX_DISCHARGE_W * (1 + NAMEPLATE_TOLERANCE) - NAMEPLATE_TOLERANCE_W
    step = timedelta(seconds=plan.slot_duration_s)
    if not plan.plan_id or plan.version < 1 or plan.slot_duration_s <= 0 or not plan.slots:
        return False
    if plan.valid_from + len(plan.slots) * step < plan.valid_until:
        return False
    if not plan.fallback_max_export_w >= 0:  # False for NaN; +inf is no cap
        return False
    for i, slot in enumerate(plan.slots):
        if slot.start != plan.valid_from + i * step:
            return False
        for sp in slot.setpoints:
            values = (sp.target_power_w, sp.envelope.min_w, sp.envelope.max_w)
            if sp.resource_id != "battery" or not all(math.isfinite(v) and lo <= v <= hi for v in values):
                return False
            if not sp.envelope.min_w <= sp.envelope.max_w:
                return False
        g = slot.grid_envelope
        if g is not None and (math.isnan(g.min_w) or math.isnan(g.max_w) or not g.min_w <= g.max_w):
            return False
    return True


def signal_is_sound(signal: GridSignal) -> bool:
    lim = signal.limits
    # a feeder envelope may ask for export ("import at most -x", finite, within its export limit)
    least_import = (-lim.max_export_w if lim is not None and signal.limits_are_feeder_envelope
                    and lim.max_export_w >= 0 else 0.0)
    if lim is not None and not (lim.max_export_w >= 0 and lim.max_import_w >= least_import
                                and lim.max_import_w > -math.inf):  # False for NaN
        return False
    return all(math.isfinite(p.import_price_per_kwh) and math.isfinite(p.export_price_per_kwh) for p in signal.prices)


def _raw_signal(msg: grid_pb2.GridSignal) -> GridSignal:
    """The signal as sent, without the agent's checks (for the oracle)."""
    lim = SiteLimits(msg.limits.max_import_w, msg.limits.max_export_w) if msg.HasField("limits") else None
    return GridSignal(T0, prices=tuple(PriceSlot(T0, 900, p.import_price_per_kwh, p.export_price_per_kwh)
                                       for p in msg.prices), limits=lim,
                      limits_are_feeder_envelope=msg.limits_are_feeder_envelope)


async def run(steps: list[tuple[str, object]]) -> None:
    clock = ManualClock(T0)
    agent, device, sent = make_agent(clock)
    agent.snapshot = snapshot(T0, 500.0, -2_000.0, 50.0, 0.0)
    for kind, arg in steps:
        if kind == "plan":
            assert isinstance(arg, plan_pb2.DispatchPlan)
            before = len(statuses(sent))
            try:
                plan: DispatchPlan | Exception = convert.plan_from_proto(arg)
            except convert.InvalidPlan as exc:
                plan = exc
            agent._on_plan(plan)
            new = statuses(sent)[before:]
            assert len(new) == 1, new  # every plan is answered, once
            status = new[0]
            assert status.plan_id == arg.plan_id and status.version == arg.version
            event(f"plan {status.state.value}")
            if status.state is PlanState.ACCEPTED:
                assert isinstance(plan, DispatchPlan) and plan_is_sound(plan), plan
                assert agent.plans.current is not None and agent.plans.current.plan_id == arg.plan_id
            else:
                assert status.state is PlanState.REJECTED and status.reason, status
        elif kind == "signal":
            assert isinstance(arg, grid_pb2.GridSignal)
            held = agent.intake.grid_signal
            try:
                signal: GridSignal | Exception = convert.grid_signal_from_proto(arg)
            except convert.InvalidGridSignal as exc:
                signal = exc
            agent.intake.on_grid_signal(signal)
            event(f"signal {'refused' if isinstance(signal, Exception) else 'stored'}")
            if signal_is_sound(_raw_signal(arg)):
                assert agent.intake.grid_signal is signal
            else:
                assert agent.intake.grid_signal is held  # refused: the one in force stays
        elif kind == "reading":
            grid_w, pv_w, battery_w, soc = arg  # type: ignore[misc]
            agent.snapshot = snapshot(clock.now(), grid_w, pv_w, soc, battery_w)
        else:
            clock.advance(float(arg))  # type: ignore[arg-type]
            snap = agent.snapshot
            assert snap is not None
            agent.snapshot = snapshot(clock.now(), snap.telemetry.grid_power_w.value or 0.0,
                                      snap.telemetry.pv_power_w.value or 0.0,
                                      snap.telemetry.battery_soc_pct.value or 0.0,
                                      snap.telemetry.battery_power_w.value or 0.0)
        lim = agent.intake.effective_limits(clock.now())
        # below 0 on import only as a feeder envelope's "export at least", within the export limit
        assert -lim.max_export_w <= lim.max_import_w <= MAX_IMPORT_W and 0 <= lim.max_export_w <= MAX_EXPORT_W, lim
        writes = len(device.battery)
        await agent.control_once()
        for w in device.battery[writes:]:
            event("write " + ("idle" if w == 0 else "charge" if w > 0 else "discharge"))
            assert_within_house_envelope(w, agent)
        for limit in device.pv_limits:
            assert limit is None or (math.isfinite(limit) and limit >= 0), limit


def assert_within_house_envelope(w: float, agent: object) -> None:
    assert math.isfinite(w) and -MAX_DISCHARGE_W <= w <= MAX_CHARGE_W, w
    snap = agent.snapshot  # type: ignore[attr-defined]
    t = snap.telemetry
    grid, bat, soc = t.grid_power_w.value, t.battery_power_w.value, t.battery_soc_pct.value
    if not all(math.isfinite(v) for v in (grid, bat, soc)):
        assert w == 0.0, w  # nothing to base a setpoint on: idle
        return
    base = grid - bat
    if not math.isfinite(base):
        assert w == 0.0, w
        return
    if soc <= RESERVE_PCT:
        assert w >= 0.0, (w, soc)
    if soc >= MAX_SOC_PCT:
        assert w <= 0.0, (w, soc)
    if w > 0:
        assert base + w <= MAX_IMPORT_W + TOL_W, (w, base)
    if w < 0:
        assert base + w >= -MAX_EXPORT_W - TOL_W, (w, base)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(actions, min_size=1, max_size=6))
def test_no_plan_or_grid_signal_takes_the_house_outside_its_envelope(steps: list[tuple[str, object]]) -> None:
    asyncio.run(run(steps))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_decoding_anything_raises_only_the_refusal(data: bytes, as_plan: bool) -> None:
    """Whatever the wire holds (timestamps out of range, negative durations, any bytes that
    parse), decoding gives a checked message or the refusal the client hands to the agent,
    never another exception (which would end the stream)."""
    msg = plan_pb2.DispatchPlan() if as_plan else grid_pb2.GridSignal()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        return
    try:
        if isinstance(msg, plan_pb2.DispatchPlan):
            convert.plan_from_proto(msg)
        else:
            convert.grid_signal_from_proto(msg)
    except (convert.InvalidPlan, convert.InvalidGridSignal):
        pass


@settings(max_examples=100, deadline=None)
@given(plan_msgs(), st.integers(-2**62, 2**62), st.integers(-2**31, 2**31 - 1))
def test_decoding_timestamps_out_of_range_is_a_refusal(msg: plan_pb2.DispatchPlan, seconds: int, nanos: int) -> None:
    target = msg.slots[0].start if msg.slots else msg.valid_until
    target.seconds, target.nanos = seconds, nanos
    try:
        convert.plan_from_proto(msg)
    except convert.InvalidPlan as exc:
        assert exc.plan_id == msg.plan_id and exc.version == msg.version
