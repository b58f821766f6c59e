"""S2 FRBC and PEBC Resource Managers to the fleet (issue 23 item 4), pure pieces: an FRBC RM's
storage as the fleet sees it, the house's storages merged for the LP (its own battery first, by
the Hello) and the plan's setpoint split among them, hostile numbers left out; the agent's
update with the RMs' storages and PV after its own; the plan check accepting setpoints for the
resources the S2 CEM holds now, and only those."""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
from s2python.common import NumberRange

from aggregator.dispatch import storages
from aggregator.fleet import cycle
from aggregator.service import convert as agg
from aggregator.store import HouseRecord
from edge_agent.reports import HouseReports
from edge_agent.s2_cem import flexibility
from edge_agent.s2_cem.frbc_flex import as_storage
from edge_agent.s2_cem.state import Coordinator, Reading, RmSnapshot
from edge_agent.uplink import convert as edge
from tests.e2e import s2_rm
from tests.unit.test_plan_input_safety import T0, deliver_plan, make_agent, plan_msg, statuses
from tests.unit.test_s2_cem import NOW, frbc_snapshot
from tests.unit.test_s2_cem_types import constraints, pv
from vpp_common.messages import (
    ControlType,
    DispatchPlan,
    Envelope,
    FallbackMode,
    Flexibility,
    Hello,
    PlanSlot,
    PlanState,
    ResourceInfo,
    ResourceKind,
    Setpoint,
    SiteLimits,
    StorageFlexibility,
)

BATTERY = StorageFlexibility("battery", 50, 0, 100, 10, 10_000, 5_000, 5_000, 0.95, 0.95)
STATION = StorageFlexibility("station", 50, 0, 100, 0, 2_000, 1_000, 1_000, 1.0, 0.9)
HELLO = Hello("t", SiteLimits(11_000, 4_600), (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC,
                                                            5_000, 10_000),))
HOUSE = HouseRecord("h1", HELLO, NOW, NOW)


# -- the aggregator: several storages as one, the plan split among them ---------------------------

def test_one_storage_is_kept_as_it_is_and_its_plan_untouched() -> None:
    inp = cycle.house_input(HOUSE, Flexibility(NOW, (BATTERY,)), None, None)
    assert inp is not None and inp.storage is BATTERY and inp.storage_parts == ()
    plan = plan_of(BATTERY.resource_id, [3000.0])
    assert storages.split_plan(plan, inp.storage_parts) is plan
    assert storages.split_plan(plan, (BATTERY,)) is plan


def test_the_house_battery_comes_first_by_its_hello_not_by_position() -> None:
    inp = cycle.house_input(HOUSE, Flexibility(NOW, (STATION, BATTERY)), None, None)
    assert inp is not None and [s.resource_id for s in inp.storage_parts] == ["battery", "station"]
    v = inp.storage
    assert v.resource_id == "battery" and v.capacity_wh == 12_000
    assert (v.max_charge_power_w, v.max_discharge_power_w) == (6_000, 6_000)
    assert v.soc_pct == pytest.approx(50) and v.reserve_soc_pct == pytest.approx(10 * 10_000 / 12_000)
    assert v.charge_efficiency == pytest.approx((0.95 * 10 + 1.0 * 2) / 12)
    # a house whose only storage is an RM's is planned too, on that storage
    alone = cycle.house_input(HOUSE, Flexibility(NOW, (STATION,)), None, None)
    assert alone is not None and alone.storage is STATION


@pytest.mark.parametrize("bad", [
    dict(soc_pct=math.nan), dict(capacity_wh=0.0), dict(capacity_wh=-5.0), dict(capacity_wh=math.inf),
    dict(max_charge_power_w=math.inf), dict(max_discharge_power_w=-1.0), dict(charge_efficiency=0.0),
    dict(discharge_efficiency=1.5), dict(soc_min_pct=80.0, soc_max_pct=20.0), dict(soc_max_pct=1e300),
    dict(reserve_soc_pct=math.nan), dict(soc_pct="50"),
])
def test_a_storage_with_a_hostile_number_is_left_out_never_planned_on_a_guess(bad: dict[str, object]) -> None:
    hostile = replace(STATION, **bad)  # type: ignore[arg-type]
    assert not storages.usable(hostile)
    inp = cycle.house_input(HOUSE, Flexibility(NOW, (hostile, BATTERY)), None, None)
    assert inp is not None and inp.storage is BATTERY and inp.storage_parts == ()  # the battery alone
    both = cycle.house_input(HOUSE, Flexibility(NOW, (hostile, BATTERY, replace(STATION, resource_id="s2"))),
                             None, None)
    assert both is not None and [s.resource_id for s in both.storage_parts] == ["battery", "s2"]
    # alone, it goes to the LP as it is: its checks leave the house out and say why (as before)
    alone = cycle.house_input(HOUSE, Flexibility(NOW, (hostile,)), None, None)
    assert alone is not None and alone.storage is hostile and alone.storage_parts == ()


