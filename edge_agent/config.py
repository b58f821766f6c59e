"""The edge agent's one typed configuration (TOML file + ``VPP_AGENT_*`` env overrides).

Example ``edge-agent.toml``::

    house_id = "house-0001"          # demo/insecure only; with mTLS it comes from the certificate
    aggregator = "vpp.example.net:50051"
    insecure = true

    [device]
    host = "192.168.1.50"
    port = 502
    unit_id = 1
    meter_import_positive = true     # SunSpec meter sign differs by vendor

    [site]
    max_import_w = 11000             # fuse / connection limit
    max_export_w = 4600              # export cap

    [battery]
    reserve_soc_pct = 10

    [control]
    tick_s = 5
    deadband_w = 50

Env: ``VPP_AGENT_DEVICE__HOST=10.0.0.5``, ``VPP_AGENT_SITE__MAX_EXPORT_W=0``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import SettingsConfigDict

from vpp_common.config import EnvOverridesFile


class DeviceConfig(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=247)
    timeout_s: float = Field(2.0, gt=0)
    meter_import_positive: bool = Field(True, description="SunSpec 203 W sign: True if import reads positive")
    battery_discharge_positive: bool = Field(
        True, description="SunSpec 802 W sign (the model does not define it): True if discharging reads positive")
    poll_interval_s: float = Field(5.0, gt=0, description="clock seconds between device polls")
    stale_after_s: float = Field(30.0, gt=0, description="a measurement older than this is stale (clock s)")


class SiteConfig(BaseModel):
    max_import_w: float = Field(11_000.0, gt=0, description="connection/fuse limit, W")
    max_export_w: float = Field(4_600.0, ge=0, description="export cap, W (0 = zero export)")


class BatteryConfig(BaseModel):
    reserve_soc_pct: float = Field(10.0, ge=0, le=100, description="backup SoC the agent never discharges below")
    max_soc_pct: float = Field(100.0, gt=0, le=100)
    revert_s: int = Field(60, ge=10, le=3600, description="device reverts a setpoint not refreshed within this")


class ControlConfig(BaseModel):
    tick_s: float = Field(5.0, gt=0, description="clock seconds between decisions")
    deadband_w: float = Field(50.0, ge=0, description="changes smaller than this are not written")
    grace_s: float = Field(300.0, ge=0, description="stream down this long: fall back (clock s)")


class AgentConfig(EnvOverridesFile):
    model_config = SettingsConfigDict(env_prefix="VPP_AGENT_", env_nested_delimiter="__", extra="forbid")

    house_id: str = Field("house-1", description="identity in insecure mode only")
    aggregator: str = Field("127.0.0.1:50051", description="host:port of the aggregator")
    insecure: bool = Field(False, description="plaintext gRPC (demo only)")
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(9465, ge=0, le=65535, description="None disables /metrics; 0 = any free port")
    telemetry_interval_s: float = Field(10.0, gt=0, description="until the aggregator's Welcome says otherwise")
    reconnect_initial_s: float = Field(0.5, gt=0, description="first reconnect delay (real s)")
    reconnect_max_s: float = Field(60.0, gt=0, description="largest reconnect delay (real s)")
    device: DeviceConfig = DeviceConfig()
    site: SiteConfig = SiteConfig()
    battery: BatteryConfig = BatteryConfig()
    control: ControlConfig = ControlConfig()

    @field_validator("aggregator")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError("must be host:port, e.g. vpp.example.net:50051")
        return v
