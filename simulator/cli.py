"""``vpp-sim``: the fleet evaluation, and the physical world for demos and tests.

    vpp-sim run                      # the default scenario: every strategy, KPI table (fast mode)
    vpp-sim run --scenario DIR --days 30 --json report.json --plots plots/
    vpp-sim run --mode live --houses 20 --days 0.5   # real processes on loopback
    vpp-sim scenario export DIR      # the default scenario as a folder to edit
    vpp-sim eval --json eval.json    # the evaluation set: every scenario and strategy, one table
    vpp-sim scenario export --name us_hot_tou_summer DIR   # an evaluation scenario as a folder
    vpp-sim demo                     # one house end to end, a simulated day in ~40 s
    vpp-sim demo --hours 6 --json summary.json
    vpp-sim device --port 1502       # a SunSpec hybrid inverter on Modbus TCP until Ctrl-C
    vpp-sim device --port 1502 --der # the same as a SunSpec DER device (701/702/713/704)
    vpp-sim vendor-device --model sungrow_sh --port 1503   # a catalogue entry's device
    vpp-sim device --fault frozen --fault slow:0.5 --control-port 1602   # faults, and a channel to change them
    vpp-sim fault --control 127.0.0.1:1602 reboot      # inject a fault into a running device (or: clear)
    vpp-sim lan-device --model shelly_plug_s --port 8080 [--password pw]   # a smart plug or meter
    vpp-sim lan-house [--port 18000] [--pv 1600] [--load 300] [--plug washer=150]   # a house of LAN devices
    vpp-sim house --with opendtu --with p1 --plug washer=washer --plug lamp=60   # any mix, one balance
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from aggregator.dispatch.problem import DispatchOptions
from simulator import lan_cli, mix_cli
from vpp_common.cli import EXIT_CONFIG, run_main, run_until_signal, setup_logging
from vpp_common.clock import UTC, AcceleratedClock, Clock, SystemClock

if TYPE_CHECKING:
    from simulator.fleet.model import Scenario
    from simulator.fleet.strategies import StrategyOptions
    from simulator.physics import PhysicsConfig

_STRATEGIES = ("no_battery", "battery_idle", "self_consumption", "tou", "fleet", "perfect_foresight")
_DISPATCH = DispatchOptions()  # the aggregator's defaults, shown in --help


def _utc_datetime(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if dt.tzinfo is None:  # read as UTC, a local time would shift by hours without a word
        raise argparse.ArgumentTypeError(f"needs a UTC offset (e.g. 2026-06-21T00:00Z): {text!r}")
    return dt.astimezone(UTC)


def _positive(text: str) -> float:
    v = float(text)
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def _non_negative(text: str) -> float:
    v = float(text)
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vpp-sim",
        description="Simulated houses for the VPP: Modbus TCP device servers with physics (PV, battery, load, "
                    "meter) and an end-to-end demo that runs them with a real edge agent and aggregator.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="evaluate strategies on a fleet scenario: KPI table, JSON, plots",
        description="Run a fleet scenario (default: the embedded one, built from real data; see "
                    "simulator/fleet/data/README.md) under each strategy and report, per strategy, energy cost, "
                    "self-consumption, self-sufficiency, feeder peaks against limits, energy over limits, export-"
                    "cap violations and battery cycles. Fast mode drives the edge decision and the aggregator's "
                    "optimiser in-process on a simulated clock; live mode runs the fleet strategy as real "
                    "processes (aggregator, one edge agent per house, Modbus device simulators) on loopback.",
        epilog="Scenario folders are described in docs/scenario-format.md; `vpp-sim scenario export DIR` writes "
               "the default one as an example.")
    run.add_argument("--scenario", type=Path, help="scenario folder (default: the embedded default scenario)")
    run.add_argument("--days", type=_positive, help="days to evaluate, after the warm-up (default: 7 for the "
                     "embedded scenario, a folder's `days` or all its data after the warm-up; live mode: 10 h "
                     "from 08:00)")
    run.add_argument("--warmup-days", type=_non_negative, default=None,
                     help="days simulated first and not counted, so forecasters have history and batteries a "
                          "state of charge (default: a folder's `warmup_days`, 2 if it has none and for the "
                          "embedded scenario)")
    run.add_argument("--houses", type=int, help="only the first N houses (live mode default: 20)")
    run.add_argument("--strategies", default=",".join(_STRATEGIES),
                     help=f"comma-separated subset of {','.join(_STRATEGIES)} (default: all)")
    run.add_argument("--mode", choices=("fast", "live"), default="fast",
                     help="fast: in-process, simulated clock (default); live: real processes on loopback, "
                          "fleet strategy only, compared with fast mode")
    run.add_argument("--speed", type=_positive, default=300.0,
                     help="live mode: simulated seconds per real second (default 300)")
    run.add_argument("--replan-min", type=int, default=60, help="fleet and tou re-plan period in minutes (default 60)")
    run.add_argument("--no-futures", action="store_true",
                     help="fleet strategy: plan on the forecasts alone (with a night reserve) instead of over a "
                          "heavy-and-cloudy and a light-and-clear future around them; fast mode only")
    run.add_argument("--night-load-margin", type=float, default=None, metavar="M",
                     help="with --no-futures: battery energy kept for a night M times the forecast load (default "
                          f"{_DISPATCH.night_load_margin:g}; 1 = plan on the forecast as it is)")
    run.add_argument("--holding-cost", type=float, default=None, metavar="EUR_PER_KWH_H",
                     help="fleet strategy: cost per kWh held per hour, which makes plans fill batteries late and "
                          f"keep room for PV above forecast (default {_DISPATCH.holding_cost_per_kwh_h:g}); "
                          "fast mode only")
    run.add_argument("--appliances", action="store_true",
                     help="give the houses the default shiftable runs (60 %% of them a 1.1 kWh, 2-hour washing "
                          "programme a day, armed at a seeded time 07:00-10:00 local, ready by 17:00 local) and show "
                          "what placing them adds; a scenario folder's [[appliances]] always do; fast mode only")
    run.add_argument("--workers", type=int, default=None, help="solver processes (default: min(2, cores))")
    run.add_argument("--json", type=Path, help="write the figures to this JSON file (top-level keys by strategy)")
    run.add_argument("--plots", type=Path, help="write PNG plots to this folder")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    _eval_args(sub)
    scen = sub.add_parser("scenario", help="write the embedded default scenario as a folder",
                          description="Write the embedded default scenario in the documented folder format "
                                      "(scenario.toml, houses.csv, series/<id>.csv, prices.csv, feeders.csv) "
                                      "to use as a template for your own fleet.")
    scen_sub = scen.add_subparsers(dest="scenario_command", required=True)
    exp = scen_sub.add_parser("export", help="write the default scenario to DIR")
    exp.add_argument("dir", type=Path, help="folder to write (created)")
    exp.add_argument("--days", type=_positive, default=None, help="days to write (default 9)")
    exp.add_argument("--houses", type=int, help="only the first N houses; each feeder's import limit scaled by "
                     "the share of its houses kept, its export limit by the share of its kWp kept")
    exp.add_argument("--force", action="store_true", help="write into a folder that is not empty")
    exp.add_argument("--name", help="an evaluation scenario (`vpp-sim eval --list`) instead of the default one; "
                                    "all its days unless --days is given")
    demo = sub.add_parser("demo", help="one house end to end over loopback; prints a summary",
                          description="Run a simulated SunSpec hybrid inverter, an edge agent and an aggregator "
                                      "(in-memory store) over real loopback sockets on an accelerated clock, "
                                      "print progress every 2 simulated hours and a summary at the end.")
    demo.add_argument("--hours", type=_positive, default=24.0, help="simulated hours (default 24)")
    demo.add_argument("--speed", type=_positive, default=2160.0,
                      help="simulated seconds per real second (default 2160: a day in 40 s)")
    demo.add_argument("--start", type=_utc_datetime, default=datetime(2026, 6, 21, tzinfo=UTC),
                      help="simulated start time, ISO 8601 with offset (default 2026-06-21T00:00Z)")
    demo.add_argument("--json", type=Path, help="also write the summary to this JSON file")
    dev = sub.add_parser("device", help="serve one simulated SunSpec hybrid inverter on Modbus TCP",
                         description="Serve a SunSpec hybrid inverter (models 1, 103, 120, 123, 124, 160, 203, 802) "
                                     "with battery physics until SIGINT/SIGTERM.")
    dev.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=1502, help="Modbus TCP port (default 1502)")
    dev.add_argument("--unit", type=int, default=1, help="Modbus unit id (default 1)")
    dev.add_argument("--speed", type=_positive, default=1.0, help="clock speed (default 1: real time)")
    dev.add_argument("--soc", type=float, default=50.0, help="initial state of charge in %% (default 50)")
    dev.add_argument("--der", action="store_true",
                     help="a SunSpec DER device instead: models 1, 701, 702, 713, 704, 203, 160, 802 (battery "
                          "through 704 WSet, PV curtailment through 704)")
    _fault_args(dev)
    house = sub.add_parser(
        "house", help="serve a house: four SunSpec devices, or any mix of Modbus and LAN devices and plugs",
        description="Serve one house, with one physics, until SIGINT/SIGTERM. Without --with/--plug: four SunSpec "
                    "devices on consecutive ports: battery inverter (models 1, 120, 124, 802), PV inverter (1, 120, "
                    "123, 160), grid meter (1, 203) and EV charger meter (1, 203); point an agent's [[device.parts]] "
                    "at them. With --with/--plug: the mix given (below), every meter on the same balance, and the "
                    "edge-agent config for it printed (docs/lan-devices.md, \"A house of any mix\").")
    house.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    house.add_argument("--port", type=int, default=None,
                       help="first port: battery, then pv, meter, ev_charger on the next ones (default 1510); a mix: "
                            "its devices in order (default: free ports)")
    house.add_argument("--speed", type=_positive, default=1.0, help="clock speed (default 1: real time)")
    house.add_argument("--soc", type=float, default=50.0, help="initial state of charge in %% (default 50)")
    mix_cli.add_mix_args(house)
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
    _fault_args(ven)
    lan_cli.add_parser(sub, _fault_args)
    lan_cli.add_house_parser(sub)
    flt = sub.add_parser("fault", help="inject or clear a fault in a running device (its --control-port)",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Send fault commands to a device started with --control-port and print the "
                                     "answers (exit 0 if all were accepted, 2 otherwise).",
                         epilog=_FAULT_HELP)
    flt.add_argument("--control", required=True, metavar="HOST:PORT", help="the device's control channel")
    flt.add_argument("commands", nargs="+", metavar="KIND[:ARGS]|clear|status",
                     help="fault specs (see below), clear (end all faults) or status")
    return parser


_FAULT_HELP = """fault kinds (KIND[:ARGS]):
  timeout                      requests go unanswered
  exception[:CODE]             Modbus exception CODE on every request (default 6, device busy)
  implausible                  impossible measurements (SoC 250 %, powers at the int16 limits)
  slow:SECONDS                 every answer delayed (real seconds)
  disconnect                   connections dropped, new ones refused
  frozen | stale               measurement registers stop updating; the house carries on
  reboot[:down=S][,every=S]    control registers back to defaults (124 StorCtl_Mod=0, 123 WMaxLim_Ena=0,
                               704 enables 0), unreachable S real seconds first
  revert[:every=S]             the revert timers expire: the device takes control back
  other_master[:every=S]       another Modbus master writes its own control values
  scale_factor:NAME_SF=N[,..]  scale factor registers change at run time (e.g. W_SF=1)
