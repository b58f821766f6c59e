"""The agent's local ``tou`` mode end to end: real agent against the Modbus device simulator,
no aggregator reachable, on a manual clock.  It plans on its own tariff with its own
forecast and charges in the cheap hour for an expensive evening."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import (
    AgentConfig,
    ControlConfig,
    DeviceConfig,
    TariffConfig,
    TariffPeriodConfig,
)
from simulator.hybrid_device import SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from tests.conftest import free_port
from tests.e2e.test_one_house import until
from vpp_common.clock import UTC, ManualClock

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 6, 21, 2, 0, tzinfo=UTC)
TARIFF = TariffConfig(periods=[
    TariffPeriodConfig(start=time(2), end=time(3), import_price_per_kwh=0.10, export_price_per_kwh=0.05),
    TariffPeriodConfig(start=time(3), end=time(17), import_price_per_kwh=0.30, export_price_per_kwh=0.05),
    TariffPeriodConfig(start=time(17), end=time(21), import_price_per_kwh=0.50, export_price_per_kwh=0.05),
    TariffPeriodConfig(start=time(21), end=time(2), import_price_per_kwh=0.30, export_price_per_kwh=0.05),
])


async def test_tou_mode_charges_in_the_cheap_hour_without_an_aggregator() -> None:
    clock = ManualClock(T0)
    sim = SunSpecHybridSimulator(SimulatorConfig(physics=PhysicsConfig(initial_soc_pct=40, pv_kwp=0.5)), clock)
    await sim.start()
    cfg = AgentConfig(house_id="house-tou", aggregator=f"127.0.0.1:{free_port()}", insecure=True,
                      metrics_port=None, reconnect_initial_s=0.05, reconnect_max_s=0.3,
                      device=DeviceConfig(port=sim.port, poll_interval_s=0.2),
                      control=ControlConfig(mode="tou", tick_s=0.1, deadband_w=20), tariff=TARIFF)
    agent = EdgeAgent(cfg, clock=clock)
    await agent.start()
    try:
        await until(lambda: agent.stats.last_decision is not None, what="first decision")
        assert agent.forecaster is not None and agent.local_tou is not None
        # the house's history: two days with a 3 kW evening (17-21 h), 300 W otherwise, no PV
        t = T0 - timedelta(days=2)
        while t < T0:
            agent.forecaster.add(t, 3000.0 if 17 <= t.hour < 21 else 300.0, 0.0)
            t += timedelta(minutes=5)
        clock.advance(900)  # the next slot: a new plan with this forecast
        t1 = clock.now()

        def charging() -> bool:
            d, plan = agent.stats.last_decision, agent.local_tou.current if agent.local_tou else None
            return (d is not None and d.mode == "plan" and d.battery_w > 4000 and plan is not None
                    and plan.valid_from == t1)
        await until(charging, what="grid charging in the cheap hour")
        plan = agent.local_tou.current
        assert plan is not None and plan.version >= 2 and "cheap import" in plan.slots[0].reason
        await until(lambda: sim.snapshot().window_lower_w > 4000, what="the battery charges")
        # the charge is for the evening peak, which the plan covers from the battery
        peak = [s.setpoints[0] for s in plan.slots if 17 <= s.start.hour < 21]
        assert len(peak) == 16 and all(sp.target_power_w <= 0 for sp in peak), peak
        assert sum(sp.target_power_w < -1000 for sp in peak) >= 12, peak
    finally:
        await agent.stop()
        await sim.stop()
