"""The generic SunSpec driver against the hybrid simulator over real loopback Modbus TCP.

Time is a ManualClock: the revert timer and the SoC integration are driven
by ``clock.advance`` and never waited for.  Waits on the network are bounded
by the driver's timeout and by pytest-timeout.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pymodbus.constants import ExcCodes

from edge_agent.drivers.errors import (
    DeviceRejected,
    DeviceUnavailable,
    ModelNotFound,
    NotSunSpec,
)
from edge_agent.drivers.sunspec import ModelLocation, SunSpecDevice
from simulator.hybrid_device import Faults, SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from vpp_common.clock import ManualClock

pytestmark = pytest.mark.timeout(30)

NOON = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
NIGHT = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)
HYBRID_MODELS = [1, 103, 120, 123, 124, 160, 203, 802]


def unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def clock() -> ManualClock:
    return ManualClock(NOON)


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[SunSpecHybridSimulator]:
    async with SunSpecHybridSimulator(SimulatorConfig(), clock) as simulator:
        yield simulator


@pytest.fixture
async def device(sim: SunSpecHybridSimulator) -> AsyncIterator[SunSpecDevice]:
    dev = SunSpecDevice("127.0.0.1", sim.port, unit_id=1, timeout_s=1.0)
    try:
        yield dev
    finally:
        await dev.close()


def assert_chain(models: tuple[ModelLocation, ...], base: int) -> None:
    assert [m.model_id for m in models] == HYBRID_MODELS
    assert models[0].address == base + 2
    for prev, nxt in zip(models, models[1:]):
        assert nxt.address == prev.address + 2 + prev.length


# -- discovery ------------------------------------------------------------


async def test_discovery_at_40000(sim: SunSpecHybridSimulator, device: SunSpecDevice) -> None:
    models = await device.discover()
    assert device.base_address == 40000
    assert_chain(models, 40000)
    assert [(m.model_id, m.address, m.length) for m in models] == \
        [(m.model_id, m.address, m.length) for m in sim.image.models]


@pytest.mark.parametrize("base", [0, 50000])
async def test_discovery_at_other_bases(clock: ManualClock, base: int) -> None:
    async with SunSpecHybridSimulator(SimulatorConfig(), clock, base_address=base) as simulator:
        dev = SunSpecDevice("127.0.0.1", simulator.port, 1, timeout_s=1.0)
        try:
            models = await dev.discover()
            assert dev.base_address == base
            assert_chain(models, base)
            common = await dev.read_model(1)
            assert common["Mn"] == "VPP-Sim"
        finally:
            await dev.close()


async def test_model1_with_length_65_still_walks(clock: ManualClock) -> None:
    async with SunSpecHybridSimulator(SimulatorConfig(model1_length=65), clock) as simulator:
        dev = SunSpecDevice("127.0.0.1", simulator.port, 1, timeout_s=1.0)
        try:
            models = await dev.discover()
            assert models[0] == ModelLocation(1, 40002, 65)
            assert models[1].address == 40002 + 2 + 65
            assert_chain(models, 40000)
            common = await dev.read_model(1)
            assert (common["Mn"], common["Md"], common["SN"]) == ("VPP-Sim", "Hybrid", "SIM-0001")
            assert common.decode_errors == ()
            inverter = await dev.read_model(103)
            assert inverter["W"] == pytest.approx(simulator.snapshot().inverter_ac_power_w, abs=0.5)
        finally:
            await dev.close()


async def test_no_marker_is_not_sunspec(sim: SunSpecHybridSimulator) -> None:
    # Inside the image but not at its start: registers answer, none says "SunS";
    # outside it the device refuses the address. Both mean "not SunSpec here".
    dev = SunSpecDevice("127.0.0.1", sim.port, 1, timeout_s=1.0, base_addresses=(40010, 0, 50000))
    try:
        with pytest.raises(NotSunSpec):
            await dev.discover()
    finally:
        await dev.close()


async def test_missing_model_is_model_not_found(device: SunSpecDevice) -> None:
    with pytest.raises(ModelNotFound):
        await device.read_model(113)
    with pytest.raises(ModelNotFound):
        await device.read_model(103, index=1)


# -- reads ----------------------------------------------------------------


async def test_read_all_models_match_physics(clock: ManualClock, sim: SunSpecHybridSimulator,
                                             device: SunSpecDevice) -> None:
    clock.advance(1800)  # let the energy counters move
    snap = sim.snapshot()
    cfg = sim.config
    assert snap.pv_power_w < 0 and snap.battery_power_w > 0  # sunny noon: charging

    common = await device.read_model(1)
    assert (common["Mn"], common["Md"], common["SN"], common["DA"]) == ("VPP-Sim", "Hybrid", "SIM-0001", 1)

    inverter = await device.read_model(103)
    assert inverter["W"] == pytest.approx(snap.inverter_ac_power_w, abs=0.5)  # production positive
    assert inverter["WH"] == pytest.approx(cfg.energy_counter_start_wh + snap.inverter_produced_wh, abs=0.5)
    assert inverter["PhVphA"] == 230.0
    assert inverter["Hz"] == 50.0
    assert inverter["St"] == 4  # MPPT
    assert inverter["VA"] is None and inverter["VA_SF"] is None  # not implemented, not 0
    assert inverter["DCA"] is None

    nameplate = await device.read_model(120)
    assert nameplate["DERTyp"] == 82
    assert nameplate["WRtg"] == cfg.inverter_rating_w
    assert nameplate["WHRtg"] == cfg.physics.battery_capacity_wh
    assert nameplate["MaxChaRte"] == cfg.physics.battery_max_charge_w
    assert nameplate["MaxDisChaRte"] == cfg.physics.battery_max_discharge_w
    assert nameplate["AhrRtg"] is None

    storage = await device.read_model(124)
    assert storage["WChaMax"] == cfg.physics.battery_max_charge_w
    assert storage["StorCtl_Mod"] == 0
    assert storage["ChaState"] == pytest.approx(snap.soc_pct, abs=0.05)
    assert storage["ChaSt"] == 4  # CHARGING
    assert storage["MinRsvPct"] == cfg.physics.min_soc_pct
    assert storage["InOutWRte_RvrtTms"] == 0
    assert storage["ChaGriSet"] == 1
    assert storage["VAChaMax"] is None

    mppt = await device.read_model(160)
    modules = mppt.groups["module"]
    assert mppt["N"] == len(modules) == 2
    assert [m["IDStr"] for m in modules] == ["PV1", "PV2"]
    assert sum(float(m["DCW"] or 0) for m in modules) == pytest.approx(-snap.pv_power_w, abs=1.0)
    assert mppt.group("module", 1)["Tmp"] is None

    meter = await device.read_model(203)
    assert meter["W"] == pytest.approx(snap.grid_power_w, abs=0.5)  # import positive
    assert meter["TotWhExp"] == pytest.approx(cfg.energy_counter_start_wh + snap.grid_exported_wh, abs=0.5)
    assert meter["TotWhImp"] == pytest.approx(cfg.energy_counter_start_wh + snap.grid_imported_wh, abs=0.5)

    battery = await device.read_model(802)
    assert battery["SoC"] == pytest.approx(snap.soc_pct, abs=0.05)
    assert battery["W"] == pytest.approx(-snap.battery_power_w, abs=0.5)  # 802 W: discharge positive
    assert battery["WHRtg"] == cfg.physics.battery_capacity_wh
    assert battery["Hb"] == 1800


async def test_model_read_in_chunks_of_at_most_125(sim: SunSpecHybridSimulator, device: SunSpecDevice,
                                                   clock: ManualClock) -> None:
    # Model 203 has L = 105: 107 registers in one request; a 6-module MPPT model
    # (L = 128) needs two.
    async with SunSpecHybridSimulator(SimulatorConfig(mppt_modules=6), clock) as big:
        dev = SunSpecDevice("127.0.0.1", big.port, 1, timeout_s=1.0)
        try:
            mppt = await dev.read_model(160)
            assert mppt.length == 8 + 6 * 20
            assert len(mppt.groups["module"]) == 6
            assert mppt.group("module", 5)["IDStr"] == "PV6"
        finally:
            await dev.close()


async def test_meter_and_battery_signs_are_configurable(clock: ManualClock) -> None:
    config = SimulatorConfig(meter_sign="export_positive", battery_802_sign="charge_positive")
    async with SunSpecHybridSimulator(config, clock) as simulator:
        dev = SunSpecDevice("127.0.0.1", simulator.port, 1, timeout_s=1.0)
        try:
            snap = simulator.snapshot()
            assert (await dev.read_model(203))["W"] == pytest.approx(-snap.grid_power_w, abs=0.5)
            assert (await dev.read_model(802))["W"] == pytest.approx(snap.battery_power_w, abs=0.5)
        finally:
            await dev.close()


# -- writes ---------------------------------------------------------------


async def test_write_battery_target_and_physics_follows(clock: ManualClock) -> None:
    clock.set(NIGHT)
    config = SimulatorConfig(physics=PhysicsConfig(charge_efficiency=0.95))
    async with SunSpecHybridSimulator(config, clock) as simulator:
        dev = SunSpecDevice("127.0.0.1", simulator.port, 1, timeout_s=1.0)
        try:
            before = simulator.snapshot()
            assert before.battery_power_w < 0  # night: covering the load
            mode_addr = simulator.address_of(124, "StorCtl_Mod")
            waiter = asyncio.create_task(
                simulator.wait_for_write(lambda w: w.covers(mode_addr), timeout_s=5.0))
            await asyncio.sleep(0)  # the waiter is registered before the command goes out
            sent = time.monotonic()
            # +2000 W (charging) = 40 % of WChaMax 5000 W, as a fixed window.
            await dev.write_points(124, {"InWRte": 40.0, "OutWRte": -40.0, "StorCtl_Mod": 3})
            write = await waiter
            assert write.value_at(mode_addr) == 3
            assert 0.0 <= write.monotonic_s - sent < 1.0  # command -> register latency
            assert write.at == NIGHT

            snap = simulator.snapshot()
            assert snap.battery_power_w == pytest.approx(2000.0)
            assert snap.grid_power_w == pytest.approx(snap.load_power_w + 2000.0)
            storage = await dev.read_model(124)
            assert (storage["StorCtl_Mod"], storage["InWRte"], storage["OutWRte"]) == (3, 40.0, -40.0)
            assert (await dev.read_model(802))["W"] == pytest.approx(-2000.0, abs=0.5)

            clock.advance(3600)
            # 2000 W for 1 h at 95 % into 10 kWh: +19 %.
            assert (await dev.read_model(124))["ChaState"] == pytest.approx(before.soc_pct + 19.0, abs=0.05)
        finally:
            await dev.close()


async def test_write_runs_follow_the_callers_order(sim: SunSpecHybridSimulator, device: SunSpecDevice) -> None:
    await device.write_points(124, {"InWRte": -20.0, "OutWRte": 20.0, "StorCtl_Mod": 3})
    rates_addr = sim.address_of(124, "OutWRte")
    mode_addr = sim.address_of(124, "StorCtl_Mod")
    # OutWRte and InWRte are adjacent: one write_registers; the mode goes last.
    assert [(w.address, w.values) for w in sim.writes] == [(rates_addr, (2000, (-2000) & 0xFFFF)), (mode_addr, (3,))]
    assert sim.snapshot().battery_power_w == pytest.approx(-1000.0)


async def test_revert_timer_falls_back_to_self_consumption(clock: ManualClock, sim: SunSpecHybridSimulator,
                                                           device: SunSpecDevice) -> None:
    self_consumption_w = sim.snapshot().battery_power_w
    await device.write_points(124, {"InOutWRte_RvrtTms": 60, "InWRte": -30.0, "OutWRte": 30.0,
                                    "StorCtl_Mod": 3})
    start = clock.now()
    assert sim.snapshot().battery_power_w == pytest.approx(-1500.0)

    clock.advance(40)
    await device.write_points(124, {"StorCtl_Mod": 3})  # a refresh restarts the timer
    clock.advance(59)
    storage = await device.read_model(124)
    assert storage["StorCtl_Mod"] == 3
    assert sim.reverts == []

    clock.advance(2)
    storage = await device.read_model(124)
    assert storage["StorCtl_Mod"] == 0
    assert sim.reverts == [start + timedelta(seconds=100)]
    snap = sim.snapshot()
    assert snap.battery_power_w == pytest.approx(self_consumption_w, rel=0.05)  # same sun, 101 s later
    assert snap.window_upper_w == sim.config.physics.battery_max_charge_w


async def test_device_refuses_out_of_range_value(sim: SunSpecHybridSimulator, device: SunSpecDevice) -> None:
    # 150 % fits an int16 with SF -2, so the driver sends it; the device refuses it.
    with pytest.raises(DeviceRejected) as info:
        await device.write_points(124, {"InWRte": 150.0})
    assert info.value.exception_code == ExcCodes.ILLEGAL_VALUE
    with pytest.raises(DeviceRejected) as info:
        await device.write_points(124, {"StorCtl_Mod": 4})
    assert info.value.exception_code == ExcCodes.ILLEGAL_VALUE
    assert sim.writes == []
    assert (await device.read_model(124))["InWRte"] == 100.0


async def test_driver_validates_before_any_write(sim: SunSpecHybridSimulator, device: SunSpecDevice) -> None:
    with pytest.raises(ValueError, match="outside"):
        await device.write_points(124, {"StorCtl_Mod": 3, "InWRte": 400.0})  # raw 40000 > int16
    with pytest.raises(ValueError, match="read-only"):
        await device.write_points(124, {"ChaState": 50.0})
    with pytest.raises(ValueError, match="no top-level point"):
        await device.write_points(124, {"NoSuchPoint": 1})
    with pytest.raises(ValueError, match="finite"):
        await device.write_points(124, {"InWRte": float("nan")})
    with pytest.raises(ValueError, match="scale factor"):
        await device.write_points(124, {"VAChaMax": 1000})  # VAChaMax_SF not implemented
    assert sim.writes == []


async def test_write_to_read_only_register_is_refused_by_device(sim: SunSpecHybridSimulator) -> None:
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=1.0, retries=0, reconnect_delay=0)
    try:
        assert await client.connect()
        rr = await client.write_register(sim.address_of(124, "ChaState"), 10, device_id=1)
        assert rr.isError() and rr.exception_code == ExcCodes.ILLEGAL_ADDRESS
    finally:
        client.close()
    assert sim.writes == []


# -- failures -------------------------------------------------------------


async def test_exception_response_is_device_rejected(sim: SunSpecHybridSimulator, device: SunSpecDevice) -> None:
    await device.discover()
    sim.faults = Faults(exception_code=ExcCodes.DEVICE_BUSY)
    with pytest.raises(DeviceRejected) as info:
        await device.read_model(103)
    assert info.value.exception_code == ExcCodes.DEVICE_BUSY
    sim.faults = Faults()
    assert (await device.read_model(103))["W"] is not None


async def test_stopped_server_is_device_unavailable_then_reconnects(clock: ManualClock) -> None:
    port = unused_port()
    first = SunSpecHybridSimulator(SimulatorConfig(), clock, port=port)
    await first.start()
    dev = SunSpecDevice("127.0.0.1", port, 1, timeout_s=0.5)
    try:
        await dev.read_model(124)
        await first.stop()
        with pytest.raises(DeviceUnavailable):
            await dev.read_model(124)
        with pytest.raises(DeviceUnavailable):
            await dev.read_model(124)  # still down: connecting fails
        async with SunSpecHybridSimulator(SimulatorConfig(), clock, port=port):
            storage = await dev.read_model(124)  # the next call reconnects by itself
            assert storage["StorCtl_Mod"] == 0
    finally:
        await first.stop()
        await dev.close()


async def test_nothing_listening_is_device_unavailable() -> None:
    dev = SunSpecDevice("127.0.0.1", unused_port(), 1, timeout_s=0.5)
    try:
        with pytest.raises(DeviceUnavailable):
            await dev.connect()
        with pytest.raises(DeviceUnavailable):
            await dev.discover()
    finally:
        await dev.close()


async def test_timeout_is_device_unavailable(sim: SunSpecHybridSimulator) -> None:
    dev = SunSpecDevice("127.0.0.1", sim.port, 1, timeout_s=0.2)
    try:
        await dev.discover()
        sim.faults = Faults(timeout=True)
        with pytest.raises(DeviceUnavailable):
            await dev.read_model(802)
        sim.faults = Faults()
        assert (await dev.read_model(802))["SoC"] is not None  # fresh connection, no stale answer
    finally:
        await dev.close()


async def test_slow_answers(sim: SunSpecHybridSimulator) -> None:
    dev = SunSpecDevice("127.0.0.1", sim.port, 1, timeout_s=0.2)
    try:
        await dev.discover()
        sim.faults = Faults(slow_s=0.05)
        assert (await dev.read_model(124))["ChaState"] is not None
        sim.faults = Faults(slow_s=0.6)
        with pytest.raises(DeviceUnavailable):
            await dev.read_model(124)
        sim.faults = Faults()
        assert (await dev.read_model(124))["ChaState"] is not None
    finally:
        await dev.close()


async def test_implausible_values_are_passed_through(sim: SunSpecHybridSimulator, device: SunSpecDevice) -> None:
    # The driver reports what the device says; judging plausibility is the caller's job.
    sim.faults = Faults(implausible=True)
    assert (await device.read_model(124))["ChaState"] == 250.0
    sim.faults = Faults()
    assert (await device.read_model(124))["ChaState"] == pytest.approx(sim.snapshot().soc_pct, abs=0.05)


async def test_wait_for_write_times_out(sim: SunSpecHybridSimulator) -> None:
    with pytest.raises(TimeoutError):
        await sim.wait_for_write(lambda w: True, timeout_s=0.05)


async def test_dropped_connection_then_reconnect(sim: SunSpecHybridSimulator) -> None:
    dev = SunSpecDevice("127.0.0.1", sim.port, 1, timeout_s=0.2)
    try:
        await dev.discover()
        sim.faults = Faults(disconnect=True)  # open connection dropped, new ones refused
        with pytest.raises(DeviceUnavailable):
            await dev.read_model(124)
        with pytest.raises(DeviceUnavailable):
            await dev.read_model(124)  # still refused: the reconnect attempt fails cleanly
        sim.faults = Faults()
        deadline = asyncio.get_running_loop().time() + 5.0
        while True:  # the simulator listens again in the background: bounded retry, as the agent's poll does
            try:
                values = await dev.read_model(124)
                break
            except DeviceUnavailable:
                assert asyncio.get_running_loop().time() < deadline, "no reconnect within 5 s"
                await asyncio.sleep(0.02)
        assert values["ChaState"] is not None
        assert sim.port == dev.port  # same port as before the fault
    finally:
        await dev.close()
