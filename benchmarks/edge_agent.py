#!/usr/bin/env python3
"""The edge agent process: CPU share of one core and RSS while polling four devices every second.

    python benchmarks/edge_agent.py [--seconds 60] [--warmup 10] [--no-aggregator] [--vendors]
                                    [--plans 200] [--plan-interval 0.5] [--json FILE]

What runs, all on loopback, each in its own process:

* one child process with the simulated devices, on the real clock: a house
  of four separate SunSpec devices (battery inverter, PV inverter, grid
  meter, EV charger: ``simulator.split_house``, one Modbus TCP server each);
  with ``--vendors`` also the SunSpec hybrid and one simulator per vendor
  catalogue entry (Victron GX, Sungrow SH, Huawei SUN2000+LUNA2000);
* a loopback aggregator (``aggregator serve --insecure``, in-memory store),
  so that the agents' uplink streams telemetry and flexibility and receives
  plans as in the field (``--no-aggregator``: the agents keep retrying);
* one real ``edge-agent run`` process for the four-device house
  (``[[device.parts]]``), polling all four devices every second
  (``device.poll_interval_s = 1``) with the default control tick (5 s),
  telemetry interval and ``/metrics`` served; with ``--vendors`` one more
  agent per hybrid device (``device.catalogue`` selects the vendor map).

After ``--warmup`` seconds (imports, connections, first plan), the CPU time
(user + system, from /proc via psutil) of each agent process over
``--seconds`` is taken as a share of one core, with its RSS at the end and
its peak RSS (VmHWM).  The house polls done in the window are read from each
agent's own ``vpp_edge_device_reads_total`` (one poll reads every device of
the house), to show that it did poll every second.  Only the agents are
measured: simulators and aggregator are not.

Then the plan-to-register latency (``--plans`` > 0): a new agent for the four-device house
connects to a plan source instead of the aggregator (in the simulators' process, gRPC
``FleetService``): once the agent sends flexibility (it has read its devices), the
source sends ``--plans`` plans, one every ``--plan-interval`` s, each a new version with a
fixed battery setpoint alternating between 1000 W and 3000 W (both charging: a discharge
may meet the export cap at noon and be clamped to what was already written).  The
latency of plan k runs from just before the plan source hands it to gRPC to the last
register write of the battery command it caused: the first change of the simulated
battery's command after the plan (``simulator.physics`` ``set_command``, hooked in the
simulators' process; both instants on CLOCK_MONOTONIC in one process), through the
writes of that command that follow within 0.1 s (a SunSpec command is several
registers).  It includes the loopback transport, the agent's decoding, checks and
control decision and each write's Modbus round trip; plans with no such change before
the next plan are counted (``unmatched``).  p50/p99/max are printed.  RSS and USS (the
memory only this process holds: RSS less the shared pages of libraries) are printed
with the installed packages whose native libraries the agent has mapped.

Targets (issue 25): the agent polling four devices under 1 % of one core and under
40 MB RSS; plan to register p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CATALOGUE = ("victron_gx", "sungrow_sh", "huawei_sun2000_luna2000")
HOUSE = "four_devices"  # battery inverter + PV inverter + grid meter + EV charger, one agent
VENDORS = ("sunspec", *CATALOGUE)
POLL_INTERVAL_S = 1.0
TARGET_CPU_PCT = 1.0
TARGET_RSS_MB = 40.0
TARGET_LATENCY_P99_MS = 100.0
BURST_GAP_S = 0.1
PLAN_SETPOINTS_W = (1000.0, 3000.0)  # charging both: a discharge may meet the export cap at noon


class PlanSource:
    """A stand-in aggregator for the latency phase: Welcome, then plans that flip the battery."""

    def __init__(self, plans: int, interval_s: float) -> None:
        self.plans, self.interval_s = plans, interval_s
        self.sent: list[tuple[float, float]] = []  # (monotonic s, battery setpoint W) per plan
        self.reporting = asyncio.Event()  # the agent sends flexibility: it has read its devices
        self.done = asyncio.Event()

    def servicer(self):  # type: ignore[no-untyped-def]
        from vpp.v1 import fleet_service_pb2_grpc as fs_grpc

        source = self

        class Servicer(fs_grpc.FleetServiceServicer):  # type: ignore[misc]
            async def Connect(self, request_iterator, context):  # type: ignore[no-untyped-def]
                async for resp in source.stream(request_iterator):
                    yield resp

        return Servicer()

    async def stream(self, requests):  # type: ignore[no-untyped-def]
        from aggregator.service import convert
        from vpp.v1 import fleet_service_pb2 as fs
        from vpp_common.messages import ResourceKind

        first = await requests.__anext__()
        hello = convert.hello_from_proto(first.hello)
        batteries = [r.resource_id for r in hello.resources if r.kind is ResourceKind.BATTERY]
        if not batteries:
            raise RuntimeError(f"plan source: the agent's Hello names no battery: {hello.resources}")
        battery = batteries[0]
        drain = asyncio.create_task(self._drain(requests))
        try:
            welcome = convert.welcome(hello.claimed_house_id, "plan-source", 5.0, 30.0)
            welcome.telemetry_acks = False  # nothing is stored here
            yield fs.ConnectResponse(sequence=1, welcome=welcome)
            await self.reporting.wait()
            await asyncio.sleep(2.0)  # the agent's first decisions on its own, then the plans
            for k in range(self.plans):
                setpoint = PLAN_SETPOINTS_W[k % 2]
                msg = convert.plan_to_proto(self._plan(k + 1, battery, setpoint))
                self.sent.append((time.monotonic(), setpoint))
                yield fs.ConnectResponse(sequence=k + 2, dispatch_plan=msg)
                await asyncio.sleep(self.interval_s)
            self.done.set()
            await asyncio.Event().wait()  # keep the stream until the benchmark stops
        finally:
            drain.cancel()

    async def _drain(self, requests) -> None:  # type: ignore[no-untyped-def]
        async for req in requests:
            if req.WhichOneof("payload") == "flexibility_update":
                self.reporting.set()

    @staticmethod
    def _plan(version: int, battery: str, setpoint_w: float):  # type: ignore[no-untyped-def]
        from datetime import UTC, datetime, timedelta

        from vpp_common.messages import DispatchPlan, Envelope, PlanSlot, Setpoint

        now = datetime.now(UTC)
        start = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
        slots = tuple(PlanSlot(start + timedelta(minutes=15 * i),
                               (Setpoint(battery, setpoint_w, Envelope(setpoint_w, setpoint_w)),)) for i in range(4))
        return DispatchPlan(f"bench-{version}", version, now, start, start + timedelta(hours=1), 900, slots)


def latencies_ms(sent: list[tuple[float, float]],
                 commands: list[tuple[float, float, float]]) -> tuple[list[float], int]:
    """Per plan: ms from its sending to the battery command it caused: the first command after
    it (before the next plan) that differs from the one in force when it was sent (a power
    window, ``simulator.physics.BatteryCommand``), to the last write of that burst (a
    command is several registers, written one by one, each < ``BURST_GAP_S`` after the
    last); and how many plans had none (the agent clamped the setpoint to what was already
    written, or wrote nothing)."""
    out, unmatched = [], 0
    times = [c for c, _, _ in commands]
    for k, (t, _) in enumerate(sent):
        until = sent[k + 1][0] if k + 1 < len(sent) else float("inf")
        i = bisect.bisect_left(times, t)
        was = commands[i - 1][1:] if i > 0 else None
        while i < len(commands) and commands[i][0] < until and commands[i][1:] == was:
            i += 1
        if i == len(commands) or commands[i][0] >= until:
            unmatched += 1
            continue
        while i + 1 < len(commands) and commands[i + 1][0] < until and commands[i + 1][0] - commands[i][0] < BURST_GAP_S:
            i += 1
        out.append(1000.0 * (commands[i][0] - t))
    return out, unmatched


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: a p99 of 200 samples is the 198th)."""
    if not values:
        return float("nan")
    ranked = sorted(values)
    return ranked[max(0, min(len(ranked) - 1, math.ceil(q / 100.0 * len(ranked)) - 1))]


