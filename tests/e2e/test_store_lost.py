"""Redis killed with SIGKILL and started again *empty* on the same port, under two aggregator
processes and a dozen agents (issue 20, "a Redis restart without its data silently stops
dispatch while health says SERVING").

Shows: every agent gets a new plan within one cycle plus the dispatch lease (the replicas
notice the store's new epoch, write back the houses streaming to them, make the work
queues' consumer groups again and re-plan at once); no agent is sent a plan older than
the one it follows (versions start at wall-clock milliseconds, above every version handed
out before); agents on the follower get their plans too (its dispatch queue works again).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import pytest
import redis

from edge_agent.uplink.client import Backoff, UplinkCallbacks, UplinkClient
from edge_agent.uplink.convert import WelcomeInfo
from tests.conftest import free_port
from vpp_common.clock import UTC
from vpp_common.messages import (
    ControlType, DispatchPlan, Flexibility, Hello, ResourceInfo, ResourceKind, SiteLimits, StorageFlexibility,
)

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

N_AGENTS = 12
LEASE_S = 2.0  # dispatch lease (real s)
CYCLE_S = 30.0


class EmptyRedis:
    """A redis-server that keeps nothing on disk: a restart is a store that lost its data."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="vpp-redis-lost-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server not installed"
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def own_redis() -> Iterator[EmptyRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    r = EmptyRedis()
    r.start()
    try:
        yield r
    finally:
        r.kill()
        shutil.rmtree(r.dir, ignore_errors=True)


@dataclass
class Replica:
    name: str
    port: int
    proc: subprocess.Popen[bytes]


@pytest.fixture
def replicas(own_redis: EmptyRedis) -> Iterator[list[Replica]]:
    out = []
    for i in range(2):
        port = free_port()
        env = dict(os.environ, VPP_AGG_REPLICA_ID=f"r{i}", VPP_AGG_LEADER_LEASE_S=str(LEASE_S),
                   VPP_AGG_PLANNING__CYCLE_S=str(CYCLE_S), VPP_AGG_PLANNING__OPTIMISER="tou",
                   VPP_AGG_DRAIN_GRACE_S="0.5")
        proc = subprocess.Popen(
            [sys.executable, "-m", "aggregator.cli", "serve", "--insecure", "--listen", f"127.0.0.1:{port}",
             "--admin-listen", "127.0.0.1:0", "--metrics-port", "0",
             "--store-url", f"redis://127.0.0.1:{own_redis.port}/0"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(Replica(f"r{i}", port, proc))
    try:
        yield out
    finally:
        for rep in out:
            if rep.proc.poll() is None:
                rep.proc.terminate()
        for rep in out:
            try:
                rep.proc.wait(10)
            except subprocess.TimeoutExpired:
                rep.proc.kill()
                rep.proc.wait(5)


@dataclass
class AgentLog:
    plans: dict[str, list[tuple[int, str, float]]] = field(default_factory=lambda: defaultdict(list))
    following: dict[str, tuple[int, str]] = field(default_factory=dict)  # what a PlanBook would follow
    refused_older: list[tuple[str, int, int]] = field(default_factory=list)
    replica: dict[str, str] = field(default_factory=dict)


HELLO = Hello("test", SiteLimits(11_000, 4_600), (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC,
                                                                5_000, 10_000),))


def make_agent(target: str, house_id: str, log: AgentLog) -> UplinkClient:
    client: UplinkClient

    def on_plan(plan: DispatchPlan | Exception) -> None:
        assert not isinstance(plan, Exception), plan
        log.plans[house_id].append((plan.version, plan.plan_id, time.monotonic()))
        current = log.following.get(house_id)
        if current is None or plan.version > current[0]:
            log.following[house_id] = (plan.version, plan.plan_id)
        elif (plan.version, plan.plan_id) != current:  # the agent's PlanBook refuses it as not newer
            log.refused_older.append((house_id, plan.version, current[0]))

    def on_welcome(w: WelcomeInfo) -> None:
        log.replica[house_id] = w.replica_id
        client.send(Flexibility(datetime.now(UTC), (StorageFlexibility("battery", 50, 0, 100, 10, 10_000,
                                                                       5_000, 5_000),)))

    client = UplinkClient(target=target, house_id=house_id, hello=lambda: HELLO, backoff=Backoff(0.2, 2.0),
                          callbacks=UplinkCallbacks(on_plan=on_plan, on_welcome=on_welcome))
    return client


async def until(pred, timeout_s: float, what: str) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not pred():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
async def agents(replicas: list[Replica]) -> AsyncIterator[tuple[list[UplinkClient], AgentLog]]:
    log = AgentLog()
    target = "ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in replicas)
    clients = [make_agent(target, f"house-{i:02d}", log) for i in range(N_AGENTS)]
    tasks = [asyncio.create_task(c.run()) for c in clients]
    try:
        yield clients, log
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_redis_restarted_empty_every_agent_back_on_a_plan(
        own_redis: EmptyRedis, replicas: list[Replica], agents: tuple[list[UplinkClient], AgentLog]) -> None:
    clients, log = agents
    houses = [f"house-{i:02d}" for i in range(N_AGENTS)]
    await until(lambda: all(c.connected for c in clients), 60, "all agents connected")
    await until(lambda: all(h in log.following for h in houses), 60, "a plan for every house")
    spread = {r.name: sum(1 for h in houses if log.replica.get(h) == r.name) for r in replicas}
    before = {h: log.following[h][0] for h in houses}

    own_redis.kill()
    own_redis.start()  # same port, nothing kept
    restarted = time.monotonic()

    def back_on_a_plan(h: str) -> bool:
        return log.following[h][0] > before[h] and log.plans[h][-1][2] > restarted

    took = await until(lambda: all(back_on_a_plan(h) for h in houses), CYCLE_S + LEASE_S,
                       "every agent back on a new plan")
    print(f"\nredis killed and restarted empty: all {N_AGENTS} agents (per replica {spread}) on a new plan "
          f"{took:.2f} s after the restart (cycle {CYCLE_S:.0f} s, lease {LEASE_S} s); "
          f"refused as older: {len(log.refused_older)}")
    assert log.refused_older == [], f"plans older than the one followed: {log.refused_older[:5]}"
    for h, seen in log.plans.items():
        versions = [v for v, _, _ in seen]
        assert versions == sorted(versions), f"{h} saw versions go backwards: {versions}"
