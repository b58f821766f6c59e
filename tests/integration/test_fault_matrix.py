"""Issue 19 acceptance: the fault matrix.  One case per fault kind of ``vpp-sim device --fault``,
the real EdgeAgent against a real Modbus simulator on loopback, driven by a ManualClock.

* data faults (timeout, exception, implausible, slow, disconnect, frozen, stale): no write reaches the
  device from stale or frozen data (frozen: once detected, within a few polls), and the agent writes
  again once the fault clears;
* register resets (reboot, revert, other_master): the export is above the cap for at most one poll
  period (the next poll reads the control registers back and re-asserts them at once), and the house
  stays under control after the fault clears;
* a scale factor changed at run time: read and written right, the cap holds.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pymodbus.constants import ExcCodes

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, BatteryConfig, ControlConfig, DeviceConfig, SiteConfig
from edge_agent.drivers.catalogue import catalogue_ids
from edge_agent.energy_manager.decide import fresh_for_control
from simulator.catalogue_device import CatalogueSimulator
from simulator.fault_control import inject, parse_fault
from simulator.hybrid_device import DER_MODELS, Faults, SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from simulator.split_house import ROLES, Role, SplitHouseSimulator
from tests.conftest import free_port, until
from tests.integration.test_agent_split_house import EV
from tests.integration.test_agent_split_house import agent_config as split_config
from tests.integration.test_agent_split_house import resource as split_resource
from vpp_common.clock import ManualClock
from vpp_common.messages import Validity

pytestmark = pytest.mark.timeout(60)

NOON = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
POLL_S = 1.0
REVERT_S = 10
TIMEOUT_S = 0.2
CAP_W = 3000.0
TOLERANCE_W = 60.0  # meter rounding and the agent's own margin
FROZEN_DETECT_POLLS = 10  # counters owe 2 steps, held >= 5 s: detected within this many 1 s polls

DATA_FAULTS = {
    "timeout": Faults(timeout=True),
    "exception": Faults(exception_code=ExcCodes.DEVICE_BUSY),
    "implausible": Faults(implausible=True),
    "slow": Faults(slow_s=3 * TIMEOUT_S),
    "disconnect": Faults(disconnect=True),
    "frozen": "frozen",
    "stale": "stale",
}
RESETS = ("reboot", "revert", "other_master")
DEVICES = ("sunspec", "sunspec_der")


def agent_config(port: int) -> AgentConfig:
    return AgentConfig(
        house_id="house-matrix", insecure=True, metrics_port=None,
        aggregator=f"127.0.0.1:{free_port()}", reconnect_initial_s=5.0, reconnect_max_s=5.0,
        site=SiteConfig(max_export_w=CAP_W),
        device=DeviceConfig(port=port, timeout_s=TIMEOUT_S, poll_interval_s=POLL_S, stale_after_s=10.0,
                            reconnect_max_s=4.0),
        battery=BatteryConfig(revert_s=REVERT_S),
        control=ControlConfig(tick_s=0.02, deadband_w=20),
    )


def simulator(device: str, clock: ManualClock, soc: float) -> SunSpecHybridSimulator:
    # a full battery cannot take the noon surplus: the export cap needs the PV limit
    physics = PhysicsConfig(initial_soc_pct=soc)
    return SunSpecHybridSimulator(SimulatorConfig(physics=physics,
                                                  model_order=DER_MODELS if device == "sunspec_der" else None), clock)


async def poll(agent: EdgeAgent, clock: ManualClock, step_s: float = POLL_S) -> None:
    n = agent.stats.polls
    clock.advance(step_s)
    await until(lambda: agent.stats.polls > n, "a device poll")


async def settle(agent: EdgeAgent) -> None:
    """Let the control loop act on the newest snapshot (it ticks in real time)."""
    done = sum(agent.stats.decisions.values())
    await until(lambda: sum(agent.stats.decisions.values()) >= done + 2, "control ticks")


def export_over_cap(sim: SunSpecHybridSimulator) -> float:
    """W exported beyond the cap now (0 if within), from the simulator's physics (the real house)."""
    return max(0.0, -sim.snapshot().grid_power_w - CAP_W)


async def under_control(agent: EdgeAgent, sim: SunSpecHybridSimulator, clock: ManualClock, polls: int = 15) -> None:
    for _ in range(polls):
        await poll(agent, clock)
        await settle(agent)
        if export_over_cap(sim) <= TOLERANCE_W and agent.snapshot and agent.snapshot.telemetry.grid_power_w.usable:
            return
    raise AssertionError(f"house not under its cap: {export_over_cap(sim):.0f} W over after {polls} polls")


