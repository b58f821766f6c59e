"""A real Prometheus server (Debian package) scrapes a running aggregator and three
houses (Modbus simulator + edge agent each), evaluates deploy/prometheus's rules, and
fires the fleet-connected-fraction alert once the agents are stopped."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from aggregator.config import AggregatorConfig, FeederConfig, PlanningConfig
from aggregator.server import AggregatorServer
from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, ControlConfig, DeviceConfig
from simulator.hybrid_device import SimulatorConfig, SunSpecHybridSimulator
from tests.conftest import free_port
from vpp_common.clock import SystemClock

pytestmark = pytest.mark.e2e

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "vpp-rules.yml"
ALERT = "VppFleetConnectedFractionDropping"


def _prometheus() -> str:
    binary = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed (.ci/run installs Debian's prometheus)")
        pytest.skip("prometheus not installed")
    return binary


def _test_rules(dst: Path) -> None:
    """The real rules, evaluated every second and with `for:` cut to 1 s."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    dst.write_text(yaml.safe_dump(doc))


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.loads(resp.read())


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    body = _get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    assert body["status"] == "success", body
    return body["data"]["result"]


def _scalar(base: str, promql: str) -> float | None:
    result = _query(base, promql)
    return float(result[0]["value"][1]) if result else None


def _alert_states(base: str, name: str) -> list[str]:
    return [a["state"] for a in _get(f"{base}/api/v1/alerts")["data"]["alerts"] if a["labels"]["alertname"] == name]


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


async def _poll(pool: ThreadPoolExecutor, pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Bounded polling of a blocking predicate (run off the event loop)."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout_s
    while not await loop.run_in_executor(pool, pred):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.2)


def _hostport(url: str | None) -> str:
    assert url is not None
    return urllib.parse.urlsplit(url).netloc


async def test_prometheus_scrapes_fleet_and_fires_alert_when_agents_stop(tmp_path: Path) -> None:
    binary = _prometheus()
    feeder = FeederConfig(id="f1", houses=[f"house-{i}" for i in range(3)], export_limit_w=50_000.0)
    agg = AggregatorServer(AggregatorConfig(listen="127.0.0.1:0", admin_listen=None, insecure=True, metrics_port=0,
                                            replica_id="prom-e2e", drain_grace_s=0.2, feeders=[feeder],
                                            planning=PlanningConfig(feeder_control_s=1.0)))
    sims: list[SunSpecHybridSimulator] = []
    agents: list[EdgeAgent] = []
    prom: subprocess.Popen[bytes] | None = None
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        await agg.start()
        for i in range(3):
            sim = SunSpecHybridSimulator(SimulatorConfig(), SystemClock())
            await sim.start()
            sims.append(sim)
            agent = EdgeAgent(AgentConfig(house_id=f"house-{i}", aggregator=agg.target, insecure=True, metrics_port=0,
                                          reconnect_initial_s=0.05, reconnect_max_s=0.5,
                                          device=DeviceConfig(port=sim.port, poll_interval_s=0.2),
                                          control=ControlConfig(tick_s=0.5)))
            await agent.start()
            agents.append(agent)

        _test_rules(tmp_path / "vpp-rules.yml")
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": ["vpp-rules.yml"],
            "scrape_configs": [
                {"job_name": "vpp-aggregator", "static_configs": [{"targets": [_hostport(agg.metrics_url)]}]},
                {"job_name": "vpp-edge-agent",
                 "static_configs": [{"targets": [_hostport(a.metrics_url) for a in agents]}]},
            ],
        }))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = (tmp_path / "prometheus.log").open("wb")
        prom = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        log.close()
        await _poll(pool, lambda: prom.poll() is not None or _ready(base), 20, "Prometheus ready")
        assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()

        # fleet metrics through Prometheus' HTTP API: raw, recording rule, and the houses' own
        await _poll(pool, lambda: _scalar(base, "sum(vpp_aggregator_connected_agents)") == 3, 20,
                    "3 connected agents scraped")
        await _poll(pool, lambda: _scalar(base, "vpp:fleet_connected_agents:sum") == 3, 10,
                    "recording rule vpp:fleet_connected_agents:sum = 3")
        await _poll(pool, lambda: _scalar(base, 'sum(vpp_edge_uplink_connected{job="vpp-edge-agent"})') == 3, 10,
                    "3 agents report an uplink")
        # the leader's feeder measurement, through a recording rule too (no house label anywhere)
        await _poll(pool, lambda: _scalar(base, 'vpp_aggregator_feeder_telemetry_fresh_ratio{feeder="f1"}') == 1, 15,
                    "feeder f1 measured from all 3 houses")
        assert _scalar(base, 'vpp_aggregator_feeder_limit_watts{feeder="f1",direction="export"}') == 50_000
        await _poll(pool, lambda: _scalar(base, 'vpp:feeder_export_utilisation:ratio{feeder="f1"}') is not None, 10,
                    "recording rule vpp:feeder_export_utilisation:ratio")
        assert not _query(base, '{__name__=~"vpp_aggregator_.*", house_id!=""}')
        assert await asyncio.get_running_loop().run_in_executor(pool, _alert_states, base, ALERT) == []

        # stop the houses: the fraction drops to 0 and the alert fires
        for agent in agents:
            await agent.stop()
        agents.clear()
        await _poll(pool, lambda: _scalar(base, "vpp:fleet_connected_fraction:ratio") == 0, 15,
                    "connected fraction 0")
        await _poll(pool, lambda: "firing" in _alert_states(base, ALERT), 15, f"{ALERT} firing")
        alert = next(a for a in await asyncio.get_running_loop().run_in_executor(
            pool, lambda: _get(f"{base}/api/v1/alerts")["data"]["alerts"]) if a["labels"]["alertname"] == ALERT)
        assert alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["runbook"] and alert["annotations"]["summary"].startswith("Only 0%")
    finally:
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(10)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait(5)
        pool.shutdown(wait=True)
        for agent in agents:
            await agent.stop()
        await agg.stop(grace_s=0.2)
        for sim in sims:
            await sim.stop()
