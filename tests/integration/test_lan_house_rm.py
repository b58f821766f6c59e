"""The Resource Manager of a house of LAN devices only (edge_agent/lan_house.py) against the simulated
house (simulator/lan_house.py: a P1 meter whose reading is the house's balance, an OpenDTU): its
readings (no battery: MISSING, never 0), what it tells the aggregator, its PV limit (held while the last
one applies, not sent on a stale meter), a meter that falls silent or reads hostile values, a PV that
takes no limit, a house without PV, and its assembly by ``edge-agent run``."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.drivers.errors import ModelNotFound
from edge_agent.drivers.lan_catalogue import load_lan_entry
from edge_agent.drivers.lan_device import LanDevice
from edge_agent.lan_house import NO_BATTERY, LanHouseRM
from edge_agent.plan_intake import house_plan_problem
from edge_agent.resources.house import DeviceConfigurationError
from edge_agent.resources.lan_device import LanDeviceRM
from simulator.hybrid_device import Faults
from simulator.lan_house import LanHouseSim
from tests.lan_fixtures import DEVICE_KW, SIMS
from vpp_common.clock import ManualClock
from vpp_common.messages import (
    ControlType,
    DispatchPlan,
    Envelope,
    PlanSlot,
    ResourceKind,
    Setpoint,
    Validity,
)

pytestmark = pytest.mark.timeout(30)
T0 = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)


def _rm(model: str, rid: str, role: str, port: int, stale_after_s: float = 10.0) -> LanDeviceRM:
    dev = LanDevice(load_lan_entry(model), "127.0.0.1", port, 0.5, **DEVICE_KW.get(model, {}))
    return LanDeviceRM(rid, role, dev, stale_after_s)  # type: ignore[arg-type]


@pytest.fixture
async def house() -> AsyncIterator[tuple[LanHouseSim, LanHouseRM]]:
    sim = LanHouseSim(base_load_w=300.0, available_w=1600.0, apply_delay_s=0.3, p1_interval_s=0.05)
    ports = await sim.start()
    rm = LanHouseRM(_rm("dsmr5_p1", "p1", "grid_meter", ports["meter"]),
                    [_rm("opendtu_hoymiles", "balcony", "pv", ports["dtu"])], ManualClock(T0))
    await rm.connect()
    try:
        yield sim, rm
    finally:
        await rm.close()
        await sim.stop()


async def _poll(rm: LanHouseRM, advance_s: float = 2.0):  # type: ignore[no-untyped-def]
    rm.clock.advance(advance_s)  # type: ignore[attr-defined]  # the micro-inverter: no faster than 2 s
    return await rm.poll()


async def test_the_house_reads_its_meter_and_micro_inverter_and_has_no_battery(
        house: tuple[LanHouseSim, LanHouseRM]) -> None:
    _, rm = house
    snap = await _poll(rm)
    t = snap.telemetry
    assert (t.grid_power_w.value, t.pv_power_w.value, t.load_power_w.value) == (-1300.0, -1600.0, 300.0)
    assert t.grid_power_w.validity is t.pv_power_w.validity is t.load_power_w.validity is Validity.VALID
    assert t.battery_power_w.validity is t.battery_soc_pct.validity is Validity.MISSING
    assert t.battery_power_w.value is None  # no battery: missing, not 0 W
    assert {r.resource_id: r.power_w.value for r in t.resources} == {"p1": -1300.0, "balcony": -1600.0}
    info = {r.resource_id: r for r in rm.resources}
    assert (info["p1"].kind, info["p1"].control_type) == (ResourceKind.GRID_METER, ControlType.NOT_CONTROLLABLE)
    assert (info["balcony"].kind, info["balcony"].control_type) == (ResourceKind.PV, ControlType.PEBC)
    assert info["balcony"].rated_power_w == 2000.0 and rm.pv_rating_w == 2000.0
    assert snap.flexibility.storages == ()
    assert [(c.resource_id, c.present_power_w, c.min_lower_limit_w) for c in snap.flexibility.curtailments] == [
        ("balcony", -1600.0, -2000.0)]
    assert rm.capabilities.pv_reason is None and rm.capabilities.battery_reason is not None
    assert rm.controllable("battery") == NO_BATTERY and rm.controllable("balcony") is None
    assert "measured only" in (rm.controllable("p1") or "") and "no resource" in (rm.controllable("x") or "")
    with pytest.raises(ModelNotFound, match="no battery"):
        await rm.set_battery_power(500.0)
    with pytest.raises(DeviceConfigurationError, match="no battery"):
        rm.battery_nameplate()


async def test_plans_for_a_battery_are_refused_with_the_reason(house: tuple[LanHouseSim, LanHouseRM]) -> None:
    _, rm = house
    snap = await _poll(rm)
    slots = (PlanSlot(T0, (Setpoint("battery", 1000.0, Envelope(1000.0, 1000.0)),)),)
    plan = DispatchPlan("p", 1, T0, T0, T0 + timedelta(minutes=15), 900, slots)
    problem = house_plan_problem(plan, rm, snap)
    assert problem is not None and problem.label == "not_controllable" and "no battery" in problem.detail


async def test_a_limit_is_held_while_the_last_applies_and_not_sent_on_a_stale_meter(
        house: tuple[LanHouseSim, LanHouseRM]) -> None:
    sim, rm = house
    await _poll(rm)
    await rm.set_pv_limit(1000.0)
    await rm.set_pv_limit(900.0)  # the first still applying: held
    assert sim.dtu.pv.limit_calls == 1
    await asyncio.sleep(0.4)  # the OpenDTU's apply delay
    snap = await _poll(rm)  # reads 1000 W in force: the held 900 W goes out
    assert sim.dtu.pv.limit_calls == 2 and snap.telemetry.pv_power_w.value == -1000.0
    assert snap.telemetry.grid_power_w.value == -700.0
    await rm.set_pv_limit(800.0)  # held again until 900 W shows
    sim.meter.faults = Faults(timeout=True)
    await asyncio.sleep(0.4)
    snap = await _poll(rm)
    assert snap.telemetry.grid_power_w.validity is Validity.STALE and snap.telemetry.grid_power_w.value == -700.0
    assert sim.dtu.pv.limit_calls == 2, "a held limit went out on a stale meter"
    snap = await _poll(rm, 10.0)  # past stale_after_s: missing, never 0 W
    assert snap.telemetry.grid_power_w.validity is Validity.MISSING and snap.telemetry.grid_power_w.value is None
    assert snap.telemetry.load_power_w.value is None and not snap.telemetry.load_power_w.usable
    sim.meter.faults = Faults()
    snap = await _poll(rm)
    assert snap.telemetry.grid_power_w.usable and sim.dtu.pv.limit_calls == 3  # now it goes out


@pytest.mark.parametrize("value", ["NaN*kW", "inf*kW", "1e300*kW", "-1.000*kW", "0.500*W"])
async def test_hostile_meter_values_are_never_a_reading(house: tuple[LanHouseSim, LanHouseRM], value: str) -> None:
    sim, rm = house
    sim.meter.overrides = {"1-0:1.7.0": value}
    g = (await _poll(rm)).telemetry.grid_power_w
    assert not g.usable, f"{value} taken as {g}"
    assert g.value is None or math.isfinite(g.value)


async def test_an_implausible_meter_is_refused(house: tuple[LanHouseSim, LanHouseRM]) -> None:
    sim, rm = house
    sim.meter.faults = Faults(implausible=True)  # 99999.999 kW
    snap = await _poll(rm)
    assert snap.telemetry.grid_power_w.validity in (Validity.IMPLAUSIBLE, Validity.MISSING)
    assert snap.refused and not snap.telemetry.load_power_w.usable


async def test_readings_that_do_not_add_up_are_refused() -> None:
    """A meter exporting 2 kW beside a micro-inverter giving 1 kW leaves a load of -1 kW: a clamp turned
    round or the wrong meter; the load is IMPLAUSIBLE and refused, as in the Modbus houses."""
    meter_sim, pv_sim = SIMS["dsmr5_p1"](power_w=-2000.0), SIMS["opendtu_hoymiles"](available_w=1000.0)
    rm = LanHouseRM(_rm("dsmr5_p1", "p1", "grid_meter", await meter_sim.start()),
                    [_rm("opendtu_hoymiles", "balcony", "pv", await pv_sim.start())], ManualClock(T0))
    try:
        await rm.connect()
        snap = await _poll(rm)
        assert snap.telemetry.load_power_w.validity is Validity.IMPLAUSIBLE
        assert [r.reason for r in snap.refused] == ["energy_balance"]
        assert snap.telemetry.grid_power_w.usable  # the grid reading itself stays: the safety path needs it
    finally:
        await rm.close()
        await meter_sim.stop()
        await pv_sim.stop()


async def test_a_micro_inverter_without_a_limit_is_not_curtailable() -> None:
    meter_sim, pv_sim = SIMS["dsmr5_p1"](power_w=-1000.0), SIMS["enphase_envoy"](available_w=1500.0)
    rm = LanHouseRM(_rm("dsmr5_p1", "p1", "grid_meter", await meter_sim.start()),
                    [_rm("enphase_envoy", "roof", "pv", await pv_sim.start())], ManualClock(T0))
    try:
        await rm.connect()
        snap = await _poll(rm, 5.0)
        assert snap.telemetry.pv_power_w.value == -1500.0 and snap.flexibility.curtailments == ()
        assert {r.resource_id: r.control_type for r in rm.resources}["roof"] is ControlType.NOT_CONTROLLABLE
        assert "takes no power limit" in (rm.controllable("roof") or "")
        assert rm.capabilities.pv_reason is not None
        with pytest.raises(ModelNotFound, match="takes no power limit"):
            await rm.set_pv_limit(300.0)
    finally:
        await rm.close()
        await meter_sim.stop()
        await pv_sim.stop()


async def test_several_micro_inverters_share_the_houses_limit() -> None:
    """Two OpenDTUs (800 W and 1600 W) and an IQ Gateway (no limit, 500 W): PV is the sum; a house limit
    of 1700 W leaves 1200 W after the Gateway's production, split 400/800 by rating; a new limit while
    they apply is held, then split again."""
    meter_sim = SIMS["shelly_pro_em"](power_w=-1000.0)
    small = SIMS["opendtu_hoymiles"](available_w=700.0, rated_w=800.0)
    large = SIMS["opendtu_hoymiles"](available_w=1500.0, rated_w=1600.0, serial="114182180002")
    envoy = SIMS["enphase_envoy"](available_w=500.0)
    pvs = [_rm("opendtu_hoymiles", "east", "pv", await small.start()),
           LanDeviceRM("west", "pv", LanDevice(load_lan_entry("opendtu_hoymiles"), "127.0.0.1", await large.start(), 0.5,
                                               serial="114182180002", password="openDTU42"), 10.0),
           _rm("enphase_envoy", "roof", "pv", await envoy.start())]
    rm = LanHouseRM(_rm("shelly_pro_em", "em", "grid_meter", await meter_sim.start()), pvs, ManualClock(T0))
    try:
        await rm.connect()
        snap = await _poll(rm, 5.0)
        assert snap.telemetry.pv_power_w.value == -2700.0 and snap.telemetry.load_power_w.value == 1700.0
        assert {r.resource_id: r.control_type for r in rm.resources} == {
            "em": ControlType.NOT_CONTROLLABLE, "east": ControlType.PEBC, "west": ControlType.PEBC,
            "roof": ControlType.NOT_CONTROLLABLE}
        assert [c.resource_id for c in snap.flexibility.curtailments] == ["east", "west"]
        assert rm.capabilities.pv_reason is None and rm.pv_rating_w is not None and rm.pv_rating_w >= 2400.0
        await rm.set_pv_limit(1700.0)
        assert (small.pv.pending[0], large.pv.pending[0]) == (400.0, 800.0)  # type: ignore[index]
        await rm.set_pv_limit(1400.0)  # still applying: held
        assert small.pv.limit_calls == large.pv.limit_calls == 1
        await asyncio.sleep(0.4)
        await _poll(rm, 5.0)  # applied: the held 1400 W goes out, 900 W after the Gateway's 500 W
        assert (small.pv.pending[0], large.pv.pending[0]) == (300.0, 600.0)  # type: ignore[index]
        await asyncio.sleep(0.4)
        assert (await _poll(rm, 5.0)).telemetry.pv_power_w.value == -1400.0
        await rm.release()
        assert (small.pv.pending[0], large.pv.pending[0]) == (800.0, 1600.0)  # type: ignore[index]
    finally:
        await rm.close()
        for sim in (meter_sim, small, large, envoy):
            await sim.stop()


async def test_a_house_without_pv_reads_its_meter() -> None:
    meter_sim = SIMS["shelly_pro_3em"](power_w=450.0)
    rm = LanHouseRM(_rm("shelly_pro_3em", "em", "grid_meter", await meter_sim.start()), [], ManualClock(T0))
    try:
        await rm.connect()
        t = (await rm.poll()).telemetry
        assert (t.grid_power_w.value, t.pv_power_w.value, t.load_power_w.value) == (450.0, 0.0, 450.0)
        assert [r.resource_id for r in rm.resources] == ["em"] and rm.pv_rating_w is None
        assert "no micro-inverter" in (rm.capabilities.pv_reason or "")
        with pytest.raises(ModelNotFound, match="no micro-inverter"):
            await rm.set_pv_limit(300.0)
        await rm.release()
    finally:
        await rm.close()
        await meter_sim.stop()


async def test_edge_agent_run_assembles_the_house_and_polls_each_device_once() -> None:
    """``edge-agent run``'s assembly: the meter and the micro-inverter are the house's, the plugs are
    polled beside it; a second attach (as ``_run`` does) adds nothing (it used to poll them twice)."""
    from edge_agent.cli import attach_lan_devices, lan_agent
    from edge_agent.config import AgentConfig, DeviceConfig
    from edge_agent.lan_config import LanDeviceConfig
    from edge_agent.lan_devices import LanDevices

    def dev(rid: str, model: str, role: str, port: int, **kw: str) -> LanDeviceConfig:
        return LanDeviceConfig(id=rid, model=model, host="127.0.0.1", port=port, role=role, **kw)  # type: ignore[arg-type]

    config = AgentConfig(house_id="h1", insecure=True, metrics_port=None, state_dir=None,
                         device=DeviceConfig(kind="lan"),
                         lan_devices=[dev("p1", "dsmr5_p1", "grid_meter", 1),
                                      dev("balcony", "opendtu_hoymiles", "pv", 2, serial="114182180001"),
                                      dev("freezer", "shelly_plug_s", "load", 3)])
    agent = lan_agent(config, ManualClock(T0))
    assert isinstance(agent.device, LanHouseRM)
    attach_lan_devices(agent)
    lans = [c for c in agent.components if isinstance(c, LanDevices)]
    assert len(lans) == 1 and list(lans[0].rms) == ["freezer"]
    assert [r.resource_id for r in agent._hello().resources] == ["p1", "balcony"]
    # Home Assistant's battery buttons on a house without one: refused with the reason, nothing applied
    why = agent.apply_local("hold_battery", 1.0, "home_assistant")
    assert why is not None and "no battery" in why and agent.override is None
    assert agent.apply_local("control_mode", "self_consumption", "home_assistant") is None
