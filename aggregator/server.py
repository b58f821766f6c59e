"""Assembly of one aggregator replica: gRPC server, planner, store, metrics."""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_channelz.v1 import channelz
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from aggregator.config import AggregatorConfig, TlsServerConfig
from aggregator.fleet.leadership import LeaderElector
from aggregator.fleet.replication import FLEET_ITEM, REPLAN_QUEUE
from aggregator.metrics import AggregatorMetrics
from aggregator.planner import Planner
from aggregator.service.admin_servicer import AdminServicer
from aggregator.service.fleet_servicer import FleetServicer, add_to_server
from aggregator.service.identity import InsecureHeaderIdentity, MtlsIdentity
from aggregator.service.plan_encoder import PlanEncoder
from aggregator.service.reflection import enable_reflection
from aggregator.service.sessions import CloseItem, SessionRegistry
from aggregator.service.store_recovery import StoreRecovery
from aggregator.service.stream_outbox import SignalEncoder, StreamOutbox
from aggregator.store import StateStore, StoreError, open_store
from vpp.v1 import admin_service_pb2 as adm_pb2
from vpp.v1 import admin_service_pb2_grpc as adm_grpc
from vpp_common.cli import StartupError
from vpp_common.clock import Clock, SystemClock, cancel_and_wait, log_if_it_fails
from vpp_common.config import ConfigError
from vpp_common.metrics_http import MetricsServer

log = logging.getLogger(__name__)

SERVICE_NAME = "vpp.v1.FleetService"
# Health of the state store under its own name: streams stay up (SERVING) while the
# store is away, but operators and probes can see the replica is degraded.
STORE_HEALTH_NAME = "vpp.v1.FleetService/store"
STORE_PROBE_S = 2.0

# Keepalive agreed with the agent (see shared notes): the agent pings every 30 s,
# so the server must permit pings that often, or it cuts streams with "too_many_pings".
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
    ("grpc.http2.max_pings_without_data", 0),
    # no BDP probing (a PING and a WINDOW_UPDATE after data, to grow the flow-control window for
    # bulk transfers): our messages are small, and at 3,000 streams the probes were ~20 % of the
    # replica's CPU (docs/performance.md, "Streams")
    ("grpc.http2.bdp_probe", 0),
    # one process per port: with gRPC's default SO_REUSEPORT a second aggregator on the same
    # listen started silently and the fleet split between two in-memory planners (issue 20)
    ("grpc.so_reuseport", 0),
]


