"""``vpp-sim house --with ... --plug ...``: a mix served from the shell, its edge-agent config, its control
channel; ``vpp-sim house`` without them still the four SunSpec devices."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from edge_agent.config import AgentConfig
from edge_agent.drivers.lan_catalogue import load_lan_entry
from edge_agent.drivers.lan_device import LanDevice
from simulator.fault_control import send_commands
from tests.conftest import free_port
from tests.integration.test_lan_house_sim_cli import _env
from vpp_common.config import load_config

pytestmark = pytest.mark.timeout(90)


async def _read(model: str, port: int, role: str) -> float | None:
    dev = LanDevice(load_lan_entry(model), "127.0.0.1", port, 3.0)
    try:
        return (await dev.read()).by_role(dev.entry)[role]
    finally:
        await dev.close()


async def _start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "simulator.cli", "house", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                env=_env())


async def _lines_until(proc: asyncio.subprocess.Process, last: str) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    while not lines or not lines[-1].startswith(last):
        lines.append((await asyncio.wait_for(proc.stdout.readline(), 30)).decode())
        assert lines[-1], "".join(lines)  # the process ended
    return lines


async def test_a_mix_from_the_shell(tmp_path: Path) -> None:
    control, meter_control = free_port(), free_port()
    proc = await _start("--with", "opendtu", "--with", "p1", "--plug", "washer=washer", "--plug", "lamp=60@tasmota",
                        "--load", "200", "--micro-pv", "500", "--washer-unarmed", "--control", f"washer={control}",
                        "--control", f"p1={meter_control}")
    try:
        lines = await _lines_until(proc, "# end of config")
        ports = {ln.split(":")[0].strip(): int(ln.rsplit(":", 1)[1]) for ln in lines if "://" in ln}
        assert list(ports) == ["opendtu", "p1", "washer", "lamp"], lines
        start = next(i for i, ln in enumerate(lines) if ln.startswith("house_id"))
        config = tmp_path / "mix.toml"
        config.write_text("".join(lines[start:-1]))
        cfg = load_config(AgentConfig, config)
        assert cfg.device.kind == "lan" and {d.id: d.port for d in cfg.lan_devices} == ports
        assert [(a.plug, a.kind) for a in cfg.appliances] == [("washer", "run")]
        # 200 W + the idle washer's 0.5 W + the lamp's 60 W - 500 W of PV
        grid = await _read("dsmr5_p1", ports["p1"], "grid_power_w")
        assert grid == pytest.approx(-239.5, abs=1.0)
        assert await _read("shelly_plug_s", ports["washer"], "load_power_w") == 0.5
        assert await send_commands("127.0.0.1", control, ["arm"]) == ["ok armed"]  # a person sets the machine
        assert await _read("shelly_plug_s", ports["washer"], "load_power_w") == 4.0
        assert await _read("tasmota_plug", ports["lamp"], "load_power_w") == 60.0
        # each device keeps its faults: the meter's, and nothing else's
        assert (await send_commands("127.0.0.1", meter_control, ["implausible"]))[0].startswith("ok")
        assert (await _read("dsmr5_p1", ports["p1"], "grid_power_w") or 0.0) > 1e7  # 99999.999 kW delivered
        assert await _read("tasmota_plug", ports["lamp"], "load_power_w") == 60.0
        assert (await send_commands("127.0.0.1", meter_control, ["clear"]))[0].startswith("ok")
        assert await _read("dsmr5_p1", ports["p1"], "grid_power_w") == pytest.approx(-236.0, abs=1.0)
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0


async def test_refusals_and_the_four_device_house() -> None:
    for args, why in ((["--plug", "kettle=lots"], b"neither watts"), (["--with", "p1", "--load", "nan"], b"--load nan"),
                      (["--with", "zigbee"], b"invalid choice"), (["--with", "p1", "--with", "p1"], b"twice"),
                      (["--with", "p1", "--control", "kettle=1"], b"--control"),
                      (["--with", "p1", "--max-export", "inf"], b"--max-export"),
                      (["--load", "500"], b"--load is an option of a mix")):
        bad = await _start(*args)
        out, _ = await asyncio.wait_for(bad.communicate(), 30)
        assert bad.returncode == 2 and why in out, (args, out)
    first = free_port()
    proc = await _start("--port", str(first))
    try:
        lines = await _lines_until(proc, "ev_charger:")
        assert [ln.split(":")[0].strip() for ln in lines if "modbus://" in ln] == ["battery", "pv", "meter", "ev_charger"]
        assert f"modbus://127.0.0.1:{first} unit 1" in "".join(lines)
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0
