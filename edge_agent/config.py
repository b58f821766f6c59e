"""The edge agent's one typed configuration (TOML file + ``VPP_AGENT_*`` env overrides).

Example ``edge-agent.toml``::

    aggregator = "vpp.example.net:50051"
    state_dir = "state"              # telemetry spool (default; relative to the working directory)

    [tls]                            # mTLS: the house identity is the certificate's
    ca_file = "/etc/vpp/ca.pem"
    cert_file = "/etc/vpp/house.pem"
    key_file = "/etc/vpp/house.key"

    [device]
    host = "192.168.1.50"
    port = 502
    unit_id = 1
    meter_import_positive = true     # SunSpec meter sign differs by vendor
    # catalogue = "victron_gx"       # a vendor map instead of SunSpec (edge_agent/catalogue/*.toml)

    # [[device.parts]]               # separate devices instead of one hybrid (host/port above unused)
    # role = "battery"               # battery | pv | meter | ev_charger
    # host = "192.168.1.50"
    # [[device.parts]]
    # role = "meter"
    # host = "192.168.1.51"
    # unit_id = 2

    [site]
    max_import_w = 11000             # fuse / connection limit
    max_export_w = 4600              # export cap
    # timezone = "Europe/Berlin"     # IANA zone of the house: its days for the load forecast (default UTC)

    [battery]
    reserve_soc_pct = 10             # below it only for a feeder envelope, to feeder_floor_soc_pct (5)

    [control]
    tick_s = 5
    deadband_w = 50
    # mode = "tou"                   # plan locally on the tariff below (default "vpp")

    # [[lan_devices]]                # smart plugs and meters on the LAN (README); [[appliances]]: docs/appliances.md
    # id = "freezer"
    # model = "shelly_plug_s"        # edge_agent/catalogue/lan/*.toml
    # host = "192.168.1.60"
    # role = "load"                  # load | grid_meter | pv (no Modbus device: [device] kind = "lan")

    # [home_assistant]               # publish the house over MQTT discovery (README: Home Assistant)
    # host = "192.168.1.10"
    # username = "vpp"                # password = "..."
    # [home_assistant.api]           # its entities as meters and loads: url, token_file and
    # [[home_assistant.api.entities]]  # id, entity_id, role (docs/home-assistant-devices.md)

    # [s2]                           # S2 Resource Managers connect here (docs/s2-cem.md)
    # port = 8765
    # cert_file = "/etc/vpp/s2.pem"
    # key_file = "/etc/vpp/s2.key"
    # [[s2.resource_managers]]
    # name = "heat-pump"
    # token = "..."                  # pre-shared bearer token, >= 16 characters

    # [tariff]
    # timezone = "Europe/Berlin"     # the periods' clock (default UTC)
    # [[tariff.periods]]             # fixed TOU periods, or tariff.prices_file = "prices.csv"
    #                                # with prices_published = "13:00", market_timezone = "Europe/Berlin"
    # start = "17:00"
    # end = "21:00"
    # import_price_per_kwh = 0.45
    # export_price_per_kwh = 0.07
    # weekdays = ["mon", "tue", "wed", "thu", "fri"]    # optional
    # months = [11, 12, 1, 2]                           # optional: a season

Env: ``VPP_AGENT_DEVICE__HOST=10.0.0.5``, ``VPP_AGENT_SITE__MAX_EXPORT_W=0``.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agent.appliance_config import ApplianceConfig, check_appliances
from edge_agent.lan_config import RESERVED_IDS, LanDeviceConfig, check_lan_devices, check_lan_house
from edge_agent.link_config import STRICT, HomeAssistantConfig, S2Config, TlsClientConfig
from vpp_common.config import EnvOverridesFile
from vpp_common.localtime import zone

if TYPE_CHECKING:
    from vpp_common.tariff import PriceSource


class DevicePartConfig(BaseModel):
    """One device of a house whose battery, PV inverter, grid meter and EV charger are separate
    SunSpec devices (``[[device.parts]]``)."""

    model_config = STRICT

    role: Literal["battery", "pv", "meter", "ev_charger"] = Field(
        description="battery: battery inverter (124 or 704 control, SoC); pv: PV inverter (power, 123/704 "
                    "curtailment); meter: grid meter at the connection point; ev_charger: the wallbox's meter "
                    "(measurement only)")
    host: str
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=247)
    meter_import_positive: bool | None = Field(None, description="meter/ev_charger: default device.meter_import_positive")
    battery_discharge_positive: bool | None = Field(
        None, description="battery: default device.battery_discharge_positive")

    @property
    def address(self) -> tuple[str, int, int]:
        return (self.host, self.port, self.unit_id)


class DeviceConfig(BaseModel):
    model_config = STRICT

    kind: Literal["modbus", "lan"] = Field("modbus", description="modbus: the devices below; lan: no Modbus device, "
                                           "the grid meter and PV are [[lan_devices]] (docs/lan-devices.md)")
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    unit_id: int | None = Field(None, ge=0, le=247,
                                description="Modbus unit id; default 1 for SunSpec, the catalogue entry's own otherwise")
    catalogue: str | None = Field(
        None, description="vendor catalogue entry id (e.g. victron_gx, sungrow_sh, huawei_sun2000_luna2000; see "
                          "edge-agent scan --model) instead of SunSpec discovery")
    timeout_s: float = Field(2.0, gt=0)
    meter_import_positive: bool = Field(True, description="SunSpec 203 W sign: True if import reads positive")
    battery_discharge_positive: bool = Field(
        True, description="SunSpec 802 W sign (the model does not define it): True if discharging reads positive")
    poll_interval_s: float = Field(5.0, gt=0, description="clock seconds between device polls")
    stale_after_s: float = Field(30.0, gt=0, description="a measurement older than this is stale (clock s)")
    reconnect_max_s: float = Field(
        60.0, gt=0, description="a device that stopped answering is tried again after 1, 2, 4 ... poll periods "
                                "(with jitter), at most this many clock s apart")
    # Flash wear (edge_agent/drivers/write_guard.py): every write passes a per-register guard.  The defaults
    # are a backstop (720/h = one write per default 5 s tick): set 30 s / 120 for registers kept in flash.
    write_min_interval_s: float = Field(0.0, ge=0, description="least clock s between two different values "
                                                              "written to one register")
    write_max_per_hour: int = Field(720, ge=1, description="writes per register in any rolling clock hour")
    # Vendor maps rarely publish the nameplate: catalogue devices take it from here (SunSpec reads model 120).
    capacity_wh: float | None = Field(None, gt=0, description="catalogue device: usable battery capacity, Wh")
    rated_power_w: float | None = Field(None, gt=0, description="catalogue device: inverter rating, W")
    max_charge_w: float | None = Field(None, gt=0, description="catalogue device: if the map has no such point")
    max_discharge_w: float | None = Field(None, gt=0, description="catalogue device: if the map has no such point")

    parts: list[DevicePartConfig] = Field(
        default_factory=list,
        description="separate devices instead of one hybrid at host:port: one battery and one meter, at most "
                    "one pv and one ev_charger (several roles may share an address); the settings above "
                    "(timeouts, polling, write limits, signs) apply to each")

    @model_validator(mode="after")
    def _parts_one_house(self) -> DeviceConfig:
        if not self.parts:
            return self
        if self.catalogue is not None:
            raise ValueError("parts: separate SunSpec devices cannot be combined with a catalogue entry")
        roles: list[str] = [p.role for p in self.parts]
        for role, lo in (("battery", 1), ("meter", 1), ("pv", 0), ("ev_charger", 0)):
            if not lo <= roles.count(role) <= 1:
                raise ValueError(f"parts: need {'exactly' if lo else 'at most'} one {role!r}, got {roles.count(role)}")
        return self

    @field_validator("host")
    @classmethod
    def _host_given(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name the device (IP address or host name)")
        return v

    @field_validator("catalogue")
    @classmethod
    def _known_catalogue_entry(cls, v: str | None) -> str | None:
        from edge_agent.drivers.catalogue import (
            catalogue_ids,  # the catalogue is data shipped with the agent
        )

        if v is not None and v not in catalogue_ids():
            raise ValueError(f"unknown catalogue entry {v!r}; known: {', '.join(catalogue_ids())}")
        return v


class SiteConfig(BaseModel):
    model_config = STRICT

    max_import_w: float = Field(11_000.0, gt=0, description="connection/fuse limit, W")
    max_export_w: float = Field(4_600.0, ge=0, description="export cap, W (0 = zero export)")
    latitude: float | None = Field(None, ge=-90, le=90, description="for the clear-sky PV forecast")
    longitude: float | None = Field(None, ge=-180, le=180, description="for the clear-sky PV forecast")
    pv_peak_w: float | None = Field(None, gt=0, le=1e6, description="PV output at 1000 W/m2; default: inverter rating")
    timezone: str = Field("UTC", description="IANA zone of the house (e.g. Europe/Berlin): its days for the "
                                             "similar-day load forecast, across DST")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        zone(v)  # ValueError naming an unknown zone
        return v


class BatteryConfig(BaseModel):
    model_config = STRICT

    reserve_soc_pct: float = Field(10.0, ge=0, le=100, description="backup SoC; below it only for the feeder")
    feeder_floor_soc_pct: float = Field(5.0, ge=0, le=100, description="lowest SoC for the feeder (architecture.md)")
    max_soc_pct: float = Field(100.0, gt=0, le=100)
    revert_s: int = Field(60, ge=10, le=3600, description="device reverts a setpoint not refreshed within this")

    @model_validator(mode="after")
    def _reserve_below_max(self) -> BatteryConfig:
        if self.reserve_soc_pct >= self.max_soc_pct:
            raise ValueError(f"reserve_soc_pct ({self.reserve_soc_pct}) must be below max_soc_pct "
                             f"({self.max_soc_pct}): no SoC would be left to use")
        return self


class ControlConfig(BaseModel):
    model_config = STRICT

    mode: Literal["vpp", "self_consumption", "tou"] = Field(
        "vpp", description="vpp: follow the aggregator's plans (self-consumption when there are none); "
                           "self_consumption: ignore plans and keep grid exchange near zero; "
                           "tou: ignore plans, plan locally on the [tariff] with the house's own forecasts")
    tick_s: float = Field(5.0, gt=0, description="clock seconds between decisions")
    max_ramp_w_per_s: float = Field(0.0, ge=0, description="largest setpoint change per second; 0 = none")
    deadband_w: float = Field(50.0, ge=0, description="changes smaller than this are not written")
    grace_s: float = Field(300.0, ge=0, description="stream down this long: fall back (clock s)")


class TariffPeriodConfig(BaseModel):
    """One period of a fixed time-of-use tariff (wall clock of the tariff's ``timezone``); a period ending at or before its start runs
    past midnight and belongs to the day it starts on."""

    model_config = STRICT

    start: time
    end: time = Field(description="exclusive; 00:00 = midnight")
    import_price_per_kwh: float
    export_price_per_kwh: float = 0.0
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = Field(
        None, description="only on these days; default every day")
    months: list[Annotated[int, Field(ge=1, le=12)]] | None = Field(
        None, description="only in these months (a season, e.g. [11, 12, 1, 2]); default all year")


class TariffConfig(BaseModel):
    """Prices for the ``tou`` mode: fixed periods, or a price series file (e.g. day-ahead)."""

    model_config = STRICT

    periods: list[TariffPeriodConfig] = Field(default_factory=list, description="fixed TOU periods")
    prices_file: Path | None = Field(
        None, description="CSV timestamp,import_price_per_kwh,export_price_per_kwh (ISO 8601 with offset, each "
                          "price holds until the next row) instead of periods")
    prices_published: time | None = Field(
        None, description='with prices_file: the next day\'s prices are known from this time ("HH:MM") of '
                          "market_timezone (day-ahead; days are that zone's); None = the whole file is known")
    market_timezone: str = Field("UTC", description="IANA zone of the price market (e.g. Europe/Berlin)")
    timezone: str = Field("UTC", description="periods: IANA zone of their times, weekdays and months (e.g. "
                                             "America/Los_Angeles for a 16:00-21:00 local peak)")
    prices_publish_hour_utc: int | None = Field(
        None, ge=0, le=23, description="older spelling of prices_published = this hour, UTC (not with "
                                       "prices_published or market_timezone)")
    currency: str = "EUR"

    @model_validator(mode="after")
    def _one_source_that_prices_every_slot(self) -> TariffConfig:
        zone(self.market_timezone)  # ValueError naming an unknown zone
        zone(self.timezone)
        if self.prices_publish_hour_utc is not None and (
                self.prices_published is not None or self.market_timezone != "UTC"):
            raise ValueError("prices_publish_hour_utc is the older spelling of prices_published (in UTC): give "
                             "prices_published and market_timezone instead, not both")
        if bool(self.periods) == (self.prices_file is not None):
            raise ValueError("give either periods (fixed TOU) or prices_file (a price series), not both or neither")
        self.price_source()  # periods cover each day exactly once; the file exists and parses
        return self

    def price_source(self) -> PriceSource:
        # imported here: the tariff module needs numpy, which a house without a [tariff] never loads
        from vpp_common.tariff import PriceSeries, TouPeriod, TouTariff

        if self.prices_file is not None:
            if not self.prices_file.is_file():
                raise ValueError(f"prices_file {self.prices_file} does not exist")
            if self.prices_publish_hour_utc is not None:
                return PriceSeries.load(self.prices_file, slot_s=900, publish_hour_utc=self.prices_publish_hour_utc)
            return PriceSeries.load(self.prices_file, slot_s=900, published=self.prices_published,
                                    market_timezone=self.market_timezone)
        days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        return TouTariff(tuple(
            TouPeriod(p.start, p.end, p.import_price_per_kwh, p.export_price_per_kwh,
                      frozenset(days.index(d) for d in p.weekdays) if p.weekdays is not None else None,
                      frozenset(p.months) if p.months is not None else None)
            for p in self.periods), currency=self.currency, timezone=self.timezone)


class AgentConfig(EnvOverridesFile):
    model_config = ConfigDict(allow_inf_nan=False)
    env_prefix: ClassVar[str] = "VPP_AGENT_"

    house_id: str | None = Field(
        None, description="insecure mode: the identity sent in a header (required); with mTLS: optional, "
                          "checked against the certificate (a mismatch is refused)")
    aggregator: str = Field("127.0.0.1:50051", description="host:port of the aggregator")
    insecure: bool = Field(False, description="plaintext gRPC (demo only)")
    tls: TlsClientConfig | None = Field(None, description="mTLS settings; required unless insecure")
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(9465, ge=0, le=65535, description="None disables /metrics; 0 = any free port")
    telemetry_interval_s: float = Field(10.0, gt=0, description="until the aggregator's Welcome says otherwise")
    reconnect_initial_s: float = Field(0.5, gt=0, description="first reconnect delay (real s)")
    reconnect_max_s: float = Field(
        5.0, gt=0, description="largest reconnect delay (real s, jittered over its upper half): the agent is "
                               "back within this of the aggregator's return")
    state_dir: Path | None = Field(
        Path("state"), description="where the agent keeps state across restarts: the telemetry spool (telemetry-<house_id>.sqlite, "
                                   "kept until the aggregator has stored each sample), the Home Assistant energy counters, the "
                                   "appliances' state; relative to the working directory (systemd: /var/lib/vpp-edge-agent, the "
                                   "image: /var/lib/vpp, Home Assistant: /data); None: in memory (lost on restart; simulations)")
    telemetry_spool_max_samples: int = Field(10_000, ge=1, description="telemetry samples kept unacknowledged at most "
                                             "(10,000 = 27 h at 10 s, ~5 MB); beyond it the oldest give way (counted)")
    device: DeviceConfig = DeviceConfig()
    site: SiteConfig = SiteConfig()
    battery: BatteryConfig = BatteryConfig()
    control: ControlConfig = ControlConfig()
    tariff: TariffConfig | None = Field(None, description="prices for control.mode = \"tou\"")
    home_assistant: HomeAssistantConfig | None = Field(None, description="MQTT discovery; its entities as devices")
    s2: S2Config | None = Field(None, description="the agent as an S2 CEM for third-party Resource Managers")
    lan_devices: list[LanDeviceConfig] = Field(default_factory=list, description="smart plugs and meters on the LAN")
    appliances: list[ApplianceConfig] = Field(default_factory=list, description="appliances behind the plugs")

    @model_validator(mode="after")
    def _lan_devices_one_house(self) -> AgentConfig:
        check_lan_devices(self.lan_devices, several_pv=self.device.kind == "lan")
        check_lan_house(self.device.kind, self.lan_devices, self.device.model_fields_set)
        check_appliances(self.appliances, self.lan_devices, self.home_assistant)  # docs/appliances.md
        return self

    @model_validator(mode="after")
    def _timings_that_can_work(self) -> AgentConfig:
        # The setpoint and PV limit are refreshed at the first decision (after a new poll) past
        # revert_s / 2: with a tick or poll period that long the device reverts first.
        half = self.battery.revert_s / 2
        for name, value in (("control.tick_s", self.control.tick_s),
                            ("device.poll_interval_s", self.device.poll_interval_s)):
            if value >= half:
                raise ValueError(f"{name} ({value} s) must be below battery.revert_s / 2 ({half} s): the device "
                                 "would revert the battery setpoint before the agent refreshes it")
        if self.reconnect_initial_s > self.reconnect_max_s:
            raise ValueError(f"reconnect_initial_s ({self.reconnect_initial_s}) must be <= reconnect_max_s "
                             f"({self.reconnect_max_s})")
        if (self.site.latitude is None) != (self.site.longitude is None):
            raise ValueError("site: give both latitude and longitude (or neither): the PV forecast needs both")
        return self

    @model_validator(mode="after")
    def _tou_needs_a_tariff(self) -> AgentConfig:
        if self.control.mode == "tou" and self.tariff is None:
            raise ValueError("tariff: control.mode = \"tou\" needs a [tariff] with periods or prices_file")
        return self

    @model_validator(mode="after")
    def _secure_or_explicitly_insecure(self) -> AgentConfig:
        if not self.insecure and self.tls is None:
            raise ValueError("configure [tls] (ca_file, cert_file, key_file) or set insecure = true "
                             "/ pass --insecure for a local demo")
        if self.tls is None and not self.house_id:
            raise ValueError("house_id is required in insecure mode (with mTLS it comes from the certificate)")
        return self

    @model_validator(mode="after")
    def _home_assistant_can_work(self) -> AgentConfig:
        ha = self.home_assistant
        if ha is not None and ha.api is not None:
            lan = {d.id for d in self.lan_devices}
            for i, e in enumerate(ha.api.entities):
                if e.id in RESERVED_IDS or e.id in lan:
                    raise ValueError(f"home_assistant.api.entities[{i}].id {e.id!r} is already the house's "
                                     f"({', '.join(RESERVED_IDS)}) or a LAN device's")
        if ha is None or ha.host is None:  # no MQTT: no counters to keep, no unique ids to make
            return self
        if self.state_dir is None:
            raise ValueError("home_assistant: set state_dir (the energy counters must survive a restart, or Home "
                             "Assistant reads a meter reset)")
        if ha.node_id is None and not self.house_id:
            raise ValueError("home_assistant: set node_id (or house_id): it makes the entities' unique ids")
        if ha.reconnect_initial_s > ha.reconnect_max_s:
            raise ValueError(f"home_assistant: reconnect_initial_s ({ha.reconnect_initial_s}) must be <= "
                             f"reconnect_max_s ({ha.reconnect_max_s})")
        return self

    @field_validator("aggregator")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be host:port (port 1-65535), e.g. vpp.example.net:50051")
        return v
