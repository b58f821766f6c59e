"""Start-up and config as an installer meets them (issue 19), mostly ``edge-agent run`` as a real process.

* a house that boots before its inverter: the agent waits (metrics say so) and takes control once
  the device answers, without a restart;
* every operator mistake in the config: exit 2 with the field and the reason, no traceback;
* a device that answers but is not what the config says: exit 2 with the reason;
* a busy metrics port: one line, exit 1 (may pass: a supervisor restarts it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket
import sys
import tempfile
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pymodbus.constants import ExcCodes

from edge_agent.agent import EdgeAgent
from edge_agent.cli import main as agent_main
from edge_agent.config import AgentConfig, DeviceConfig
from edge_agent.device_connect import DeviceConnector, DeviceMisconfigured, classify
from edge_agent.drivers.errors import DeviceRejected, DeviceUnavailable, ModelNotFound, NotSunSpec
from edge_agent.metrics import AgentMetrics
from edge_agent.resources.house import DeviceConfigurationError
from edge_agent.resources.retry import DeviceRetry
from simulator.catalogue_device import CatalogueSimulator
from simulator.hybrid_device import Faults, SimulatorConfig, SunSpecHybridSimulator
from tests.conftest import free_port, until
from vpp_common.clock import ManualClock

pytestmark = pytest.mark.timeout(60)
NOON = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
BASE = 'insecure = true\nhouse_id = "h1"\n'
FAST = "[device]\npoll_interval_s = 0.2\nreconnect_max_s = 0.4\ntimeout_s = 0.5\n"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VPP_AGENT_", "VPP_AGG_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "proto"), env.get("PYTHONPATH", "")])
    # the telemetry spool of each run in a directory of its own, never ./state of the checkout
    env["VPP_AGENT_STATE_DIR"] = tempfile.mkdtemp(prefix="agent-state-")
    env.update(extra)
    return env


async def _start(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.cli", "run", *args, env=env or _env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await _start(*args, env=env)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def _config(tmp_path: Path, name: str, text: str) -> str:
    f = tmp_path / name
    f.write_text(text)
    return str(f)


CONFIG_MISTAKES: list[tuple[str, str, dict[str, str], list[str]]] = [
    # (id, file text, env, what stderr must say); before issue 19 the first three were ignored
    # silently (the default export cap stayed in force) and the next four accepted
    ("nested_key", BASE + "[site]\nmax_export = 0\n", {}, ["site.max_export", "unknown key", "max_export_w"]),
    ("nested_env", BASE, {"VPP_AGENT_SITE__MAX_EXPORT": "0"},
     ["VPP_AGENT_SITE__MAX_EXPORT", "did you mean VPP_AGENT_SITE__MAX_EXPORT_W"]),
    ("top_env", BASE, {"VPP_AGENT_MAX_EXPORT_W": "0"}, ["VPP_AGENT_MAX_EXPORT_W", "no field"]),
    ("reserve_above_max", BASE + "[battery]\nreserve_soc_pct = 90\nmax_soc_pct = 50\n", {},
     ["battery", "reserve_soc_pct (90.0) must be below max_soc_pct (50.0)"]),
    ("inf", BASE + "[site]\nmax_import_w = inf\n", {}, ["site.max_import_w", "finite"]),
    ("nan", BASE + "[control]\ndeadband_w = nan\n", {}, ["control.deadband_w", "finite"]),
    ("tick_vs_revert", BASE + "[battery]\nrevert_s = 10\n[control]\ntick_s = 5\n", {},
     ["control.tick_s", "battery.revert_s / 2"]),
]


@pytest.mark.parametrize("text, env, expected", [c[1:] for c in CONFIG_MISTAKES], ids=[c[0] for c in CONFIG_MISTAKES])
def test_config_mistakes_exit_2_naming_field_and_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], text: str,
                                                        env: dict[str, str], expected: list[str]) -> None:
    # in-process (the same main() as the process below, without its 1.5 s of imports); no device
    # listens, so the old agent exited 2 too, but for that reason and not for the mistake
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = agent_main(["run", "--config", _config(tmp_path, "a.toml", text), "--device-port", str(free_port()),
                       "--no-metrics"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("config error: ") and all(e in err for e in expected), err


async def test_unreadable_config_files_exit_2_without_traceback(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(BASE.encode() + b"# M\xfcller\n")
    missing = tmp_path / "missing.toml"
    cases = [(tmp_path, "is a directory"), (latin1, "not UTF-8"), (missing, "does not exist")]
    results = await asyncio.gather(*(run_cli("--config", str(f), "--no-metrics") for f, _ in cases))
    for (f, reason), (code, err) in zip(cases, results):
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith(f"config error: config file {f}: {reason}"), err


async def test_busy_metrics_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, err = await run_cli("--config", _config(tmp_path, "a.toml", BASE + FAST),
                                  "--device-port", str(free_port()), "--metrics-port", str(port))
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines() == [f"error: cannot serve /metrics on 127.0.0.1:{port}: Address already in use "
                                        "(another process on that port? choose another metrics_port, or turn /metrics off)"]


async def test_device_that_is_not_sunspec_exits_2_with_the_reason(tmp_path: Path) -> None:
    async with CatalogueSimulator("sungrow_sh", ManualClock(NOON)) as sim:  # answers, but is no SunSpec device
        code, err = await run_cli("--config", _config(tmp_path, "a.toml", BASE + FAST),
                                  "--device-port", str(sim.port), "--no-metrics")
    assert code == 2 and "Traceback" not in err, err
    assert f"config error: device at 127.0.0.1:{sim.port}" in err and "no SunSpec marker" in err


def _metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return str(r.read().decode())
    except OSError:
        return ""


async def test_agent_started_before_its_device_waits_then_controls_without_restart(tmp_path: Path) -> None:
    device_port, metrics_port = free_port(), free_port()
    proc = await _start("--config", _config(tmp_path, "a.toml", BASE + FAST), "--aggregator", f"127.0.0.1:{free_port()}",
                        "--device-port", str(device_port), "--metrics-port", str(metrics_port))
    try:
        # up, serving /metrics, saying that it waits, and trying again (backoff capped at 0.4 s)
        await until(lambda: 'vpp_edge_device_connect_attempts_total{result="unreachable"} 3.0' in _metrics(metrics_port),
                    "three failed connects", 15)
        assert "vpp_edge_device_connected 0.0" in _metrics(metrics_port) and proc.returncode is None
        async with SunSpecHybridSimulator(SimulatorConfig(), ManualClock(NOON), port=device_port) as sim:
            await until(lambda: "vpp_edge_device_connected 1.0" in (m := _metrics(metrics_port))
                        and 'vpp_edge_device_reads_total{result="ok"}' in m, "connected and polling", 15)
            await until(lambda: len(sim.writes) > 0, "a setpoint written once a fresh poll came", 15)
            assert proc.returncode is None
            proc.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = err.decode()
    assert proc.returncode == 0 and "Traceback" not in text, text
    assert text.count(f"WARNING edge_agent.device_connect: device at 127.0.0.1:{device_port} does not answer") == 1
    assert "answered after" in text


def _agent_config(device_port: int) -> AgentConfig:
    return AgentConfig(insecure=True, house_id="h1", aggregator=f"127.0.0.1:{free_port()}", metrics_port=None,
                       device=DeviceConfig(port=device_port, poll_interval_s=0.2, reconnect_max_s=0.4, timeout_s=0.5))


async def test_gateway_without_its_inverter_is_waited_for_not_taken_for_not_sunspec() -> None:
    # an RS-485 gateway answers "target device failed to respond" (11) while the inverter boots:
    # discovery took that for "no SunSpec marker", a configuration error (exit 2 for good)
    async with SunSpecHybridSimulator(SimulatorConfig(), ManualClock(NOON)) as sim:
        sim.faults = Faults(exception_code=ExcCodes.GATEWAY_NO_RESPONSE)
        agent = EdgeAgent(_agent_config(sim.port))
        await agent.start()
        try:
            reads = lambda r: agent.metrics.registry.get_sample_value(  # noqa: E731
                "vpp_edge_device_connect_attempts_total", {"result": r}) or 0
            await until(lambda: reads("unreachable") >= 2, "two attempts while the gateway says 11")
            assert agent.stats.polls == 0 and sim.writes == [] and agent.fatal_error is None
            sim.faults = Faults()
            await agent.wait_ready(10)
            assert agent.metrics.registry.get_sample_value("vpp_edge_device_connected") == 1
        finally:
            await agent.stop()


async def test_device_found_misconfigured_after_waiting_stops_the_agent() -> None:
    port = free_port()
    agent = EdgeAgent(_agent_config(port))
    await agent.start()
    try:
        async with CatalogueSimulator("sungrow_sh", ManualClock(NOON), port=port):  # answers: not SunSpec
            error = await asyncio.wait_for(agent.wait_failed(), 10)
        assert isinstance(error, DeviceMisconfigured) and "no SunSpec marker" in str(error)
        assert agent.metrics.registry.get_sample_value("vpp_edge_device_connect_attempts_total",
                                                       {"result": "misconfigured"}) == 1
        with pytest.raises(DeviceMisconfigured):
            await agent.wait_ready(0.1)
    finally:
        await agent.stop()


@pytest.mark.parametrize("exc, outcome", [
    (DeviceUnavailable("cannot connect"), "unreachable"),
    (DeviceRejected("read", exception_code=6), "unreachable"),  # busy
    (DeviceRejected("read", exception_code=2), "misconfigured"),  # illegal address: wrong unit id?
    (NotSunSpec("no marker"), "misconfigured"),
    (DeviceConfigurationError("no 124 or 704"), "misconfigured"),
    (ModelNotFound("model 124"), "misconfigured"),
    (RuntimeError("a driver bug"), "unreachable"),  # the house waits (logged at ERROR once)
])
def test_connect_errors_are_classified(exc: Exception, outcome: str) -> None:
    assert classify(exc) == outcome


async def test_waiting_is_logged_once_then_periodically_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    class Dead:
        async def connect(self) -> None:
            raise DeviceUnavailable("cannot connect", device="sunspec://192.0.2.1:502/1")

    metrics, now = AgentMetrics(), [0.0]
    connector = DeviceConnector(Dead(), "192.0.2.1:502", DeviceRetry(5.0, 60.0, random.Random(1)),  # type: ignore[arg-type]
                                ManualClock(NOON), metrics.device_connected, metrics.device_connect_attempts,
                                report_interval_s=300.0, monotonic=lambda: now[0])
    delays = []
    with caplog.at_level(logging.DEBUG, logger="edge_agent.device_connect"):
        for _ in range(20):  # 20 attempts, 30 s apart: 570 s
            assert not await connector.attempt()
            delays.append(connector.next_delay_s)
            now[0] += 30.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "does not answer" in warnings[0] and "still does not answer after 11" in warnings[1]
    assert 2.5 <= delays[0] <= 5.0 and all(30.0 <= d <= 60.0 for d in delays[5:])  # backoff with jitter, capped
    assert metrics.registry.get_sample_value("vpp_edge_device_connect_attempts_total", {"result": "unreachable"}) == 20
    assert metrics.registry.get_sample_value("vpp_edge_device_connected") == 0
