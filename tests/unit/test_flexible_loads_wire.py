"""Flexible loads (S2 OMBC switchable loads, PPBC shiftable runs) on the wire: what the agent
encodes the aggregator decodes to the same dataclass; every hostile number or shape is refused
whole, naming the field; the store keeps them; a Home Assistant switchable load becomes one."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from aggregator.service import convert as agg
from aggregator.service.bounds import InvalidMessage
from aggregator.store.codec import FLEXIBILITY
from edge_agent.energy_manager.load_switching import LoadRules, LoadState, as_flexibility
from edge_agent.reports import HouseReports
from edge_agent.uplink import convert as edge
from vpp_common.clock import UTC
from vpp_common.messages import (
    Flexibility,
    LoadMode,
    ProfileStep,
    RunState,
    ShiftableRunFlexibility,
    SwitchableLoadFlexibility,
)

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
FREEZER = SwitchableLoadFlexibility("freezer", (LoadMode("on", 90.0), LoadMode("off", 0.0)), "on",
                                    T0 - timedelta(minutes=7), 300.0, 1800.0)
WASHER = ShiftableRunFlexibility("washer", (ProfileStep(1800.0, 2000.0), ProfileStep(5400.0, 66.7)),
                                 T0, T0 + timedelta(hours=9), RunState.SCHEDULED, T0 + timedelta(hours=4))
FLEX = Flexibility(T0, switchable_loads=(FREEZER,), shiftable_runs=(WASHER,))


def _wire(f: Flexibility = FLEX) -> object:
    return edge.flexibility_to_proto(f)


def test_round_trip_is_identity() -> None:
    back = agg.flexibility_from_proto(_wire())
    assert back.switchable_loads == (FREEZER,)
    assert back.shiftable_runs == (WASHER,)
    assert back.shiftable_runs[0].energy_wh == pytest.approx(1100.0, abs=0.1)


@pytest.mark.parametrize("state", list(RunState))
def test_every_run_state_survives(state: RunState) -> None:
    run = ShiftableRunFlexibility("w", WASHER.profile, T0, T0 + timedelta(hours=3), state,
                                  None if state is RunState.WAITING else T0)
    assert agg.flexibility_from_proto(_wire(Flexibility(T0, shiftable_runs=(run,)))).shiftable_runs == (run,)


def test_unknown_mode_stays_unknown() -> None:
    load = SwitchableLoadFlexibility("plug", (LoadMode("on", 50.0), LoadMode("off", 0.0)))
    assert agg.flexibility_from_proto(_wire(Flexibility(T0, switchable_loads=(load,)))).switchable_loads == (load,)


def test_the_store_keeps_them() -> None:
    assert FLEXIBILITY.decode(FLEXIBILITY.encode(FLEX)) == FLEX


BAD = (math.nan, math.inf, -math.inf, 1e300, -1e300)


@pytest.mark.parametrize("value", BAD)
def test_hostile_mode_power_is_refused(value: float) -> None:
    msg = _wire()
    msg.resources[0].ombc.operation_modes[0].power_w = value
    with pytest.raises(InvalidMessage, match=r"resources\[0\].ombc.operation_modes\[0\].power_w"):
        agg.flexibility_from_proto(msg)


@pytest.mark.parametrize("value", BAD)
def test_hostile_profile_power_is_refused(value: float) -> None:
    msg = _wire()
    msg.resources[1].ppbc.elements[1].power_w = value
    with pytest.raises(InvalidMessage, match=r"resources\[1\].ppbc.elements\[1\].power_w"):
        agg.flexibility_from_proto(msg)


def _mutate_ombc(msg: object, how: str) -> None:
    d = msg.resources[0].ombc  # type: ignore[attr-defined]
    if how == "no modes":
        del d.operation_modes[:]
    elif how == "repeated id":
        d.operation_modes[1].id = "on"
    elif how == "empty id":
        d.operation_modes[0].id = ""
    elif how == "active unknown":
        d.active_mode_id = "boost"
    elif how == "negative timer":
        d.min_mode_duration.seconds = -5
    elif how == "pause of a year":
        d.max_reduced_duration.seconds = 365 * 86400
    elif how == "17 modes":
        for k in range(15):
            d.operation_modes.add(id=f"m{k}", power_w=1.0)
    elif how == "time beyond 9999":
        d.active_since.seconds = 10**12


@pytest.mark.parametrize("how", ["no modes", "repeated id", "empty id", "active unknown", "negative timer",
                                 "pause of a year", "17 modes", "time beyond 9999"])
def test_bad_ombc_is_refused(how: str) -> None:
    msg = _wire()
    _mutate_ombc(msg, how)
    with pytest.raises(InvalidMessage, match=r"resources\[0\].ombc"):
        agg.flexibility_from_proto(msg)


def _mutate_ppbc(msg: object, how: str) -> None:
    d = msg.resources[1].ppbc  # type: ignore[attr-defined]
    if how == "no steps":
        del d.elements[:]
    elif how == "zero-length step":
        d.elements[0].duration.seconds = 0
    elif how == "step of two days":
        d.elements[0].duration.seconds = 2 * 86400
    elif how == "state unspecified":
        d.state = 0
    elif how == "state from the future":
        d.state = 99
    elif how == "scheduled without start":
        d.ClearField("start")
    elif how == "no earliest start":
        d.ClearField("earliest_start")
    elif how == "window too short":
        d.latest_end.seconds = d.earliest_start.seconds + 3600
    elif how == "window backwards":
        d.latest_end.seconds = d.earliest_start.seconds - 3600
    elif how == "window of a month":
        d.latest_end.seconds = d.earliest_start.seconds + 30 * 86400


@pytest.mark.parametrize("how", ["no steps", "zero-length step", "step of two days", "state unspecified",
                                 "state from the future", "scheduled without start", "no earliest start",
                                 "window too short", "window backwards", "window of a month"])
def test_bad_ppbc_is_refused(how: str) -> None:
    msg = _wire()
    _mutate_ppbc(msg, how)
    with pytest.raises(InvalidMessage, match=r"resources\[1\].ppbc"):
        agg.flexibility_from_proto(msg)


def test_a_switchable_load_as_flexibility() -> None:
    rules = LoadRules(min_on_s=600.0, min_off_s=300.0, max_off_s=1800.0, expected_power_w=120.0)
    f = as_flexibility("freezer", rules, LoadState(on=False, changed_at=T0, shed_at=T0))
    assert f == SwitchableLoadFlexibility("freezer", (LoadMode("on", 120.0), LoadMode("off", 0.0)), "off", T0,
                                          600.0, 1800.0)
    unknown = as_flexibility("freezer", rules, LoadState())
    assert (unknown.active_mode_id, unknown.active_since) == ("", None)
    seen = as_flexibility("heater", LoadRules(), LoadState(on=True, changed_at=T0, on_power_w=1500.0))
    assert seen.modes[0] == LoadMode("on", 1500.0)


class _Uplink:
    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, message: object) -> None:
        self.sent.append(message)


def test_reports_merge_sources_and_survive_a_failing_one() -> None:
    from edge_agent.metrics import AgentMetrics
    from edge_agent.resources.house import HouseSnapshot
    from vpp_common.messages import Measurement, SiteTelemetry

    uplink = _Uplink()
    reports = HouseReports(uplink, AgentMetrics(), 5.0)  # type: ignore[arg-type]

    def broken(now: datetime) -> tuple[tuple[SwitchableLoadFlexibility, ...], tuple[ShiftableRunFlexibility, ...]]:
        raise RuntimeError("a component's bug")

    mode = ["on"]
    reports.flexibility_sources += [broken, lambda now: ((replace(FREEZER, active_mode_id=mode[0]),), (WASHER,))]
    m = Measurement.missing()
    snap = HouseSnapshot(SiteTelemetry(T0, m, m, m, m, m), Flexibility(T0), 0.0, 0.0)
    reports.send_flexibility(snap)
    reports.send_flexibility(snap)  # nothing changed: not sent again
    mode[0] = "off"
    reports.send_flexibility(snap)  # the load switched: sent
    assert len(uplink.sent) == 2
    first, second = uplink.sent
    assert first.switchable_loads[0].active_mode_id == "on" and first.shiftable_runs == (WASHER,)  # type: ignore[attr-defined]
    assert second.switchable_loads[0].active_mode_id == "off"  # type: ignore[attr-defined]
    assert asyncio.iscoroutinefunction(reports.run_telemetry)


def _plan_with_starts() -> object:
    from aggregator.service.convert import plan_to_proto
    from vpp_common.messages import DispatchPlan, Envelope, PlanSlot, RunStart, Setpoint

    slots = tuple(PlanSlot(T0 + timedelta(seconds=900 * i), (Setpoint("battery", 0.0, Envelope(-5, 5)),))
                  for i in range(4))
    plan = DispatchPlan("p1", 5, T0, T0, T0 + timedelta(hours=1), 900, slots,
                        run_starts=(RunStart("washer", T0 + timedelta(hours=4)),))
    return plan, plan_to_proto(plan)


def test_run_starts_round_trip() -> None:
    plan, msg = _plan_with_starts()
    assert edge.plan_from_proto(msg) == plan


@pytest.mark.parametrize("how,match", [("empty id", "empty or repeated"), ("repeated", "empty or repeated"),
                                       ("unset", "start is not set"), ("far", "more than 7 days"),
                                       ("beyond 9999", "malformed")])
def test_bad_run_starts_reject_the_plan(how: str, match: str) -> None:
    _, msg = _plan_with_starts()
    r = msg.run_starts[0]
    if how == "empty id":
        r.resource_id = ""
    elif how == "repeated":
        msg.run_starts.add(resource_id="washer").start.CopyFrom(r.start)
    elif how == "unset":
        r.ClearField("start")
    elif how == "far":
        r.start.seconds += 30 * 86400
    else:
        r.start.seconds = 10**12
    with pytest.raises(edge.InvalidPlan, match=match):
        edge.plan_from_proto(msg)
