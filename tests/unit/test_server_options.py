"""The aggregator's gRPC server options (keepalive agreed with the agent), and its background
tasks' failures logged when they happen."""

from __future__ import annotations

import asyncio

import pytest

from aggregator.config import AggregatorConfig
from aggregator.server import server_options
from edge_agent.uplink.client import CHANNEL_OPTIONS
from vpp_common.clock import log_if_it_fails


def _server() -> dict[str, int]:
    return dict(server_options(AggregatorConfig(insecure=True)))


def test_the_agents_keepalive_pings_are_permitted() -> None:
    # a client pinging more often than the server permits is cut with "too_many_pings"
    client = dict(CHANNEL_OPTIONS)
    assert int(client["grpc.keepalive_time_ms"]) >= _server()["grpc.http2.min_ping_interval_without_data_ms"]



async def test_a_background_task_that_fails_is_logged_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    async def planner() -> None:
        raise ValueError("the cycle broke")

    async def stopped() -> None:
        await asyncio.sleep(3600)

    failing = log_if_it_fails(asyncio.create_task(planner(), name="planner"))
    cancelled = log_if_it_fails(asyncio.create_task(stopped(), name="other"))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    await asyncio.gather(failing, cancelled, return_exceptions=True)
    await asyncio.sleep(0)  # done callbacks run on the next turn
    failed = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in failed] == ["task planner failed"]
    assert failed[0].exc_info is not None and "the cycle broke" in str(failed[0].exc_info[1])
