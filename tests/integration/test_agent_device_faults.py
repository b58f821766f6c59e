"""Issue 3 acceptance, agent level: each device fault kind against the real edge agent loop.

The real :class:`EdgeAgent` (poll, control and uplink tasks) runs against a
device simulator over Modbus TCP on loopback; a :class:`ManualClock` drives
both, so polls happen when the test advances time and nothing sleeps.  For
each fault kind: the agent's tasks stay up, its telemetry and metrics mark
the device data stale/implausible, no setpoint is issued (nor reaches the
device) while the data is not fresh, and reads and writes resume once the
fault clears.  There is no aggregator (the uplink keeps retrying a closed
port): the agent is safe on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pymodbus.constants import ExcCodes

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, BatteryConfig, ControlConfig, DeviceConfig
from edge_agent.drivers.catalogue import catalogue_ids
from simulator.catalogue_device import CatalogueSimulator
from simulator.hybrid_device import DER_MODELS, Faults, SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from tests.conftest import free_port, until
from vpp_common.clock import ManualClock
from vpp_common.messages import Validity

pytestmark = pytest.mark.timeout(60)

NOON = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
POLL_S = 1.0  # clock seconds between polls
STALE_AFTER_S = 10.0  # clock seconds: a failed read keeps the last value this long (marked stale), then missing
REVERT_S = 10  # device-side revert timer of the setpoint (the agent refreshes at half)
TIMEOUT_S = 0.2  # real seconds per Modbus request
RECONNECT_MAX_S = 4.0  # clock seconds: a dead device is tried again after at most this long

FAULTS = {
    "timeout": Faults(timeout=True),
    "exception": Faults(exception_code=ExcCodes.DEVICE_BUSY),
    "implausible": Faults(implausible=True),
    "disconnect": Faults(disconnect=True),
    "slow": Faults(slow_s=3 * TIMEOUT_S),  # answers, but after the driver gave up
}


def agent_config(port: int, catalogue: str | None = None) -> AgentConfig:
    return AgentConfig(
        house_id="house-faults", insecure=True, metrics_port=None,
        aggregator=f"127.0.0.1:{free_port()}", reconnect_initial_s=5.0, reconnect_max_s=5.0,
        device=DeviceConfig(port=port, catalogue=catalogue, timeout_s=TIMEOUT_S, poll_interval_s=POLL_S,
                            stale_after_s=STALE_AFTER_S, reconnect_max_s=RECONNECT_MAX_S),
        battery=BatteryConfig(revert_s=REVERT_S),
        control=ControlConfig(tick_s=0.02, deadband_w=20),  # tick in real seconds with a ManualClock
    )


async def poll(agent: EdgeAgent, clock: ManualClock, step_s: float = POLL_S) -> None:
    """Advance the clock by ``step_s`` (>= the poll interval) and wait for the poll that it lets run."""
    n = agent.stats.polls
    clock.advance(step_s)
    await until(lambda: agent.stats.polls > n, "a device poll")


async def control_ticks(agent: EdgeAgent, n: int) -> None:
    """Wait for ``n`` more control decisions (the control loop ticks in real time)."""
    done = sum(agent.stats.decisions.values())
    await until(lambda: sum(agent.stats.decisions.values()) >= done + n, f"{n} control ticks")


def valid_gauge(agent: EdgeAgent, quantity: str) -> float | None:
    return agent.metrics.registry.get_sample_value("vpp_edge_measurement_valid", {"quantity": quantity})


def tasks_alive(agent: EdgeAgent) -> bool:
    return bool(agent._tasks) and all(not t.done() for t in agent._tasks)


Simulator = SunSpecHybridSimulator | CatalogueSimulator
DEVICES = ["sunspec", "sunspec_der", *catalogue_ids()]


def simulator(device: str, clock: ManualClock) -> Simulator:
    physics = PhysicsConfig(initial_soc_pct=50)
    if device.startswith("sunspec"):
        order = DER_MODELS if device == "sunspec_der" else None  # der: battery through 704 WSet
        return SunSpecHybridSimulator(SimulatorConfig(physics=physics, model_order=order), clock)
    return CatalogueSimulator(device, clock, physics)


def commanded(sim: Simulator, since: int) -> bool:
    """A battery command reached the device after ``sim.writes[since]``."""
    if isinstance(sim, SunSpecHybridSimulator):
        if 124 in (sim.config.model_order or (124,)):
            storctl = sim.address_of(124, "StorCtl_Mod")
            return any(w.covers(storctl) and w.value_at(storctl) == 3 for w in sim.writes[since:])
        wset = sim.address_of(704, "WSet")
        return any(w.covers(wset) for w in sim.writes[since:])
    return len(sim.writes) > since


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", list(FAULTS))
async def test_agent_rides_out_a_device_fault(device: str, kind: str) -> None:
    clock = ManualClock(NOON)
    sim = simulator(device, clock)
    await sim.start()
    agent = EdgeAgent(agent_config(sim.port, None if device.startswith("sunspec") else device), clock=clock)
    try:
        await agent.start()
        await agent.wait_ready(5.0)
        await until(lambda: agent.stats.writes >= 1, "the first setpoint")
        assert commanded(sim, 0)
        assert valid_gauge(agent, "battery_soc") == 1

        # -- fault ----------------------------------------------------------------
        sim.faults = FAULTS[kind]
        device_writes = len(sim.writes)
        attempts = agent.stats.writes + agent.stats.write_errors
        errors = agent.stats.poll_errors
        await poll(agent, clock)
        assert agent.stats.poll_errors > errors
        snap = agent.snapshot
        assert snap is not None
        soc = snap.telemetry.battery_soc_pct
        assert soc.validity is (Validity.IMPLAUSIBLE if kind == "implausible" else Validity.STALE)
        assert soc.value != 0.0  # stale is not zero
        assert valid_gauge(agent, "battery_soc") == 0
        held = agent.stats.writes_held_stale
        await control_ticks(agent, 5)
        assert agent.stats.writes + agent.stats.write_errors == attempts, "a setpoint was issued on stale data"
        assert agent.stats.writes_held_stale >= held + 5
        assert agent.metrics.registry.get_sample_value("vpp_edge_device_writes_total", {"result": "held_stale"})
        # long enough for a refresh to fall due and for the last good values to expire
        await poll(agent, clock, STALE_AFTER_S + 1)
        if kind != "implausible":
            assert agent.snapshot is not None and agent.snapshot.telemetry.battery_soc_pct.validity is Validity.MISSING
            assert agent.snapshot.flexibility.storages == ()  # no flexibility offered on missing data
        await control_ticks(agent, 5)
        assert tasks_alive(agent), "an agent task ended during the fault"
        assert agent.stats.writes + agent.stats.write_errors == attempts, "a setpoint was issued on stale data"
        if isinstance(sim, SunSpecHybridSimulator):
            # nothing refreshed the setpoint: the device's own revert timer handed the battery back
            assert sim.snapshot().at >= clock.now() and sim.reverts

        # -- fault cleared ----------------------------------------------------------
        sim.faults = Faults()
        await sim.wait_listening()
        assert len(sim.writes) == device_writes, "a write reached the device during the fault"
        for _ in range(2 * int(RECONNECT_MAX_S) + 3):  # the next retry of the device, then its answer
            await poll(agent, clock)
            if agent.snapshot is not None and agent.snapshot.telemetry.battery_soc_pct.usable:
                break
        assert agent.snapshot is not None and agent.snapshot.telemetry.battery_soc_pct.validity is Validity.VALID
        assert valid_gauge(agent, "battery_soc") == 1
        await until(lambda: commanded(sim, device_writes), "the setpoint written again after recovery")
        # the device sees the write before the agent has its answer: wait for the agent's count too
        await until(lambda: agent.stats.writes > attempts - agent.stats.write_errors, "the agent counting the write")
        assert tasks_alive(agent)
    finally:
        await agent.stop()
        await sim.stop()