reboot, revert and other_master happen once, at once, over the control channel without every=S;
given with --fault they repeat every S clock seconds (default 60).
control channel: a TCP line protocol; send one command per line, read one answer line
("ok <faults set>" or "error: <why>"), e.g. `echo reboot | nc 127.0.0.1 1602`."""


def _fault_args(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _FAULT_HELP
    p.add_argument("--fault", action="append", default=[], metavar="KIND[:ARGS]",
                   help="a fault from the start (repeatable; kinds below)")
    p.add_argument("--control-port", type=int, default=None, metavar="PORT",
                   help="serve a fault control channel on this TCP port (0: a free one; see `vpp-sim fault`)")
    p.add_argument("--control-host", default="127.0.0.1", help="address of the control channel (default 127.0.0.1)")


def _start_faults(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The --fault specs as Faults; ConfigError (exit 2) for a spec that cannot be understood."""
    from simulator.fault_control import FaultSpecError, faults_from_specs, parse_fault
    from vpp_common.config import ConfigError

    try:
        return faults_from_specs([parse_fault(t) for t in args.fault])
    except (FaultSpecError, ValueError) as exc:
        raise ConfigError(f"--fault: {exc}") from exc


async def _serve_with_faults(args: argparse.Namespace, sim, banner) -> int:  # type: ignore[no-untyped-def]
    """Serve ``sim`` with its start-up faults and optional control channel until a signal."""
    from simulator.fault_control import ControlServer, describe
    from vpp_common.config import ConfigError

    faults = _start_faults(args)
    try:
        sim.faults = faults
    except NotImplementedError as exc:
        raise ConfigError(f"--fault: {exc}") from exc
    control = ControlServer(sim, args.control_host, args.control_port) if args.control_port is not None else None

    async def start() -> None:
        await sim.start()
        banner()
        if faults != type(faults)():
            print(f"faults: {describe(faults)}", flush=True)
        if control is not None:
            await control.start()
            print(f"fault control on {args.control_host}:{control.port}", flush=True)

    async def stop() -> None:
        if control is not None:
            await control.stop()
        await sim.stop()

    await run_until_signal(start, stop)
    return 0


