"""The aggregator's one typed configuration (TOML file + ``VPP_AGG_*`` env overrides).

Example ``aggregator.toml``::

    listen = "0.0.0.0:50051"
    store_url = "redis://redis:6379/0"   # default: memory:// (one process)
    metrics_port = 9464
    insecure = true                      # plaintext, identity from a header (demo only)

    [planning]
    slot_s = 900
    horizon_slots = 96
    lease_s = 3600
    cycle_s = 300
    # prices_file = "prices.csv"         # a price series instead of the [[tariff]] below; day-ahead:
    # prices_published = "13:00"         # the next day's prices known from 13:00 ...
    # prices_market_timezone = "Europe/Berlin"   # ... in the market's zone (its days)

    [[tariff]]
    start = "00:00"
    end = "06:00"
    import_price_per_kwh = 0.20
    export_price_per_kwh = 0.07

Env: ``VPP_AGG_STORE_URL=redis://...``, ``VPP_AGG_PLANNING__CYCLE_S=60``.
"""

from __future__ import annotations

import os
import socket
from datetime import time
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aggregator.certs import check_trust_domain
from aggregator.dispatch.futures import DEFAULT_FUTURES, Future
from aggregator.dispatch.tariff import DEFAULT_TARIFF, TouPeriod, TouTariff
from vpp_common.config import EnvOverridesFile
from vpp_common.localtime import zone


