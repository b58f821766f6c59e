"""Streams rebalance onto a replica that joins later (max_connection_age).

Agents name every replica in their target (``ipv4:a,b``; in Kubernetes a
headless service) and pick one at random per connection.  When only replica
A is up, all streams land there.  Replica B then starts: nothing moves until
A's connections reach their maximum age, get GOAWAY and end after the grace
period; each agent reconnects at once (its last stream was accepted, so its
backoff starts again) and its channel picks a replica at random again, so the
streams spread over both.  No stream is refused and every agent is back.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from aggregator.config import AggregatorConfig
from aggregator.server import AggregatorServer
from aggregator.store import MemoryStore
from edge_agent.uplink.client import UplinkCallbacks, UplinkClient
from tests.conftest import free_port, until
from tests.integration.test_aggregator_service import HELLO
from vpp_common.backoff import Backoff

pytestmark = pytest.mark.timeout(90)

AGENTS = 24
AGE_S = 2.0  # max connection age (grpc adds +-10 % jitter)
GRACE_S = 0.5


def replica(name: str, port: int) -> AggregatorServer:
    cfg = AggregatorConfig(listen=f"127.0.0.1:{port}", admin_listen=None, insecure=True, metrics_port=None,
                           replica_id=name, max_connection_age_s=AGE_S, max_connection_age_grace_s=GRACE_S)
    return AggregatorServer(cfg, store=MemoryStore())


async def test_streams_spread_onto_a_replica_that_joins_later() -> None:
    port_a, port_b = free_port(), free_port()
    a, b = replica("a", port_a), replica("b", port_b)
    target = f"ipv4:127.0.0.1:{port_a},127.0.0.1:{port_b}"
    clients = [UplinkClient(target=target, house_id=f"house-{i}", hello=lambda: HELLO,
                            callbacks=UplinkCallbacks(on_plan=lambda plan: None), backoff=Backoff(0.1, 1.0))
               for i in range(AGENTS)]
    await a.start()
    tasks = [asyncio.create_task(c.run()) for c in clients]
    try:
        await until(lambda: len(a.sessions) == AGENTS, "every agent on replica a", timeout_s=20)
        await b.start()
        started = time.monotonic()
        # after one or two connection ages about half of the streams have moved
        await until(lambda: len(b.sessions) >= AGENTS // 4 and len(a.sessions) + len(b.sessions) == AGENTS,
                    "streams on replica b", timeout_s=30)
        moved_after_s = time.monotonic() - started
        assert moved_after_s >= AGE_S * 0.9 - 0.5, "streams moved before any connection was old enough"
        assert all(c.connects >= 1 for c in clients)
        print(f"rebalanced: a={len(a.sessions)} b={len(b.sessions)} after {moved_after_s:.1f} s")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await a.stop(grace_s=0.1)
        await b.stop(grace_s=0.1)