async def serve(vendors: bool, plans: int, plan_interval_s: float) -> None:
    """Child: start the simulators and the plan source on free ports, print them as JSON, run
    until stdin closes, then print the plans sent and the battery commands taken (JSON)."""
    import grpc

    from simulator.catalogue_device import CatalogueSimulator
    from simulator.hybrid_device import SunSpecHybridSimulator
    from simulator.split_house import ROLES, SplitHouseSimulator
    from vpp.v1 import fleet_service_pb2_grpc as fs_grpc
    from vpp_common.clock import SystemClock

    clock = SystemClock()
    house = SplitHouseSimulator(None, clock)
    sims: dict[str, SunSpecHybridSimulator | CatalogueSimulator] = {}
    if vendors:
        sims = {"sunspec": SunSpecHybridSimulator(None, clock), **{m: CatalogueSimulator(m, clock) for m in CATALOGUE}}
    commands: list[tuple[float, float, float]] = []  # (monotonic s, battery window W) of the four-device house
    physics = house.hybrid.physics
    set_command = physics.set_command

    def recorded(command, now):  # type: ignore[no-untyped-def]
        commands.append((time.monotonic(), command.lower_w, command.upper_w))
        return set_command(command, now)

    physics.set_command = recorded  # type: ignore[method-assign]
    source = PlanSource(plans, plan_interval_s)
    server = grpc.aio.server()
    fs_grpc.add_FleetServiceServicer_to_server(source.servicer(), server)
    source_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await house.start()
    for s in sims.values():
        await s.start()
    ports: dict[str, object] = {d: s.port for d, s in sims.items()}
    ports[HOUSE] = {r: house.port(r) for r in ROLES}
    ports["plan_source"] = source_port
    print(json.dumps(ports), flush=True)

    async def say_done() -> None:
        await source.done.wait()
        await asyncio.sleep(1.0)  # the last plan's write
        print(json.dumps({"plans_done": len(source.sent)}), flush=True)

    done = asyncio.create_task(say_done())
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    done.cancel()
    await server.stop(0.5)
    for s in sims.values():
        await s.stop()
    await house.stop()
    print(json.dumps({"sent": source.sent, "commands": commands}), flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_toml(device: str, port: object, aggregator: str, metrics_port: int) -> str:
    head = (f'house_id = "bench-{device}"\naggregator = "{aggregator}"\ninsecure = true\n'
            f"metrics_port = {metrics_port}\nreconnect_initial_s = 0.5\nreconnect_max_s = 5.0\n\n"
            f"[device]\npoll_interval_s = {POLL_INTERVAL_S}\ntimeout_s = 2.0\n")
    if device == HOUSE:
        assert isinstance(port, dict)
        return head + "".join(f'\n[[device.parts]]\nrole = "{role}"\nhost = "127.0.0.1"\nport = {p}\n'
                              for role, p in port.items())
    catalogue = "" if device == "sunspec" else f'catalogue = "{device}"\n'
    return head + f'host = "127.0.0.1"\nport = {port}\n{catalogue}'


def scrape(metrics_port: int) -> dict[str, float]:
    """The agent's device polls so far (vpp_edge_device_reads_total, all results) and whether its
    aggregator stream is up (vpp_edge_uplink_connected); NaN if /metrics does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
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


def mapped_packages(pid: int) -> list[str]:
    """The installed packages whose native libraries the process has mapped (numpy, grpc, ...):
    what it loaded that weighs, read from /proc/<pid>/maps."""
    found = set()
    try:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            path = line.split()[-1]
            if "site-packages/" in path and (path.endswith(".so") or ".so." in path):
                found.add(path.split("site-packages/", 1)[1].split("/", 1)[0].split(".")[0])
    except OSError:
        pass
    return sorted(found)


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGTERM (the agent hands the battery back), then SIGKILL if it does not exit."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


Proc = subprocess.Popen[bytes] | subprocess.Popen[str]


def start_agent(name: str, device: str, port: object, aggregator: str, workdir: Path,
                env: dict[str, str]) -> tuple[Proc, int]:
    """An ``edge-agent run`` process (house id ``bench-<name>``) and its metrics port."""
    metrics_port = free_port()
    cfg = workdir / f"agent-{name}.toml"
    cfg.write_text(agent_toml(device, port, aggregator, metrics_port).replace(f"bench-{device}", f"bench-{name}", 1))
    p = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "run", "--config", str(cfg)],
                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / f"agent-{name}.log", "wb"))
    return p, metrics_port


def check_running(agents: dict[str, tuple[Proc, int]], workdir: Path) -> None:
    for name, (ap, _) in agents.items():
        if ap.poll() is not None:
            raise RuntimeError(f"agent {name} exited ({ap.returncode}): "
                               f"{(workdir / f'agent-{name}.log').read_text()[-2000:]}")


def cpu_and_memory(agents: dict[str, tuple[Proc, int]], seconds: float) -> tuple[dict[str, Any], float]:
    """Per agent: CPU share, RSS, peak RSS and polls over ``seconds``; and the window's length."""
    handles = {d: psutil.Process(ap.pid) for d, (ap, _) in agents.items()}
    reads0 = {d: scrape(m)["reads"] for d, (_, m) in agents.items()}
    cpu0 = {d: sum(h.cpu_times()[:2]) for d, h in handles.items()}
    wall0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - wall0
    cpu = {d: sum(h.cpu_times()[:2]) - cpu0[d] for d, h in handles.items()}
    rss = {d: h.memory_info().rss / 2**20 for d, h in handles.items()}
    peak = {d: peak_rss_mb(h.pid) for d, h in handles.items()}
    end = {d: scrape(m) for d, (_, m) in agents.items()}
    uss = {d: h.memory_full_info().uss / 2**20 for d, h in handles.items()}
    return {d: {"cpu_pct_of_one_core": round(100.0 * cpu[d] / wall, 2), "rss_mb": round(rss[d], 1),
                "uss_mb": round(uss[d], 1), "native_packages": mapped_packages(handles[d].pid),
                "peak_rss_mb": round(peak[d], 1), "polls_per_s": round((end[d]["reads"] - reads0[d]) / wall, 2),
                "uplink_connected": end[d]["uplink"] == 1.0}
            for d in agents}, wall


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs: list[Proc] = []
    devices = (HOUSE, *VENDORS) if args.vendors else (HOUSE,)
    sims = subprocess.Popen([sys.executable, __file__, "--serve", *(["--vendors"] if args.vendors else []),
                             "--plans", str(args.plans), "--plan-interval", str(args.plan_interval)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    load_before = [round(x, 2) for x in os.getloadavg()]
    latency: dict[str, Any] | None = None
    try:
        assert sims.stdout is not None
        ports: dict[str, object] = json.loads(sims.stdout.readline())
        agg_port = free_port()
        if not args.no_aggregator:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "aggregator.cli", "serve", "--insecure", "--listen", f"127.0.0.1:{agg_port}",
                 "--admin-listen", f"127.0.0.1:{free_port()}", "--metrics-port", str(free_port())],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / "aggregator.log", "wb")))
        agents = {d: start_agent(d, d, ports[d], f"127.0.0.1:{agg_port}", workdir, env) for d in devices}
        procs.extend(p for p, _ in agents.values())
        time.sleep(args.warmup)  # a benchmark, not a test: the steady state is what is measured
        check_running(agents, workdir)
        per_agent, wall = cpu_and_memory(agents, args.seconds)
        for proc in reversed(procs):  # the latency phase runs alone
            stop(proc)
        procs.clear()
        if args.plans > 0:
            lat = {"latency": start_agent("latency", HOUSE, ports[HOUSE], f"127.0.0.1:{ports['plan_source']}",
                                          workdir, env)}
            procs.append(lat["latency"][0])
            limit_s = 120.0 + 3 * args.plans * args.plan_interval
            if not select.select([sims.stdout], [], [], limit_s)[0]:
                raise RuntimeError(f"the plan source did not send its {args.plans} plans within {limit_s:.0f} s: "
                                   f"{(workdir / 'agent-latency.log').read_text()[-2000:]}")
            sims.stdout.readline()
            check_running(lat, workdir)
    finally:
        for proc in reversed(procs):
            stop(proc)
        try:
            out, _ = sims.communicate(timeout=30)  # closes its stdin: the child stops and reports
        except subprocess.TimeoutExpired:
            stop(sims)
            out = ""
    if args.plans > 0:
        record = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"sent": [], "commands": []}
        ms, unmatched = latencies_ms(record["sent"], record["commands"])
        latency = {"plans_sent": len(record["sent"]), "matched": len(ms), "unmatched": unmatched,
                   "battery_commands": len(record["commands"]),
                   "interval_s": args.plan_interval, "p50_ms": round(percentile(ms, 50), 1),
                   "p99_ms": round(percentile(ms, 99), 1), "max_ms": round(max(ms), 1) if ms else float("nan")}
    cpus = [a["cpu_pct_of_one_core"] for a in per_agent.values()]
    peaks = [a["peak_rss_mb"] for a in per_agent.values()]
    return {
        "seconds": round(wall, 1), "aggregator": not args.no_aggregator, "agents": per_agent,
        "max_cpu_pct_of_one_core": max(cpus), "sum_cpu_pct_of_one_core": round(sum(cpus), 2),
        "max_peak_rss_mb": max(peaks), "sum_rss_mb": round(sum(a["rss_mb"] for a in per_agent.values()), 1),
        "plan_to_register": latency,
        "load_average_before": load_before, "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window (default 60)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring (default 10)")
    parser.add_argument("--no-aggregator", action="store_true", help="no loopback aggregator")
    parser.add_argument("--vendors", action="store_true",
                        help="also one agent per hybrid device (SunSpec, Victron, Sungrow, Huawei), for comparison")
    parser.add_argument("--plans", type=int, default=200,
                        help="plans sent in the plan-to-register latency phase (default 200; 0: no such phase)")
    parser.add_argument("--plan-interval", type=float, default=0.5, help="seconds between those plans (default 0.5)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("seconds", "warmup", "plan_interval"):
        if not (math.isfinite(v := getattr(args, name)) and 0 < v <= 3600):
            parser.error(f"--{name.replace('_', '-')} must lie in (0, 3600], got {v}")
    if not 0 <= args.plans <= 100_000:
        parser.error(f"--plans must lie in 0..100000, got {args.plans}")
    if args.serve:
        asyncio.run(serve(args.vendors, args.plans, args.plan_interval))
        return 0
    with tempfile.TemporaryDirectory(prefix="vpp-bench-agent-") as d:
        result = measure(args, Path(d))
    print(f"edge-agent run: {HOUSE} = one agent polling a battery inverter, PV inverter, grid meter and EV charger"
          f"{' (plus one agent per hybrid device)' if args.vendors else ''}, every {POLL_INTERVAL_S:g} s "
          f"for {result['seconds']} s, aggregator: {'loopback' if result['aggregator'] else 'none'}")
    print(f"{'device':>24} {'CPU % of 1 core':>16} {'RSS MB':>8} {'USS MB':>8} {'peak RSS MB':>12} {'polls/s':>8} "
          f"{'uplink':>7}")
    for device, a in result["agents"].items():
        print(f"{device:>24} {a['cpu_pct_of_one_core']:>16} {a['rss_mb']:>8} {a['uss_mb']:>8} {a['peak_rss_mb']:>12} "
              f"{a['polls_per_s']:>8} {'up' if a['uplink_connected'] else 'down':>7}")
    print(f"native libraries of the four-device agent: {', '.join(result['agents'][HOUSE]['native_packages'])}")
    lat = result["plan_to_register"]
    if lat is not None:
        print(f"plan to register ({lat['plans_sent']} plans, one every {lat['interval_s']:g} s, {lat['matched']} "
              f"written, {lat['unmatched']} without a write): p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, "
              f"max {lat['max_ms']} ms")
    print(f"load average before {result['load_average_before']}, after {result['load_average']} "
          f"on {result['cpus']} CPUs (other processes share them: the figures are noisy)")
    house = result["agents"][HOUSE]
    met = house["cpu_pct_of_one_core"] < TARGET_CPU_PCT and house["peak_rss_mb"] < TARGET_RSS_MB
    lat_met = lat is not None and lat["matched"] > 0 and lat["p99_ms"] < TARGET_LATENCY_P99_MS
    result["target_met"] = {"cpu_and_rss": met, "plan_to_register_p99": lat_met}
    print(f"targets for the agent polling four devices: < {TARGET_CPU_PCT:g} % of one core, < {TARGET_RSS_MB:g} MB "
          f"RSS -> {'met' if met else 'NOT met'}; plan to register p99 < {TARGET_LATENCY_P99_MS:g} ms -> "
          f"{'met' if lat_met else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
