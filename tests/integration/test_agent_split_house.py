"""A house of four separate devices (battery inverter, PV inverter, grid meter, EV charger).

The real edge agent, configured with ``[[device.parts]]``, polls the four
devices of a :class:`SplitHouseSimulator` (one house physics, one Modbus TCP
server per device) on loopback.  It reads every device, commands the battery
and curtails PV through their own devices, and when one device fails only
that device's measurements go stale: the others stay valid, control goes on
unless the failed device is one that control needs (battery or meter), and
the device is read again when it comes back.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import (
    AgentConfig,
    BatteryConfig,
    ControlConfig,
    DeviceConfig,
    DevicePartConfig,
)
from edge_agent.resources.hybrid import HybridInverterRM
from simulator.hybrid_device import Faults, SimulatorConfig
from simulator.physics import PhysicsConfig
from simulator.split_house import ROLES, EvSchedule, Role, SplitHouseSimulator
from tests.conftest import free_port, until
from tests.integration.test_agent_device_faults import (
    FAULTS,
    RECONNECT_MAX_S,
    control_ticks,
    poll,
    tasks_alive,
)
from vpp_common.clock import ManualClock
from vpp_common.messages import ResourceKind, Validity

pytestmark = pytest.mark.timeout(60)

NOON = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
EV = EvSchedule(start_hour=11.0, end_hour=14.0, power_w=2_000.0)  # a car on the wallbox at noon
POLL_S = 1.0
STALE_AFTER_S = 10.0
TIMEOUT_S = 0.2
RESOURCE_OF: dict[Role, str] = {"battery": "battery", "pv": "pv", "meter": "grid_meter", "ev_charger": "ev_charger"}


def house(clock: ManualClock) -> SplitHouseSimulator:
    physics = PhysicsConfig(initial_soc_pct=50, load_base_w=3_000.0)
    return SplitHouseSimulator(SimulatorConfig(physics=physics), clock, ev=EV)


def agent_config(sim: SplitHouseSimulator) -> AgentConfig:
    return AgentConfig(
        house_id="house-split", insecure=True, metrics_port=None,
        aggregator=f"127.0.0.1:{free_port()}", reconnect_initial_s=5.0, reconnect_max_s=5.0,
        device=DeviceConfig(timeout_s=TIMEOUT_S, poll_interval_s=POLL_S, stale_after_s=STALE_AFTER_S,
                            reconnect_max_s=RECONNECT_MAX_S,
                            parts=[DevicePartConfig(role=r, host="127.0.0.1", port=sim.port(r)) for r in ROLES]),
        battery=BatteryConfig(revert_s=10),
        control=ControlConfig(tick_s=0.02, deadband_w=20),
    )


def resource(agent: EdgeAgent, role: Role) -> Validity:
    assert agent.snapshot is not None
    return next(r.power_w.validity for r in agent.snapshot.telemetry.resources if r.resource_id == RESOURCE_OF[role])


async def test_four_devices_read_and_controlled() -> None:
    clock = ManualClock(NOON)
    async with house(clock) as sim:
        agent = EdgeAgent(agent_config(sim), clock=clock)
        rm = agent.device
        assert isinstance(rm, HybridInverterRM) and rm.split
        await rm.connect()
        try:
            assert {r.kind for r in rm.resources} == {ResourceKind.BATTERY, ResourceKind.PV,
                                                      ResourceKind.GRID_METER, ResourceKind.EV_CHARGER}
            snap = await rm.poll()
            phys = sim.hybrid.snapshot()
            t = snap.telemetry
            assert t.grid_power_w.value == pytest.approx(phys.grid_power_w, abs=2)
            assert t.pv_power_w.value == pytest.approx(phys.pv_power_w, abs=2)
            assert t.battery_power_w.value == pytest.approx(phys.battery_power_w, abs=2)
            assert t.battery_soc_pct.value == pytest.approx(phys.soc_pct, abs=0.5)
            assert t.load_power_w.value == pytest.approx(phys.load_power_w, abs=5)
            ev = next(r for r in t.resources if r.resource_id == "ev_charger")
            assert ev.power_w.validity is Validity.VALID
            assert ev.power_w.value == pytest.approx(sim.ev_power_w(), abs=2) and ev.power_w.value > 1_000
            # every device saw requests: four connections, four servers
            assert all(v.requests > 0 for v in sim.views.values())

            pv_requests = sim.views["pv"].requests
            await rm.set_battery_power(3_000.0)  # through the battery inverter's model 124
            assert sim.hybrid.snapshot().battery_power_w == pytest.approx(3_000.0, abs=60)
            assert sim.views["pv"].requests == pv_requests  # the battery write went to the battery only
            await rm.set_battery_power(-2_000.0)
            assert sim.hybrid.snapshot().battery_power_w == pytest.approx(-2_000.0, abs=60)
            await rm.set_pv_limit(1_500.0)  # through the PV inverter's model 123
            assert sim.hybrid.snapshot().pv_power_w == pytest.approx(-1_500.0, abs=20)
            snap = await rm.poll()
            assert snap.telemetry.pv_power_w.value == pytest.approx(-1_500.0, abs=20)
            await rm.set_pv_limit(None)
            await rm.release()
        finally:
            await rm.close()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("kind", ["timeout", "disconnect", "exception"])
async def test_one_device_fails_the_others_keep_working(role: Role, kind: str) -> None:
    clock = ManualClock(NOON)
    sim = house(clock)
    await sim.start()
    agent = EdgeAgent(agent_config(sim), clock=clock)
    try:
        await agent.start()
        await agent.wait_ready(5.0)
        await until(lambda: agent.stats.writes >= 1, "the first setpoint")
        assert all(resource(agent, r) is Validity.VALID for r in ROLES)

        sim.views[role].faults = FAULTS[kind]
        await poll(agent, clock)
        await poll(agent, clock)  # unavailable within two polling periods
        assert resource(agent, role) is Validity.STALE
        assert agent.metrics.registry.get_sample_value("vpp_edge_resource_valid",
                                                       {"resource": RESOURCE_OF[role]}) == 0
        for other in ROLES:
            if other != role:
                assert resource(agent, other) is Validity.VALID, f"{other} went down with the {role}"
        if kind == "timeout":  # retried with backoff, not at every poll
            asked = sim.views[role].requests
            for _ in range(8):
                await poll(agent, clock)
            assert sim.views[role].requests - asked <= 5, "a device that does not answer is asked at every poll"
        writes = agent.stats.writes + agent.stats.write_errors
        await poll(agent, clock, STALE_AFTER_S + 1)
        assert resource(agent, role) is Validity.MISSING  # stale, then missing: never a made-up 0 W
        await control_ticks(agent, 5)
        await poll(agent, clock, 6.0)  # a setpoint refresh (at half the 10 s revert time) falls due
        await control_ticks(agent, 5)
        assert tasks_alive(agent)
        if role in ("battery", "meter"):  # control needs them: nothing written on stale data
            assert agent.stats.writes + agent.stats.write_errors == writes
        else:  # PV or the wallbox offline: the battery is still controlled
            assert agent.stats.writes > writes

        sim.views[role].faults = Faults()
        await sim.views[role].wait_listening()
        for _ in range(2 * int(RECONNECT_MAX_S) + 3):  # the next retry of the device, then its answer
            await poll(agent, clock)
            if resource(agent, role) is Validity.VALID:
                break
        assert all(resource(agent, r) is Validity.VALID for r in ROLES)
        await until(lambda: agent.stats.writes > writes, "control after recovery")
    finally:
        await agent.stop()
        await sim.stop()


def test_parts_config_is_checked() -> None:
    part = DevicePartConfig
    with pytest.raises(ValueError, match="exactly one 'meter'"):
        DeviceConfig(parts=[part(role="battery", host="h")])
    with pytest.raises(ValueError, match="at most one 'pv'"):
        DeviceConfig(parts=[part(role="battery", host="h"), part(role="meter", host="h"),
                            part(role="pv", host="a"), part(role="pv", host="b")])
    with pytest.raises(ValueError, match="catalogue"):
        DeviceConfig(catalogue="victron_gx", parts=[part(role="battery", host="h"), part(role="meter", host="h")])
    with pytest.raises(ValueError, match="role"):
        part(role="heat_pump", host="h")  # type: ignore[arg-type]
    # two roles on one address share one driver (one connection, one write guard)
    cfg = AgentConfig(house_id="h", insecure=True, device=DeviceConfig(parts=[
        part(role="battery", host="10.0.0.5"), part(role="pv", host="10.0.0.5"),
        part(role="meter", host="10.0.0.6", unit_id=2)]))
    rm = EdgeAgent(cfg, clock=ManualClock(NOON)).device
    assert isinstance(rm, HybridInverterRM) and rm.split and len(rm._devices()) == 2
