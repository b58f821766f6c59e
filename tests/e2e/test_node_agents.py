"""streams.py's node agents (benchmarks/node_agents/agents.js) against a real aggregator: 20 of
them connect, each on its own connection, get plans, answer them with PlanStatus ACCEPTED (the
aggregator records it), and the JSON line they print at the stop file is the Python cheap
clients'.  Skipped without node or without benchmarks/node_agents/node_modules (``npm ci``
there; the suite installs no npm packages)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil
import pytest

from tests.conftest import free_port
from vpp.v1 import admin_service_pb2 as adm
from vpp.v1 import admin_service_pb2_grpc as adm_grpc
from vpp.v1 import fleet_service_pb2 as fs

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ROOT / "benchmarks" / "node_agents"
NODE = shutil.which("node")
N = 20

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120),
              pytest.mark.skipif(NODE is None, reason="no node on PATH"),
              pytest.mark.skipif(not (AGENTS / "node_modules").is_dir(),
                                 reason="benchmarks/node_agents: npm ci not run")]


def _wait(pred: object, what: str, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while not pred():  # type: ignore[operator]
        assert time.monotonic() < end, f"timed out: {what}"
        time.sleep(0.2)


def _houses(admin: str) -> list[adm.HouseSummary]:
    with grpc.insecure_channel(admin) as ch:
        return list(adm_grpc.AdminServiceStub(ch).ListHouses(adm.ListHousesRequest(), timeout=5).houses)


def test_node_agents_hold_their_streams_and_accept_their_plans(tmp_path: Path) -> None:
    port, admin = free_port(), f"127.0.0.1:{free_port()}"
    log = tmp_path / "aggregator.log"
    env = dict(os.environ, VPP_AGG_REPLICA_ID="node-test", VPP_AGG_PLANNING__CYCLE_S="5")
    agg = subprocess.Popen([sys.executable, "-m", "aggregator.cli", "serve", "--insecure", "--listen",
                            f"127.0.0.1:{port}", "--admin-listen", admin, "--metrics-port", "0"],
                           env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    clients = None
    try:
        _wait(lambda: "serving on" in log.read_text(errors="replace"), "aggregator serving", 30)
        clients = subprocess.Popen([NODE or "node", str(AGENTS / "agents.js"), "--client-node", f"127.0.0.1:{port}",
                                    "0", "1", str(N), str(ready), str(stop), "100"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait(ready.exists, "every agent with a plan", 40)
        assert json.loads(ready.read_text()) == {"connected": N, "with_plan": N}
        # one connection per agent (grpc-js would share one among channels of equal options)
        conns = [c for c in psutil.Process(clients.pid).net_connections("tcp")
                 if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED]
        assert len(conns) == N
        time.sleep(6.5)  # a planning cycle (5 s) and a round of telemetry in the window
        houses = _houses(admin)
        assert sorted(h.house_id for h in houses) == [f"house-{i:06d}" for i in range(N)]
        # each agent's PlanStatus ACCEPTED recorded (of a plan of its house)
        assert all(h.plan_state == fs.PLAN_STATE_ACCEPTED and h.plan_version > 0 for h in houses)
        assert all(h.grid_power_w.value == 100.0 for h in houses)  # telemetry stored
        stop.touch()
        out, err = clients.communicate(timeout=20)
        assert clients.returncode == 0, err
        got = json.loads(out.strip().splitlines()[-1])
        assert set(got) == {"latencies", "connected", "created", "cpu_s", "reconnects", "reconnects_measuring",
                            "errors", "reasons"}
        assert got["connected"] == N and got["reconnects"] == 0 and got["reconnects_measuring"] == 0
        assert got["errors"] == {} and got["reasons"] == {}
        assert len(got["created"]) == N and all(got["created"])  # every agent re-planned in the window
        assert len(got["latencies"]) == sum(len(c) for c in got["created"])
        assert all(0 <= x < 5 for x in got["latencies"])
        assert 0 < got["cpu_s"] < 5
        text = log.read_text(errors="replace")
        assert " refused " not in text and "Traceback" not in text, text[-2000:]
    finally:
        for p in (clients, agg):
            if p is not None and p.poll() is None:
                p.kill() if p is clients else p.terminate()
                p.wait(15)