async def _fault(args: argparse.Namespace) -> int:
    from simulator.fault_control import send_commands

    host, sep, port = args.control.rpartition(":")
    if not sep or not port.isdigit():
        print(f"error: --control must be HOST:PORT, got {args.control!r}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        answers = await send_commands(host or "127.0.0.1", int(port), args.commands)
    except (OSError, TimeoutError) as exc:
        print(f"error: cannot reach the control channel at {args.control}: {exc}", file=sys.stderr)
        return 1
    for cmd, answer in zip(args.commands, answers, strict=True):
        print(f"{cmd}: {answer}")
    return 0 if all(a.startswith("ok") for a in answers) else EXIT_CONFIG


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

    def banner() -> None:
        units = sorted({sim.entry.unit_of(n) for n in sim.entry.points})
        print(f"{args.model} simulator on modbus://{args.host}:{sim.port} units {units}", flush=True)

    return await _serve_with_faults(args, sim, banner)


async def _demo(args: argparse.Namespace) -> int:
    from simulator.demo import run_demo

    summary = await run_demo(hours=args.hours, speed=args.speed, start=args.start)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"summary written to {args.json}")
    return 0


def _clock_and_physics(args: argparse.Namespace) -> tuple[Clock, PhysicsConfig]:
    """The served device's clock (``--speed``) and house (``--soc``); ConfigError for a bad value."""
    from simulator.physics import PhysicsConfig
    from vpp_common.config import ConfigError

    clock: Clock = SystemClock() if args.speed == 1.0 else AcceleratedClock(datetime.now(UTC), args.speed)
    try:
        return clock, PhysicsConfig(initial_soc_pct=args.soc)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


