#!/usr/bin/env python3
"""The edge agent process: CPU share of one core and RSS while polling four devices every second.

    python benchmarks/edge_agent.py [--seconds 60] [--warmup 10] [--no-aggregator] [--json FILE]

What runs, all on loopback, each in its own process:

* one child process with the four simulated devices: the SunSpec hybrid and
  one simulator per vendor catalogue entry (Victron GX, Sungrow SH, Huawei
  SUN2000+LUNA2000), on the real clock;
* a loopback aggregator (``aggregator serve --insecure``, in-memory store),
  so that the agents' uplink streams telemetry and flexibility and receives
  plans as in the field (``--no-aggregator``: the agents keep retrying);
* four real ``edge-agent run`` processes, one per device (the agent drives
  one house device; ``device.catalogue`` selects the vendor map), each
  polling its device every second (``device.poll_interval_s = 1``) with the
  default control tick (5 s), telemetry interval and ``/metrics`` served.

After ``--warmup`` seconds (imports, connections, first plan), the CPU time
(user + system, from /proc via psutil) of each agent process over
``--seconds`` is taken as a share of one core, with its RSS at the end and
its peak RSS (VmHWM).  The device polls done in the window are read from each
agent's own ``vpp_edge_device_reads_total``, to show that it did poll every
second.  Only the agents are measured: simulators and aggregator are not.

Target (issue 3): each agent process under 3 % of one core and under 80 MB RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CATALOGUE = ("victron_gx", "sungrow_sh", "huawei_sun2000_luna2000")
DEVICES = ("sunspec", *CATALOGUE)
POLL_INTERVAL_S = 1.0
TARGET_CPU_PCT = 3.0
TARGET_RSS_MB = 80.0


async def serve() -> None:
    """Child: start the four simulators on free ports, print them as JSON, run until stdin closes."""
    from simulator.catalogue_device import CatalogueSimulator
    from simulator.hybrid_device import SunSpecHybridSimulator
    from vpp_common.clock import SystemClock

    clock = SystemClock()
    sims: list[object] = [SunSpecHybridSimulator(None, clock)] + [CatalogueSimulator(m, clock) for m in CATALOGUE]
    for s in sims:
        await s.start()  # type: ignore[attr-defined]
    print(json.dumps({d: s.port for d, s in zip(DEVICES, sims)}), flush=True)  # type: ignore[attr-defined]
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for s in sims:
        await s.stop()  # type: ignore[attr-defined]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_toml(device: str, port: int, aggregator: str, metrics_port: int) -> str:
    catalogue = "" if device == "sunspec" else f'catalogue = "{device}"\n'
    return (f'house_id = "bench-{device}"\naggregator = "{aggregator}"\ninsecure = true\n'
            f"metrics_port = {metrics_port}\nreconnect_initial_s = 0.5\nreconnect_max_s = 5.0\n\n"
            f'[device]\nhost = "127.0.0.1"\nport = {port}\n{catalogue}poll_interval_s = {POLL_INTERVAL_S}\n'
            "timeout_s = 2.0\n")


def scrape(metrics_port: int) -> dict[str, float]:
    """The agent's device polls so far (vpp_edge_device_reads_total, all results) and whether its
    aggregator stream is up (vpp_edge_uplink_connected); NaN if /metrics does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:  # noqa: S310
            text = r.read().decode()
    except OSError:
        return {"reads": float("nan"), "uplink": float("nan")}
    reads = sum(float(m.group(1)) for m in re.finditer(r"^vpp_edge_device_reads_total\{[^}]*\} (\S+)$", text, re.M))
    up = re.search(r"^vpp_edge_uplink_connected (\S+)$", text, re.M)
    return {"reads": reads, "uplink": float(up.group(1)) if up else float("nan")}


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGTERM (the agent hands the battery back), then SIGKILL if it does not exit."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def measure(seconds: float, warmup: float, with_aggregator: bool, workdir: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = []
    sims = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env=env)
    procs.append(sims)
    try:
        assert sims.stdout is not None
        ports: dict[str, int] = json.loads(sims.stdout.readline())
        agg_port = free_port()
        if with_aggregator:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "aggregator.cli", "serve", "--insecure", "--listen", f"127.0.0.1:{agg_port}",
                 "--admin-listen", f"127.0.0.1:{free_port()}", "--metrics-port", str(free_port())],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / "aggregator.log", "wb")))
        agents: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        for device in DEVICES:
            metrics_port = free_port()
            cfg = workdir / f"agent-{device}.toml"
            cfg.write_text(agent_toml(device, ports[device], f"127.0.0.1:{agg_port}", metrics_port))
            p = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "run", "--config", str(cfg)],
                                 cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                 stderr=open(workdir / f"agent-{device}.log", "wb"))
            procs.append(p)
            agents[device] = (p, metrics_port)
        time.sleep(warmup)  # a benchmark, not a test: the steady state is what is measured
        for device, (p, _) in agents.items():
            if p.poll() is not None:
                raise RuntimeError(f"agent {device} exited ({p.returncode}): "
                                   f"{(workdir / f'agent-{device}.log').read_text()[-2000:]}")
        handles = {d: psutil.Process(p.pid) for d, (p, _) in agents.items()}
        reads0 = {d: scrape(m)["reads"] for d, (_, m) in agents.items()}
        cpu0 = {d: sum(h.cpu_times()[:2]) for d, h in handles.items()}
        wall0 = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - wall0
        cpu = {d: sum(h.cpu_times()[:2]) - cpu0[d] for d, h in handles.items()}
        rss = {d: h.memory_info().rss / 2**20 for d, h in handles.items()}
        peak = {d: peak_rss_mb(h.pid) for d, h in handles.items()}
        end = {d: scrape(m) for d, (_, m) in agents.items()}
        per_agent = {d: {"cpu_pct_of_one_core": round(100.0 * cpu[d] / wall, 2), "rss_mb": round(rss[d], 1),
                         "peak_rss_mb": round(peak[d], 1), "polls_per_s": round((end[d]["reads"] - reads0[d]) / wall, 2),
                         "uplink_connected": end[d]["uplink"] == 1.0}
                     for d in DEVICES}
    finally:
        for p in reversed(procs[1:]):
            stop(p)
        if sims.stdin is not None:
            sims.stdin.close()
        try:
            sims.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop(sims)
    cpus = [a["cpu_pct_of_one_core"] for a in per_agent.values()]
    peaks = [a["peak_rss_mb"] for a in per_agent.values()]
    return {
        "seconds": round(wall, 1), "aggregator": with_aggregator, "agents": per_agent,
        "max_cpu_pct_of_one_core": max(cpus), "sum_cpu_pct_of_one_core": round(sum(cpus), 2),
        "max_peak_rss_mb": max(peaks), "sum_rss_mb": round(sum(rss.values()), 1),
        "load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window (default 60)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring (default 10)")
    parser.add_argument("--no-aggregator", action="store_true", help="no loopback aggregator")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return 0
    with tempfile.TemporaryDirectory(prefix="vpp-bench-agent-") as d:
        result = measure(args.seconds, args.warmup, not args.no_aggregator, Path(d))
    print(f"edge-agent run x4 (one per device), polling every {POLL_INTERVAL_S:g} s for {result['seconds']} s, "
          f"aggregator: {'loopback' if result['aggregator'] else 'none'}")
    print(f"{'device':>24} {'CPU % of 1 core':>16} {'RSS MB':>8} {'peak RSS MB':>12} {'polls/s':>8} {'uplink':>7}")
    for device, a in result["agents"].items():  # type: ignore[union-attr]
        print(f"{device:>24} {a['cpu_pct_of_one_core']:>16} {a['rss_mb']:>8} {a['peak_rss_mb']:>12} "
              f"{a['polls_per_s']:>8} {'up' if a['uplink_connected'] else 'down':>7}")
    print(f"{'all four agents':>24} {result['sum_cpu_pct_of_one_core']:>16} {result['sum_rss_mb']:>8}")
    print(f"load average {result['load_average']} on {result['cpus']} CPUs")
    met = result["max_cpu_pct_of_one_core"] < TARGET_CPU_PCT and result["max_peak_rss_mb"] < TARGET_RSS_MB  # type: ignore[operator]
    print(f"target per agent: < {TARGET_CPU_PCT:g} % of one core, < {TARGET_RSS_MB:g} MB RSS -> "
          f"{'met' if met else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
