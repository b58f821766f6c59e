"""The appliances behind the plug simulators (simulator/appliances.py), read through the agent's LAN
driver: a washing machine that runs its profile when switched on while armed, a freezer on its
thermostat, a power station charging to full; the plugs' faults; ``vpp-sim lan-device --appliance``
with ``arm`` on its control channel."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime

import pytest

from edge_agent.drivers.errors import DeviceRefused, DeviceUnavailable
from edge_agent.drivers.lan_catalogue import load_lan_entry
from edge_agent.drivers.lan_device import LanDevice
from simulator.appliances import Freezer, PowerStation, WashingMachine, make_appliance
from simulator.cli import main
from simulator.fault_control import handle_command, send_commands
from simulator.shelly_device import ShellySim
from simulator.tasmota_device import TasmotaSim
from tests.conftest import free_port
from tests.integration.test_lan_sim_cli import _env
from vpp_common.clock import ManualClock

pytestmark = pytest.mark.timeout(60)
T0 = datetime(2026, 6, 22, 12, 0, tzinfo=UTC)


async def _power(dev: LanDevice) -> float:
    return float((await dev.read()).values["power"])


@pytest.mark.parametrize("model", ["shelly_plug_s", "tasmota_plug"])
async def test_washing_machine_runs_its_profile_when_switched_on_while_armed(model: str) -> None:
    clock = ManualClock(T0)
    sim = ShellySim(model) if model == "shelly_plug_s" else TasmotaSim()
    washer = WashingMachine(clock=clock)
    sim.appliance = washer
    dev = LanDevice(load_lan_entry(model), "127.0.0.1", await sim.start(), timeout_s=1.0)
    try:
        assert await _power(dev) == pytest.approx(0.5, abs=0.5)  # idle (Tasmota: whole watts)
        washer.arm()
        assert await _power(dev) == 4.0  # armed, waiting
        clock.advance(600)
        assert await _power(dev) == 4.0  # on all along: it waits for its power to come back
        assert await dev.switch(False) is False and await _power(dev) == 0.0
        assert await dev.switch(True) is True and await _power(dev) == 2000.0
        clock.advance(1800)
        assert await _power(dev) == pytest.approx(66.7, abs=0.5)
        clock.advance(5400)
        assert await _power(dev) == pytest.approx(0.5, abs=0.5) and washer.runs == [(T0.replace(minute=10),
                                                                                     T0.replace(hour=14, minute=10))]
        sim.faults = sim.faults.__class__(exception_code=4)  # the plug's own error: the read fails
        with pytest.raises((DeviceUnavailable, DeviceRefused)):  # Tasmota: HTTP 500; Shelly: its error object
            await dev.read()
    finally:
        await dev.close()
        await sim.stop()


async def test_freezer_thermostat_and_power_station_soc() -> None:
    clock = ManualClock(T0)
    freezer = Freezer(clock=clock, temp_c=-16.0)
    assert freezer.power_w() == 90.0  # above setpoint + band: the compressor runs
    clock.advance(3600)
    assert freezer.temp_c < -19.0 or freezer.power_w() == 0.0
    freezer.switched(False)
    t = freezer.temp_c
    clock.advance(1800)
    assert freezer.power_w() == 0.0 and freezer.temp_c == pytest.approx(t + 0.75)
    freezer.switched(True)
    assert freezer.off_spans == [(T0.replace(hour=13), T0.replace(hour=13, minute=30))]
    station = PowerStation(clock=clock, soc_pct=90.0)
    assert station.power_w() == 300.0
    clock.advance(1200)  # 100 Wh of 1 kWh
    assert station.power_w() == 0.5 and station.soc_pct == 100.0 and station.charged_wh == pytest.approx(100.0)
    station.switched(False)
    assert station.power_w() == 0.0
    with pytest.raises(ValueError, match="unknown appliance"):
        make_appliance("dryer")


def test_arm_on_the_control_channel() -> None:
    sim = ShellySim("shelly_plug_s")
    assert handle_command(sim, "arm").startswith("error: no appliance")
    sim.appliance = WashingMachine()
    assert handle_command(sim, "arm") == "ok armed" and sim.appliance.state == "armed"


def test_an_appliance_needs_a_plug(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lan-device", "--model", "dsmr5_p1", "--port", str(free_port()), "--appliance", "washer"]) == 2
    assert "--appliance needs a plug" in capsys.readouterr().err


async def test_vpp_sim_lan_device_with_an_appliance() -> None:
    port, control = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator.cli", "lan-device", "--model", "tasmota_plug", "--port", str(port),
        "--appliance", "washer", "--control-port", str(control),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=_env())
    dev = LanDevice(load_lan_entry("tasmota_plug"), "127.0.0.1", port, timeout_s=1.0)
    try:
        assert proc.stdout is not None
        while not (line := (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()).startswith("fault control"):
            assert line, "vpp-sim lan-device ended"
        assert await _power(dev) == 4.0  # armed at start
        await dev.switch(False)
        await dev.switch(True)
        assert await _power(dev) == 2000.0
        assert await send_commands("127.0.0.1", control, ["arm"]) == ["ok armed"]
    finally:
        await dev.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0
