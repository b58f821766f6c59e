"""``vpp-sim lan-house``: a house of LAN devices served from the shell, with the edge-agent config for it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from edge_agent.config import AgentConfig
from edge_agent.drivers.lan_catalogue import load_lan_entry
from edge_agent.drivers.lan_device import LanDevice
from vpp_common.config import load_config

pytestmark = pytest.mark.timeout(60)


def _env() -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.path.join(root, "proto"),
                                                          os.environ.get("PYTHONPATH", "")])}


async def test_the_served_house_and_its_agent_config(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator.cli", "lan-house", "--pv", "1000", "--load", "200", "--plug", "kettle=1500",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=_env())
    assert proc.stdout is not None
    try:
        banner = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert banner.startswith("LAN house: dtu 127.0.0.1:") and "grid 700 W" in banner, banner
        lines = []
        while not (line := (await asyncio.wait_for(proc.stdout.readline(), 5)).decode()).startswith('role = "load"'):
            lines.append(line)
        config = tmp_path / "lan-house.toml"
        config.write_text("".join(lines[1:]) + line)
        cfg = load_config(AgentConfig, config)
        assert cfg.device.kind == "lan" and [d.id for d in cfg.lan_devices] == ["p1", "balcony", "kettle"]
        meter = next(d for d in cfg.lan_devices if d.id == "p1")
        dev = LanDevice(load_lan_entry("dsmr5_p1"), meter.host, meter.port, 3.0)
        try:
            values = (await dev.read()).by_role(dev.entry)
        finally:
            await dev.close()
        assert values["grid_power_w"] == 700.0  # 200 W + the kettle's 1500 W - 1000 W of PV
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0
    bad = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator.cli", "lan-house", "--plug", "kettle=lots",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=_env())
    out, _ = await asyncio.wait_for(bad.communicate(), 20)
    assert bad.returncode == 2 and b"need id=W" in out
    nan = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator.cli", "lan-house", "--pv", "nan",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=_env())
    out, _ = await asyncio.wait_for(nan.communicate(), 20)
    assert nan.returncode == 2 and b"--pv nan" in out
