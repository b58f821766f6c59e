"""``vpp-sim``: the physical world for demos and tests.

    vpp-sim demo                     # one house end to end, a simulated day in ~40 s
    vpp-sim demo --hours 6 --json summary.json
    vpp-sim device --port 1502       # a SunSpec hybrid inverter on Modbus TCP until Ctrl-C
    vpp-sim vendor-device --model sungrow_sh --port 1503   # a catalogue entry's device
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import datetime
from pathlib import Path

from vpp_common.cli import run_main, run_until_signal, setup_logging
from vpp_common.clock import UTC, AcceleratedClock, SystemClock


def _utc_datetime(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _positive(text: str) -> float:
    v = float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vpp-sim",
        description="Simulated houses for the VPP: Modbus TCP device servers with physics (PV, battery, load, "
                    "meter) and an end-to-end demo that runs them with a real edge agent and aggregator.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="one house end to end over loopback; prints a summary",
                          description="Run a simulated SunSpec hybrid inverter, an edge agent and an aggregator "
                                      "(in-memory store) over real loopback sockets on an accelerated clock, "
                                      "print progress every 2 simulated hours and a summary at the end.")
    demo.add_argument("--hours", type=_positive, default=24.0, help="simulated hours (default 24)")
    demo.add_argument("--speed", type=_positive, default=2160.0,
                      help="simulated seconds per real second (default 2160: a day in 40 s)")
    demo.add_argument("--start", type=_utc_datetime, default=datetime(2026, 6, 21, tzinfo=UTC),
                      help="simulated start time, ISO 8601 (default 2026-06-21T00:00Z)")
    demo.add_argument("--json", type=Path, help="also write the summary to this JSON file")
    dev = sub.add_parser("device", help="serve one simulated SunSpec hybrid inverter on Modbus TCP",
                         description="Serve a SunSpec hybrid inverter (models 1, 103, 120, 123, 124, 160, 203, 802) "
                                     "with battery physics until SIGINT/SIGTERM.")
    dev.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=1502, help="Modbus TCP port (default 1502)")
    dev.add_argument("--unit", type=int, default=1, help="Modbus unit id (default 1)")
    dev.add_argument("--speed", type=_positive, default=1.0, help="clock speed (default 1: real time)")
    dev.add_argument("--soc", type=float, default=50.0, help="initial state of charge in %% (default 50)")
    ven = sub.add_parser("vendor-device", help="serve one simulated vendor device (catalogue entry) on Modbus TCP",
                         description="Serve the device of a vendor catalogue entry (edge_agent/catalogue/*.toml: "
                                     "victron_gx, sungrow_sh, huawei_sun2000_luna2000) with battery physics and "
                                     "the vendor's control semantics until SIGINT/SIGTERM. Unit ids come from "
                                     "the entry.")
    ven.add_argument("--model", required=True, help="catalogue entry id")
    ven.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ven.add_argument("--port", type=int, default=1503, help="Modbus TCP port (default 1503)")
    ven.add_argument("--speed", type=_positive, default=1.0, help="clock speed (default 1: real time)")
    ven.add_argument("--soc", type=float, default=50.0, help="initial state of charge in %% (default 50)")
    return parser


async def _vendor_device(args: argparse.Namespace) -> int:
    from edge_agent.drivers.catalogue import CatalogueError
    from simulator.catalogue_device import CatalogueSimulator
    from simulator.physics import PhysicsConfig
    from vpp_common.config import ConfigError

    clock = SystemClock() if args.speed == 1.0 else AcceleratedClock(datetime.now(UTC), args.speed)
    try:
        sim = CatalogueSimulator(args.model, clock, PhysicsConfig(initial_soc_pct=args.soc), host=args.host,
                                 port=args.port)
    except (CatalogueError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc

    async def start() -> None:
        await sim.start()
        units = sorted({sim.entry.unit_of(n) for n in sim.entry.points})
        print(f"{args.model} simulator on modbus://{args.host}:{sim.port} units {units}", flush=True)

    await run_until_signal(start, sim.stop)
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from simulator.demo import run_demo

    summary = await run_demo(hours=args.hours, speed=args.speed, start=args.start)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"summary written to {args.json}")
    return 0


async def _device(args: argparse.Namespace) -> int:
    from simulator.hybrid_device import SimulatorConfig, SunSpecHybridSimulator
    from simulator.physics import PhysicsConfig

    clock = SystemClock() if args.speed == 1.0 else AcceleratedClock(datetime.now(UTC), args.speed)
    try:
        physics = PhysicsConfig(initial_soc_pct=args.soc)
    except ValueError as exc:
        from vpp_common.config import ConfigError

        raise ConfigError(str(exc)) from exc
    sim = SunSpecHybridSimulator(SimulatorConfig(physics=physics), clock, host=args.host, port=args.port, unit_id=args.unit)

    async def start() -> None:
        await sim.start()
        print(f"SunSpec hybrid simulator on modbus://{args.host}:{sim.port} unit {args.unit}", flush=True)

    await run_until_signal(start, sim.stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the demo prints its own progress table: only warnings interleave with it by default
    setup_logging(args.verbose, logging.WARNING if args.command == "demo" else logging.INFO)
    if args.command == "demo":
        return run_main(lambda: _demo(args))
    if args.command == "device":
        return run_main(lambda: _device(args))
    if args.command == "vendor-device":
        return run_main(lambda: _vendor_device(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
