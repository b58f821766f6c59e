"""``edge-agent``: runs in each house, next to its inverter, battery and meter.

    edge-agent run --config /etc/vpp/edge-agent.toml
    edge-agent run --insecure --device-host 192.168.1.50 --aggregator vpp.example.net:50051
    edge-agent run --config house.toml --no-metrics --clock-start 2026-06-21T08:00:00+00:00 --clock-speed 300
    edge-agent scan --host 192.168.1.50 [--port 502] [--unit 1] [--model sungrow_sh] [--json]

Exit codes of ``scan``: 0 found, 2 configuration (unknown model, not SunSpec,
device refused the request), 3 device unreachable or not answering.

Exit codes of ``run``: 0 stopped by SIGINT/SIGTERM; 2 configuration: a bad file, key, value or
environment variable, or a device that answers but is not what the config says (a supervisor
should not restart it: the operator must act); 1 could not start for a reason that may pass
(the metrics port in use).  A device that does not answer is no exit: the agent waits for it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_agent.config import AgentConfig
from vpp_common.cli import run_main, run_until_signal, setup_logging
from vpp_common.clock import add_clock_arguments, clock_from_arguments
from vpp_common.config import ConfigError, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="VPP edge agent for one house: reads the hybrid inverter, battery and grid meter over "
                    "Modbus TCP (SunSpec), keeps the house safe on its own (export cap, import limit, SoC "
                    "reserve), streams telemetry and flexibility to the aggregator over gRPC and follows its "
                    "dispatch plans. Exposes the house's Prometheus metrics.",
        epilog="Configuration: a TOML file (--config) overridden by VPP_AGENT_* environment variables "
               "(nested with __, e.g. VPP_AGENT_SITE__MAX_EXPORT_W=0), overridden by the flags below.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent until SIGINT/SIGTERM",
                         description="Run the agent until SIGINT/SIGTERM; on stop the battery is handed back "
                                     "to the device's own mode.")
    run.add_argument("--config", type=Path, help="TOML config file")
    run.add_argument("--aggregator", help="host:port of the aggregator")
    run.add_argument("--house-id", help="house id (insecure mode only; with mTLS it comes from the certificate)")
    run.add_argument("--device-host", help="Modbus TCP host of the inverter")
    run.add_argument("--device-port", type=int, help="Modbus TCP port (default 502)")
    run.add_argument("--metrics-port", type=int, help="port of /metrics (default 9465)")
    run.add_argument("--insecure", action="store_true", default=None, help="plaintext gRPC: local demos only")
    run.add_argument("--no-metrics", action="store_true", help="do not serve /metrics (many agents on one host)")
    add_clock_arguments(run)
    scan = sub.add_parser(
        "scan", help="discover a device and print its models and points",
        description="Installer tool: find the SunSpec models of a Modbus TCP device (or read a vendor "
                    "catalogue entry with --model) and print every point with its value and unit.",
        epilog="Exit codes: 0 found, 2 configuration (unknown model, not SunSpec, refused), 3 unreachable.")
    scan.add_argument("--host", required=True, help="Modbus TCP host")
    scan.add_argument("--port", type=int, default=502, help="Modbus TCP port (default 502)")
    scan.add_argument("--unit", type=int, default=None,
                      help="Modbus unit id (default: 1 for SunSpec, the catalogue entry's otherwise)")
    scan.add_argument("--model", help="catalogue entry id (e.g. victron_gx, sungrow_sh, huawei_sun2000_luna2000) "
                                      "instead of SunSpec discovery")
    scan.add_argument("--timeout", type=float, default=2.0, help="seconds per request (default 2)")
    scan.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


EXIT_UNREACHABLE = 3


async def _scan(args: argparse.Namespace) -> int:
    from edge_agent.drivers.catalogue import CatalogueError, catalogue_ids
    from edge_agent.drivers.errors import DeviceRejected, DeviceUnavailable, NotSunSpec
    from edge_agent.scan import scan_catalogue, scan_sunspec

    where = f"{args.host}:{args.port}"
    try:
        if args.model:
            result = await scan_catalogue(args.model, args.host, args.port, args.unit, timeout_s=args.timeout)
        else:
            result = await scan_sunspec(args.host, args.port, 1 if args.unit is None else args.unit,
                                        timeout_s=args.timeout)
    except CatalogueError as exc:
        raise ConfigError(str(exc)) from exc
    except NotSunSpec as exc:
        raise ConfigError(f"{exc}; not a SunSpec device? try --model with one of: "
                          f"{', '.join(catalogue_ids())}") from exc
    except DeviceRejected as exc:
        raise ConfigError(f"{where} refused the request: {exc} (wrong --unit or --model?)") from exc
    except DeviceUnavailable as exc:
        print(f"error: cannot reach {where}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(result.to_json() if args.json else result.to_table())
    return 0


async def _run(args: argparse.Namespace) -> int:
    from edge_agent.agent import EdgeAgent
    from edge_agent.device_connect import DeviceMisconfigured

    device: dict[str, object] = {}
    config = load_config(AgentConfig, args.config, aggregator=args.aggregator, house_id=args.house_id,
                         metrics_port=args.metrics_port, insecure=args.insecure)
    if args.device_host or args.device_port:
        device = config.device.model_dump()
        device.update({k: v for k, v in (("host", args.device_host), ("port", args.device_port)) if v})
        config = load_config(AgentConfig, args.config, aggregator=args.aggregator, house_id=args.house_id,
                             metrics_port=args.metrics_port, insecure=args.insecure, device=device)
    if args.no_metrics:
        config = config.model_copy(update={"metrics_port": None})
    try:
        clock = clock_from_arguments(args.clock_start, args.clock_speed, args.clock_anchor, args.clock_hold)
    except ValueError as exc:
        raise ConfigError(f"clock: {exc}") from None
    agent = EdgeAgent(config, clock=clock)
    if config.home_assistant is not None:  # the house over MQTT discovery (aiomqtt loaded only then)
        from edge_agent.home_assistant.bridge import attach as attach_home_assistant

        attach_home_assistant(agent)
    try:
        # a device that does not answer is waited for (logged, vpp_edge_device_connected 0); one that
        # answers and is not what the config says stops the agent, at start or once it answers
        await run_until_signal(agent.start, agent.stop, agent.wait_failed)
    except DeviceMisconfigured as exc:
        raise ConfigError(str(exc)) from exc
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "run":
        return run_main(lambda: _run(args))
    if args.command == "scan":
        return run_main(lambda: _scan(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
