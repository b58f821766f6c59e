"""A replica's stop leaves nothing listening, even when a step before it fails.

A grpc.aio server that is never stopped keeps a request pending on grpc's process-wide
completion queue; when the process's last gRPC object goes, grpc's shutdown waits for that
queue for ever (tests/grpc_runtime.py).  So the servers are stopped whatever came first."""

from __future__ import annotations

import socket

import pytest

from aggregator.config import AggregatorConfig
from aggregator.server import AggregatorServer
from vpp_common.clock import ManualClock, cancel_and_wait

from .test_aggregator_service import T0


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


async def test_a_failing_step_of_stop_still_stops_both_grpc_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = AggregatorConfig(listen="127.0.0.1:0", admin_listen="127.0.0.1:0", insecure=True, metrics_port=None,
                           replica_id="r1")
    srv = AggregatorServer(cfg, clock=ManualClock(T0))
    await srv.start()
    assert not refused(srv.port) and not refused(srv.admin_port)

    async def store_gone() -> None:
        raise RuntimeError("the store went away mid-stop")
    monkeypatch.setattr(srv.elector, "resign", store_gone)
    with pytest.raises(RuntimeError, match="mid-stop"):
        await srv.stop(grace_s=0.1)
    assert refused(srv.port) and refused(srv.admin_port)


async def test_a_task_that_will_not_stop_leaves_no_server_and_no_solver_process(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = AggregatorConfig(listen="127.0.0.1:0", admin_listen=None, insecure=True, metrics_port=None, replica_id="r1")
    srv = AggregatorServer(cfg, clock=ManualClock(T0))
    await srv.start()

    async def stubborn(tasks: list[object], timeout_s: float = 5.0) -> None:
        raise RuntimeError("tasks did not stop within 5.0 s: ['planner']")
    monkeypatch.setattr("aggregator.server.cancel_and_wait", stubborn)
    with pytest.raises(RuntimeError, match="did not stop"):
        await srv.stop(grace_s=0.1)
    assert refused(srv.port)
    await cancel_and_wait(srv._tasks)  # the test's own clean-up of what the stub left


async def test_the_planning_loop_ends_on_request_without_a_cancellation() -> None:
    """A library's timeout may swallow a cancellation under load (a planner once would not stop
    within 5 s on the Redis store): stop() also asks the loop to end, and it does at its next turn."""
    import asyncio

    cfg = AggregatorConfig(listen="127.0.0.1:0", admin_listen=None, insecure=True, metrics_port=None, replica_id="r1")
    srv = AggregatorServer(cfg, clock=ManualClock(T0))
    loop_task = asyncio.create_task(srv.planner._plan_loop())
    await asyncio.sleep(0.2)  # waiting for its next cycle, minutes away
    assert not loop_task.done()
    srv.planner.request_stop()
    await asyncio.wait_for(loop_task, 2.0)  # returned: no cancellation was needed
    srv.planner.close()