class _Section(BaseModel):
    """A nested section: an unknown key (``[planning] cycle_sec = 5``) is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class PlanningConfig(_Section):
    slot_s: int = Field(900, ge=60, le=3600, description="plan slot length, s")
    horizon_slots: int = Field(96, ge=1, le=672, description="slots per plan")
    lease_s: int = Field(3600, ge=60, description="how long a plan is valid, s")
    cycle_s: float = Field(300.0, gt=0, description="re-plan every this many clock seconds")
    debounce_s: float = Field(0.05, ge=0, description="collect re-plan requests this long (real s)")
    grid_charge_target_soc_pct: float = Field(50.0, ge=0, le=100,
                                              description="TOU rule: charge from the grid up to this SoC")
    optimiser: Literal["lp", "tou"] = Field(
        "lp", description="lp: the fleet LP (OR-Tools, feeder limits, forecasts); tou: the simple price rule")
    solver_workers: int = Field(1, ge=1, le=64, description="processes that run the LP (never the event loop)")
    solve_time_limit_s: float = Field(60.0, gt=0, description="per cycle; then the previous plans stay")
    prices_file: Path | None = Field(
        None, description="CSV timestamp,import_price_per_kwh,export_price_per_kwh (ISO 8601 with offset, "
                          "each price holds until the next row): used instead of the TOU tariff when set; "
                          "slots past the last known price hold its value")
    prices_published: time | None = Field(
        None, description='with prices_file: the next day\'s prices become known at this time ("HH:MM") of '
                          "prices_market_timezone (day-ahead publication; days are that zone's); None = the "
                          "whole file is known")
    prices_market_timezone: str = Field("UTC", description="IANA zone of the price market (e.g. Europe/Berlin)")
    prices_publish_hour_utc: int | None = Field(
        None, ge=0, le=23, description="older spelling of prices_published = this hour, UTC (not with "
                                       "prices_published or prices_market_timezone)")
    horizon_within_known_prices: bool = Field(
        False, description="with prices_file: end each plan's horizon at the last known price "
                           "(instead of holding that price to horizon_slots)")
    terminal_value_per_kwh: float | Literal["mean_price"] = Field(
        0.10, description="LP: value of energy left in the batteries at the horizon end; "
                          '"mean_price" = the horizon\'s mean of (import + export price) / 2')
    cycle_align: bool = Field(False, description="run cycles at clock times that are multiples of cycle_s "
                                                 "(+ cycle_offset_s), e.g. on the hour, instead of cycle_s apart")
    cycle_offset_s: float = Field(0.0, ge=0, description="with cycle_align: this many clock s after the multiple "
                                                         "(lets the houses report the new slot first)")
    replan_on_update: bool = Field(True, description="re-plan (debounced) when a house connects or sends new "
                                                     "flexibility; False = only on the cycle")
    feeder_control_s: float = Field(
        30.0, ge=0, description="share each limited feeder among its houses live, from their latest telemetry, every "
                                "this many clock seconds (a feeder envelope replacing the plan's; 0 = off)")
    house_replan_min_interval_s: float = Field(
        5.0, ge=0, description="a house's re-plan requests (connect, new flexibility): 2 at once, then at most one "
                               "per this many real s; more coalesce into one (latest data wins). 0 = no limit")
    warm_solver: bool = Field(False, description="lp: start the solver process at startup, not at the first solve")
    futures: list[Future] = Field(
        default_factory=lambda: list(DEFAULT_FUTURES),
        description="lp: the futures each plan weighs, relative to the houses' forecasts: load_factor (x load) and "
                    "pv_toward_clear_sky (-1..1: >0 that share of the way to the clear-sky PV, <0 that much less "
                    "PV).  One battery schedule until the next cycle, each future free after it; the plans "
                    "follow the first; each future is a copy of every house in the LP (the default two: ~2x the "
                    "solve time of one).  [] = plan on the forecasts alone (with a night reserve)")

    @model_validator(mode="after")
    def _lease_within_horizon(self) -> PlanningConfig:
        if self.lease_s > self.slot_s * self.horizon_slots:
            raise ValueError(f"lease_s {self.lease_s} exceeds the horizon ({self.slot_s * self.horizon_slots} s)")
        return self

    @model_validator(mode="after")
    def _one_publication(self) -> PlanningConfig:
        zone(self.prices_market_timezone)  # ValueError naming an unknown zone
        if self.prices_publish_hour_utc is not None and (
                self.prices_published is not None or self.prices_market_timezone != "UTC"):
            raise ValueError("prices_publish_hour_utc is the older spelling of prices_published (in UTC): give "
                             "prices_published and prices_market_timezone instead, not both")
        return self

    def price_publication(self) -> tuple[time | None, str]:
        """(publication time, market zone) of the prices file, whichever spelling was used."""
        if self.prices_publish_hour_utc is not None:
            return time(self.prices_publish_hour_utc), "UTC"
        return self.prices_published, self.prices_market_timezone

    @field_validator("prices_file")
    @classmethod
    def _prices_readable(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"file {v} does not exist")
        return v


class FeederConfig(_Section):
    """A shared grid asset: net import/export limits over its houses (W, positive; none = unlimited)."""

    id: str
    houses: list[str]
    import_limit_w: float | None = Field(None, gt=0)
    export_limit_w: float | None = Field(None, ge=0)
    transformer: str = "default"


class TariffPeriodConfig(_Section):
    start: time
    end: time
    import_price_per_kwh: float
    export_price_per_kwh: float


class TlsServerConfig(_Section):
    """mTLS: the aggregator's certificate and the fleet CA that signs house certificates
    (``aggregator certs`` makes all three)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path
    trust_domain: str = Field(description="houses are spiffe://<trust_domain>/house/<id>")

    @field_validator("cert_file", "key_file", "client_ca_file")
    @classmethod
    def _readable(cls, v: Path) -> Path:
        if not v.is_file():
            raise ValueError(f"file {v} does not exist")
        return v

    @field_validator("trust_domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        return check_trust_domain(v)


def _default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class AggregatorConfig(EnvOverridesFile):
    env_prefix: ClassVar[str] = "VPP_AGG_"

    listen: str = Field("127.0.0.1:50051", description="host:port of the gRPC FleetService")
    admin_listen: str | None = Field("127.0.0.1:50052", description="host:port of the admin port (AdminService, "
                                     "health, reflection, channelz); keep it private. None disables it")
    store_url: str = Field("memory://", description="memory:// (embedded) or redis://host:port/db")
    replica_id: str = Field(default_factory=_default_replica_id)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(9464, ge=0, le=65535, description="None disables /metrics; 0 = any free port")
    insecure: bool = Field(False, description="plaintext gRPC, house id from the x-vpp-house-id header (demo only)")
    tls: TlsServerConfig | None = Field(None, description="mTLS settings; required unless insecure")
    telemetry_interval_s: float = Field(10.0, gt=0)
    heartbeat_interval_s: float = Field(30.0, gt=0)
    telemetry_ttl_s: float = Field(60.0, gt=0, description="latest telemetry expires after this many real s")
    telemetry_history_s: float = Field(
        0.0, ge=0, description="telemetry samples kept per house (s of measured time; ~0.5 kB a sample in "
                               "Redis): what an outage or reconnect delivers late lands here, none twice; "
                               "0 = the newest only")
    route_ttl_s: float = Field(90.0, gt=0)
    max_streams: int = Field(5000, ge=1, description="admission: streams this replica accepts")
    max_plan_backlog: int = Field(64, ge=1, description="streams that may hold a plan not yet written; the planner "
                                                        "waits beyond it, so plans go out at the pace streams take "
                                                        "them and none waits behind a whole cycle")
    max_connection_age_s: float = Field(
        2700.0, gt=0, description="real s after which a connection is closed (GOAWAY) so that its agent "
                                  "reconnects, possibly to another replica: streams rebalance after a scale-out")
    max_connection_age_grace_s: float = Field(60.0, ge=0, description="real s a stream may run on after that")
    leader_lease_s: float = Field(15.0, gt=0, description="dispatch lease TTL (real s); renewed every third")
    drain_grace_s: float = Field(5.0, ge=0)
    planning: PlanningConfig = PlanningConfig()
    tariff: list[TariffPeriodConfig] = Field(default_factory=list, description="TOU periods (wall clock of "
                                             "tariff_timezone); empty = default")
    tariff_timezone: str = Field("UTC", description="IANA zone of the [[tariff]] periods' times")
    feeders: list[FeederConfig] = Field(default_factory=list, description="feeders and their limits")

    @field_validator("listen", "admin_listen")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is None:
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port, e.g. 0.0.0.0:50051")
        return v

    @field_validator("store_url")
    @classmethod
    def _store_scheme(cls, v: str) -> str:
        # the same rule as open_store, checked here so that a typo is an operator error (exit 2)
        scheme = v.partition("://")[0].lower() if "://" in v else ""
        if scheme not in ("memory", "redis", "rediss"):
            raise ValueError("must be memory:// or redis://host:port/db (rediss:// for TLS)")
        return v

    @model_validator(mode="after")
    def _secure_or_explicitly_insecure(self) -> AggregatorConfig:
        if not self.insecure and self.tls is None:
            raise ValueError("configure [tls] (cert_file, key_file, client_ca_file, trust_domain) "
                             "or set insecure = true / pass --insecure for a local demo")
        return self

    @field_validator("tariff_timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        zone(v)  # ValueError naming an unknown zone
        return v

    def tou_tariff(self) -> TouTariff:
        if not self.tariff:
            return DEFAULT_TARIFF
        return TouTariff(tuple(TouPeriod(p.start, p.end, p.import_price_per_kwh, p.export_price_per_kwh)
                               for p in self.tariff), timezone=self.tariff_timezone)
