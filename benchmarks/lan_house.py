#!/usr/bin/env python3
"""The edge agent for a house of LAN devices only: CPU share of one core and RSS (issue 22's acceptance
house beside benchmarks/edge_agent.py's four-device Modbus house).

    python benchmarks/lan_house.py [--seconds 60] [--warmup 10] [--no-aggregator] [--json FILE]

What runs, on loopback: the simulated house (simulator/lan_house.py: an OpenDTU with a 2 kW Hoymiles,
three Shelly plugs with a washing machine, a freezer and a power station behind them (simulator/appliances.py;
the agent schedules them as ``[[appliances]]``: docs/appliances.md), a DSMR 5 P1 meter sending a telegram a second whose reading is the house's
balance), in a thread of this process; a loopback aggregator (``aggregator serve --insecure``, unless
``--no-aggregator``); one ``edge-agent run`` process with ``[device] kind = "lan"``, polling every
second (the house: no faster than the OpenDTU's 2 s; the plugs every second), the default control tick
(5 s), an export cap below the PV (so the micro-inverter is curtailed) and ``/metrics`` served.  After
``--warmup`` s, the agent's CPU time over ``--seconds`` (as benchmarks/edge_agent.py measures it), its
RSS, USS and peak RSS.  Only the agent is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.edge_agent import Proc, check_running, cpu_and_memory, free_port, stop  # noqa: E402
from simulator.lan_house import LanHouseSim  # noqa: E402

PLUGS = {"washer": 150.0, "freezer": 80.0, "station": 200.0}


def serve_house(ports: dict[str, int], ready: threading.Event, done: threading.Event) -> None:
    """The simulated house in its own event loop until ``done``."""
    async def run() -> None:
        from simulator.appliances import Freezer, PowerStation, WashingMachine

        house = LanHouseSim(base_load_w=300.0, available_w=1600.0, apply_delay_s=3.0, plugs=PLUGS)
        washer = WashingMachine()
        washer.arm()
        for pid, appliance in (("washer", washer), ("freezer", Freezer()), ("station", PowerStation())):
            house.plugs[pid].appliance = appliance
        ports.update(await house.start())
        ready.set()
        while not done.is_set():
            await asyncio.sleep(0.2)
        await house.stop()

    asyncio.run(run())


def agent_toml(ports: dict[str, int], aggregator: str, metrics_port: int) -> str:
    plugs = "".join(f'\n[[lan_devices]]\nid = "{p}"\nmodel = "shelly_plug_s"\nhost = "127.0.0.1"\nport = {ports[p]}\n'
                    'role = "load"\n' for p in PLUGS)
    return (f'house_id = "bench-lan-house"\naggregator = "{aggregator}"\ninsecure = true\nmetrics_port = {metrics_port}\n'
            'state_dir = "state"\n\n[device]\nkind = "lan"\npoll_interval_s = 1\n\n[site]\nmax_export_w = 300\n\n'
            f'[[lan_devices]]\nid = "p1"\nmodel = "dsmr5_p1"\nhost = "127.0.0.1"\nport = {ports["meter"]}\n'
            'role = "grid_meter"\n\n'
            f'[[lan_devices]]\nid = "balcony"\nmodel = "opendtu_hoymiles"\nhost = "127.0.0.1"\nport = {ports["dtu"]}\n'
            'role = "pv"\nserial = "114182180001"\npassword = "openDTU42"\n' + plugs + APPLIANCES)


APPLIANCES = """
[[appliances]]
plug = "washer"
kind = "run"
energy_kwh = 1.1
duration_min = 120
ready_by = "17:00"

[[appliances]]
plug = "freezer"
kind = "pausable"
max_pause_min = 30
period_min = 60
power_w = 90

[[appliances]]
plug = "station"
kind = "battery"
capacity_kwh = 1.0
charge_power_w = 300
energy_kwh_per_day = 0.7
"""


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "proto")])}
    ports: dict[str, int] = {}
    ready, done = threading.Event(), threading.Event()
    sims = threading.Thread(target=serve_house, args=(ports, ready, done), daemon=True)
    sims.start()
    procs: list[Proc] = []
    try:
        if not ready.wait(30):
            raise RuntimeError("the simulated house did not start")
        agg_port = free_port()
        if not args.no_aggregator:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "aggregator.cli", "serve", "--insecure", "--listen", f"127.0.0.1:{agg_port}",
                 "--admin-listen", f"127.0.0.1:{free_port()}", "--metrics-port", str(free_port())],
                cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / "aggregator.log", "wb")))
        metrics_port = free_port()
        cfg = workdir / "agent-lan-house.toml"
        cfg.write_text(agent_toml(ports, f"127.0.0.1:{agg_port}", metrics_port))
        agent = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "run", "--config", str(cfg)], cwd=workdir,
                                 env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / "agent-lan-house.log", "wb"))
        procs.append(agent)
        agents = {"lan_house": (agent, metrics_port)}
        time.sleep(args.warmup)
        check_running(agents, workdir)
        per_agent, wall = cpu_and_memory(agents, args.seconds)
    finally:
        for proc in reversed(procs):
            stop(proc)
        done.set()
        sims.join(timeout=15)
    return {"seconds": round(wall, 1), "aggregator": not args.no_aggregator, "agent": per_agent["lan_house"],
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--no-aggregator", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vpp-bench-lan-") as tmp:
        result = measure(args, Path(tmp))
    a = result["agent"]
    assert isinstance(a, dict)
    print(f"LAN house agent over {result['seconds']} s: {a['cpu_pct_of_one_core']} % of one core, RSS {a['rss_mb']} MB "
          f"(USS {a['uss_mb']} MB, peak {a['peak_rss_mb']} MB), {a['polls_per_s']} house polls/s, uplink "
          f"{'up' if a['uplink_connected'] else 'down'}; load average {result['loadavg']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
