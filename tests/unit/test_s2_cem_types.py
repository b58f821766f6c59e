"""The S2 CEM's PPBC, OMBC and PEBC parts, pure: the cheapest allowed start of a run, the
schedule of a PPBC profile (the aggregator's start, moves, refusals), what the session takes
from each control type, OMBC modes within the site limits and the RM's timers, PEBC envelopes
keeping the export cap, and the RMs' flexibility as the aggregator decodes it."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from dataclasses import replace
from typing import Any

import pytest
from s2python.common import NumberRange, PowerRange, RevokeObject, Timer, Transition
from s2python.ombc import OMBCOperationMode, OMBCStatus, OMBCSystemDescription, OMBCTimerStatus
from s2python.pebc import PEBCAllowedLimitRange, PEBCPowerConstraints

from aggregator.service import convert as agg
from edge_agent.energy_manager.cheapest_start import Step, cheapest_start, coarse
from edge_agent.s2_cem import flexibility, ombc, pebc, ppbc, take
from edge_agent.s2_cem.state import InstructionRecord, Reading, RmSnapshot
from edge_agent.s2_cem.wire import Refused, parse_frame
from edge_agent.uplink import convert as edge
from tests.e2e import s2_washer
from vpp_common.clock import UTC
from vpp_common.messages import (
    DispatchPlan,
    Envelope,
    Flexibility,
    PlanSlot,
    PowerForecast,
    PriceSlot,
    RunStart,
    RunState,
    Setpoint,
    SiteLimits,
)

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
H = dt.timedelta(hours=1)
LIMITS = SiteLimits(11_000, 4_600)
RID = str(uuid.uuid4())
POWER = s2_washer.POWER


def prices(cheap_from_h: float, cheap_h: float = 2, hours: int = 12) -> tuple[PriceSlot, ...]:
    cheap = NOW + dt.timedelta(hours=cheap_from_h)
    out = []
    for k in range(hours * 4):
        t = NOW + dt.timedelta(minutes=15 * k)
        out.append(PriceSlot(t, 900, 0.10 if cheap <= t < cheap + dt.timedelta(hours=cheap_h) else 0.30, 0.05))
    return tuple(out)


RUN = (Step(1800, 2000, 2000, 2000), Step(3600, 300, 300, 300))


def test_the_cheapest_allowed_start_and_its_ties() -> None:
    s = cheapest_start(RUN, NOW, NOW + 6 * H, prices(3), LIMITS)
    assert s is not None and s.at == NOW + 3 * H and s.cost == pytest.approx(1.3 * 0.10)
    assert "cheapest" in s.reason
    flat = cheapest_start(RUN, NOW, NOW + 6 * H, prices(100), LIMITS)
    assert flat is not None and flat.at == NOW  # a tie: the earliest
    assert cheapest_start(RUN, NOW, NOW - H, prices(3), LIMITS) is None  # the window has passed
    assert cheapest_start((), NOW, NOW + H, prices(3), LIMITS) is None


def test_a_start_that_would_pass_the_import_limit_is_not_allowed() -> None:
    # the house is expected to draw 10 kW from 3 h to 5 h: 2 kW of heating would pass the 11 kW fuse
    values = tuple(10_000.0 if 12 <= k < 20 else 500.0 for k in range(48))
    busy = PowerForecast(NOW, 900, values)
    s = cheapest_start(RUN, NOW, NOW + 6 * H, prices(3), LIMITS, busy)
    # heating (2 kW) must end before the busy hours; washing (300 W) fits beside them, in the cheap window
    assert s is not None and s.at == NOW + 2.5 * H and s.cost == pytest.approx(1.0 * 0.30 + 0.3 * 0.10)
    assert cheapest_start(RUN, NOW, NOW + 6 * H, prices(3), SiteLimits(1_500, 0)) is None  # never fits the fuse
    # no forecast: the present reading stands for the house
    assert cheapest_start(RUN, NOW, NOW + 6 * H, prices(3), LIMITS, None, 9_500) is None


def test_prices_the_run_cannot_use_are_not_counted() -> None:
    hostile = tuple(replace(p, import_price_per_kwh=math.nan) if p.start >= NOW + 3 * H else p for p in prices(3))
    s = cheapest_start(RUN, NOW, NOW + 6 * H, hostile, LIMITS)
    assert s is not None and s.at == NOW and s.cost is not None  # NaN prices dropped: covered starts only
    s = cheapest_start(RUN, NOW, NOW + 6 * H, (), LIMITS)
    assert s is not None and s.at == NOW and s.cost is None and "no prices" in s.reason


def test_coarse_keeps_energy_and_extremes() -> None:
    steps = coarse([(60.0, float(w)) for w in range(300)], 96)
    assert len(steps) <= 96
    assert sum(s.duration_s * s.power_w for s in steps) == pytest.approx(sum(60.0 * w for w in range(300)))
    assert max(s.peak_w for s in steps) == 299 and min(s.trough_w for s in steps) == 0


def washer(**kw: Any) -> RmSnapshot:
    base: dict[str, Any] = dict(name="w", session=1, connected=True, phase="active", connected_at=NOW,
                                last_message_at=NOW, resource_id=RID, control_type=ppbc.PPBC,
                                profile=s2_washer.profile((1800, 3600, 900), 8, NOW))
    return RmSnapshot(**{**base, **kw})


def plan_with(start: dt.datetime | None) -> DispatchPlan:
    return DispatchPlan("p", 1, NOW, NOW, NOW + H, 3600, (PlanSlot(NOW, ()),),
                        run_starts=() if start is None else (RunStart(RID, start),))


def schedule(snap: RmSnapshot, plan: DispatchPlan | None = None, limits: SiteLimits = LIMITS,
             at: dt.datetime = NOW, grid_w: float = 0.0) -> ppbc.Schedule | None:
    return ppbc.decide_schedule(replace(snap, last_message_at=at), at, plan, prices(3), limits, None, grid_w, 60)


def sent(s: ppbc.Schedule, status: str = "ACCEPTED") -> RmSnapshot:
    snap = washer()
    for i, (c, q, at) in enumerate(s.items):
        snap = snap.with_instruction(InstructionRecord(f"i{i}", f"m{i}", c, q, 0, 0, NOW, status, kind=ppbc.SCHEDULE,
                                                       execution_time=at, profile_id=s.profile_id))
    return snap


def test_a_profile_is_scheduled_container_after_container_in_the_cheapest_window() -> None:
    s = schedule(washer())
    assert s is not None and s.start == NOW + 3 * H and not s.revoke
    assert [(c, q) for c, q, _ in s.items] == [(str(s2_washer.WASH), str(s2_washer.WASH_SEQ)),
                                               (str(s2_washer.SPIN), str(s2_washer.SPIN_SEQ))]
    assert [at for _, _, at in s.items] == [NOW + 3 * H, NOW + 3 * H + dt.timedelta(minutes=90)]
    assert s.power_w == 2000
    assert schedule(sent(s)) is None  # scheduled: not asked again
    assert schedule(sent(s, "REJECTED")) is None  # the device is in charge: not asked again either
    assert schedule(washer(), limits=SiteLimits(1_000, 4_600)) is None  # 2 kW never fits a 1 kW fuse
    assert schedule(washer(connected=False)) is None
    assert schedule(washer(profile_status=((str(s2_washer.WASH), "EXECUTING"),))) is None  # it runs already


def test_the_aggregators_start_wins_and_moves_a_scheduled_run() -> None:
    s = schedule(washer(), plan_with(NOW + H))
    assert s is not None and s.start == NOW + H and s.reason == "the aggregator's run start"
    first = schedule(washer())
    assert first is not None
    moved = schedule(sent(first), plan_with(NOW + 2 * H))
    assert moved is not None and moved.start == NOW + 2 * H and moved.revoke == ("i0", "i1")
    assert schedule(sent(first), plan_with(NOW + 3 * H + dt.timedelta(seconds=30))) is None  # close enough
    # a start the run's window does not allow (it would end after end_time): the cheapest instead
    late = schedule(washer(), plan_with(NOW + 7 * H))
    assert late is not None and late.start == NOW + 3 * H
    # its start has come: the RM may be starting it; not moved any more
    assert schedule(sent(first), plan_with(NOW + 4 * H), at=NOW + 3 * H + dt.timedelta(seconds=1)) is None


def test_a_start_about_to_come_while_the_fuse_is_full_is_moved_later() -> None:
    first = schedule(washer())
    assert first is not None
    soon = NOW + 3 * H - dt.timedelta(seconds=60)
    assert schedule(sent(first), at=soon, grid_w=8_000) is None  # 3 kW of room for 2 kW: it starts
    # 1 kW of room: not now; with a forecast of room later it moves there, without one (the
    # present reading is all it knows) it is un-scheduled until the reading leaves room
    later = PowerForecast(NOW, 900, tuple(10_000.0 if k < 13 else 1_000.0 for k in range(48)))
    moved = ppbc.decide_schedule(replace(sent(first), last_message_at=soon), soon, None, prices(3), LIMITS, later,
                                 10_000, 60)
    assert moved is not None and moved.revoke == ("i0", "i1") and moved.start >= NOW + 3.25 * H
    assert moved.reason.startswith("the import limit leaves no room")
    held = schedule(sent(first), at=soon, grid_w=10_000)
    assert held is not None and held.revoke == ("i0", "i1") and held.items == ()
    revoked = sent(first, "REVOKED")
    assert schedule(revoked, at=soon, grid_w=10_000) is None  # still no room: nothing asked
    again = schedule(revoked, at=soon + dt.timedelta(minutes=5), grid_w=2_000)
    assert again is not None and again.items and not again.revoke  # room again: scheduled again
    # nor at the aggregator's start, if it is now
    agg = schedule(washer(), plan_with(NOW), grid_w=10_000)
    assert agg is None or agg.reason != "the aggregator's run start"


def test_the_run_goes_to_the_fleet_as_the_aggregator_decodes_it() -> None:
    s = schedule(washer())
    assert s is not None
    snap = sent(s)
    (run,) = flexibility.loads([snap], NOW, 60)[1]
    assert run.state is RunState.SCHEDULED and run.start == NOW + 3 * H
    running = replace(snap, profile_status=((str(s2_washer.WASH), "EXECUTING"),), run_started_at=NOW + 3 * H)
    assert ppbc.run_state(running, str(s2_washer.PROFILE)) == (RunState.RUNNING, NOW + 3 * H)
    done = replace(running, profile_status=((str(s2_washer.WASH), "FINISHED"), (str(s2_washer.SPIN), "FINISHED")))
    assert ppbc.run_state(done, str(s2_washer.PROFILE))[0] is RunState.DONE
    back = agg.flexibility_from_proto(edge.flexibility_to_proto(Flexibility(NOW, shiftable_runs=(run,))))
    assert back.shiftable_runs == (run,)
    assert [p.power_w for p in run.profile] == [2000, 300, 500]
    # stale or gone: left out, never 0 W
    assert flexibility.loads([snap], NOW + dt.timedelta(seconds=61), 60) == ((), ())
    assert flexibility.loads([replace(snap, connected=False)], NOW, 60) == ((), ())


def ppbc_profile_json(**change: Any) -> str:
    d = json.loads(s2_washer.profile((1800, 3600, 900), 8, NOW).to_json())
    d.update(change)
    return json.dumps(d)


def test_hostile_profiles_are_refused_where_they_enter() -> None:
    value = json.loads(ppbc_profile_json())
    value["power_sequences_containers"][0]["power_sequences"][0]["elements"][0]["power_values"][0][
        "value_expected"] = 1e300
    refused = parse_frame(json.dumps(value))
    assert isinstance(refused, Refused) and refused.status.value == "INVALID_CONTENT"
    nan = parse_frame(json.dumps(value).replace("1e+300", "NaN"))
    assert isinstance(nan, Refused) and nan.status.value == "INVALID_MESSAGE" and "NaN" in nan.diagnostic
    value["power_sequences_containers"][0]["power_sequences"][0]["elements"][0]["duration"] = -5
    assert isinstance(parse_frame(json.dumps(value)), Refused)
    for change, why in (({"end_time": (NOW + 9 * 24 * H).isoformat()}, "within 7 days"),
                        ({"end_time": (NOW + H).isoformat()}, "does not fit"),
                        ({"end_time": (NOW - H).isoformat()}, "after start_time")):
        msg = parse_frame(ppbc_profile_json(**change))
        assert not isinstance(msg, Refused)
        _, problem = take.take(washer(profile=None), msg, NOW)
        assert problem is not None and why in problem


def test_ppbc_statuses_must_name_the_profile_and_revoking_it_stops_the_schedule() -> None:
    status = parse_frame(json.dumps({"message_type": "PPBC.PowerProfileStatus", "message_id": str(uuid.uuid4()),
                                     "sequence_container_status": [{
                                         "power_profile_id": str(s2_washer.PROFILE),
                                         "sequence_container_id": str(uuid.uuid4()), "status": "EXECUTING"}]}))
    assert not isinstance(status, Refused)
    _, problem = take.take(washer(), status, NOW)
    assert problem is not None and "not in the present" in problem
    gone = take.revoke(washer(), RevokeObject(message_id=uuid.uuid4(), object_type="PPBC.PowerProfileDefinition",
                                              object_id=s2_washer.PROFILE))
    assert gone is not None and gone.profile is None and schedule(gone) is None
    assert take.revoke(washer(), RevokeObject(message_id=uuid.uuid4(), object_type="PPBC.PowerProfileDefinition",
                                              object_id=uuid.uuid4())) is None


OFF, LOW, HIGH, TIMER = (uuid.uuid4() for _ in range(4))


def heat_pump(timers: bool = True) -> OMBCSystemDescription:
    def mode(mid: uuid.UUID, w: float) -> OMBCOperationMode:
        return OMBCOperationMode(id=mid, power_ranges=[PowerRange(start_of_range=w, end_of_range=w,
                                                                  commodity_quantity=POWER)],
                                 abnormal_condition_only=False)

    def tr(a: uuid.UUID, b: uuid.UUID, blocking: list[uuid.UUID]) -> Transition:
        return Transition(id=uuid.uuid4(), from_=a, to=b, start_timers=[], blocking_timers=blocking,
                          abnormal_condition_only=False)

    block = [TIMER] if timers else []
    return OMBCSystemDescription(
        message_id=uuid.uuid4(), valid_from=NOW, operation_modes=[mode(OFF, 0), mode(LOW, 1500), mode(HIGH, 3000)],
        transitions=[tr(HIGH, LOW, block), tr(HIGH, OFF, block), tr(LOW, OFF, []), tr(LOW, HIGH, []),
                     tr(OFF, LOW, block), tr(OFF, HIGH, block)],
        timers=[Timer(id=TIMER, diagnostic_label="compressor", duration=600_000)])


def pump(mode: uuid.UUID, power_w: float, **kw: Any) -> RmSnapshot:
    base: dict[str, Any] = dict(name="hp", session=1, connected=True, phase="active", connected_at=NOW,
                                last_message_at=NOW, resource_id=RID, control_type=ombc.OMBC,
                                ombc_description=heat_pump(), power_w=Reading(power_w, NOW))
    snap = RmSnapshot(**{**base, **kw})
    return take.take(snap, OMBCStatus(message_id=uuid.uuid4(), active_operation_mode_id=str(mode),
                                      operation_mode_factor=0.0), NOW)[0]


def decide_mode(snap: RmSnapshot, grid_w: float, plan: DispatchPlan | None = None) -> Any:
    return ombc.decide_mode(snap, NOW, plan, grid_w, LIMITS, 60, 100)


def test_ombc_pauses_when_the_import_limit_binds_and_resumes_when_it_leaves_room() -> None:
    assert decide_mode(pump(HIGH, 3000), 8_000) is None  # within the fuse, no plan: left to itself
    target, restore = decide_mode(pump(HIGH, 3000), 12_500)  # 1.5 kW past the fuse: LOW is within
    assert target.operation_mode_id == str(LOW) and target.reason == "site limit" and restore == 3000
    finished = replace(pump(HIGH, 3000), timers=((str(TIMER), NOW - H),))
    assert decide_mode(finished, 12_500)[0].operation_mode_id == str(LOW)
    # the RM's timer blocks leaving HIGH: it is not asked to (no instruction it may not follow)
    blocked = replace(pump(HIGH, 3000), timers=((str(TIMER), NOW + H),))
    assert decide_mode(blocked, 12_500) is None
    paused = pump(OFF, 0).with_instruction(InstructionRecord("i", "m", "", str(OFF), 0, 0, NOW, "SUCCEEDED",
                                                             kind="OMBC.Instruction", reason="site limit",
                                                             restore_w=3000))
    assert decide_mode(paused, 9_000) is None  # 3 kW would pass the fuse again: still paused
    back, restore = decide_mode(paused, 4_000)
    assert back.operation_mode_id == str(HIGH) and back.reason.startswith("released") and restore is None


def test_ombc_follows_a_plan_setpoint_and_never_acts_blind() -> None:
    sp = Setpoint(RID, 1_500, Envelope(1_500, 1_500))
    plan = DispatchPlan("p", 1, NOW, NOW, NOW + H, 3600, (PlanSlot(NOW, (sp,)),))
    sp = Setpoint(RID, 3_000, Envelope(3_000, 3_000))
    plan = DispatchPlan("p", 1, NOW, NOW, NOW + H, 3600, (PlanSlot(NOW, (sp,)),))
    low = replace(pump(LOW, 0.0), power_w=None)  # its power from its mode: 1.5 kW
    target, _ = decide_mode(low, 1_000, plan)
    assert target.operation_mode_id == str(HIGH) and target.reason == "plan setpoint"
    assert decide_mode(replace(pump(HIGH, 3000)), 1_000, plan) is None  # there already
    off = replace(pump(OFF, 0), timers=((str(TIMER), NOW + H),))
    assert decide_mode(off, 1_000, plan) is None  # OFF -> HIGH waits for the compressor's timer
    for grid in (math.nan, math.inf):
        assert ombc.decide_mode(pump(HIGH, 3000), NOW, plan, grid, LIMITS, 60, 100) is None


def test_ombc_messages_are_checked_against_the_description() -> None:
    snap = pump(HIGH, 3000)
    _, bad = take.take(snap, OMBCStatus(message_id=uuid.uuid4(), active_operation_mode_id=str(uuid.uuid4()),
                                        operation_mode_factor=0.0), NOW)
    assert bad is not None and "not a described mode" in bad
    _, bad = take.take(snap, OMBCStatus(message_id=uuid.uuid4(), active_operation_mode_id=str(LOW),
                                        operation_mode_factor=1.5), NOW)
    assert bad is not None and "0..1" in bad
    _, bad = take.take(snap, OMBCTimerStatus(message_id=uuid.uuid4(), timer_id=str(uuid.uuid4()), finished_at=NOW), NOW)
    assert bad is not None and "no timer" in bad
    _, bad = take.take(replace(snap, ombc_description=None),
                       OMBCStatus(message_id=uuid.uuid4(), active_operation_mode_id=str(LOW), operation_mode_factor=0),
                       NOW)
    assert bad is not None and "before an OMBC.SystemDescription" in bad


def test_an_ombc_rm_goes_to_the_fleet_as_a_switchable_load() -> None:
    (load,) = flexibility.loads([pump(HIGH, 3000)], NOW, 60)[0]
    assert [(m.mode_id, m.power_w) for m in load.modes] == [(str(OFF), 0), (str(LOW), 1500), (str(HIGH), 3000)]
    assert load.active_mode_id == str(HIGH) and load.min_mode_s == 600
    back = agg.flexibility_from_proto(edge.flexibility_to_proto(Flexibility(NOW, switchable_loads=(load,))))
    assert back.switchable_loads == (load,)


def constraints(lower: tuple[float, float] = (-6000, 0), upper: tuple[float, float] = (0, 0)) -> PEBCPowerConstraints:
    def rng(kind: str, r: tuple[float, float]) -> PEBCAllowedLimitRange:
        return PEBCAllowedLimitRange(commodity_quantity=POWER, limit_type=kind, abnormal_condition_only=False,
                                     range_boundary=NumberRange(start_of_range=r[0], end_of_range=r[1]))

    return PEBCPowerConstraints(message_id=uuid.uuid4(), id=uuid.uuid4(), valid_from=NOW - H, valid_until=None,
                                consequence_type="VANISH",
                                allowed_limit_ranges=[rng("LOWER_LIMIT", lower), rng("UPPER_LIMIT", upper)])


CONSTRAINTS = constraints()


def pv(power_w: float) -> RmSnapshot:
    return RmSnapshot(name="pv", session=1, connected=True, phase="active", connected_at=NOW, last_message_at=NOW,
                      resource_id=RID, control_type=pebc.PEBC, power_constraints=CONSTRAINTS,
                      power_w=Reading(power_w, NOW))


def test_pebc_envelope_keeps_the_export_cap_and_frees_the_device_after() -> None:
    assert pebc.decide_envelope(pv(-5000), NOW, None, -3000, LIMITS, 60, 100) is None  # exports 3 kW: fine
    # exports 6 kW with 1 kW of the house's load: the PV may make 5.6 kW at most
    env = pebc.decide_envelope(pv(-5000), NOW, None, -6000, LIMITS, 60, 100)
    assert env is not None and env.limiting and env.lower_w == pytest.approx(-3600)
    rec = InstructionRecord("i", "m", "", env.constraints_id, 1.0, env.lower_w, NOW, "ACCEPTED",
                            kind=pebc.INSTRUCTION, upper_w=env.upper_w)
    limited = pv(-3600).with_instruction(rec)
    assert pebc.decide_envelope(limited, NOW, None, -4600, LIMITS, 60, 100) is None  # the same: no news
    renew = pebc.decide_envelope(limited, NOW + dt.timedelta(seconds=451), None, -4600, LIMITS, 60, 100)
    assert renew is None  # stale measurement by then (60 s): nothing asked blind
    fresh = replace(limited, power_w=Reading(-3600, NOW + dt.timedelta(seconds=451)),
                    last_message_at=NOW + dt.timedelta(seconds=451))
    assert pebc.decide_envelope(fresh, NOW + dt.timedelta(seconds=451), None, -4600, LIMITS, 60, 100) is not None
    free = pebc.decide_envelope(replace(limited, power_w=Reading(-3600, NOW)), NOW, None, 2000, LIMITS, 60, 100)
    assert free is not None and not free.limiting and free.lower_w == -6000  # once, the whole range
    assert pebc.decide_envelope(pv(-5000), NOW, None, math.nan, LIMITS, 60, 100) is None
    huge = json.loads(constraints(lower=(-5e7, 0)).to_json())
    refused = parse_frame(json.dumps(huge))
    assert isinstance(refused, Refused) and refused.status.value == "INVALID_CONTENT" and "allowed_limit_ranges" in \
        refused.diagnostic
    _, bad = take.take(pv(0), constraints().model_copy(update={"allowed_limit_ranges": constraints()
                                                               .allowed_limit_ranges[:1]}), NOW)
    assert bad is not None and "UPPER_LIMIT and a LOWER_LIMIT" in bad


def test_the_prices_the_agent_knows_for_a_run(tmp_path) -> None:
    from edge_agent.agent import EdgeAgent
    from edge_agent.config import AgentConfig, TariffConfig
    from edge_agent.s2_cem.component import Prices
    from vpp_common.clock import ManualClock
    from vpp_common.messages import GridSignal

    a = EdgeAgent(AgentConfig(house_id="h", insecure=True, metrics_port=None, state_dir=None), clock=ManualClock(NOW))
    assert Prices(a)(NOW) == ()  # no tariff, no grid signal: no prices (the earliest allowed start)
    a.intake.grid_signal = GridSignal(NOW, prices=prices(3))
    assert Prices(a)(NOW) == prices(3)  # the aggregator's
    a.intake.grid_signal = GridSignal(NOW, prices=tuple(p for p in prices(3) if p.start > NOW + H))
    assert Prices(a)(NOW) == ()  # its prices start later: not the ones for now
    csv = tmp_path / "prices.csv"
    csv.write_text("timestamp,import_price_per_kwh,export_price_per_kwh\n"
                   + "".join(f"{(NOW + dt.timedelta(hours=h)).isoformat()},{0.1 * (h + 1)},0\n" for h in range(3)))
    a.config.tariff = TariffConfig(prices_file=csv)
    got = Prices(a)(NOW)
    assert got[0].start == NOW and got[0].import_price_per_kwh == pytest.approx(0.1)
    assert got[-1].start + dt.timedelta(seconds=got[-1].duration_s) <= NOW + 3 * H  # only as far as the file goes


def test_an_rm_whose_phases_sum_past_1_mw_is_left_out_not_the_house(caplog: pytest.LogCaptureFixture) -> None:
    phases = [PowerRange(start_of_range=900_000, end_of_range=900_000, commodity_quantity=f"ELECTRIC.POWER.L{i}")
              for i in (1, 2, 3)]
    desc = heat_pump().model_copy(update={"operation_modes": [
        OMBCOperationMode(id=OFF, power_ranges=phases, abnormal_condition_only=False)], "transitions": []})
    huge = replace(pump(HIGH, 3000), ombc_description=desc, mode=None)
    assert flexibility.loads([huge, pump(HIGH, 3000, name="ok")], NOW, 60)[0][0].modes[-1].power_w == 3000
    assert len(flexibility.loads([huge], NOW, 60)[0]) == 0 and "left out" in caplog.text


def _ombc_desc_json(**mode: Any) -> str:
    d = json.loads(heat_pump().to_json())
    d["operation_modes"][0].update(mode)
    return json.dumps(d)


@pytest.mark.parametrize(("frame", "status"), [
    # numbers from a PPBC, OMBC or PEBC RM: NaN, Infinity, 1e300, negative durations, wrong types
    (_ombc_desc_json(power_ranges=[{"start_of_range": "NaN", "end_of_range": 0,
                                    "commodity_quantity": "ELECTRIC.POWER.L1"}]), "INVALID_MESSAGE"),
    (_ombc_desc_json(power_ranges=[{"start_of_range": 0, "end_of_range": 1e300,
                                    "commodity_quantity": "ELECTRIC.POWER.L1"}]), "INVALID_CONTENT"),
    (json.dumps({"message_type": "OMBC.Status", "message_id": str(uuid.uuid4()),
                 "active_operation_mode_id": str(OFF), "operation_mode_factor": "half"}), "INVALID_MESSAGE"),
    ('{"message_type": "OMBC.Status", "message_id": "' + str(uuid.uuid4()) + '", "active_operation_mode_id": "'
     + str(OFF) + '", "operation_mode_factor": 1e999}', "INVALID_CONTENT"),
    (json.dumps({"message_type": "OMBC.Status", "message_id": str(uuid.uuid4()),
                 "active_operation_mode_id": str(OFF), "operation_mode_factor": " inf"}), "INVALID_MESSAGE"),
    (_ombc_desc_json(power_ranges=[{"start_of_range": 0, "end_of_range": "1e300",
                                    "commodity_quantity": "ELECTRIC.POWER.L1"}]), "INVALID_CONTENT"),
    (json.dumps({**json.loads(heat_pump().to_json()), "timers": [{"id": str(TIMER), "duration": -1}]}),
     "INVALID_MESSAGE"),
    (json.dumps({**json.loads(CONSTRAINTS.to_json()), "valid_from": "yesterday"}), "INVALID_MESSAGE"),
    (json.dumps({"message_type": "PEBC.EnergyConstraint", "message_id": str(uuid.uuid4()), "id": str(uuid.uuid4()),
                 "valid_from": NOW.isoformat(), "valid_until": (NOW + H).isoformat(), "upper_average_power": 5e6,
                 "lower_average_power": 0, "commodity_quantity": "ELECTRIC.POWER.L1"}), "INVALID_CONTENT"),
    (ppbc_profile_json(start_time="2026-12-07T12:00:00"), "INVALID_MESSAGE"),  # naive: no offset
    (json.dumps({"message_type": "FRBC.StorageStatus", "message_id": str(uuid.uuid4()),
                 "present_fill_level": "NaN"}), "INVALID_MESSAGE"),  # a string pydantic would read as NaN
])
def test_hostile_numbers_of_every_control_type_are_refused_at_the_wire(frame: str, status: str) -> None:
    refused = parse_frame(frame)
    assert isinstance(refused, Refused) and refused.status.value == status, refused


@pytest.mark.parametrize(("message", "why"), [
    (OMBCStatus(message_id=uuid.uuid4(), active_operation_mode_id=str(LOW), operation_mode_factor=-0.5), "0..1"),
    (CONSTRAINTS.model_copy(update={"valid_until": NOW - 2 * H}), "valid_until must be after valid_from"),
])
def test_contents_the_session_cannot_use_are_refused(message: Any, why: str) -> None:
    snap = pump(HIGH, 3000)
    _, problem = take.take(snap, message, NOW)
    assert problem is not None and why in problem


def test_s2_list_shows_a_runs_scheduled_start() -> None:
    from edge_agent.s2_cem.listing import rows, table

    s = schedule(washer())
    assert s is not None
    listed = rows([sent(s)], NOW, 60)
    assert listed[0]["last_instruction"]["kind"] == "PPBC.ScheduleInstruction"
    text = table({"written_at": NOW.isoformat(), "resource_managers": listed}, NOW)
    assert f"start {(NOW + 3 * H + dt.timedelta(minutes=90)).isoformat()} ACCEPTED" in text


def test_a_price_file_that_went_away_means_no_prices_not_no_instructions(tmp_path) -> None:
    from edge_agent.agent import EdgeAgent
    from edge_agent.config import AgentConfig, TariffConfig
    from edge_agent.s2_cem.component import Prices
    from vpp_common.clock import ManualClock

    csv = tmp_path / "prices.csv"
    csv.write_text(f"timestamp,import_price_per_kwh,export_price_per_kwh\n{NOW.isoformat()},0.2,0\n")
    a = EdgeAgent(AgentConfig(house_id="h", insecure=True, metrics_port=None, state_dir=None,
                              tariff=TariffConfig(prices_file=csv)), clock=ManualClock(NOW))
    csv.unlink()
    assert Prices(a)(NOW) == ()