def test_one_id_twice_is_taken_once() -> None:
    assert storages.house_first((STATION, replace(STATION, capacity_wh=1e5), BATTERY), {"battery"}) == (
        BATTERY, STATION)
    assert storages.planned((replace(BATTERY, soc_pct=math.nan),)) == (replace(BATTERY, soc_pct=math.nan), ())


def plan_of(name: str, targets: list[float], env: tuple[float, float] | None = None) -> DispatchPlan:
    slots = tuple(PlanSlot(NOW + timedelta(minutes=15 * i),
                           (Setpoint(name, t, Envelope(*(env or (t, t)))), Setpoint("other", 7.0, Envelope(7.0, 7.0))),
                           Envelope(-4600, 11_000), f"slot {i}") for i, t in enumerate(targets))
    return DispatchPlan("p", 1, NOW, NOW, NOW + timedelta(minutes=15 * len(targets)), 900, slots,
                        FallbackMode.SELF_CONSUMPTION)


def powers(plan: DispatchPlan, name: str) -> list[float]:
    return [sp.target_power_w for s in plan.slots for sp in s.setpoints if sp.resource_id == name]


def test_the_plan_is_split_house_battery_first_within_ratings_and_energy_room() -> None:
    parts = (replace(BATTERY, soc_pct=90), STATION)  # 0.5 kWh of room left in the battery: ~2.1 kW for 15 min
    plan = plan_of("battery", [6000.0, 6000.0, -6000.0, 9999.0, 0.0])
    out = storages.split_plan(plan, parts)
    assert out.plan_id != plan.plan_id  # its own id: the unsplit slots may be encoded ahead under the old one
    bat, sta = powers(out, "battery"), powers(out, "station")
    assert bat[0] == pytest.approx(1000 / 0.95 / 0.25) and sta[0] == pytest.approx(1000)  # its room, then on
    assert bat[1] == pytest.approx(0) and sta[1] == pytest.approx(1000)  # full: what none can take is not given
    assert bat[2] == pytest.approx(-5000) and sta[2] == pytest.approx(-1000)
    assert bat[3] + sta[3] == pytest.approx(6000)  # past every rating: not given
    assert bat[4] == sta[4] == 0
    assert powers(out, "other") == [7.0] * 5  # other setpoints kept


def test_energy_room_moves_power_to_the_next_storage() -> None:
    parts = (replace(BATTERY, soc_pct=99), STATION)  # 100 Wh of room in the battery
    out = storages.split_plan(plan_of("battery", [500.0] * 3), parts)
    bat, sta = powers(out, "battery"), powers(out, "station")
    assert bat[0] == pytest.approx(100 / 0.95 / 0.25) and bat[0] + sta[0] == pytest.approx(500)
    assert bat[1] == pytest.approx(0, abs=1e-6) and sta[1] == pytest.approx(500)  # full: the station takes it
    # discharging stops at the reserve: the battery at its reserve gives nothing
    low = storages.split_plan(plan_of("battery", [-500.0]), (replace(BATTERY, soc_pct=10), STATION))
    assert powers(low, "battery") == [0.0] and powers(low, "station") == [pytest.approx(-500)]


def test_split_envelopes_hold_the_first_to_the_house_balance_and_fix_the_others() -> None:
    out = storages.split_plan(plan_of("battery", [5500.0], env=(-6000.0, 6000.0)), (BATTERY, STATION))
    bat, sta = (next(sp for sp in out.slots[0].setpoints if sp.resource_id == r) for r in ("battery", "station"))
    assert sta.envelope == Envelope(sta.target_power_w, sta.target_power_w) and sta.target_power_w == 500
    assert bat.envelope == Envelope(-5000, 5000) and bat.target_power_w == 5000  # within its own rating
    tight = storages.split_plan(plan_of("battery", [6000.0], env=(6000.0, 6000.0)), (BATTERY, STATION))
    assert [sp.envelope for sp in tight.slots[0].setpoints[:2]] == [Envelope(5000, 5000), Envelope(1000, 1000)]


