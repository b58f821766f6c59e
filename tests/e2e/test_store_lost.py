"""Redis killed with SIGKILL and started again *empty* on the same port, under three aggregator
processes and 24 agents (issue 20, "a Redis restart without its data silently stops
dispatch while health says SERVING").

Shows: every agent gets a new plan within one cycle plus the dispatch lease (the replicas
notice the store's new epoch, write back the houses streaming to them, make the work
queues' consumer groups again and re-plan at once); no agent is sent a plan older than
the one it follows (versions start at wall-clock milliseconds, above every version handed
out before); agents on the follower get their plans too (its dispatch queue works again).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import pytest

from edge_agent.uplink.client import UplinkCallbacks, UplinkClient
from edge_agent.uplink.convert import WelcomeInfo
from tests.conftest import until
from tests.redis_process import RedisProcess
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

N_AGENTS = 24  # issue 20's acceptance: 3 replicas, 24 agents
N_REPLICAS = 3
LEASE_S = 2.0  # dispatch lease (real s)
CYCLE_S = 30.0


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    r = RedisProcess(durable=False)
    r.start()
    try:
        yield r
    finally:
        r.kill()
        shutil.rmtree(r.dir, ignore_errors=True)


@pytest.fixture
def replicas(own_redis: RedisProcess) -> Iterator[list[Replica]]:
    out = []
    for i in range(N_REPLICAS):
        out.append(start_replica(f"r{i}", f"redis://127.0.0.1:{own_redis.port}/0", leader_lease_s=LEASE_S,
                                 planning__cycle_s=CYCLE_S, planning__optimiser="tou"))
    try:
        yield out
    finally:
        stop_replicas(out)


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
        own_redis: RedisProcess, replicas: list[Replica], agents: tuple[list[UplinkClient], AgentLog]) -> None:
    clients, log = agents
    houses = [f"house-{i:02d}" for i in range(N_AGENTS)]
    await until(lambda: all(c.connected for c in clients), "all agents connected", 60)
    await until(lambda: all(h in log.following for h in houses), "a plan for every house", 60)
    spread = {r.name: sum(1 for h in houses if log.replica.get(h) == r.name) for r in replicas}
    before = {h: log.following[h][0] for h in houses}

    own_redis.kill()
    own_redis.start()  # same port, nothing kept
    restarted = time.monotonic()

    def back_on_a_plan(h: str) -> bool:
        return log.following[h][0] > before[h] and log.plans[h][-1][2] > restarted

    took = await until(lambda: all(back_on_a_plan(h) for h in houses), "every agent back on a new plan",
                       CYCLE_S + LEASE_S)
    print(f"\nredis killed and restarted empty: all {N_AGENTS} agents (per replica {spread}) on a new plan "
          f"{took:.2f} s after the restart (cycle {CYCLE_S:.0f} s, lease {LEASE_S} s); "
          f"refused as older: {len(log.refused_older)}")
    assert log.refused_older == [], f"plans older than the one followed: {log.refused_older[:5]}"
    for h, seen in log.plans.items():
        versions = [v for v, _, _ in seen]
        assert versions == sorted(versions), f"{h} saw versions go backwards: {versions}"