def server_options(config: AggregatorConfig) -> list[tuple[str, int]]:
    """Keepalive as agreed with the agent, and a maximum connection age: a stream older than
    ``max_connection_age_s`` (+ grace) is closed (GOAWAY), its agent reconnects and its channel
    picks a replica at random again, so streams spread onto a replica that joined later."""
    return [*SERVER_OPTIONS,
            ("grpc.max_connection_age_ms", round(config.max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", round(config.max_connection_age_grace_s * 1000))]


def _bind(server: grpc.aio.Server, listen: str, field: str, tls: TlsServerConfig | None) -> int:
    """Add the port; an address that cannot be bound is an operator error (ConfigError)."""
    try:
        if tls is not None:
            credentials = grpc.ssl_server_credentials(
                [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
                root_certificates=tls.client_ca_file.read_bytes(), require_client_auth=True)
            port = server.add_secure_port(listen, credentials)
        else:
            port = server.add_insecure_port(listen)
    except RuntimeError:  # grpc: "Failed to bind to address"
        port = 0
    if port == 0:
        raise ConfigError(f"{field}: cannot listen on {listen} (address in use by another process, "
                          "or not an address of this machine)")
    return port


class AggregatorServer:
    def __init__(self, config: AggregatorConfig, clock: Clock | None = None,
                 store: StateStore | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self._owns_store = store is None  # an injected store outlives this server
        self.store = store or open_store(config.store_url, telemetry_history_s=config.telemetry_history_s)
        self.metrics = AggregatorMetrics()
        self.sessions = SessionRegistry(config.max_plan_backlog)
        self.elector = LeaderElector(self.store, config.replica_id, config.leader_lease_s, self.metrics)
        encode_signal = SignalEncoder()  # shared: a signal object is encoded once for every stream
        # a cycle's plans are encoded in as many processes as solve them (off the event loop)
        self.plan_encoder = PlanEncoder(config.planning.solver_workers)
        # the planner hands plans and signals to the streams through the outbox
        self.planner = Planner(store=self.store, outbox=StreamOutbox(self.sessions, encode_signal, self.plan_encoder),
                               clock=self.clock, tariff=config.tou_tariff(), config=config.planning,
                               metrics=self.metrics, replica_id=config.replica_id, elector=self.elector,
                               feeders=config.feeders)
        self.servicer = FleetServicer(
            store=self.store, sessions=self.sessions, clock=self.clock,
            metrics=self.metrics, replica_id=config.replica_id,
            identity=MtlsIdentity(config.tls.trust_domain) if config.tls else InsecureHeaderIdentity(),
            telemetry_interval_s=config.telemetry_interval_s, heartbeat_interval_s=config.heartbeat_interval_s,
            telemetry_ttl_s=config.telemetry_ttl_s, route_ttl_s=config.route_ttl_s,
            max_streams=config.max_streams, request_plan=self.planner.request,
            grid_signal=self.planner.house_signal, encode_signal=encode_signal, plan_encoder=self.plan_encoder,
            replan_min_interval_s=config.planning.house_replan_min_interval_s,
        )
        self.elector.on_lead.append(self.planner.request_fleet)  # a new leader plans at once
        self.recovery = StoreRecovery(store=self.store, sessions=self.sessions, clock=self.clock,
                                      replica_id=config.replica_id, route_ttl_s=config.route_ttl_s,
                                      metrics=self.metrics, set_serving=self._set_serving,
                                      replan_fleet=self._replan_fleet)
        self.health = health_aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._admin: grpc.aio.Server | None = None
        self.admin_port: int = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics_server = (MetricsServer(self.metrics.registry, config.metrics_host, config.metrics_port)
                                if config.metrics_port is not None else None)
        self.port: int = 0

    @property
    def target(self) -> str:
        host = self.config.listen.rpartition(":")[0]
        return f"{'127.0.0.1' if host in ('0.0.0.0', '[::]', '') else host}:{self.port}"

    @property
    def metrics_url(self) -> str | None:
        return self._metrics_server.url if self._metrics_server else None

    async def start(self) -> None:
        if self._metrics_server is not None:  # first: a busy port fails before anything listens
            try:
                self._metrics_server.start()
            except StartupError as exc:  # a service's port is the operator's choice: exit 2 (issue 20)
                raise ConfigError(f"metrics_port: {exc}") from None
        try:
            await self._start_grpc()
        except BaseException:  # e.g. the admin port is taken: nothing left listening
            await self._stop_grpc(0)
            if self._metrics_server is not None:
                self._metrics_server.stop()
            raise

    async def _start_grpc(self) -> None:
        server = grpc.aio.server(options=server_options(self.config))
        add_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        tls = self.config.tls
        self.port = _bind(server, self.config.listen, "listen", tls)
        await server.start()
        self._server = server
        if self.config.admin_listen is not None:
            await self._start_admin(self.config.admin_listen)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.elector.try_acquire()  # a single replica leads from its first cycle on
        self._tasks = [log_if_it_fails(asyncio.create_task(coro, name=name)) for coro, name in
                       ((self._watch_store(), "store-health"), (self.elector.run(), "leader"),
                        (self.planner.run(), "planner"))]
        log.info("aggregator %s serving on %s", self.config.replica_id, self.target)

    async def _watch_store(self) -> None:
        """Probe the store; publish up/down as a metric and a health status."""
        up: bool | None = None
        while True:
            try:
                await self.recovery.check()  # reads the store's epoch: a probe, and notices lost data
                now_up = True
            except StoreError as exc:
                now_up = False
                if up is not False:
                    log.warning("state store unavailable (degraded; streams stay up): %s", exc)
            if now_up != up:
                up = now_up
                self.metrics.store_up.set(1 if up else 0)
                await self.health.set(STORE_HEALTH_NAME, health_pb2.HealthCheckResponse.SERVING if up
                                      else health_pb2.HealthCheckResponse.NOT_SERVING)
                if up:
                    log.info("state store answers again")
            await asyncio.sleep(STORE_PROBE_S)

    async def _set_serving(self, serving: bool) -> None:
        """Health of the fleet service (readiness) and the store: NOT_SERVING while the store's
        data is being rebuilt.  Not ``""`` (liveness): a rebuild is no reason to restart."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in (SERVICE_NAME, STORE_HEALTH_NAME):
            await self.health.set(name, status)

    async def _replan_fleet(self) -> None:
        """The whole fleet re-planned at once: here if this replica leads (taking the lease
        again first: it went with the store's data), else by the leader."""
        await self.elector.try_acquire()
        if self.elector.is_leader:
            self.planner.request_fleet()
        else:
            await self.store.queue_push(REPLAN_QUEUE, FLEET_ITEM)

    async def _limits_changed(self, house_id: str) -> None:
        """New temporary limits: the house hears of them now, and gets re-planned."""
        await self.planner.deliver(house_id)
        if self.elector.is_leader:
            self.planner.request(house_id)
        else:
            await self.store.queue_push(REPLAN_QUEUE, house_id)

    async def _start_admin(self, listen: str) -> None:
        """Operators' port: AdminService, health, reflection and channelz.  Every port
        of a gRPC server exposes every service, so this is a second server."""
        admin = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        adm_grpc.add_AdminServiceServicer_to_server(AdminServicer(self.store, self.clock, self._limits_changed,
                                                                 metrics=self.metrics), admin)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, admin)
        channelz.add_channelz_servicer(admin)
        enable_reflection((  # v1 and v1alpha
            adm_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            "grpc.channelz.v1.Channelz"), admin)
        self.admin_port = _bind(admin, listen, "admin_listen", None)
        await admin.start()
        self._admin = admin

    @property
    def admin_target(self) -> str | None:
        if self._admin is None or self.config.admin_listen is None:
            return None
        host = self.config.admin_listen.rpartition(":")[0]
        return f"{'127.0.0.1' if host in ('0.0.0.0', '[::]', '') else host}:{self.admin_port}"

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: health NOT_SERVING, Drain to every agent, then stop with a grace period."""
        grace = self.config.drain_grace_s if grace_s is None else grace_s
        self.servicer.draining = True
        try:
            await self.health.enter_graceful_shutdown()
            for session in self.sessions.all():
                session.outbox.put(CloseItem("aggregator replica shutting down"))
            self.planner.request_stop()
            await cancel_and_wait(self._tasks)  # raises if one would not stop: the rest still stops
            self._tasks = []
        finally:
            try:
                self.planner.close()  # joins the solver processes (brief; we are stopping anyway)
                self.plan_encoder.close()
                await self.elector.resign()  # let another replica lead at once instead of after the TTL
            finally:  # whatever failed above, nothing is left listening
                await self._stop_grpc(grace)
                if self._metrics_server is not None:
                    self._metrics_server.stop()
                if self._owns_store:
                    await self.store.close()

    async def _stop_grpc(self, grace: float) -> None:
        """Stop (awaited) both gRPC servers.  A grpc.aio server that is never stopped keeps a
        request pending on grpc's process-wide completion queue: when the process's last gRPC
        object goes, grpc's shutdown waits for that queue to drain, for ever."""
        server, admin, self._server, self._admin = self._server, self._admin, None, None
        try:
            if server is not None:
                await server.stop(grace)
        finally:
            if admin is not None:
                await admin.stop(0)

    async def __aenter__(self) -> AggregatorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
