"""The client processes of ``benchmarks/streams.py`` (one of them holds every ``--procs``-th agent).

A client process connects its agents, writes ``ready_file`` once every agent has a plan (or its
ramp deadline passed), then measures until ``stop_file`` appears (the orchestrator decides when
the planning cycles it wants have been seen), prints one JSON line and leaves.  Per agent it
keeps the ``created_at`` of every plan received while measuring, so that the orchestrator can
tell which planning cycle each plan came from (and which agents a cycle missed).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import datetime
from pathlib import Path


def _ms(xs: list[float]) -> list[float]:
    return [round(x, 3) for x in xs]


async def _measure(stop_file: str) -> float:
    """Wait for ``stop_file``; the process CPU s spent meanwhile."""
    cpu0 = time.process_time()
    while not Path(stop_file).exists():
        await asyncio.sleep(0.5)
    return time.process_time() - cpu0


async def client_main(target: str, first: int, stride: int, count: int, ready_file: str, stop_file: str,
                      rate_per_s: float) -> None:
    """Agents ``first``, ``first + stride``, ... (``count`` of them) in this process: cheap ones
    (``stream_agents``)."""
    from stream_agents import ERRORS, REASONS, Agent, flexibility_bytes, hello_bytes, send_telemetry

    from aggregator.gc_policy import run_gc_policy

    latencies: list[float] = []
    created: list[list[float]] = [[] for _ in range(count)]  # created_at of each agent's plans while measuring
    measuring = False

    def on_plan(agent: Agent, latency_s: float) -> None:
        if measuring:
            latencies.append(latency_s)
            created[index[agent.house_id]].append(time.time() - latency_s)

    agents = [Agent(f"house-{first + i * stride:06d}", on_plan) for i in range(count)]
    index = {a.house_id: i for i, a in enumerate(agents)}
    hello, flex = hello_bytes(), flexibility_bytes()
    tasks = [asyncio.create_task(run_gc_policy())]  # see client_main_uplink

    async def connect() -> None:
        # at ``rate_per_s`` a second: a fleet's agents connect over time; all at once is a
        # reconnect storm (benchmarks/reconnect.py), whose retries this would measure instead
        for a in agents:
            tasks.append(asyncio.create_task(a.run(target, hello, flex)))
            await asyncio.sleep(1 / rate_per_s)

    tasks.append(asyncio.create_task(connect()))
    tasks.append(asyncio.create_task(send_telemetry(agents)))
    deadline = time.monotonic() + count / rate_per_s + 150
    while sum(a.has_plan for a in agents) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    streams_at_ready = sum(a.streams for a in agents)
    Path(ready_file).write_text(json.dumps({"connected": sum(a.connected for a in agents),
                                            "with_plan": sum(a.has_plan for a in agents)}))
    measuring = True
    cpu_s = await _measure(stop_file)
    measuring = False
    print(json.dumps({"latencies": latencies, "connected": sum(a.connected for a in agents),
                      "created": [_ms(c) for c in created], "cpu_s": cpu_s,
                      "reconnects": streams_at_ready - count,
                      "reconnects_measuring": sum(a.streams for a in agents) - streams_at_ready,
                      "errors": ERRORS, "reasons": REASONS}), flush=True)
    # done: leave at once (cancelling thousands of grpc.aio calls at exit hung a client process
    # for minutes, and the level with it)
    os._exit(0)


async def client_main_uplink(target: str, first: int, stride: int, count: int, ready_file: str, stop_file: str,
                             rate_per_s: float) -> None:
    """As :func:`client_main` with the agent's own ``UplinkClient`` (no PlanStatus sent; all
    agents start at once, ``rate_per_s`` unused; reconnects not counted)."""
    from stream_agents import bench_flexibility, bench_hello

    from aggregator.gc_policy import run_gc_policy
    from edge_agent.uplink.client import DEFAULT_BACKOFF, UplinkCallbacks, UplinkClient
    from vpp_common.clock import UTC
    from vpp_common.messages import DispatchPlan, Measurement, SiteTelemetry, Validity

    hello = bench_hello()
    latencies: list[float] = []
    got_plan: set[int] = set()
    created: list[list[float]] = [[] for _ in range(count)]
    measuring = False

    def make(i: int) -> UplinkClient:
        def on_plan(plan: DispatchPlan | Exception) -> None:
            if isinstance(plan, Exception):
                return
            got_plan.add(i)
            if measuring:
                latencies.append((datetime.now(UTC) - plan.created_at).total_seconds())
                created[(i - first) // stride].append(plan.created_at.timestamp())

        def on_welcome(_w: object) -> None:
            c.send(bench_flexibility())

        c = UplinkClient(target=target, house_id=f"house-{i:06d}", hello=lambda: hello, backoff=DEFAULT_BACKOFF,
                         callbacks=UplinkCallbacks(on_plan=on_plan, on_welcome=on_welcome))
        return c

    clients = [make(first + i * stride) for i in range(count)]
    tasks = [asyncio.create_task(c.run()) for c in clients]
    # A real agent is a process with one connection.  A client process here holds over a
    # thousand, and with the default GC thresholds its full collections (hundreds of ms, all
    # its agents stopped) showed up as plan latency: collect as the aggregator does.
    tasks.append(asyncio.create_task(run_gc_policy()))

    async def telemetry() -> None:
        # each agent every 5 s at its own phase, as agents started at different times send:
        # all of them in one burst would measure a fleet that reports in lockstep
        period = 5.0
        step = period / max(1, len(clients))
        next_at = time.monotonic()
        while True:
            for c in clients:
                if c.connected:
                    now = datetime.now(UTC)
                    v = Measurement(100.0, Validity.VALID, now)
                    c.send(SiteTelemetry(now, v, v, v, Measurement(50.0, Validity.VALID, now), v))
                next_at += step
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    tasks.append(asyncio.create_task(telemetry()))
    deadline = time.monotonic() + 150
    while len(got_plan) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    Path(ready_file).write_text(json.dumps({"connected": sum(c.connected for c in clients),
                                            "with_plan": len(got_plan)}))
    measuring = True
    cpu_s = await _measure(stop_file)
    measuring = False
    print(json.dumps({"latencies": latencies, "connected": sum(c.connected for c in clients),
                      "created": [_ms(c) for c in created], "cpu_s": cpu_s}), flush=True)
    os._exit(0)


def run_client(argv: list[str]) -> None:
    """``--client-cheap|--client-uplink target first stride count ready_file stop_file rate``."""
    target, first, stride, count, ready, stop, rate = argv[1:8]
    run = client_main if argv[0] == "--client-cheap" else client_main_uplink
    asyncio.run(run(target, int(first), int(stride), int(count), ready, stop, float(rate)))