async def _device(args: argparse.Namespace) -> int:
    from simulator.hybrid_device import DER_MODELS, SimulatorConfig, SunSpecHybridSimulator

    clock, physics = _clock_and_physics(args)
    sim = SunSpecHybridSimulator(SimulatorConfig(physics=physics, model_order=DER_MODELS if args.der else None), clock,
                                 host=args.host, port=args.port, unit_id=args.unit)

    def banner() -> None:
        print(f"SunSpec hybrid simulator on modbus://{args.host}:{sim.port} unit {args.unit}", flush=True)

    return await _serve_with_faults(args, sim, banner)


async def _house(args: argparse.Namespace) -> int:
    from simulator.hybrid_device import SimulatorConfig
    from simulator.split_house import ROLES, SplitHouseSimulator

    clock, physics = _clock_and_physics(args)
    if mix_cli.is_mix(args):
        return await mix_cli.serve_mix(args, clock)
    first = 1510 if args.port is None else args.port
    sim = SplitHouseSimulator(SimulatorConfig(physics=physics), clock, host=args.host,
                              ports={r: first + i for i, r in enumerate(ROLES)})

    async def start() -> None:
        await sim.start()
        for role in ROLES:
            print(f"{role:>10}: modbus://{args.host}:{sim.port(role)} unit 1", flush=True)

    await run_until_signal(start, sim.stop)
    return 0


