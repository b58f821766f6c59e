"""Vendor register maps as data (edge_agent/catalogue/*.toml): the entries and their point encoding.

One TOML file per device model, validated with pydantic when loaded
(:func:`load_entry`); the device that reads and commands one is
:class:`edge_agent.drivers.catalogue_device.CatalogueDevice`.  Schema, per file:

* ``[device]``: ``id``, ``name``, ``source`` (public URL of the map),
  ``unit_id`` (default Modbus unit), ``word_order`` (``"big"``: high word
  first, ``"little"``: low word first, for 32-bit values),
  ``min_poll_interval_s``.
* ``[points.<name>]``: ``address`` (0-based protocol address), ``function``
  (``"holding"`` FC 3 / ``"input"`` FC 4), ``type`` (int16, uint16, int32,
  uint32), ``scale`` (engineering = raw x scale x sign), ``sign`` (+1/-1:
  turns the device's sign into docs/architecture.md's, power positive when consuming),
  ``unit``, ``unit_id`` (override), ``word_order`` (override), ``writable``,
  ``min``/``max`` (engineering range; writes are clamped into it, as
  Huawei's range-checked registers require), ``allowed`` (enumerated raw
  values), ``role`` (what the value means to the house: soc_pct,
  battery_power_w, pv_power_w, grid_power_w, inverter_power_w,
  max_charge_w, max_discharge_w; several points with one power role are
  summed, e.g. per-phase grid power).
* ``[control]``: write sequences ``charge``, ``discharge``, ``idle``,
  ``release``: lists of ``{point, value}`` where value is a number or
  ``"power_w"`` / ``"abs_power_w"`` (the commanded battery power, W,
  charge positive, or its magnitude); ``revert_s``: the device drops the
  command after this many seconds, so it must be refreshed at about half.

Adding a device model means adding a file.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_agent.drivers.errors import DeviceError

_M = TypeVar("_M", bound=BaseModel)

RegisterType = Literal["int16", "uint16", "int32", "uint32"]
WordOrder = Literal["big", "little"]
Role = Literal["soc_pct", "battery_power_w", "pv_power_w", "grid_power_w", "inverter_power_w",
               "max_charge_w", "max_discharge_w"]
SUMMED_ROLES: frozenset[str] = frozenset({"battery_power_w", "pv_power_w", "grid_power_w", "inverter_power_w"})
_SIZE = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2}
_RANGE = {"int16": (-(1 << 15), (1 << 15) - 1), "uint16": (0, (1 << 16) - 1),
          "int32": (-(1 << 31), (1 << 31) - 1), "uint32": (0, (1 << 32) - 1)}


class CatalogueError(DeviceError):
    """Configuration: a catalogue file is missing or invalid, or the model is unknown."""


class PointDef(BaseModel):
    """One register point of a vendor map (see module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    address: int = Field(ge=0, le=0xFFFF)
    function: Literal["holding", "input"] = "holding"
    type: RegisterType
    scale: float = 1.0
    sign: Literal[1, -1] = 1
    unit: str = ""
    unit_id: int | None = Field(default=None, ge=0, le=255)
    word_order: WordOrder | None = None
    writable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[int, ...] | None = None
    role: Role | None = None

    @model_validator(mode="after")
    def _check(self) -> PointDef:
        if self.scale == 0 or not math.isfinite(self.scale):
            raise ValueError("scale must be finite and non-zero")
        if self.writable and self.function == "input":
            raise ValueError("input registers (FC 4) cannot be written")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        lo, hi = _RANGE[self.type]
        for v in self.allowed or ():
            if not lo <= v <= hi:
                raise ValueError(f"allowed value {v} does not fit {self.type}")
        return self

    @property
    def size(self) -> int:
        return _SIZE[self.type]


class ControlStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    point: str
    value: float | Literal["power_w", "abs_power_w"]


class ControlDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    revert_s: float | None = Field(default=None, gt=0)
    charge: tuple[ControlStep, ...]
    discharge: tuple[ControlStep, ...]
    idle: tuple[ControlStep, ...]
    release: tuple[ControlStep, ...]


class DeviceDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str
    source: str = Field(min_length=8)
    unit_id: int = Field(default=1, ge=0, le=255)
    word_order: WordOrder = "big"
    min_poll_interval_s: float = Field(default=1.0, ge=0)


class CatalogueEntry(BaseModel):
    """A validated vendor map: device, points by name, battery control sequences."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    device: DeviceDef
    points: dict[str, PointDef]
    control: ControlDef | None = None

    @model_validator(mode="after")
    def _check(self) -> CatalogueEntry:
        spans: dict[tuple[int, str], list[tuple[int, int, str]]] = {}
        for name, p in self.points.items():
            spans.setdefault((self.unit_of(name), p.function), []).append((p.address, p.address + p.size, name))
        for key, items in spans.items():
            items.sort()
            for (_a0, e0, n0), (a1, _e1, n1) in zip(items, items[1:]):
                if a1 < e0:
                    raise ValueError(f"points {n0!r} and {n1!r} overlap at address {a1} (unit {key[0]})")
        if self.control is not None:
            for kind in ("charge", "discharge", "idle", "release"):
                for step in getattr(self.control, kind):
                    target = self.points.get(step.point)
                    if target is None:
                        raise ValueError(f"control.{kind}: unknown point {step.point!r}")
                    if not target.writable:
                        raise ValueError(f"control.{kind}: point {step.point!r} is not writable")
        return self

    def unit_of(self, name: str) -> int:
        u = self.points[name].unit_id
        return self.device.unit_id if u is None else u

    def word_order_of(self, name: str) -> WordOrder:
        return self.points[name].word_order or self.device.word_order


def encode(point: PointDef, value: float, word_order: WordOrder) -> list[int]:
    """Engineering value -> raw registers (value / scale / sign, rounded, range-checked)."""
    raw = round(value / point.scale / point.sign)
    lo, hi = _RANGE[point.type]
    if not lo <= raw <= hi:
        raise ValueError(f"{value} does not fit {point.type} with scale {point.scale}")
    if point.size == 1:
        return [raw & 0xFFFF]
    u = raw & 0xFFFFFFFF
    hi_w, lo_w = u >> 16, u & 0xFFFF
    return [hi_w, lo_w] if word_order == "big" else [lo_w, hi_w]


def decode_raw(point: PointDef, regs: Sequence[int], word_order: WordOrder) -> int:
    """Raw registers -> signed/unsigned integer of the point's type."""
    if point.size == 1:
        u = regs[0]
    else:
        hi_w, lo_w = (regs[0], regs[1]) if word_order == "big" else (regs[1], regs[0])
        u = (hi_w << 16) | lo_w
    bits = 16 * point.size
    if point.type.startswith("int") and u >= 1 << (bits - 1):
        u -= 1 << bits
    return u


def decode(point: PointDef, regs: Sequence[int], word_order: WordOrder) -> float:
    """Raw registers -> engineering value (raw x scale x sign)."""
    return decode_raw(point, regs, word_order) * point.scale * point.sign + 0.0


CATALOGUE_PACKAGE = "edge_agent.catalogue"


def entry_ids(package: str) -> list[str]:
    """Ids of the entries shipped in ``package`` (file stems)."""
    files = resources.files(package)
    return sorted(f.name[:-5] for f in files.iterdir() if f.name.endswith(".toml"))


def catalogue_ids() -> list[str]:
    """Ids of the entries shipped in edge_agent/catalogue (file stems)."""
    return entry_ids(CATALOGUE_PACKAGE)


def load_toml_entry(source: str | Path, package: str, model: type[_M], what: str, unknown: str) -> _M:
    """Load and validate a ``model`` by shipped id (in ``package``) or by path; CatalogueError with
    the field and reason.  ``what``: "catalogue", "LAN catalogue"; ``unknown``: how an id not
    shipped is called ("catalogue model")."""
    if isinstance(source, Path) or source.endswith(".toml"):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogueError(f"cannot read {what} file {path}: {exc}") from exc
        where = str(path)
    else:
        ids = entry_ids(package)
        if source not in ids:
            raise CatalogueError(f"unknown {unknown} {source!r}; known: {', '.join(ids)}")
        text = resources.files(package).joinpath(f"{source}.toml").read_text(encoding="utf-8")
        where = source
    try:
        return model.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{where}: not valid TOML: {exc}") from exc
    except ValidationError as exc:
        raise CatalogueError(f"{where}: invalid {what} entry: {exc}") from exc


def load_entry(source: str | Path) -> CatalogueEntry:
    """Load and validate an entry by shipped id or by path.  CatalogueError with the field and reason."""
    return load_toml_entry(source, CATALOGUE_PACKAGE, CatalogueEntry, "catalogue", "catalogue model")


__all__ = [
    "CatalogueEntry", "CatalogueError", "ControlDef", "ControlStep", "DeviceDef", "PointDef", "catalogue_ids",
    "decode", "decode_raw", "encode", "load_entry",
]
