"""Acceptance: every catalogue entry and the SunSpec hybrid, each against its simulator over real Modbus TCP.

All points are read, a charge and a discharge are commanded and the effect is
seen in the simulator's physics.  Time is a ManualClock (night: no PV, so the
battery power is exactly what was commanded).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from edge_agent.drivers.catalogue import catalogue_ids, load_entry
from edge_agent.drivers.catalogue_device import CatalogueDevice
from edge_agent.drivers.errors import DeviceRejected, DeviceUnavailable
from edge_agent.drivers.sunspec import SunSpecDevice
from edge_agent.resources.hybrid import HybridInverterRM
from simulator.catalogue_device import CatalogueSimulator
from simulator.hybrid_device import DER_MODELS, Faults, SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from vpp_common.clock import ManualClock

pytestmark = pytest.mark.timeout(30)

NIGHT = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)
PHYSICS = PhysicsConfig(initial_soc_pct=50.0, battery_max_charge_w=5_000.0, battery_max_discharge_w=5_000.0)


@dataclass
class Harness:
    """What the parametrised test needs from a device + simulator pair."""

    read_all: Callable[[], Awaitable[dict[str, Any]]]
    command: Callable[[float], Awaitable[None]]
    release: Callable[[], Awaitable[None]]
    sim: Any


@pytest.fixture(params=[*catalogue_ids(), "sunspec_hybrid", "sunspec_der"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    clock = ManualClock(NIGHT)
    if request.param.startswith("sunspec"):
        # sunspec_der: 701/702/713/704 instead of 103/120/123/124 (battery through 704 WSet)
        order = DER_MODELS if request.param == "sunspec_der" else None
        async with SunSpecHybridSimulator(SimulatorConfig(physics=PHYSICS, model_order=order), clock) as sim:
            rm = HybridInverterRM(SunSpecDevice("127.0.0.1", sim.port, timeout_s=1.0), clock)
            await rm.connect()

            async def read_all() -> dict[str, Any]:
                dev = rm._dev  # the RM's own driver: read every discovered model
                out: dict[str, Any] = {}
                seen: dict[int, int] = {}
                for m in await dev.discover():
                    index = seen.get(m.model_id, 0)
                    seen[m.model_id] = index + 1
                    out[f"{m.model_id}/{index}"] = await dev.read_model(m.model_id, index)
                return out

            try:
                yield Harness(read_all, rm.set_battery_power, rm.release, sim)
            finally:
                await rm.close()
    else:
        async with CatalogueSimulator(request.param, clock, PHYSICS) as sim:
            dev = CatalogueDevice(load_entry(request.param), "127.0.0.1", sim.port, timeout_s=1.0)
            try:
                yield Harness(dev.read_all, dev.command_battery, dev.release, sim)
            finally:
                await dev.close()


async def test_read_charge_discharge(harness: Harness) -> None:
    sim = harness.sim
    values = await harness.read_all()
    assert values, "nothing read"
    if isinstance(sim, CatalogueSimulator):
        assert set(values) == set(sim.entry.points)  # every point of the map
    soc0 = sim.snapshot().soc_pct

    await harness.command(3_000.0)
    assert sim.snapshot().battery_power_w == pytest.approx(3_000.0, abs=60)
    sim.clock.advance(50)  # within every device's revert timer (Victron: 60 s)
    soc1 = sim.snapshot().soc_pct
    assert soc1 > soc0 + 0.3  # 3 kW x 50 s x 0.95 into 10 kWh = +0.4 %

    await harness.command(-2_000.0)
    assert sim.snapshot().battery_power_w == pytest.approx(-2_000.0, abs=60)
    sim.clock.advance(20)
    assert sim.snapshot().soc_pct < soc1

    await harness.release()
    await harness.read_all()


@pytest.mark.parametrize("model", catalogue_ids())
async def test_catalogue_measurements_follow_physics(model: str) -> None:
    clock = ManualClock(datetime(2024, 6, 1, 12, 0, tzinfo=UTC))
    async with CatalogueSimulator(model, clock, PHYSICS) as sim:
        dev = CatalogueDevice(load_entry(model), "127.0.0.1", sim.port, timeout_s=1.0)
        try:
            await dev.command_battery(-1_500.0)
            m = dev.measurements(await dev.read_all())
            s = sim.snapshot()
            assert m["soc_pct"] == pytest.approx(s.soc_pct, abs=1.0)  # Victron: whole %
            assert m["battery_power_w"] == pytest.approx(-1_500.0, abs=5)
            assert m["grid_power_w"] == pytest.approx(s.grid_power_w, abs=5)
            assert m["pv_power_w"] == pytest.approx(s.pv_power_w, abs=5) and m["pv_power_w"] < 0
            if "max_charge_w" in m:  # Victron GX publishes no rated charge power
                assert m["max_charge_w"] == pytest.approx(5_000.0)
        finally:
            await dev.close()


@pytest.mark.parametrize("model, revert_s", [("victron_gx", 60), ("huawei_sun2000_luna2000", 300)])
async def test_device_side_revert(model: str, revert_s: float) -> None:
    clock = ManualClock(NIGHT)
    async with CatalogueSimulator(model, clock, PHYSICS) as sim:
        dev = CatalogueDevice(load_entry(model), "127.0.0.1", sim.port, timeout_s=1.0)
        try:
            await dev.command_battery(2_000.0)
            clock.advance(revert_s - 1)
            assert sim.snapshot().battery_power_w == pytest.approx(2_000.0, abs=60)
            clock.advance(2)
            assert sim.snapshot().battery_power_w != pytest.approx(2_000.0, abs=60)
            assert sim.reverts
        finally:
            await dev.close()


async def test_catalogue_faults_and_recovery() -> None:
    clock = ManualClock(NIGHT)
    async with CatalogueSimulator("sungrow_sh", clock, PHYSICS) as sim:
        dev = CatalogueDevice(load_entry("sungrow_sh"), "127.0.0.1", sim.port, timeout_s=0.3)
        try:
            sim.faults = Faults(exception_code=6)
            with pytest.raises(DeviceRejected):
                await dev.read_all()
            sim.faults = Faults(timeout=True)
            with pytest.raises(DeviceUnavailable):
                await dev.read_all()
            sim.faults = Faults(implausible=True)
            assert dev.measurements(await dev.read_all())["soc_pct"] > 100
            sim.faults = Faults()
            assert 0 <= dev.measurements(await dev.read_all())["soc_pct"] <= 100
        finally:
            await dev.close()


async def test_simulator_refuses_bad_writes() -> None:
    clock = ManualClock(NIGHT)
    entry = load_entry("sungrow_sh")
    async with CatalogueSimulator(entry, clock, PHYSICS) as sim:
        dev = CatalogueDevice(entry, "127.0.0.1", sim.port, timeout_s=1.0)
        try:
            client = await dev._link.ensure()
            rr = await client.write_registers(13049, [7], device_id=1)  # EMS mode 7 does not exist
            assert rr.isError()
            rr = await client.write_registers(13021, [1], device_id=1)  # not a writable point
            assert rr.isError()
            assert sim.writes == []
        finally:
            await dev.close()
