"""``vpp-sim lan-device``: a plug or meter simulator as its own process, with start-up faults and the fault
control channel (the same as the Modbus simulators')."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from edge_agent.drivers.errors import DeviceUnavailable
from edge_agent.drivers.lan_catalogue import lan_catalogue_ids, load_lan_entry
from edge_agent.drivers.lan_device import LanDevice
from simulator.cli import main
from simulator.fault_control import send_commands
from simulator.lan_cli import LAN_MODELS, make_lan_sim
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(60)


def _env() -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.path.join(root, "proto"),
                                                          os.environ.get("PYTHONPATH", "")])}


def test_every_catalogue_entry_has_a_simulator() -> None:
    assert sorted(LAN_MODELS) == lan_catalogue_ids()
    with pytest.raises(ValueError, match="no password"):
        make_lan_sim("dsmr5_p1", password="x")
    with pytest.raises(ValueError, match="no password"):
        make_lan_sim("apsystems_ez1", password="x")
    with pytest.raises(ValueError, match="production, < 0"):
        make_lan_sim("opendtu_hoymiles", power_w=500.0)
    assert make_lan_sim("apsystems_ez1", power_w=-450.0).pv.available_w == 450.0  # type: ignore[attr-defined]


def test_bad_fault_on_the_command_line_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lan-device", "--model", "tasmota_plug", "--port", str(free_port()), "--fault", "reboot"]) == 2
    assert "does not simulate a reboot" in capsys.readouterr().err
    for args in (["--power", "nan"], ["--power", "1e300"], ["--interval", "0"], ["--interval", "inf"]):
        with pytest.raises(SystemExit) as exit_:
            main(["lan-device", "--model", "dsmr5_p1", *args])
        assert exit_.value.code == 2
        assert "need a finite number" in capsys.readouterr().err


async def test_lan_device_process_with_faults_and_control_channel() -> None:
    port, control = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator.cli", "lan-device", "--model", "shelly_pro_3em", "--port", str(port),
        "--power", "-2500", "--control-port", str(control), "--fault", "timeout",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=_env())
    dev = LanDevice(load_lan_entry("shelly_pro_3em"), "127.0.0.1", port, timeout_s=0.5)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not any(line.startswith("fault control on") for line in lines):
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line, f"vpp-sim lan-device ended: {''.join(lines)}"
            lines.append(line)
        assert any(f"shelly_pro_3em simulator on http://127.0.0.1:{port}" in line for line in lines), lines
        assert any("faults: timeout=True" in line for line in lines)
        with pytest.raises(DeviceUnavailable):
            await dev.read()
        assert await send_commands("127.0.0.1", control, ["clear"]) == ["ok none"]
        assert (await dev.read()).values["power"] == -2500.0
    finally:
        await dev.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0
