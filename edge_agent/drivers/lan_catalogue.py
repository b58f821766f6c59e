"""LAN device maps as data (edge_agent/catalogue/lan/*.toml): plugs, meters, micro-inverters over HTTP or TCP.

The Modbus catalogue's counterpart (edge_agent.drivers.catalogue) for devices that answer JSON
over HTTP (Shelly Gen2+ RPC, Tasmota) or push DSMR telegrams over TCP (P1).  One file per device
model, validated with pydantic when loaded (:func:`load_lan_entry`).  Schema, per file:

* ``[device]``: ``id``, ``name``, ``source`` (public URL of the vendor's API documentation),
  ``protocol`` (``shelly_rpc``, ``tasmota_http``, ``dsmr_p1``, ``http_json``: plain GETs of JSON
  documents), ``port`` (default TCP port), ``roles`` (what it can be in a house: ``grid_meter``,
  ``load``, ``pv``), ``match`` (scan: Shelly's ``app`` names from Shelly.GetDeviceInfo; empty = any
  device of the protocol), ``min_poll_interval_s``; for ``http_json``: ``scheme`` (``http`` or
  ``https``; https is not verified: the devices' certificates are self-signed), ``auth`` (``none``,
  ``basic`` (user ``admin``, the config's password), ``bearer`` (the config's token)), ``ok_path`` /
  ``ok_value`` (a field every answer must carry with that value, else DeviceRefused), ``probe``
  (the request ``scan --lan`` tries) and ``needs_serial`` (requests name the inverter: ``{serial}``).
* ``[points.<name>]``: ``request`` (Shelly: the RPC method; Tasmota: the command; P1: unused;
  http_json: the path and query, ``{serial}`` replaced by the configured serial),
  ``params`` (Shelly RPC params, e.g. ``{ id = 0 }``), ``path`` (dotted path into the JSON
  answer, or the dsmr-parser object name for P1; ``{serial}`` as in request), ``type`` (``number``,
  ``numtext``: a number or a decimal string, ``bool``, ``onoff``: Tasmota's "ON"/"OFF", ``enum``:
  a string mapped by ``values``), ``device_unit`` (P1: the unit the telegram must state, e.g. ``kW``;
  another is refused), ``scale`` (value = read x scale x sign), ``sign`` (+1/-1 into
  docs/architecture.md's sign: power positive when consuming or importing), ``unit``,
  ``min``/``max`` (plausible engineering range: outside it the reading is IMPLAUSIBLE),
  ``role`` (``grid_power_w``, ``load_power_w``, ``pv_power_w`` (production < 0), ``energy_in_wh``,
  ``energy_out_wh`` (a PV's yield), ``switch_on``, ``pv_limit_w`` / ``pv_limit_pct`` (the active-power
  limit in force, read back), ``pv_rated_w`` (what a % limit is of), ``limit_state`` (enum: 1 applied,
  0 pending, -1 failed); several points with one power or energy role are summed).
* ``[switch]`` (switchable plugs): ``request`` (Shelly: ``Switch.Set``; Tasmota: ``Power``),
  ``params`` (Shelly, besides ``on``); the state is read back from the ``switch_on`` point.
* ``[limit]`` (PV that takes an active-power limit): ``request`` (path and query; ``{value}`` the
  limit in whole W, ``{serial}``), ``method`` (GET, POST), ``form`` (POST form fields, templated
  alike), ``min_w``/``max_w`` (what the device accepts: a limit is clamped into it), ``apply_s``
  (how long the read-back may lag the command), ``settle_s`` (how long the output lags a setting
  that reads back at once: pending until then), ``tolerance_w``, ``ok_path``/``ok_value`` (the
  answer's success field).  The limit is read back from ``pv_limit_w`` or ``pv_limit_pct`` x
  ``pv_rated_w``.  A PV entry without it cannot be curtailed (docs/lan-devices.md).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_agent.drivers.catalogue import entry_ids, load_toml_entry

Protocol = Literal["shelly_rpc", "tasmota_http", "dsmr_p1", "http_json"]
HouseRole = Literal["grid_meter", "load", "pv"]
LanRole = Literal["grid_power_w", "load_power_w", "pv_power_w", "energy_in_wh", "energy_out_wh", "switch_on",
                  "pv_limit_w", "pv_limit_pct", "pv_rated_w", "limit_state"]
SUMMED_LAN_ROLES: frozenset[str] = frozenset({"grid_power_w", "load_power_w", "pv_power_w", "energy_in_wh",
                                              "energy_out_wh"})
POWER_ROLE: dict[str, str] = {"grid_meter": "grid_power_w", "load": "load_power_w", "pv": "pv_power_w"}
TEMPLATE_FIELDS = frozenset({"serial", "value"})
LAN_CATALOGUE_PACKAGE = "edge_agent.catalogue.lan"


class LanPoint(BaseModel):
    """One value of a LAN device's answer (see module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    request: str = ""
    params: dict[str, int | str] = Field(default_factory=dict)
    path: str = Field(min_length=1)
    type: Literal["number", "numtext", "bool", "onoff", "enum"] = "number"
    values: dict[str, float] = Field(default_factory=dict)
    scale: float = 1.0
    sign: Literal[1, -1] = 1
    unit: str = ""
    device_unit: str | None = None
    min: float | None = None
    max: float | None = None
    role: LanRole | None = None

    @model_validator(mode="after")
    def _check(self) -> LanPoint:
        if self.scale == 0 or not math.isfinite(self.scale):
            raise ValueError("scale must be finite and non-zero")
        for name in ("min", "max"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{name} must be finite")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        if (self.role == "switch_on") != (self.type in ("bool", "onoff")):
            raise ValueError("role switch_on goes with type bool or onoff, and only with it")
        if (self.type == "enum") != bool(self.values):
            raise ValueError("type enum needs values (text -> number), and only it has them")
        if any(not math.isfinite(v) for v in self.values.values()):
            raise ValueError("values must be finite")
        if (self.role == "limit_state") and self.type != "enum":
            raise ValueError("role limit_state goes with type enum")
        return self

    @property
    def key(self) -> tuple[str, tuple[tuple[str, int | str], ...]]:
        """The request this point is read from (points of one request share one call)."""
        return self.request, tuple(sorted(self.params.items()))


class LanSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    request: str = Field(min_length=1)
    params: dict[str, int | str] = Field(default_factory=dict)


class LanLimit(BaseModel):
    """How a PV device takes an active-power limit (see module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    request: str = Field(min_length=1)
    method: Literal["GET", "POST"] = "GET"
    form: dict[str, str] = Field(default_factory=dict)
    min_w: float = Field(ge=0)
    max_w: float = Field(gt=0, le=1e6)
    apply_s: float = Field(gt=0, le=600)
    settle_s: float = Field(default=0.0, ge=0, le=600)
    tolerance_w: float = Field(default=5.0, ge=0, le=1000)
    ok_path: str | None = None
    ok_value: str | None = None

    @model_validator(mode="after")
    def _check(self) -> LanLimit:
        if not (math.isfinite(self.min_w) and math.isfinite(self.max_w)) or self.min_w > self.max_w:
            raise ValueError(f"min_w {self.min_w} and max_w {self.max_w}: finite, min_w <= max_w")
        if "{value}" not in self.request + "".join(self.form.values()):
            raise ValueError("the request or a form field must carry {value}")
        if (self.ok_path is None) != (self.ok_value is None):
            raise ValueError("ok_path and ok_value go together")
        if self.settle_s > self.apply_s:
            raise ValueError(f"settle_s {self.settle_s} > apply_s {self.apply_s}")
        if self.form and self.method != "POST":
            raise ValueError("form fields need method POST")
        return self


class LanDeviceDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str
    source: str = Field(min_length=8)
    protocol: Protocol
    port: int = Field(ge=1, le=65535)
    roles: tuple[HouseRole, ...] = Field(min_length=1)
    match: tuple[str, ...] = ()
    min_poll_interval_s: float = Field(default=1.0, ge=0)
    scheme: Literal["http", "https"] = "http"
    auth: Literal["none", "basic", "bearer"] = "none"
    ok_path: str | None = None
    ok_value: str | None = None
    probe: str | None = None
    needs_serial: bool = False


class LanEntry(BaseModel):
    """A validated LAN device map: device, points by name, the switch if it has one."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    device: LanDeviceDef
    points: dict[str, LanPoint] = Field(min_length=1)
    switch: LanSwitch | None = None
    limit: LanLimit | None = None

    @model_validator(mode="after")
    def _check(self) -> LanEntry:  # one check per rule, in a row
        roles = {p.role for p in self.points.values()}
        if (self.switch is not None) != ("switch_on" in roles):
            raise ValueError("a [switch] needs a point with role switch_on to read its state back, and only it")
        for house_role in self.device.roles:
            if POWER_ROLE[house_role] not in roles:
                raise ValueError(f"device.roles has {house_role!r} but no point has role {POWER_ROLE[house_role]!r}")
        if self.limit is not None:
            if "pv" not in self.device.roles:
                raise ValueError("a [limit] is for a device that can be pv")
            if "pv_limit_w" not in roles and not {"pv_limit_pct", "pv_rated_w"} <= roles:
                raise ValueError("a [limit] needs a point with role pv_limit_w, or pv_limit_pct and pv_rated_w, "
                                 "to read it back")
        d = self.device
        if d.protocol != "http_json" and (d.auth != "none" or d.scheme != "http" or d.ok_path or d.probe
                                          or d.needs_serial or self.limit is not None):
            raise ValueError("scheme, auth, ok_path, probe, needs_serial and [limit] are for protocol http_json")
        if (d.ok_path is None) != (d.ok_value is None):
            raise ValueError("device.ok_path and device.ok_value go together")
        if self.device.protocol != "dsmr_p1":
            for name, p in self.points.items():
                if not p.request:
                    raise ValueError(f"points.{name}: request is required for {self.device.protocol}")
        return self

    def role_points(self, role: str) -> list[str]:
        return [n for n, p in self.points.items() if p.role == role]


def lan_catalogue_ids() -> list[str]:
    """Ids of the LAN entries shipped in edge_agent/catalogue/lan (file stems)."""
    return entry_ids(LAN_CATALOGUE_PACKAGE)


def load_lan_entry(source: str | Path) -> LanEntry:
    """Load and validate an entry by shipped id or by path.  CatalogueError with the field and reason."""
    return load_toml_entry(source, LAN_CATALOGUE_PACKAGE, LanEntry, "LAN catalogue", "LAN device model")


def fill(template: str, **fields: object) -> str:
    """``template`` with ``{serial}`` and ``{value}`` replaced (the only fields an entry may use)."""
    out = template
    for name in TEMPLATE_FIELDS:
        if f"{{{name}}}" in out:
            if name not in fields:
                raise ValueError(f"{template!r} needs {name}")
            out = out.replace(f"{{{name}}}", str(fields[name]))
    return out


__all__ = ["LAN_CATALOGUE_PACKAGE", "POWER_ROLE", "SUMMED_LAN_ROLES", "HouseRole", "LanDeviceDef", "LanEntry",
           "LanLimit", "LanPoint", "LanRole", "LanSwitch", "Protocol", "fill", "lan_catalogue_ids", "load_lan_entry"]
