"""``aggregator``: the fleet's central service.

    aggregator serve --insecure                       # embedded in-memory store, port 50051
    aggregator serve --config aggregator.toml         # see aggregator/config.py for the format
    VPP_AGG_STORE_URL=redis://localhost:6379/0 aggregator serve --insecure
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aggregator.config import AggregatorConfig
from vpp_common.cli import run_main, run_until_signal, setup_logging
from vpp_common.config import load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aggregator",
        description="VPP aggregator: accepts one gRPC stream per house (FleetService.Connect), keeps fleet "
                    "state in a store (in-memory or Redis), plans battery dispatch per time-of-use tariff and "
                    "sends each house its plan as a lease. Exposes Prometheus metrics.",
        epilog="Configuration: a TOML file (--config) overridden by VPP_AGG_* environment variables "
               "(nested with __, e.g. VPP_AGG_PLANNING__CYCLE_S=60), overridden by the flags below.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the aggregator until SIGINT/SIGTERM (then drain)",
                           description="Run one aggregator replica until SIGINT/SIGTERM, then drain agents.")
    serve.add_argument("--config", type=Path, help="TOML config file")
    serve.add_argument("--listen", help="host:port for gRPC (default 127.0.0.1:50051)")
    serve.add_argument("--store-url", help="memory:// (default) or redis://host:port/db")
    serve.add_argument("--metrics-port", type=int, help="port of /metrics (default 9464)")
    serve.add_argument("--insecure", action="store_true", default=None,
                       help="plaintext gRPC, house id from a header: local demos only")
    return parser


async def _serve(args: argparse.Namespace) -> int:
    from aggregator.server import AggregatorServer

    config = load_config(AggregatorConfig, args.config, listen=args.listen, store_url=args.store_url,
                         metrics_port=args.metrics_port, insecure=args.insecure)
    server = AggregatorServer(config)
    await run_until_signal(server.start, server.stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "serve":
        return run_main(lambda: _serve(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
