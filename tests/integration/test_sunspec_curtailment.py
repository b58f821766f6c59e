"""PV curtailment through SunSpec model 123 (WMaxLimPct + WMaxLim_Ena, with revert), via the hybrid RM."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge_agent.drivers.sunspec import SunSpecDevice
from edge_agent.resources.house import HouseSettings
from edge_agent.resources.hybrid import HybridInverterRM
from edge_agent.resources.s2 import battery_frbc_system_description
from simulator.hybrid_device import SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from vpp_common.clock import ManualClock

pytestmark = pytest.mark.timeout(30)
NOON = datetime(2024, 6, 1, 13, 0, tzinfo=UTC)


async def test_pv_limit_caps_production_and_reverts() -> None:
    clock = ManualClock(NOON)
    cfg = SimulatorConfig(physics=PhysicsConfig(pv_kwp=8.0), inverter_rating_w=10_000.0)
    async with SunSpecHybridSimulator(cfg, clock) as sim:
        rm = HybridInverterRM(SunSpecDevice("127.0.0.1", sim.port, timeout_s=1.0), clock, HouseSettings(revert_s=60))
        await rm.connect()
        try:
            free = sim.snapshot().pv_power_w
            assert free < -5_000.0  # production negative
            await rm.set_pv_limit(2_500.0)
            assert sim.snapshot().pv_power_w == pytest.approx(-2_500.0, abs=10.0)
            assert sim.physics.pv_limit_w == pytest.approx(2_500.0, abs=10.0)
            clock.advance(30)
            await rm.set_pv_limit(2_500.0)  # refresh keeps it
            clock.advance(59)
            assert sim.snapshot().pv_power_w == pytest.approx(-2_500.0, abs=10.0)
            clock.advance(2)  # no refresh for 61 s: the device lifts the limit by itself
            assert sim.snapshot().pv_power_w < -5_000.0
            assert sim.curtail_reverts
            await rm.set_pv_limit(0.0)
            assert sim.snapshot().pv_power_w == 0.0
            await rm.set_pv_limit(None)
            assert sim.snapshot().pv_power_w < -5_000.0
            with pytest.raises(ValueError):
                await rm.set_pv_limit(-1.0)
        finally:
            await rm.close()


async def test_other_model_order_and_model1_length_65_discovered_and_controlled() -> None:
    clock = ManualClock(NOON)
    order = (802, 203, 160, 124, 123, 120, 103)
    cfg = SimulatorConfig(model1_length=65, model_order=order)
    async with SunSpecHybridSimulator(cfg, clock) as sim:
        rm = HybridInverterRM(SunSpecDevice("127.0.0.1", sim.port, timeout_s=1.0), clock)
        await rm.connect()
        try:
            models = await rm._dev.discover()
            assert [m.model_id for m in models] == [1, *order]
            assert models[0].length == 65
            snap = await rm.poll()
            assert snap.telemetry.battery_soc_pct.value == pytest.approx(50.0, abs=0.5)
            sd = battery_frbc_system_description(rm.battery_id, rm.battery_nameplate(), NOON)
            assert len(sd.actuators[0].operation_modes) == 3
            await rm.set_battery_power(3_000.0)
            assert sim.snapshot().battery_power_w == pytest.approx(3_000.0, abs=60)
            await rm.set_battery_power(-2_000.0)
            assert sim.snapshot().battery_power_w == pytest.approx(-2_000.0, abs=60)
            await rm.set_pv_limit(1_000.0)
            assert sim.snapshot().pv_power_w == pytest.approx(-1_000.0, abs=10)
            await rm.release()
        finally:
            await rm.close()


def test_model_order_must_be_a_permutation() -> None:
    with pytest.raises(ValueError, match="model_order"):
        SimulatorConfig(model_order=(103, 124))