def _scenario(args: argparse.Namespace, days: float | None):
    """The scenario asked for, cut to warm-up + ``days``; returns (scenario, warm-up slots)."""
    from simulator.fleet.scenario import load_run

    if args.scenario is None:
        from simulator.fleet.default_scenario import DEFAULT_DAYS, default_scenario

        sc = default_scenario()
        warm = 2.0 if args.warmup_days is None else args.warmup_days
        days = days if days is not None else DEFAULT_DAYS
        warm_slots = int(round(warm * 86400 / sc.slot_s))
        want = warm_slots + int(round(days * 86400 / sc.slot_s))
        if want > sc.t:
            raise ValueError(f"the embedded scenario has {sc.t * sc.slot_s / 86400:g} days; asked for {warm:g} "
                             f"warm-up + {days:g} days")
        sc = sc.head(want)
    else:  # the window, and an error naming the file too short for it
        sc, warm_slots = load_run(args.scenario, days, args.warmup_days)
    if warm_slots >= sc.t:
        raise ValueError("the warm-up takes the whole scenario: lower --warmup-days")
    if args.houses is not None:
        if args.houses < 1:
            raise ValueError("--houses must be >= 1")
        sc = sc.select([h.house_id for h in sc.houses[: args.houses]])
    return sc, warm_slots


