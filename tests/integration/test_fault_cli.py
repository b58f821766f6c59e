"""`vpp-sim device --fault KIND[:ARGS]`, its control channel and `vpp-sim fault` (issue 19, item 6)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from edge_agent.drivers.sunspec import SunSpecDevice
from simulator.cli import main
from simulator.fault_control import FaultSpecError, faults_from_specs, parse_fault
from simulator.hybrid_device import Faults
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(("text", "expected"), [
    ("timeout", Faults(timeout=True)),
    ("exception", Faults(exception_code=6)),
    ("exception:4", Faults(exception_code=4)),
    ("implausible", Faults(implausible=True)),
    ("slow:0.5", Faults(slow_s=0.5)),
    ("disconnect", Faults(disconnect=True)),
    ("frozen", Faults(frozen=True)),
    ("stale", Faults(frozen=True)),
    ("reboot", Faults(reboot_every_s=60.0)),  # on the command line the events repeat (default 60 s)
    ("reboot:down=2,every=30", Faults(reboot_every_s=30.0, reboot_down_s=2.0)),
    ("reboot:5", Faults(reboot_every_s=60.0, reboot_down_s=5.0)),
    ("revert:every=20", Faults(revert_every_s=20.0)),
    ("other-master:every=10", Faults(other_master_every_s=10.0)),
    ("scale_factor:W_SF=-2", Faults(scale_factors=(("W_SF", -2),))),
    ("scale_factor:W_SF=-20", Faults(scale_factors=(("W_SF", -20),))),  # outside SunSpec's range: to be refused
    ("scale_factor:W_SF=1,TotWh_SF=2", Faults(scale_factors=(("TotWh_SF", 2), ("W_SF", 1)))),
])
def test_fault_specs(text: str, expected: Faults) -> None:
    assert faults_from_specs([parse_fault(text)]) == expected


def test_fault_specs_combine() -> None:
    assert faults_from_specs([parse_fault("slow:0.1"), parse_fault("frozen")]) == Faults(slow_s=0.1, frozen=True)


@pytest.mark.parametrize("text", ["bogus", "slow", "slow:-1", "slow:x", "exception:99", "reboot:every=0",
                                  "reboot:when=3", "scale_factor", "scale_factor:W=1", "scale_factor:W_SF=40000",
                                  "frozen:1", "revert:down=1"])
def test_bad_fault_specs_are_refused(text: str) -> None:
    with pytest.raises(FaultSpecError):
        parse_fault(text)


def test_bad_fault_on_the_command_line_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["device", "--port", str(free_port()), "--fault", "slow:-1"]) == 2
    assert "--fault" in capsys.readouterr().err


async def _cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "simulator.cli", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                env=_env())
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode()


def _env() -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.path.join(root, "proto"),
                                                          os.environ.get("PYTHONPATH", "")])}


async def test_control_channel_injects_a_reboot_into_a_running_device() -> None:
    port, control = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator.cli", "device", "--port", str(port), "--control-port", str(control),
        "--fault", "slow:0.01", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=_env())
    dev = SunSpecDevice("127.0.0.1", port, 1, timeout_s=2.0)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not any(line.startswith("fault control on") for line in lines):
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line, f"vpp-sim device ended: {''.join(lines)}"
            lines.append(line)
        assert any("faults: slow_s=0.01" in line for line in lines)
        await dev.connect()
        await dev.write_points(124, {"InWRte": 40.0, "OutWRte": -40.0, "StorCtl_Mod": 3})
        await dev.write_points(123, {"WMaxLimPct": 30.0, "WMaxLim_Ena": 1})
        assert (await dev.read_model(124))["StorCtl_Mod"] == 3

        rc, out = await _cli("fault", "--control", f"127.0.0.1:{control}", "reboot", "status")
        assert rc == 0, out
        assert "reboot: ok" in out and "status: ok slow_s=0.01" in out
        storage, curtail = await dev.read_model(124), await dev.read_model(123)
        assert (storage["StorCtl_Mod"], storage["InWRte"], curtail["WMaxLim_Ena"]) == (0, 100.0, 0)

        rc, out = await _cli("fault", "--control", f"127.0.0.1:{control}", "frozen", "bogus")
        assert rc == 2 and "frozen: ok" in out and "bogus: error: unknown fault" in out
        rc, out = await _cli("fault", "--control", f"127.0.0.1:{control}", "clear")
        assert rc == 0 and "clear: ok none" in out
    finally:
        await dev.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0


async def test_fault_client_without_a_channel_fails_clearly() -> None:
    rc, out = await _cli("fault", "--control", f"127.0.0.1:{free_port()}", "reboot")
    assert rc == 1 and "cannot reach the control channel" in out
    rc, out = await _cli("fault", "--control", "nonsense", "reboot")
    assert rc == 2 and "HOST:PORT" in out