def test_merge_of_extreme_but_legal_storages_stays_finite_and_in_bounds() -> None:
    big = StorageFlexibility("a", 100, 0, 100, 100, 1e6, 1e6, 1e6, 1e-9, 1.0)
    tiny = StorageFlexibility("b", 0, 0, 0.001, 0, 1e-9, 0, 0, 1.0, 1e-9)
    v = storages.merge((big, tiny))
    for x in (v.soc_pct, v.capacity_wh, v.reserve_soc_pct, v.charge_efficiency, v.discharge_efficiency):
        assert math.isfinite(x)
    assert v.soc_min_pct <= v.reserve_soc_pct <= v.soc_max_pct and v.soc_min_pct <= v.soc_pct <= v.soc_max_pct
    out = storages.split_plan(plan_of("a", [1e6, -1e6]), (big, tiny))
    assert all(math.isfinite(p) for s in out.slots for p in (sp.target_power_w for sp in s.setpoints))


# -- the agent: an FRBC RM's storage, a PEBC RM's PV -----------------------------------------------

def test_an_frbc_rms_storage_from_its_fill_rates() -> None:
    snap = frbc_snapshot(0)
    st = as_storage(snap)
    assert st is not None and st.resource_id == snap.resource_id
    assert st.capacity_wh == pytest.approx(s2_rm.CAPACITY_WH) and st.soc_pct == pytest.approx(50)
    assert (st.max_charge_power_w, st.max_discharge_power_w) == (s2_rm.MAX_W, s2_rm.MAX_W)
    assert st.discharge_efficiency == pytest.approx(1.0)
    back = agg.flexibility_from_proto(edge.flexibility_to_proto(Flexibility(NOW, (st,))))
    assert back.storages[0].capacity_wh == pytest.approx(st.capacity_wh)


def _described(snap: RmSnapshot, **storage_range: float) -> RmSnapshot:
    desc = snap.system_description
    assert desc is not None
    new = desc.model_copy(deep=True)
    new.storage.fill_level_range = NumberRange.model_construct(**storage_range)  # past pydantic: hostile
    return replace(snap, system_description=new)


@pytest.mark.parametrize("fill_range", [dict(start_of_range=100, end_of_range=0),
                                        dict(start_of_range=0, end_of_range=0),
                                        dict(start_of_range=0, end_of_range=math.inf),
                                        dict(start_of_range=0, end_of_range=1e300)])  # capacity past 1 MWh
def test_an_frbc_rm_with_a_storage_the_fleet_cannot_take_is_not_reported(fill_range: dict[str, float]) -> None:
    assert as_storage(_described(frbc_snapshot(0), **fill_range)) is None


def test_an_frbc_rm_without_fill_rates_or_fill_level_is_not_reported() -> None:
    snap = frbc_snapshot(0)
    desc = snap.system_description
    assert desc is not None
    flat = desc.model_copy(deep=True)
    for m in flat.actuators[0].operation_modes:
        for e in m.elements:
            e.fill_rate = NumberRange(start_of_range=0, end_of_range=0)
    assert as_storage(replace(snap, system_description=flat)) is None
    assert as_storage(replace(snap, fill_level=None)) is None
    assert as_storage(replace(snap, fill_level=Reading(math.nan, NOW))) is None


def test_stale_or_gone_rms_are_left_out_never_0_w_or_0_pct() -> None:
    frbc, solar = frbc_snapshot(0), pv(-3000)
    stores, curtail = flexibility.devices([frbc, solar], NOW, 60)
    assert [s.resource_id for s in stores] == [frbc.resource_id]
    assert [(c.resource_id, c.present_power_w, c.min_lower_limit_w) for c in curtail] == [
        (solar.resource_id, -3000, -6000)]
    gone = [replace(frbc, connected=False), replace(solar, last_message_at=NOW - timedelta(seconds=61))]
    assert flexibility.devices(gone, NOW, 60) == ((), ())
    # an EV charger held back by PEBC cannot produce: not PV; old power: not reported
    ev = replace(solar, power_constraints=constraints(lower=(0, 0), upper=(0, 11_000)))
    old = replace(solar, power_w=Reading(-3000, NOW - timedelta(seconds=61)))
    assert flexibility.devices([ev, old], NOW, 60) == ((), ())