def _run(args: argparse.Namespace) -> int:
    from simulator.fleet.report import print_report, write_json, write_plots
    from simulator.fleet.runner import run_fast
    from simulator.fleet.scenario import ScenarioError
    from simulator.fleet.strategies import StrategyOptions

    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    bad = [s for s in strategies if s not in _STRATEGIES]
    if bad or not strategies:
        print(f"error: unknown strategy {bad[0] if bad else '(none)'!r}; choose from {', '.join(_STRATEGIES)}",
              file=sys.stderr)
        return EXIT_CONFIG
    if args.replan_min < 15:
        print("error: --replan-min must be >= 15", file=sys.stderr)
        return EXIT_CONFIG
    live_default = args.mode == "live" and args.days is None
    if args.mode == "live" and args.houses is None:
        args.houses = 20
    try:
        # live mode by default: 10 h from 08:00 (after the warm-up days) of 20 houses
        sc, warm = _scenario(args, (8 + 10) / 24 if live_default else args.days)
        if args.mode == "live" and (args.appliances or sc.appliance_runs):
            raise ValueError("shiftable runs (--appliances, [[appliances]]) are simulated in fast mode only")
        if live_default:
            sc, warm = sc.window(warm + int(8 * 3600 // sc.slot_s), sc.t), 0
    except (ScenarioError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    options = StrategyOptions(replan_s=args.replan_min * 60)
    tuned = {k: v for k, v in (("night_load_margin", args.night_load_margin),
                               ("holding_cost_per_kwh_h", args.holding_cost)) if v is not None}
    if args.night_load_margin is not None and not args.no_futures:
        print("error: --night-load-margin applies to plans on the forecasts alone: add --no-futures (plans over "
              "futures keep energy for their heavier night instead)", file=sys.stderr)
        return EXIT_CONFIG
    if args.no_futures:
        if args.mode == "live":
            print("error: --no-futures is a fast-mode option (live mode runs the aggregator with its defaults)",
                  file=sys.stderr)
            return EXIT_CONFIG
        options = replace(options, futures=())
    if tuned:
        if args.mode == "live":
            print("error: --night-load-margin and --holding-cost are fast-mode options (live mode runs the "
                  "aggregator with its defaults)", file=sys.stderr)
            return EXIT_CONFIG
        margin, hold = tuned.get("night_load_margin", 1.0), tuned.get("holding_cost_per_kwh_h", 0.0)
        if not (math.isfinite(margin) and margin >= 1.0 and math.isfinite(hold) and hold >= 0.0):
            print("error: --night-load-margin must be >= 1 and --holding-cost >= 0", file=sys.stderr)
            return EXIT_CONFIG
        options = replace(options, dispatch=replace(options.dispatch, **tuned))
    if args.mode == "live":
        from simulator.fleet.compare import run_live_comparison

        return run_live_comparison(sc, warm, speed=args.speed, options=replace(options, plan_from_slot=0),
                                   json_path=args.json, show_progress=not args.no_progress)
    print(f"vpp-sim: {sc.n} houses, {sc.t * sc.slot_s / 86400:g} days ({warm * sc.slot_s / 86400:g} warm-up), "
          f"strategies: {', '.join(strategies)}", file=sys.stderr)
    if args.appliances and not sc.appliance_runs:
        from simulator.fleet.appliance_input import with_appliances

        sc = with_appliances(sc)
    if sc.appliance_runs:
        return _run_appliances(sc, strategies, warm, options, args)
    result = run_fast(sc, strategies, warmup_slots=warm, options=options, workers=args.workers,
                      show_progress=not args.no_progress)
    print_report(result, sys.stdout)
    if args.json:
        write_json(result, args.json)
        print(f"\nfigures written to {args.json}")
    if args.plots:
        for p in write_plots(result, args.plots):
            print(f"plot written to {p}")
    return 0


def _run_appliances(sc: Scenario, strategies: tuple[str, ...], warm: int, options: StrategyOptions,
                    args: argparse.Namespace) -> int:
    """``vpp-sim run`` on houses with shiftable runs: the usual table with the runs placed, then each
    strategy with the runs started when armed against placed (simulator.fleet.appliance_report)."""
    from simulator.fleet.appliance_report import (
        DeadlineMissed,
        comparison,
        print_comparison,
        run_with_and_without,
    )
    from simulator.fleet.report import print_report, to_json, write_plots

    armed, placed = run_with_and_without(sc, strategies, warmup_slots=warm, options=options, workers=args.workers,
                                         show_progress=not args.no_progress)
    print_report(placed, sys.stdout)
    try:
        cmp = comparison(armed, placed)
    except DeadlineMissed as exc:
        print(f"error: a deadline was missed (a bug): {exc}", file=sys.stderr)
        return 1
    print_comparison(cmp, sc, sys.stdout)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = to_json(placed) | {"appliances": cmp | {"when_armed": to_json(armed)}}
        args.json.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        print(f"\nfigures written to {args.json}")
    if args.plots:
        for p in write_plots(placed, args.plots):
            print(f"plot written to {p}")
    return 0


def _eval_args(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ev = sub.add_parser(
        "eval", help="run the evaluation set: every scenario under every strategy, one table",
        description="Run each scenario of the evaluation set (docs/evaluation.md: climates, tariffs, seasons, mixed "
                    "fleets, binding feeder limits) under battery_idle, self_consumption, tou, fleet and "
                    "perfect_foresight, and where a feeder limit binds the fleet and perfect foresight again with "
                    "the limits lifted. Prints one table (shares of the perfect-foresight saving, energy over limits "
                    "against the least possible, fleet against the best local strategy, the cost of honouring the "
                    "limits, the acceptance rules of issue 18) and a summary; progress on stderr.")
    ev.add_argument("--only", help="comma-separated scenario names (default: all; --list shows them)")
    ev.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ev.add_argument("--json", type=Path, help="write one object per scenario and strategy to this JSON file")
    ev.add_argument("--workers", type=int, default=None,
                    help="runs side by side, each in its own process (default: min(2, cores); 1: in this process)")
    ev.add_argument("--export", type=Path, metavar="DIR", help="write the scenarios as folders DIR/<name> and exit")
    ev.add_argument("--days", type=_positive, default=None, help="counted days per scenario (default: all, 7)")
    ev.add_argument("--houses", type=int, default=None, help="only the first N houses of each scenario (smoke runs)")


def _eval_names(only: str | None) -> list[str]:
    from simulator.fleet import evalset

    if only is None:
        return list(evalset.names())
    names = [s.strip() for s in only.split(",") if s.strip()]
    bad = [s for s in names if s not in evalset.names()]
    if bad or not names:
        raise ValueError(f"unknown eval scenario {bad[0] if bad else '(none)'!r}; known: {', '.join(evalset.names())}")
    return names


def _eval(args: argparse.Namespace) -> int:
    from simulator.fleet import eval_report, evalset

    if args.list:
        for s in evalset.SPECS:
            print(f"{s.name:24} {s.role:9} {s.climate:14} {s.season:7} {s.tariff:12} {s.description}")
        return 0
    try:
        names = _eval_names(args.only)
        if args.houses is not None and args.houses < 1:
            raise ValueError("--houses must be >= 1")
        if args.workers is not None and args.workers < 1:
            raise ValueError("--workers must be >= 1")
        for name in names:
            sp = evalset.spec(name)
            if args.days is not None and args.days > sp.days - sp.warmup_days:
                raise ValueError(f"--days {args.days:g}: {name} has {sp.days - sp.warmup_days} counted days")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.export is not None:
        from simulator.fleet.scenario import write_scenario

        for name in names:
            sc, meta = evalset.build(name)
            write_scenario(sc, args.export / name, warmup_days=meta.warmup_slots * sc.slot_s / 86400)
            evalset.write_meta(meta, args.export / name)
            print(f"scenario {name!r} ({sc.n} houses, {sc.t * sc.slot_s / 86400:g} days) written to {args.export / name}")
        return 0
    print(f"vpp-sim eval: {len(names)} scenarios: {', '.join(names)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    outcomes = eval_report.run_set(names, workers=args.workers, days=args.days, houses=args.houses)
    print(f"evaluation set: {len(names)} scenarios in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print(eval_report.table(outcomes))
    if args.json:
        args.json.write_text(json.dumps(eval_report.json_records(outcomes), indent=1) + "\n", encoding="utf-8")
        print(f"\nfigures written to {args.json}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from simulator.fleet.default_scenario import default_scenario
    from simulator.fleet.model import select_scaled
    from simulator.fleet.scenario import write_scenario

    if args.dir.exists() and any(args.dir.iterdir()) and not args.force:
        print(f"error: {args.dir} is not empty (use --force to write into it)", file=sys.stderr)
        return EXIT_CONFIG
    if args.name is not None:
        from simulator.fleet import evalset

        try:
            _eval_names(args.name)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        sc, meta = evalset.build(args.name)
        if args.days is not None:
            sc = sc.head(int(round(args.days * 86400 / sc.slot_s)))
        write_scenario(sc, args.dir, warmup_days=meta.warmup_slots * sc.slot_s / 86400)
        evalset.write_meta(meta, args.dir)
        print(f"scenario {sc.name!r} ({sc.n} houses, {sc.t * sc.slot_s / 86400:g} days) written to {args.dir}")
        return 0
    else:
        sc = default_scenario().head(int(round((args.days or 9.0) * 86400 / 900)))
    if args.houses is not None:
        sc = select_scaled(sc, [h.house_id for h in sc.houses[: max(1, args.houses)]])
    write_scenario(sc, args.dir, warmup_days=min(2.0, sc.t * sc.slot_s / 86400 / 2))
    print(f"scenario {sc.name!r} ({sc.n} houses, {sc.t * sc.slot_s / 86400:g} days) written to {args.dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        setup_logging(args.verbose, logging.WARNING)
        try:
            return _run(args)
        except KeyboardInterrupt:
            return 130
    if args.command == "scenario":
        setup_logging(args.verbose, logging.WARNING)
        return _export(args)
    if args.command == "eval":
        setup_logging(args.verbose, logging.WARNING)
        try:
            return _eval(args)
        except KeyboardInterrupt:
            return 130
    # the demo prints its own progress table: only warnings interleave with it by default
    setup_logging(args.verbose, logging.WARNING if args.command == "demo" else logging.INFO)
    if args.command == "demo":
        return run_main(lambda: _demo(args))
    if args.command == "device":
        return run_main(lambda: _device(args))
    if args.command == "house":
        return run_main(lambda: _house(args))
    if args.command == "vendor-device":
        return run_main(lambda: _vendor_device(args))
    if args.command == "lan-device":
        return run_main(lambda: lan_cli.serve(args, _serve_with_faults))
    if args.command == "lan-house":
        return run_main(lambda: lan_cli.serve_house(args))
    if args.command == "fault":
        return run_main(lambda: _fault(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
