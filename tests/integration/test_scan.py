"""``edge-agent scan`` as an installer runs it: a real process against the simulators over loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from datetime import UTC, datetime

import pytest

from simulator.catalogue_device import CatalogueSimulator
from simulator.hybrid_device import SimulatorConfig, SunSpecHybridSimulator
from vpp_common.clock import ManualClock

pytestmark = pytest.mark.timeout(60)
NOON = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


async def scan(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.cli", "scan", *args, "--timeout", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_scan_sunspec_json_and_table() -> None:
    async with SunSpecHybridSimulator(SimulatorConfig(model1_length=65), ManualClock(NOON)) as sim:
        code, out, err = await scan("--host", "127.0.0.1", "--port", str(sim.port), "--json")
        assert code == 0, err
        result = json.loads(out)
        assert result["kind"] == "sunspec" and result["base_address"] == 40000
        assert [m["id"] for m in result["models"]] == [1, 103, 120, 123, 124, 160, 203, 802]
        assert result["models"][0]["length"] == 65
        inverter = {p["name"]: p for p in result["models"][1]["points"]}
        assert inverter["W"]["unit"] == "W" and isinstance(inverter["W"]["value"], float)
        assert any(p["name"].startswith("module[1].") for p in result["models"][5]["points"])
        assert result["capabilities"]["battery_controllable"] and result["capabilities"]["pv_curtailable"]
        assert result["capabilities"]["cannot"] == {} and result["problems"] == []
        code, out, err = await scan("--host", "127.0.0.1", "--port", str(sim.port))
        assert code == 0, err
        assert "model 124" in out and "ChaState" in out


async def test_scan_catalogue_model() -> None:
    async with CatalogueSimulator("sungrow_sh", ManualClock(NOON)) as sim:
        code, out, err = await scan("--host", "127.0.0.1", "--port", str(sim.port), "--model", "sungrow_sh", "--json")
        assert code == 0, err
        points = {p["name"]: p for p in json.loads(out)["models"][0]["points"]}
        assert points["battery_soc"]["unit"] == "%" and 0 <= points["battery_soc"]["value"] <= 100
        assert points["pv_power"]["value"] < 0  # production negative (docs/architecture.md sign)
        caps = json.loads(out)["capabilities"]
        assert caps["battery_controllable"] and not caps["pv_curtailable"]  # no curtailment in catalogue entries
        # The same device is not SunSpec: a configuration error that names the way out.
        code, out, err = await scan("--host", "127.0.0.1", "--port", str(sim.port))
        assert code == 2 and "--model" in err


async def test_scan_errors() -> None:
    code, _out, err = await scan("--host", "127.0.0.1", "--port", "502", "--model", "no_such_inverter")
    assert code == 2 and "unknown catalogue model" in err
    code, _out, err = await scan("--host", "127.0.0.1", "--port", str(unused_port()))
    assert code == 3 and "cannot reach" in err
