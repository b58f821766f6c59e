"""The real edge agent against every vendor catalogue device, configured by ``device.catalogue``.

Plans reach the battery through the catalogue entry's control sequences (the
effect is seen in the simulator's physics), and every write passes the
agent's write guard: a changed setpoint inside ``device.write_min_interval_s``
is deferred (not lost, not believed written) and goes out once the interval
has passed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, BatteryConfig, ControlConfig, DeviceConfig
from edge_agent.drivers.catalogue import catalogue_ids
from edge_agent.house_devices import resource_manager
from edge_agent.resources.catalogue import CatalogueHybridRM
from edge_agent.resources.hybrid import HybridInverterRM
from simulator.catalogue_device import CatalogueSimulator
from simulator.physics import PhysicsConfig
from tests.conftest import free_port, until
from vpp_common.clock import ManualClock
from vpp_common.config import ConfigError
from vpp_common.messages import DispatchPlan, Envelope, PlanSlot, Setpoint

pytestmark = pytest.mark.timeout(60)

NIGHT = datetime(2026, 6, 21, 2, 0, tzinfo=UTC)  # no PV: the battery follows the plan unclamped


def config(port: int, model: str, **device: object) -> AgentConfig:
    return AgentConfig(
        house_id="house-cat", insecure=True, metrics_port=None, aggregator=f"127.0.0.1:{free_port()}",
        reconnect_initial_s=5.0, reconnect_max_s=5.0,
        device=DeviceConfig(port=port, catalogue=model, timeout_s=0.5, poll_interval_s=1.0, **device),  # type: ignore[arg-type]
        battery=BatteryConfig(revert_s=60), control=ControlConfig(tick_s=0.02, deadband_w=20))


def plan(version: int, now: datetime, target_w: float) -> DispatchPlan:
    slots = tuple(PlanSlot(now + timedelta(minutes=15 * i), (Setpoint("battery", target_w, Envelope(target_w, target_w)),))
                  for i in range(4))
    return DispatchPlan(str(uuid.uuid4()), version, now, now, now + timedelta(hours=1), 900, slots)


async def poll(agent: EdgeAgent, clock: ManualClock, step_s: float = 1.0) -> None:
    n = agent.stats.polls
    clock.advance(step_s)
    await until(lambda: agent.stats.polls > n, "a device poll")


def test_config_picks_the_resource_manager() -> None:
    clock = ManualClock(NIGHT)
    assert isinstance(resource_manager(config(1502, "sungrow_sh").model_copy(
        update={"device": DeviceConfig(port=1502)}), clock), HybridInverterRM)
    rm = resource_manager(config(1502, "victron_gx", capacity_wh=13_500), clock)
    assert isinstance(rm, CatalogueHybridRM) and rm._dev.unit_id == 100  # the entry's own unit id
    assert rm._dev.write_guard is not None  # writes pass the guard
    with pytest.raises(ValueError, match="unknown catalogue entry"):
        DeviceConfig(catalogue="no_such_inverter")
    with pytest.raises(ConfigError, match="revert_s"):  # Victron drops a setpoint after 60 s
        resource_manager(config(1502, "victron_gx").model_copy(update={"battery": BatteryConfig(revert_s=120)}), clock)
    with pytest.raises(ConfigError, match="write_min_interval_s"):  # the refresh could never get through
        resource_manager(config(1502, "sungrow_sh", write_min_interval_s=45), clock)


@pytest.mark.parametrize("model", catalogue_ids())
async def test_agent_follows_plans_on_a_catalogue_device(model: str) -> None:
    clock = ManualClock(NIGHT)
    async with CatalogueSimulator(model, clock, PhysicsConfig(initial_soc_pct=50)) as sim:
        agent = EdgeAgent(config(sim.port, model), clock=clock)
        await agent.start()
        try:
            await agent.wait_ready(5.0)
            for version, target in ((1, 2_000.0), (2, -1_500.0)):
                agent._on_plan(plan(version, clock.now(), target))
                await until(lambda t=target: abs(sim.snapshot().battery_power_w - t) < 60,  # type: ignore[misc]
                            f"{model} battery at {target} W")
                await poll(agent, clock)
                t = agent.snapshot.telemetry if agent.snapshot else None
                assert t is not None and t.battery_power_w.usable
                assert t.battery_power_w.value == pytest.approx(target, abs=60)  # read back through the map
        finally:
            await agent.stop()


async def test_write_guard_defers_a_change_inside_the_interval() -> None:
    clock = ManualClock(NIGHT)
    async with CatalogueSimulator("sungrow_sh", clock, PhysicsConfig(initial_soc_pct=50)) as sim:
        agent = EdgeAgent(config(sim.port, "sungrow_sh", write_min_interval_s=20), clock=clock)
        await agent.start()
        try:
            await agent.wait_ready(5.0)
            agent._on_plan(plan(1, clock.now(), 2_000.0))
            await until(lambda: abs(sim.snapshot().battery_power_w - 2_000.0) < 60, "battery at 2000 W")
            deferred = {"result": "deferred"}
            before = agent.metrics.registry.get_sample_value("vpp_edge_device_writes_total", deferred) or 0.0
            agent._on_plan(plan(2, clock.now(), 1_000.0))  # 0 s after the last write: too soon
            await until(lambda: (agent.metrics.registry.get_sample_value("vpp_edge_device_writes_total", deferred)
                                 or 0.0) > before + 2, "deferred writes")
            assert sim.snapshot().battery_power_w == pytest.approx(2_000.0, abs=60)  # not written yet
            for _ in range(21):
                await poll(agent, clock)
            await until(lambda: abs(sim.snapshot().battery_power_w - 1_000.0) < 60, "battery at 1000 W after 20 s")
        finally:
            await agent.stop()
