"""Three aggregator processes on one Redis, 50 agents; the leader is killed with SIGKILL.

Shows: a new leader within the lease time; every agent reconnected (to a
surviving replica) within 30 s; no agent ever sees a plan version go backwards;
no plan adopted twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import pytest
import redis

from edge_agent.uplink.client import Backoff, UplinkCallbacks, UplinkClient
from edge_agent.uplink.convert import WelcomeInfo
from tests.conftest import RedisServer, free_port
from vpp_common.clock import UTC
from vpp_common.messages import (
    ControlType,
    DispatchPlan,
    Flexibility,
    Hello,
    ResourceInfo,
    ResourceKind,
    SiteLimits,
    StorageFlexibility,
)

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

N_AGENTS = 50
LEASE_S = 3.0
DB = 7  # a database of its own on the shared test redis-server


@dataclass
class Replica:
    name: str
    port: int
    proc: subprocess.Popen[bytes]


@pytest.fixture
def replicas(redis_server: RedisServer) -> Iterator[list[Replica]]:
    r = redis.Redis(host=redis_server.host, port=redis_server.port, db=DB)
    r.flushdb()
    r.close()
    out = []
    for i in range(3):
        port = free_port()
        env = dict(os.environ, VPP_AGG_REPLICA_ID=f"r{i}", VPP_AGG_LEADER_LEASE_S=str(LEASE_S),
                   VPP_AGG_PLANNING__CYCLE_S="30", VPP_AGG_DRAIN_GRACE_S="0.5")
        proc = subprocess.Popen(
            [sys.executable, "-m", "aggregator.cli", "serve", "--insecure", "--listen", f"127.0.0.1:{port}",
             "--admin-listen", "127.0.0.1:0", "--metrics-port", "0",
             "--store-url", f"redis://{redis_server.host}:{redis_server.port}/{DB}"],
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
    versions: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    adopted: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    replica: dict[str, str] = field(default_factory=dict)


HELLO = Hello("test", SiteLimits(11_000, 4_600), (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC,
                                                                5_000, 10_000),))


def make_agent(target: str, house_id: str, log: AgentLog) -> UplinkClient:
    client: UplinkClient

    def on_plan(plan: DispatchPlan | Exception) -> None:
        assert not isinstance(plan, Exception), plan
        seen = log.versions[house_id]
        seen.append(plan.version)
        if not log.adopted[house_id] or plan.version > log.adopted[house_id][-1]:
            log.adopted[house_id].append(plan.version)  # what an agent's PlanBook would adopt

    def on_welcome(w: WelcomeInfo) -> None:
        log.replica[house_id] = w.replica_id
        client.send(Flexibility(datetime.now(UTC), (StorageFlexibility("battery", 50, 0, 100, 10, 10_000,
                                                                       5_000, 5_000),)))

    client = UplinkClient(target=target, house_id=house_id, hello=lambda: HELLO,
                          backoff=Backoff(0.2, 2.0),
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
    # one target naming all replicas, as a headless service would; each agent picks one at random
    log = AgentLog()
    target = "ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in replicas)
    clients = [make_agent(target, f"house-{i:03d}", log) for i in range(N_AGENTS)]
    tasks = [asyncio.create_task(c.run()) for c in clients]
    try:
        yield clients, log
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def lease_owner(redis_server: RedisServer) -> str | None:
    r = redis.Redis(host=redis_server.host, port=redis_server.port, db=DB, decode_responses=True)
    try:
        owner = r.hget("vpp:lease:dispatch", "owner")
    finally:
        r.close()
    return owner


async def test_leader_killed_new_leader_agents_reconnect_versions_monotonic(
        replicas: list[Replica], agents: tuple[list[UplinkClient], AgentLog], redis_server: RedisServer) -> None:
    clients, log = agents
    await until(lambda: all(c.connected for c in clients), 30, "all agents connected")
    await until(lambda: all(log.versions[f"house-{i:03d}"] for i in range(N_AGENTS)), 30, "a plan for every house")
    leader = lease_owner(redis_server)  # a quick local call: blocking the loop briefly is fine here
    assert leader in {r.name for r in replicas}
    victim = next(r for r in replicas if r.name == leader)
    on_victim = [c for c in clients if log.replica.get(c._house_id) == victim.name]  # noqa: SLF001
    connects_before = {c._house_id: c.connects for c in clients}  # noqa: SLF001

    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(5)
    killed_at = time.monotonic()

    async def new_leader() -> str | None:
        owner = lease_owner(redis_server)
        return owner if owner not in (None, victim.name) else None

    while (owner := await new_leader()) is None:
        assert time.monotonic() - killed_at < LEASE_S + LEASE_S / 3 + 2, "no new leader within the lease time"
        await asyncio.sleep(0.05)
    takeover_s = time.monotonic() - killed_at

    await until(
        lambda: all(c.connected and c.connects > connects_before[c._house_id] for c in on_victim)  # noqa: SLF001
        and all(c.connected for c in clients), 30, "agents of the dead replica reconnected")
    reconnect_s = time.monotonic() - killed_at
    # the new leader plans everyone again; versions only ever grow
    await until(lambda: all(log.replica.get(c._house_id) != victim.name for c in clients), 30,  # noqa: SLF001
                "no agent left on the dead replica")
    spread = {r.name: sum(1 for c in clients if log.replica.get(c._house_id) == r.name) for r in replicas}  # noqa: SLF001
    print(f"\nleader {victim.name} killed: new leader {owner} after {takeover_s:.2f} s (lease {LEASE_S} s); "
          f"{len(on_victim)} of {N_AGENTS} agents were on it, all reconnected {reconnect_s:.2f} s after the kill; "
          f"agents per replica now {spread}")
    for house, seen in log.versions.items():
        assert seen == sorted(seen), f"{house} saw versions go backwards: {seen}"
        adopted = log.adopted[house]
        assert len(adopted) == len(set(adopted)), f"{house} adopted a plan twice: {adopted}"
