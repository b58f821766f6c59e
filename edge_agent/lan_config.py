"""Settings of the house's smart plugs, meters and micro-inverters on the LAN (``[[lan_devices]]``); part of the
one configuration (edge_agent/config.py).  Each names a LAN catalogue entry
(edge_agent/catalogue/lan/*.toml) and the device's host, and its role in the house."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from edge_agent.drivers.lan_catalogue import lan_catalogue_ids, load_lan_entry

# As link_config.STRICT (a sibling layer: not imported): unknown keys and inf/NaN refused
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class LanDeviceConfig(BaseModel):
    """One plug, meter or micro-inverter: ``role = "grid_meter"`` (the meter at the connection point,
    import > 0), ``"load"`` (a measured load; switchable if the model has a switch) or ``"pv"`` (a
    micro-inverter, production < 0; the house's curtailable PV if the model takes a limit)."""

    model_config = STRICT

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$",
                    description="the resource id the aggregator and the logs know it by, e.g. freezer")
    model: str = Field(description="LAN catalogue entry: shelly_plug_s, shelly_pro_3em, shelly_pro_em, "
                                   "tasmota_plug, dsmr5_p1, opendtu_hoymiles, apsystems_ez1, enphase_envoy")
    host: str = Field(description="IP address or host name (no scheme, no port)")
    port: int | None = Field(None, ge=1, le=65535, description="default: the model's (HTTP 80; P1 8088)")
    role: Literal["grid_meter", "load", "pv"]
    username: str | None = Field(None, description="Tasmota web user (default admin); Shelly's is always admin")
    password: SecretStr | None = Field(None, description="Shelly digest auth / Tasmota web password / OpenDTU "
                                                          "admin password (basic auth: needed for the limit)")
    token: SecretStr | None = Field(None, description="Enphase IQ Gateway: the owner's token (a JWT from "
                                                       "Enlighten, sent as a bearer token)")
    serial: str | None = Field(None, pattern=r"^[0-9A-Fa-f]{6,16}$",
                               description="OpenDTU: the Hoymiles inverter's serial number (hex digits)")
    timeout_s: float = Field(2.0, gt=0, le=30, description="seconds per request (P1: for the next telegram, so "
                                                            "above the meter's interval: 1 s for DSMR 5)")

    @field_validator("host")
    @classmethod
    def _plain_host(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)  # IPv6 literals have colons
            return v
        except ValueError:
            pass
        if not v.strip() or any(c in v for c in " /:@?#[]"):
            raise ValueError(f"must be an IP address or host name without scheme, port or path, got {v!r}")
        return v

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in lan_catalogue_ids():
            raise ValueError(f"unknown LAN device model {v!r}; known: {', '.join(lan_catalogue_ids())}")
        return v

    @model_validator(mode="after")
    def _model_can_play_role(self) -> LanDeviceConfig:
        entry = load_lan_entry(self.model)
        if self.role not in entry.device.roles:
            raise ValueError(f"{self.model} cannot be a {self.role} (it can be: {', '.join(entry.device.roles)})")
        if entry.device.protocol == "dsmr_p1" and (self.password is not None or self.username is not None):
            raise ValueError(f"{self.model}: a P1 port has no credentials (username/password)")
        if entry.device.needs_serial != (self.serial is not None):
            raise ValueError(f"{self.model}: serial " + ("is required (the inverter's serial number)"
                                                         if entry.device.needs_serial else "is not used"))
        if (entry.device.auth == "bearer") != (self.token is not None):
            raise ValueError(f"{self.model}: token " + ("is required (the owner's token)"
                                                        if entry.device.auth == "bearer" else "is not used"))
        return self

    @property
    def address(self) -> tuple[str, int | None]:
        return self.host, self.port


# The resource ids of the house's Modbus devices (edge_agent/resources): telemetry carries both
RESERVED_IDS = ("battery", "pv", "grid_meter", "ev_charger")


def check_lan_devices(devices: list[LanDeviceConfig], several_pv: bool = False) -> None:
    """ValueError naming ``lan_devices`` if the list cannot be one house's: ids unique, one device
    configured once, at most one grid meter, at most one PV unless ``several_pv`` (a house of LAN
    devices only splits its PV limit over them; beside a Modbus inverter one is added to its PV)."""
    seen: set[str] = set(RESERVED_IDS)
    addresses: set[tuple[str, int | None]] = set()
    for i, d in enumerate(devices):
        if d.id in seen:
            raise ValueError(f"lan_devices[{i}].id {d.id!r} is used twice" if d.id not in RESERVED_IDS else
                             f"lan_devices[{i}].id {d.id!r} is the house's own ({', '.join(RESERVED_IDS)})")
        seen.add(d.id)
        if d.address in addresses:
            raise ValueError(f"lan_devices[{i}] ({d.id}): {d.host}:{d.port or 'default port'} is configured twice")
        addresses.add(d.address)
    for role in ("grid_meter",) if several_pv else ("grid_meter", "pv"):
        ids = [d.id for d in devices if d.role == role]
        if len(ids) > 1:
            raise ValueError(f"lan_devices: at most one {role}, got {len(ids)} ({', '.join(ids)})"
                             + (": the house has one connection point" if role == "grid_meter" else ""))


def check_lan_house(kind: str, devices: list[LanDeviceConfig], device_keys: Iterable[str]) -> None:
    """ValueError naming the field if ``[[lan_devices]]`` cannot make a house on their own (``device.kind =
    "lan"``): the safety path needs the grid meter at the connection point (at most one: check_lan_devices);
    ``device_keys``, the ``[device]`` keys given, name no Modbus device.  Nothing to check for ``kind = "modbus"``."""
    if kind != "lan":
        return
    modbus = [f"device.{k}" for k in ("host", "port", "unit_id", "catalogue", "parts") if k in device_keys]
    if modbus:
        raise ValueError(f'device.kind = "lan" (a house of LAN devices only) has no Modbus device: remove '
                         f'{", ".join(modbus)} (its devices are the [[lan_devices]])')
    if not any(d.role == "grid_meter" for d in devices):
        meters = [m for m in lan_catalogue_ids() if "grid_meter" in load_lan_entry(m).device.roles]
        raise ValueError('lan_devices: a house of LAN devices only (device.kind = "lan") needs its grid meter: '
                         'add a [[lan_devices]] entry with role = "grid_meter" (the meter at the connection '
                         f'point: {", ".join(meters)}); the export cap and import limit are kept on it')


__all__ = ["LanDeviceConfig", "check_lan_devices", "check_lan_house"]
