#!/usr/bin/env python3
"""The edge agent's device layer: CPU share of one core and RSS while polling four devices every second.

    python benchmarks/edge_agent.py [--seconds 60] [--json FILE]

The four simulated devices (the SunSpec hybrid and one simulator per vendor
catalogue entry: Victron GX, Sungrow SH, Huawei SUN2000+LUNA2000) run in a
*child* process so that their cost is not counted.  This process polls them
as the agent does: the SunSpec device through ``HybridInverterRM.poll()``,
the catalogue devices through ``CatalogueDevice.read_all()``, once per
second each, concurrently, for ``--seconds``.  Printed: polls done and
failed, the CPU time of this process over the measured interval as a share
of one core (user + system), its peak RSS and the poll latency p50/p99.
Target (issue 3): under 3 % CPU and under 80 MB RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CATALOGUE = ("victron_gx", "sungrow_sh", "huawei_sun2000_luna2000")


async def serve() -> None:
    """Child: start the four simulators on free ports, print them as JSON, run until stdin closes."""
    from simulator.catalogue_device import CatalogueSimulator
    from simulator.hybrid_device import SunSpecHybridSimulator
    from vpp_common.clock import SystemClock

    clock = SystemClock()
    sims: list[object] = [SunSpecHybridSimulator(None, clock)] + [CatalogueSimulator(m, clock) for m in CATALOGUE]
    for s in sims:
        await s.start()  # type: ignore[attr-defined]
    print(json.dumps({"sunspec": sims[0].port, **{m: s.port for m, s in zip(CATALOGUE, sims[1:])}}),  # type: ignore[attr-defined]
          flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for s in sims:
        await s.stop()  # type: ignore[attr-defined]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


async def measure(ports: dict[str, int], seconds: float) -> dict[str, float]:
    from edge_agent.config import DeviceConfig
    from edge_agent.drivers.catalogue import CatalogueDevice, load_entry
    from edge_agent.drivers.errors import DeviceError
    from edge_agent.resources.hybrid import HybridInverterRM
    from vpp_common.clock import SystemClock

    rm = HybridInverterRM(DeviceConfig(port=ports["sunspec"]), SystemClock())
    await rm.connect()
    devices = [CatalogueDevice(load_entry(m), "127.0.0.1", ports[m]) for m in CATALOGUE]
    latencies: list[float] = []
    failed = 0

    async def poll_forever(poll: object) -> None:
        nonlocal failed
        next_at = time.monotonic()
        while True:
            t0 = time.monotonic()
            try:
                await poll()  # type: ignore[operator]
            except DeviceError:
                failed += 1
            latencies.append(time.monotonic() - t0)
            next_at += 1.0
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    polls = [rm.poll] + [d.read_all for d in devices]
    # warm-up: imports, connections, first allocations are not the steady state
    for p in polls:
        await p()
    latencies.clear()
    cpu0, wall0 = time.process_time(), time.monotonic()
    tasks = [asyncio.create_task(poll_forever(p)) for p in polls]
    await asyncio.sleep(seconds)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    await rm.close()
    for d in devices:
        await d.close()
    lat = sorted(latencies)
    return {
        "devices": len(polls), "seconds": round(wall, 1), "polls": len(lat), "failed": failed,
        "cpu_pct_of_one_core": round(100.0 * cpu / wall, 2), "rss_mb": round(rss_mb(), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "poll_p50_ms": round(1000 * statistics.median(lat), 2),
        "poll_p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return 0
    child = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout is not None
        ports = json.loads(child.stdout.readline())
        result = asyncio.run(measure(ports, args.seconds))
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=30)
    for k, v in result.items():
        print(f"{k:>20}: {v}")
    print(f"{'target':>20}: < 3 % of one core, < 80 MB RSS -> "
          f"{'met' if result['cpu_pct_of_one_core'] < 3 and result['peak_rss_mb'] < 80 else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
