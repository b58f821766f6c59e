"""Three aggregator processes on one Redis, 50 agents; the leader is killed with SIGKILL.

Shows: a new leader within the lease time; every agent reconnected (to a
surviving replica) within 30 s; no agent ever sees a plan version go backwards;
no plan adopted twice.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import pytest
import redis

from edge_agent.uplink.client import UplinkCallbacks, UplinkClient
from edge_agent.uplink.convert import WelcomeInfo
from tests.conftest import RedisServer, until
from tests.replica_process import Replica, start_replica, stop_replicas
from vpp_common.backoff import Backoff
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


@pytest.fixture
def replicas(redis_server: RedisServer) -> Iterator[list[Replica]]:
    r = redis.Redis(host=redis_server.host, port=redis_server.port, db=DB)
    r.flushdb()
    r.close()
    out = []
    for i in range(3):
        out.append(start_replica(f"r{i}", f"redis://{redis_server.host}:{redis_server.port}/{DB}",
                                 leader_lease_s=LEASE_S, planning__cycle_s=30))
    try:
        yield out
    finally:
        stop_replicas(out)


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
    await until(lambda: all(c.connected for c in clients), "all agents connected", 30)
    await until(lambda: all(log.versions[f"house-{i:03d}"] for i in range(N_AGENTS)), "a plan for every house", 30)
    leader = lease_owner(redis_server)  # a quick local call: blocking the loop briefly is fine here
    assert leader in {r.name for r in replicas}
    victim = next(r for r in replicas if r.name == leader)
    on_victim = [c for c in clients if log.replica.get(c._house_id) == victim.name]
    connects_before = {c._house_id: c.connects for c in clients}

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
        lambda: all(c.connected and c.connects > connects_before[c._house_id] for c in on_victim)
        and all(c.connected for c in clients), "agents of the dead replica reconnected", 30)
    reconnect_s = time.monotonic() - killed_at
    # the new leader plans everyone again; versions only ever grow
    await until(lambda: all(log.replica.get(c._house_id) != victim.name for c in clients),
                "no agent left on the dead replica", 30)
    spread = {r.name: sum(1 for c in clients if log.replica.get(c._house_id) == r.name) for r in replicas}
    print(f"\nleader {victim.name} killed: new leader {owner} after {takeover_s:.2f} s (lease {LEASE_S} s); "
          f"{len(on_victim)} of {N_AGENTS} agents were on it, all reconnected {reconnect_s:.2f} s after the kill; "
          f"agents per replica now {spread}")
    for house, seen in log.versions.items():
        assert seen == sorted(seen), f"{house} saw versions go backwards: {seen}"
        adopted = log.adopted[house]
        assert len(adopted) == len(set(adopted)), f"{house} adopted a plan twice: {adopted}"
