#!/usr/bin/env python3
"""How soon an agent is back after the aggregator was away, and what its telemetry went through.

    python benchmarks/reconnect.py [--outage 600] [--interval 10] [--backoff-max 5] [--runs 1]

One aggregator (in process, in-memory store keeping every sample) and one agent uplink
(the real ``UplinkClient`` with its on-disk spool, on the system clock) that records a sample
every ``--interval`` s.  The aggregator stops for ``--outage`` s and comes back on the same
address; printed per run: seconds from the aggregator's return to the agent's Welcome, seconds
until the backlog is acked, samples recorded / stored / stored twice.  ``--backoff-max`` is
the agent's ``reconnect_max_s`` (default: the agent's default).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "proto"))


async def one_run(outage_s: float, interval_s: float, backoff_max_s: float, state: Path) -> dict[str, float]:
    from aggregator.config import AggregatorConfig
    from aggregator.server import AggregatorServer
    from aggregator.store import MemoryStore
    from edge_agent.config import AgentConfig
    from edge_agent.uplink.client import UplinkCallbacks, UplinkClient
    from edge_agent.uplink.spool import TelemetrySpool
    from vpp_common.backoff import Backoff
    from vpp_common.clock import UTC
    from vpp_common.messages import (
        ControlType,
        Hello,
        Measurement,
        ResourceInfo,
        ResourceKind,
        SiteLimits,
        SiteTelemetry,
        Validity,
    )

    def agg(listen: str) -> AggregatorServer:
        return AggregatorServer(AggregatorConfig(admin_listen=None, listen=listen, insecure=True, metrics_port=None,
                                                 replica_id="bench", drain_grace_s=0.2), store=store)

    hello = Hello("bench", SiteLimits(11_000, 4_600),
                  (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC, 5_000, 10_000),))
    store = MemoryStore(telemetry_history_s=86_400)
    srv = agg("127.0.0.1:0")
    await srv.start()
    target = srv.target or ""
    spool = TelemetrySpool(state / "telemetry-bench.sqlite")
    initial = AgentConfig.model_fields["reconnect_initial_s"].default
    client = UplinkClient(target=target, house_id="bench", hello=lambda: hello,
                          callbacks=UplinkCallbacks(on_plan=lambda plan: None),
                          backoff=Backoff(initial, backoff_max_s), spool=spool)
    run = asyncio.create_task(client.run())
    recorded: list[datetime] = []

    async def record() -> None:
        while True:
            at = datetime.now(UTC)
            v = Measurement(float(len(recorded)), Validity.VALID, at)
            recorded.append(at)
            client.send(SiteTelemetry(at, v, v, v, Measurement(50.0, Validity.VALID, at), v))
            await asyncio.sleep(interval_s)

    async def wait(pred, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while not pred():
            if time.monotonic() > deadline:
                raise TimeoutError
            await asyncio.sleep(0.01)

    recorder = asyncio.create_task(record())
    try:
        await wait(lambda: client.connected, 10)
        await srv.stop(grace_s=0.2)
        await wait(lambda: not client.connected, 10)
        await asyncio.sleep(outage_s)
        backlog = client.telemetry_unacked
        connects = client.connects
        srv = agg(target)
        back = time.monotonic()
        await srv.start()
        await wait(lambda: client.connects > connects, 600)
        reconnect_s = time.monotonic() - back
        await wait(lambda: client.telemetry_unacked == 0, 600)
        backfill_s = time.monotonic() - back
        recorder.cancel()
        stored = [t.measured_at for t in await store.telemetry_history("bench")]
        return {"reconnect_s": reconnect_s, "backlog": backlog, "backfilled_s": backfill_s,
                "recorded": len(recorded), "stored": len(stored), "stored_twice": len(stored) - len(set(stored)),
                "missing": len(set(recorded) - set(stored))}
    finally:
        recorder.cancel()
        run.cancel()
        await asyncio.gather(recorder, run, return_exceptions=True)
        await srv.stop(grace_s=0.2)
        spool.close()


def main() -> None:
    from edge_agent.config import AgentConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--outage", type=float, default=600.0, help="s the aggregator is away")
    p.add_argument("--interval", type=float, default=10.0, help="s between telemetry samples")
    p.add_argument("--backoff-max", type=float, default=AgentConfig.model_fields["reconnect_max_s"].default)
    p.add_argument("--runs", type=int, default=1)
    args = p.parse_args()
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            r = asyncio.run(one_run(args.outage, args.interval, args.backoff_max, Path(d)))
        print(f"run {i + 1}: outage {args.outage:.0f} s, backoff cap {args.backoff_max} s: back after "
              f"{r['reconnect_s']:.2f} s, backlog of {r['backlog']:.0f} acked after {r['backfilled_s']:.2f} s; "
              f"recorded {r['recorded']:.0f}, stored {r['stored']:.0f}, twice {r['stored_twice']:.0f}, "
              f"missing {r['missing']:.0f}", flush=True)


if __name__ == "__main__":
    main()