def test_the_rms_go_up_after_the_house_own_and_never_in_its_place() -> None:
    reports = HouseReports(None, None, 5)  # type: ignore[arg-type]
    own = Flexibility(NOW, (BATTERY,))
    impostor = replace(STATION, resource_id="battery")

    def broken(now: object) -> tuple[tuple[StorageFlexibility, ...], tuple[()]]:
        raise RuntimeError("bug")

    reports.device_sources += [broken, lambda now: ((impostor, STATION), ())]
    out = reports.with_devices(own, NOW)
    assert out.storages == (BATTERY, STATION)


# -- the plan check: setpoints for the RMs the CEM holds now, and only those -----------------------

def two_setpoints(rid: str, battery: bool = True) -> object:
    msg = plan_msg()
    for s in msg.slots:
        if battery:
            s.setpoints.add(resource_id=rid, target_power_w=500.0).envelope.max_w = 500.0
            s.setpoints[-1].envelope.min_w = 500.0
        else:
            s.setpoints[0].resource_id = rid
    return msg


def test_a_plan_naming_a_held_rm_is_accepted_and_one_naming_another_is_not() -> None:
    from vpp_common.clock import ManualClock

    rid = str(uuid.uuid4())
    coordinator = Coordinator()
    assert coordinator.claim("station", rid) is None
    a, _, sent = make_agent(ManualClock(T0))
    a.plan_resources.append(coordinator.held)
    deliver_plan(a, two_setpoints(rid))  # type: ignore[arg-type]
    assert statuses(sent)[-1].state is PlanState.ACCEPTED
    other = two_setpoints(str(uuid.uuid4()))
    other.version = 2  # type: ignore[attr-defined]
    deliver_plan(a, other)  # type: ignore[arg-type]
    assert statuses(sent)[-1].state is PlanState.REJECTED and "unknown_resource" in statuses(sent)[-1].reason
    coordinator.release("station", 0)  # not its session: still held
    assert coordinator.held() == {rid}
    # a plan for the RM alone (a house planned on the RM's storage only) needs nothing of the battery
    alone = two_setpoints(rid, battery=False)
    alone.version = 3  # type: ignore[attr-defined]
    deliver_plan(a, alone)  # type: ignore[arg-type]
    assert statuses(sent)[-1].state is PlanState.ACCEPTED
    session = coordinator.next_session("station")
    coordinator.release("station", session)
    gone = two_setpoints(rid)
    gone.version = 4  # type: ignore[attr-defined]
    deliver_plan(a, gone)  # type: ignore[arg-type]
    assert statuses(sent)[-1].state is PlanState.REJECTED


def test_the_load_learnt_leaves_out_what_the_rms_storages_and_pv_did() -> None:
    charging, solar = frbc_snapshot(4000), pv(-2500)
    assert flexibility.powers([charging, solar], NOW, 60) == (4000, -2500)
    gone = replace(charging, connected=False)  # not planned apart: its power stays the house's load
    assert flexibility.powers([gone, replace(solar, power_w=Reading(-2500, NOW - timedelta(minutes=5)))],
                              NOW, 60) == (0, 0)
    assert flexibility.powers([replace(charging, power_w=Reading(math.nan, NOW))], NOW, 60) == (0, 0)
    reports = HouseReports(None, None, 5)  # type: ignore[arg-type]

    def broken(now: object) -> tuple[float, float]:
        raise RuntimeError("bug")

    reports.device_powers += [broken, lambda now: flexibility.powers([charging, solar], now, 60)]
    assert reports.device_power(NOW) == (4000, -2500)
    from tests.unit.test_plan_input_safety import snapshot
    from vpp_common.clock import ManualClock

    a, _, _ = make_agent(ManualClock(T0))
    a.reports.start_forecasts(None)
    a.reports.device_powers.append(lambda now: (4000.0, -2500.0))
    a.reports.learn(snapshot(T0, grid_w=5000, pv_w=-3000, soc_pct=50, battery_w=1000), None)
    assert a.reports.forecaster is not None
    # the meter's load 7000 W held the RM's 4000 W charge and its 2500 W PV: 5500 W load, 5500 W PV
    assert a.reports.forecaster._last == (5500, 5500)


def test_an_rm_claiming_a_house_devices_id_is_not_reported() -> None:
    frbc, solar = frbc_snapshot(0), pv(-3000)
    house = {frbc.resource_id, solar.resource_id}
    assert frbc.resource_id is not None and solar.resource_id is not None
    assert flexibility.devices([frbc, solar], NOW, 60, house) == ((), ())
    assert flexibility.powers([frbc, solar], NOW, 60, house) == (0, 0)