def metric(agent: EdgeAgent, name: str, labels: dict[str, str] | None = None) -> float:
    return agent.metrics.registry.get_sample_value(name, labels or {}) or 0.0


@pytest.fixture
async def house(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    device, soc = request.param
    clock = ManualClock(NOON)
    sim = simulator(device, clock, soc)
    await sim.start()
    agent = EdgeAgent(agent_config(sim.port), clock=clock)
    try:
        await agent.start()
        await agent.wait_ready(5.0)
        await until(lambda: agent.stats.writes >= 1, "the first setpoint")
        await under_control(agent, sim, clock)
        yield agent, sim, clock
    finally:
        await agent.stop()
        await sim.stop()


@pytest.mark.parametrize("house", [(d, 100.0) for d in DEVICES], indirect=True, ids=DEVICES)
@pytest.mark.parametrize("kind", RESETS)
async def test_register_reset_is_reasserted_within_one_poll(house, kind: str) -> None:  # type: ignore[no-untyped-def]
    agent, sim, clock = house
    assert agent.writes.pv_limit is not None, "the cap needs a PV limit in this house"
    before = len(sim.writes)
    reasserts = metric(agent, "vpp_edge_device_reasserts_total")
    inject(sim, parse_fault(kind))  # once, now
    t0 = clock.now()
    assert export_over_cap(sim) > 500, "the fault should put the house over its cap"
    await poll(agent, clock)  # the next poll reads the control registers back ...
    # ... and the control loop re-asserts them at once, past the deadband and the write guard
    await until(lambda: export_over_cap(sim) <= TOLERANCE_W, "the export cap restored", timeout_s=5.0)
    assert (clock.now() - t0).total_seconds() == POLL_S
    assert len(sim.writes) > before and all(w.at <= clock.now() for w in sim.writes[before:])
    assert metric(agent, "vpp_edge_device_reasserts_total") >= reasserts + 1
    assert metric(agent, "vpp_edge_refused_total", {"source": "device", "reason": "control_overridden"}) >= 1
    # and it stays under control afterwards
    for _ in range(REVERT_S):
        await poll(agent, clock)
        await settle(agent)
        assert export_over_cap(sim) <= TOLERANCE_W
    assert metric(agent, "vpp_edge_device_controlled") == 1


@pytest.mark.parametrize("house", [("sunspec", 100.0)], indirect=True, ids=["sunspec"])
async def test_other_master_fighting_back_makes_the_device_uncontrolled(house) -> None:  # type: ignore[no-untyped-def]
    """A master that overwrites every poll: re-asserting does not stick; declared uncontrolled; given
    back once the other master stops."""
    agent, sim, clock = house
    sim.faults = Faults(other_master_every_s=POLL_S)
    for _ in range(8):
        await poll(agent, clock)
        await settle(agent)
        if metric(agent, "vpp_edge_device_controlled") == 0:
            break
    assert metric(agent, "vpp_edge_device_controlled") == 0
    assert metric(agent, "vpp_edge_refused_total", {"source": "device", "reason": "uncontrolled"}) == 1
    sim.faults = Faults()
    # ordinary refresh writes the setpoints again; once they hold for a while, controlled again
    for _ in range(4 * REVERT_S):
        await poll(agent, clock)
        await settle(agent)
        if metric(agent, "vpp_edge_device_controlled") == 1:
            break
    assert metric(agent, "vpp_edge_device_controlled") == 1
    await under_control(agent, sim, clock)


@pytest.mark.parametrize("house", [(d, 60.0) for d in DEVICES], indirect=True, ids=DEVICES)
@pytest.mark.parametrize("kind", list(DATA_FAULTS))
async def test_no_write_from_stale_or_frozen_data(house, kind: str) -> None:  # type: ignore[no-untyped-def]
    agent, sim, clock = house
    fault = DATA_FAULTS[kind]
    if isinstance(fault, str):
        inject(sim, parse_fault(fault))
    else:
        sim.faults = fault
    detected_after = None
    first_writes = len(sim.writes)
    for i in range(1, FROZEN_DETECT_POLLS + 1):
        await poll(agent, clock)
        snap = agent.snapshot
        assert snap is not None
        if not fresh_for_control(snap.telemetry):
            detected_after = i
            break
    assert detected_after is not None, "the fault was not noticed"
    print(f"{kind}: not fresh for control after {detected_after} poll(s) of {POLL_S:g} s; "
          f"{len(sim.writes) - first_writes} write(s) before that")
    if kind in ("frozen", "stale"):
        assert snap.telemetry.grid_power_w.validity is Validity.STALE and snap.frozen
        assert detected_after <= 3
        assert len(sim.writes) - first_writes <= 1  # before it was noticed: at most a refresh falling due
        assert metric(agent, "vpp_edge_refused_total", {"source": "device", "reason": "frozen"}) >= 1
    else:
        assert detected_after == 1
    await settle(agent)  # a write begun on the poll before may still land
    writes = len(sim.writes)
    attempts = agent.stats.writes + agent.stats.write_errors
    for _ in range(REVERT_S + 2):  # past a refresh
        await poll(agent, clock)
        await settle(agent)
    assert len(sim.writes) == writes, "a write reached the device from stale or frozen data"
    assert agent.stats.writes + agent.stats.write_errors == attempts
    sim.faults = Faults()
    await sim.wait_listening()
    for _ in range(12):
        await poll(agent, clock)
        if agent.snapshot is not None and agent.snapshot.telemetry.grid_power_w.usable:
            break
    assert agent.snapshot is not None and agent.snapshot.telemetry.battery_soc_pct.validity is Validity.VALID
    assert not agent.snapshot.frozen
    await until(lambda: len(sim.writes) > writes, "writes again after the fault cleared")
    await under_control(agent, sim, clock)


@pytest.mark.parametrize("house", [(d, 100.0) for d in DEVICES], indirect=True, ids=DEVICES)
async def test_scale_factor_outside_sunspec_range_is_not_used(house) -> None:  # type: ignore[no-untyped-def]
    """W_SF = -20 (the issue's case): the powers read as missing, nothing written from them."""
    agent, sim, clock = house
    inject(sim, parse_fault("scale_factor:W_SF=-20"))
    await poll(agent, clock)
    assert agent.snapshot is not None and not fresh_for_control(agent.snapshot.telemetry)
    await settle(agent)
    writes = len(sim.writes)
    for _ in range(REVERT_S + 2):
        await poll(agent, clock)
        await settle(agent)
    assert len(sim.writes) == writes
    assert metric(agent, "vpp_edge_refused_total", {"source": "device", "reason": "scale_factor"}) >= 1
    sim.faults = Faults()
    await under_control(agent, sim, clock)


@pytest.mark.parametrize("house", [(d, 100.0) for d in DEVICES], indirect=True, ids=DEVICES)
async def test_scale_factor_changed_at_run_time(house) -> None:  # type: ignore[no-untyped-def]
    agent, sim, clock = house
    inject(sim, parse_fault("scale_factor:W_SF=1"))
    for _ in range(REVERT_S):
        await poll(agent, clock)
        await settle(agent)
        snap = agent.snapshot
        assert snap is not None and snap.telemetry.grid_power_w.usable
        assert abs(snap.telemetry.grid_power_w.value - sim.snapshot().grid_power_w) <= 10.0  # 10 W steps now
        assert export_over_cap(sim) <= TOLERANCE_W
    sim.faults = Faults()
    await under_control(agent, sim, clock)


# -- vendor (catalogue) devices: the battery command read back from the vendor's own registers ---------

CATALOGUE_RESETS = [("reboot", e) for e in catalogue_ids()] + [("revert", "huawei_sun2000_luna2000")]
# (Sungrow holds forced mode without a timeout; Victron's timeout leaves the setpoint register as it
# was: a revert there cannot be seen in the registers, only the device's own timer ends it.)


@pytest.fixture
async def vendor_house(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    entry = request.param
    clock = ManualClock(NOON)
    sim = CatalogueSimulator(entry, clock, PhysicsConfig(initial_soc_pct=60.0))
    await sim.start()
    config = agent_config(sim.port)
    config = config.model_copy(update={"device": config.device.model_copy(update={"catalogue": entry})})
    agent = EdgeAgent(config, clock=clock)
    try:
        await agent.start()
        await agent.wait_ready(5.0)
        await until(lambda: agent.stats.writes >= 1, "the first setpoint")
        for _ in range(3):
            await poll(agent, clock)
            await settle(agent)
        yield agent, sim, clock
    finally:
        await agent.stop()
        await sim.stop()


@pytest.mark.parametrize(("kind", "vendor_house"), CATALOGUE_RESETS, indirect=["vendor_house"],
                         ids=[f"{k}-{e}" for k, e in CATALOGUE_RESETS])
async def test_vendor_register_reset_is_reasserted_within_one_poll(  # type: ignore[no-untyped-def]
        vendor_house, kind: str) -> None:
    agent, sim, clock = vendor_house
    await settle(agent)
    before, written = len(sim.writes), agent.stats.writes
    inject(sim, parse_fault(kind))
    t0 = clock.now()
    await poll(agent, clock)
    # the whole sequence (several requests) written: the agent counts it once the last step is in
    await until(lambda: agent.stats.writes > written, "the battery command re-asserted")
    assert all((w.at - t0).total_seconds() <= POLL_S for w in sim.writes[before:])
    assert metric(agent, "vpp_edge_device_reasserts_total") >= 1
    n = len(sim.writes)
    for _ in range(3):  # it holds: no more re-asserts
        await poll(agent, clock)
        await settle(agent)
    assert metric(agent, "vpp_edge_device_reasserts_total") == 1 and metric(agent, "vpp_edge_device_controlled") == 1
    assert len(sim.writes) - n <= 3  # ordinary control (deadband moves) only


@pytest.mark.parametrize("vendor_house", catalogue_ids(), indirect=True)
async def test_vendor_frozen_registers_stop_the_writes(vendor_house) -> None:  # type: ignore[no-untyped-def]
    agent, sim, clock = vendor_house
    assert abs(sim.snapshot().battery_power_w) > 1000, "the SoC must move for a freeze to show"
    # a quantity counts once it was seen to move (a register a device never updates is no alarm)
    soc = agent.snapshot.telemetry.battery_soc_pct.value if agent.snapshot else None
    for _ in range(120):  # 1 % steps at ~5 kW on 10 kWh: one step in ~70 s
        await poll(agent, clock)
        if agent.snapshot is not None and agent.snapshot.telemetry.battery_soc_pct.value != soc:
            break
    sim.faults = Faults(frozen=True)
    for i in range(1, 301):  # then it owes 2 steps: seconds at 0.1 %, minutes at 1 % and low power
        await poll(agent, clock)
        if agent.snapshot is not None and not fresh_for_control(agent.snapshot.telemetry):
            break
    assert agent.snapshot is not None and agent.snapshot.frozen, "the freeze was not noticed"
    print(f"{sim.entry.device.id}: frozen noticed after {i} poll(s) at battery {sim.snapshot().battery_power_w:.0f} W")
    writes = len(sim.writes)
    for _ in range(REVERT_S + 2):
        await poll(agent, clock)
        await settle(agent)
    assert len(sim.writes) == writes, "a write reached the device from frozen data"
    sim.faults = Faults()
    for _ in range(5):
        await poll(agent, clock)
    assert agent.snapshot is not None and fresh_for_control(agent.snapshot.telemetry)
    await until(lambda: len(sim.writes) > writes, "writes again after the freeze")


# -- a house of separate devices: a frozen device makes only its own measurements stale ---------------

@pytest.mark.parametrize("role", ROLES)
async def test_one_frozen_device_of_a_split_house(role: Role) -> None:
    clock = ManualClock(NOON)
    # a full battery: the surplus is exported, so the meter's counters must move too
    sim = SplitHouseSimulator(SimulatorConfig(physics=PhysicsConfig(initial_soc_pct=100.0, load_base_w=1_000.0)),
                              clock, ev=EV)
    await sim.start()
    agent = EdgeAgent(split_config(sim), clock=clock)
    try:
        await agent.start()
        await agent.wait_ready(5.0)
        await until(lambda: agent.stats.writes >= 1, "the first setpoint")
        for _ in range(5):  # every counter seen moving once
            await poll(agent, clock)
        assert all(split_resource(agent, r) is Validity.VALID for r in ROLES)
        sim.views[role].faults = Faults(frozen=True)
        for i in range(1, 21):
            await poll(agent, clock)
            if split_resource(agent, role) is Validity.STALE:
                break
        assert split_resource(agent, role) is Validity.STALE, f"the frozen {role} device was not noticed"
        print(f"split house: frozen {role} noticed after {i} poll(s)")
        for other in ROLES:
            if other != role:
                assert split_resource(agent, other) is Validity.VALID, f"{other} went stale with the {role}"
        await settle(agent)
        writes = len(sim.hybrid.writes)
        for _ in range(REVERT_S):
            await poll(agent, clock)
            await settle(agent)
        if role in ("battery", "meter"):  # control needs them: nothing written on frozen data
            assert len(sim.hybrid.writes) == writes
        sim.views[role].faults = Faults()
        for _ in range(5):
            await poll(agent, clock)
            if split_resource(agent, role) is Validity.VALID:
                break
        assert all(split_resource(agent, r) is Validity.VALID for r in ROLES)
        await until(lambda: len(sim.hybrid.writes) > writes, "control after the freeze")
    finally:
        await agent.stop()
        await sim.stop()
