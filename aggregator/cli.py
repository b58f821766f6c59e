"""``aggregator``: the fleet's central service.

    aggregator certs ca --dir pki --trust-domain vpp.example.net
    aggregator certs server --dir pki --host vpp.example.net
    aggregator certs house --dir pki --house-id house-0001
    aggregator serve --config aggregator.toml         # with [tls] pointing at pki/
    aggregator serve --insecure                       # demo: plaintext, embedded in-memory store
    aggregator serve --config aggregator.toml         # see aggregator/config.py for the format
    VPP_AGG_STORE_URL=redis://localhost:6379/0 aggregator serve --insecure
    aggregator serve --config agg.toml --clock-start 2026-06-21T08:00:00+00:00 --clock-speed 300 \
        --clock-anchor 1790000000.0                   # simulation: an accelerated clock shared with the agents
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from aggregator.admin_cli import add_admin_commands, run_admin
from aggregator.certs import Issued, create_ca, house_uri, issue_house, issue_server
from aggregator.config import AggregatorConfig
from vpp_common.cli import EXIT_CONFIG, run_main, run_until_signal, setup_logging
from vpp_common.clock import add_clock_arguments, clock_from_arguments
from vpp_common.config import ConfigError, load_config


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
    serve.add_argument("--admin-listen", help="host:port of the admin port (default 127.0.0.1:50052)")
    serve.add_argument("--metrics-port", type=int, help="port of /metrics (default 9464)")
    serve.add_argument("--insecure", action="store_true", default=None,
                       help="plaintext gRPC, house id from a header: local demos only")
    add_clock_arguments(serve)
    add_admin_commands(sub)
    certs = sub.add_parser(
        "certs", help="create the fleet CA and issue aggregator and house certificates (mTLS)",
        description="Certificates for mTLS. A house's identity is the URI SAN "
                    "spiffe://<trust-domain>/house/<id> of its client certificate. Files go to --dir: "
                    "ca.pem/ca.key (keep ca.key offline), aggregator.pem/.key, houses/<id>.pem/.key.",
    )
    csub = certs.add_subparsers(dest="certs_command", required=True)
    ca = csub.add_parser("ca", help="create a fleet CA (once per fleet)")
    ca.add_argument("--dir", type=Path, required=True, help="directory for ca.pem and ca.key")
    ca.add_argument("--trust-domain", required=True, help="e.g. vpp.example.net")
    ca.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    ca.add_argument("--force", action="store_true", help="overwrite an existing CA")
    srv = csub.add_parser("server", help="issue the aggregator's server certificate")
    srv.add_argument("--dir", type=Path, required=True, help="directory holding the CA")
    srv.add_argument("--host", action="append", required=True,
                     help="DNS name or IP the agents connect to (repeat for several)")
    srv.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    house = csub.add_parser("house", help="issue a house's client certificate")
    house.add_argument("--dir", type=Path, required=True, help="directory holding the CA")
    house.add_argument("--house-id", required=True, help="the house's id (letters, digits, _ . -)")
    house.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    return parser


def _write_pair(directory: Path, stem: str, issued: Issued) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert.write_bytes(issued.cert_pem)
    key.touch(mode=0o600, exist_ok=True)
    key.chmod(0o600)  # private keys readable by the owner only
    key.write_bytes(issued.key_pem)
    return cert, key


def _load_ca(directory: Path) -> tuple[Issued, str]:
    try:
        ca = Issued((directory / "ca.key").read_bytes(), (directory / "ca.pem").read_bytes())
        trust_domain = (directory / "trust_domain").read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise ConfigError(f"no CA in {directory} ({exc.filename} missing): run `aggregator certs ca` first") from None
    return ca, trust_domain


def _certs(args: argparse.Namespace) -> int:
    try:
        if args.certs_command == "ca":
            if (args.dir / "ca.key").exists() and not args.force:
                raise ConfigError(f"{args.dir / 'ca.key'} exists: a new CA invalidates every certificate "
                                  "issued so far (use --force if you mean it)")
            cert, key = _write_pair(args.dir, "ca", create_ca(args.trust_domain, args.days))
            (args.dir / "trust_domain").write_text(args.trust_domain + "\n", encoding="utf-8")
            print(f"fleet CA for {args.trust_domain}: {cert} (key {key}: keep it offline)")
        elif args.certs_command == "server":
            ca, _ = _load_ca(args.dir)
            cert, key = _write_pair(args.dir, "aggregator", issue_server(ca, args.host, args.days))
            print(f"aggregator certificate for {', '.join(args.host)}: {cert}, key {key}")
        else:
            ca, trust_domain = _load_ca(args.dir)
            cert, key = _write_pair(args.dir / "houses", args.house_id,
                                    issue_house(ca, trust_domain, args.house_id, args.days))
            print(f"house certificate {house_uri(trust_domain, args.house_id)}: {cert}, key {key}")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return 0


def _load(args: argparse.Namespace) -> AggregatorConfig:
    """The configuration; every operator mistake a ConfigError naming the file or field (exit 2)."""
    try:
        return load_config(AggregatorConfig, args.config, listen=args.listen, store_url=args.store_url,
                           admin_listen=args.admin_listen,
                           metrics_port=args.metrics_port, insecure=args.insecure)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {args.config} is not UTF-8 text: byte {exc.start}: {exc.reason}") from None
    except OSError as exc:  # a directory, no permission, ...
        raise ConfigError(f"config file {args.config} cannot be read: {exc.strerror or exc}") from None


async def _serve(args: argparse.Namespace) -> int:
    from aggregator.gc_policy import run_gc_policy
    from aggregator.server import AggregatorServer
    from vpp_common.clock import cancel_and_wait

    config = _load(args)
    try:
        clock = clock_from_arguments(args.clock_start, args.clock_speed, args.clock_anchor, args.clock_hold)
    except ValueError as exc:
        raise ConfigError(f"clock: {exc}") from None
    server = AggregatorServer(config, clock=clock)
    # the serving process's garbage collection (aggregator.gc_policy): small and often, the long
    # passes not while a cycle's plans are being written
    gc_task = asyncio.create_task(run_gc_policy(busy=server.sessions.writing_plans), name="gc-policy")
    try:
        await run_until_signal(server.start, server.stop)
    finally:
        await cancel_and_wait([gc_task])
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "serve":
        return run_main(lambda: _serve(args))
    if args.command in ("houses", "plan", "limits", "events"):
        return run_admin(args)
    if args.command == "certs":
        try:
            return _certs(args)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    return 2


if __name__ == "__main__":
    sys.exit(main())
