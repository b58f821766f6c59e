"""``edge-agent``: runs in each house, next to its inverter, battery and meter.

    edge-agent run --config /etc/vpp/edge-agent.toml
    edge-agent run --insecure --device-host 192.168.1.50 --aggregator vpp.example.net:50051
    edge-agent run --config house.toml --no-metrics --clock-start 2026-06-21T08:00:00+00:00 --clock-speed 300
    edge-agent run --config lan-house.toml    ([device] kind = "lan": a P1 meter, a micro-inverter, plugs)
    edge-agent scan --host 192.168.1.50 [--port 502] [--unit 1] [--model sungrow_sh] [--json]
    edge-agent scan --lan --host 192.168.1.60 [--port 80] [--password ...] [--token ...]
                                              (plugs, meters, micro-inverters)
    edge-agent s2 list --config /etc/vpp/edge-agent.toml [--json]

Exit codes of ``scan``: 0 found, 2 configuration (unknown model, not SunSpec,
device refused the request), 3 device unreachable or not answering.

Exit codes of ``run``: 0 stopped by SIGINT/SIGTERM; 2 configuration: a bad file, key, value or
environment variable, or a device that answers but is not what the config says (a supervisor
should not restart it: the operator must act); 1 could not start for a reason that may pass
(the metrics port in use).  A device that does not answer is no exit: the agent waits for it.

Exit codes of ``s2 list``: 0 listed, 2 configuration (no ``[s2]`` or no ``state_dir``), 3 no
status file (the agent has not run with ``[s2]``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.config import AgentConfig
from vpp_common.cli import EXIT_CONFIG, run_main, run_until_signal, setup_logging
from vpp_common.clock import add_clock_arguments, clock_from_arguments
from vpp_common.config import ConfigError, load_config

if TYPE_CHECKING:
    from edge_agent.agent import EdgeAgent
    from edge_agent.lan_devices import LanDevices
    from vpp_common.clock import Clock


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="VPP edge agent for one house: reads the hybrid inverter, battery and grid meter over "
                    "Modbus TCP (SunSpec), or with [device] kind = \"lan\" a house of LAN devices only (a P1 or "
                    "Shelly meter, a micro-inverter, plugs: docs/lan-devices.md), keeps the house safe on its own (export cap, import limit, SoC "
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
    scan.add_argument("--host", required=True, help="Modbus TCP host (or, with --lan, the plug's or meter's)")
    scan.add_argument("--port", type=int, default=None,
                      help="Modbus TCP port (default 502); with --lan: only this port (default HTTP 80, P1 8088)")
    scan.add_argument("--lan", action="store_true",
                      help="look for a smart plug or meter instead (Shelly RPC, Tasmota, DSMR P1)")
    scan.add_argument("--password", help="with --lan: the device's password (Shelly digest, Tasmota web, OpenDTU)")
    scan.add_argument("--token", help="with --lan: an Enphase IQ Gateway's owner token")
    scan.add_argument("--unit", type=int, default=None,
                      help="Modbus unit id (default: 1 for SunSpec, the catalogue entry's otherwise)")
    scan.add_argument("--model", help="catalogue entry id (e.g. victron_gx, sungrow_sh, huawei_sun2000_luna2000) "
                                      "instead of SunSpec discovery")
    scan.add_argument("--timeout", type=float, default=2.0, help="seconds per request (default 2)")
    scan.add_argument("--json", action="store_true", help="machine-readable output")
    s2 = sub.add_parser("s2", help="the S2 Resource Managers of a running agent",
                        description="The S2 Resource Managers the agent (as CEM) knows: state, control type, "
                                    "last message, last instruction (docs/s2-cem.md).")
    s2_sub = s2.add_subparsers(dest="s2_command", required=True)
    s2_list = s2_sub.add_parser("list", help="connected and known RMs, from the agent's status file")
    s2_list.add_argument("--config", type=Path, help="the agent's TOML config (its state_dir holds the file)")
    s2_list.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


EXIT_UNREACHABLE = 3


async def _scan(args: argparse.Namespace) -> int:
    from edge_agent.drivers.catalogue import CatalogueError, catalogue_ids
    from edge_agent.drivers.errors import DeviceRejected, DeviceUnavailable, NotSunSpec
    from edge_agent.scan import scan_catalogue, scan_sunspec

    if args.lan:
        return await _scan_lan(args)
    args.port = 502 if args.port is None else args.port
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


async def _scan_lan(args: argparse.Namespace) -> int:
    from edge_agent.lan_scan import scan_lan

    result = await scan_lan(args.host, args.port, timeout_s=args.timeout, password=args.password, token=args.token)
    print(result.to_json() if args.json else result.to_table())
    return 0 if result.found else EXIT_UNREACHABLE


def lan_agent(config: AgentConfig, clock: Clock) -> EdgeAgent:
    """The agent; with a micro-inverter in ``[[lan_devices]]`` (role pv) its house Resource Manager
    includes it (edge_agent/lan_pv.py: its PV, and the house's PV limit if it takes one); with
    ``device.kind = "lan"`` the house is its LAN devices only (edge_agent/lan_house.py)."""
    from edge_agent.agent import EdgeAgent

    if config.device.kind == "lan":
        return lan_house_agent(config, clock)
    if not any(d.role == "pv" for d in config.lan_devices):
        return EdgeAgent(config, clock=clock)
    from edge_agent.house_devices import resource_manager
    from edge_agent.lan_devices import LanDevices
    from edge_agent.lan_pv import HouseWithLanPv

    lan = LanDevices.from_config(config, clock)
    pv = lan.claim("pv") if lan is not None else None
    assert lan is not None and pv is not None
    agent = EdgeAgent(config, clock=clock, device=HouseWithLanPv(resource_manager(config, clock), pv, clock))
    attach_lan_devices(agent, lan)
    return agent


def lan_house_agent(config: AgentConfig, clock: Clock) -> EdgeAgent:
    """A house of LAN devices only: its grid meter and micro-inverters (claimed from the LAN devices,
    polled with the house) are its Resource Manager; the plugs are polled beside the agent's loops."""
    from edge_agent.agent import EdgeAgent
    from edge_agent.lan_devices import LanDevices
    from edge_agent.lan_house import LanHouseRM

    lan = LanDevices.from_config(config, clock)
    meter = lan.claim("grid_meter") if lan is not None else None
    if lan is None or meter is None:  # the config's check_lan_house refuses this already
        raise ConfigError('device.kind = "lan" needs a [[lan_devices]] entry with role = "grid_meter"')
    pvs = []
    while (pv := lan.claim("pv")) is not None:
        pvs.append(pv)
    agent = EdgeAgent(config, clock=clock, device=LanHouseRM(meter, pvs, clock))
    attach_lan_devices(agent, lan)
    return agent


def attach_lan_devices(agent: EdgeAgent, lan: LanDevices | None = None) -> LanDevices | None:
    """The ``[[lan_devices]]`` polled beside the agent's loops, their power in its telemetry (once: a
    second call returns the one attached, whose PV or grid meter the house may have claimed)."""
    if not agent.config.lan_devices:
        return lan  # and aiohttp and dsmr-parser stay unimported (docs/lan-devices.md: ~12 MB)
    from edge_agent.lan_devices import LanDevices

    attached = next((c for c in agent.components if isinstance(c, LanDevices)), None)
    if attached is not None:
        return attached
    lan = lan or LanDevices.from_config(agent.config, agent.clock)
    if lan is not None:
        agent.components.append(lan)
        agent.extra_telemetry.append(lan.telemetry)
    return lan


async def _run(args: argparse.Namespace) -> int:
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
    agent = lan_agent(config, clock)  # with a micro-inverter in [[lan_devices]]: part of the house's PV
    if config.home_assistant is not None:  # the house over MQTT discovery (aiomqtt loaded only then)
        from edge_agent.home_assistant.bridge import attach as attach_home_assistant

        attach_home_assistant(agent)
    lan = attach_lan_devices(agent)  # with [[lan_devices]]: plugs and meters, polled, in the telemetry
    ha = None
    if config.home_assistant is not None and config.home_assistant.api is not None:  # else aiohttp stays unimported
        from edge_agent.home_assistant.devices_component import attach as attach_ha_devices

        ha = attach_ha_devices(agent)  # Home Assistant's entities as meters, loads and switchable loads
    if config.appliances:  # the appliances behind the plugs, scheduled and reported (docs/appliances.md)
        from edge_agent.appliances import attach as attach_appliances

        attach_appliances(agent, lan, ha)
    if config.s2 is not None:  # S2 Resource Managers connect over WebSocket (aiohttp loaded only then)
        from edge_agent.s2_cem.component import attach as attach_s2_cem

        attach_s2_cem(agent)
    try:
        # a device that does not answer is waited for (logged, vpp_edge_device_connected 0); one that
        # answers and is not what the config says stops the agent, at start or once it answers
        await run_until_signal(agent.start, agent.stop, agent.wait_failed)
    except DeviceMisconfigured as exc:
        raise ConfigError(str(exc)) from exc
    return 0


def _s2_list(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from edge_agent.s2_cem.listing import status_path, table

    config = load_config(AgentConfig, args.config)
    if config.s2 is None or config.state_dir is None:
        raise ConfigError("s2 list: the config has no [s2] table or no state_dir (the agent keeps the list there)")
    path = status_path(config.state_dir)
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {path}: {exc} (has the agent run with [s2]?)", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(json.dumps(status, indent=1) if args.json else table(status, datetime.now(UTC)))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "run":
        return run_main(lambda: _run(args))
    if args.command == "scan":
        return run_main(lambda: _scan(args))
    if args.command == "s2":
        try:  # no event loop: it reads a file (and may run where one already runs, e.g. tests)
            return _s2_list(args)
        except ConfigError as exc:
            print(f"config error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    return 2


if __name__ == "__main__":
    sys.exit(main())
