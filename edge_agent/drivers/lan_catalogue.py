"""LAN device maps as data (edge_agent/catalogue/lan/*.toml): smart plugs and meters over HTTP or TCP.

The Modbus catalogue's counterpart (edge_agent.drivers.catalogue) for devices that answer JSON
over HTTP (Shelly Gen2+ RPC, Tasmota) or push DSMR telegrams over TCP (P1).  One file per device
model, validated with pydantic when loaded (:func:`load_lan_entry`).  Schema, per file:

* ``[device]``: ``id``, ``name``, ``source`` (public URL of the vendor's API documentation),
  ``protocol`` (``shelly_rpc``, ``tasmota_http``, ``dsmr_p1``), ``port`` (default TCP port),
  ``roles`` (what it can be in a house: ``grid_meter``, ``load``), ``match`` (scan: Shelly's
  ``app`` names from Shelly.GetDeviceInfo; empty = any device of the protocol),
  ``min_poll_interval_s``.
* ``[points.<name>]``: ``request`` (Shelly: the RPC method; Tasmota: the command; P1: unused),
  ``params`` (Shelly RPC params, e.g. ``{ id = 0 }``), ``path`` (dotted path into the JSON
  answer, or the dsmr-parser object name for P1), ``type`` (``number``, ``bool``, ``onoff``:
  Tasmota's "ON"/"OFF"), ``device_unit`` (P1: the unit the telegram must state, e.g. ``kW``;
  another is refused), ``scale`` (value = read x scale x sign), ``sign`` (+1/-1 into
  docs/architecture.md's sign: power positive when consuming or importing), ``unit``,
  ``min``/``max`` (plausible engineering range: outside it the reading is IMPLAUSIBLE),
  ``role`` (``grid_power_w``, ``load_power_w``, ``energy_in_wh``, ``energy_out_wh``,
  ``switch_on``; several points with one power or energy role are summed).
* ``[switch]`` (switchable plugs): ``request`` (Shelly: ``Switch.Set``; Tasmota: ``Power``),
  ``params`` (Shelly, besides ``on``); the state is read back from the ``switch_on`` point.
"""

from __future__ import annotations

import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_agent.drivers.catalogue import CatalogueError

Protocol = Literal["shelly_rpc", "tasmota_http", "dsmr_p1"]
HouseRole = Literal["grid_meter", "load"]
LanRole = Literal["grid_power_w", "load_power_w", "energy_in_wh", "energy_out_wh", "switch_on"]
SUMMED_LAN_ROLES: frozenset[str] = frozenset({"grid_power_w", "load_power_w", "energy_in_wh", "energy_out_wh"})
LAN_CATALOGUE_PACKAGE = "edge_agent.catalogue.lan"


class LanPoint(BaseModel):
    """One value of a LAN device's answer (see module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    request: str = ""
    params: dict[str, int | str] = Field(default_factory=dict)
    path: str = Field(min_length=1)
    type: Literal["number", "bool", "onoff"] = "number"
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
        if (self.role == "switch_on") != (self.type != "number"):
            raise ValueError("role switch_on goes with type bool or onoff, and only with it")
        return self

    @property
    def key(self) -> tuple[str, tuple[tuple[str, int | str], ...]]:
        """The request this point is read from (points of one request share one call)."""
        return self.request, tuple(sorted(self.params.items()))


class LanSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    request: str = Field(min_length=1)
    params: dict[str, int | str] = Field(default_factory=dict)


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


class LanEntry(BaseModel):
    """A validated LAN device map: device, points by name, the switch if it has one."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    device: LanDeviceDef
    points: dict[str, LanPoint] = Field(min_length=1)
    switch: LanSwitch | None = None

    @model_validator(mode="after")
    def _check(self) -> LanEntry:
        roles = {p.role for p in self.points.values()}
        if (self.switch is not None) != ("switch_on" in roles):
            raise ValueError("a [switch] needs a point with role switch_on to read its state back, and only it")
        needed = {"grid_meter": "grid_power_w", "load": "load_power_w"}
        for house_role in self.device.roles:
            if needed[house_role] not in roles:
                raise ValueError(f"device.roles has {house_role!r} but no point has role {needed[house_role]!r}")
        if self.device.protocol != "dsmr_p1":
            for name, p in self.points.items():
                if not p.request:
                    raise ValueError(f"points.{name}: request is required for {self.device.protocol}")
        return self

    def role_points(self, role: str) -> list[str]:
        return [n for n, p in self.points.items() if p.role == role]


def lan_catalogue_ids() -> list[str]:
    """Ids of the LAN entries shipped in edge_agent/catalogue/lan (file stems)."""
    files = resources.files(LAN_CATALOGUE_PACKAGE)
    return sorted(f.name[:-5] for f in files.iterdir() if f.name.endswith(".toml"))


def load_lan_entry(source: str | Path) -> LanEntry:
    """Load and validate an entry by shipped id or by path.  CatalogueError with the field and reason."""
    if isinstance(source, Path) or source.endswith(".toml"):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogueError(f"cannot read LAN catalogue file {path}: {exc}") from exc
        where = str(path)
    else:
        if source not in lan_catalogue_ids():
            raise CatalogueError(f"unknown LAN device model {source!r}; known: {', '.join(lan_catalogue_ids())}")
        text = resources.files(LAN_CATALOGUE_PACKAGE).joinpath(f"{source}.toml").read_text(encoding="utf-8")
        where = source
    try:
        return LanEntry.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{where}: not valid TOML: {exc}") from exc
    except ValidationError as exc:
        raise CatalogueError(f"{where}: invalid LAN catalogue entry: {exc}") from exc


__all__ = ["LAN_CATALOGUE_PACKAGE", "SUMMED_LAN_ROLES", "HouseRole", "LanDeviceDef", "LanEntry", "LanPoint",
           "LanRole", "LanSwitch", "Protocol", "lan_catalogue_ids", "load_lan_entry"]
