"""SunSpec point encoding: models decoded from registers, engineering values encoded for writes.

Register layouts are not retyped here: decoding uses pysunspec2's
``sunspec2.device.Model`` built from the definitions it ships, and writes
look up offsets, types, access and scale factor names in the same
definitions.  Values are scaled (``raw x 10^SF``); a not-implemented point -
or one whose scale factor is not implemented or outside -10..10 - is
``None``, never a number.  Pure: no I/O.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import sunspec2.device as ss_device
import sunspec2.mdef as ss_mdef

from edge_agent.drivers.errors import ModelNotFound

PointValue = int | float | str | None
"""A decoded point: scaled number, text, or None when not implemented."""

# Raw ranges for writes; the SunSpec not-implemented marker is excluded so a
# command can never be read back as "not implemented".
_WRITE_INT_TYPES: dict[str, tuple[str, int, int]] = {
    # type: (struct code, min, max)
    "int16": ("h", -0x7FFF, 0x7FFF),
    "uint16": ("H", 0, 0xFFFE),
    "count": ("H", 0, 0xFFFE),
    "acc16": ("H", 1, 0xFFFF),
    "enum16": ("H", 0, 0xFFFE),
    "bitfield16": ("H", 0, 0xFFFE),
    "int32": ("i", -0x7FFFFFFF, 0x7FFFFFFF),
    "uint32": ("I", 0, 0xFFFFFFFE),
    "acc32": ("I", 1, 0xFFFFFFFF),
    "enum32": ("I", 0, 0xFFFFFFFE),
    "bitfield32": ("I", 0, 0xFFFFFFFE),
}


@dataclass(frozen=True)
class GroupValues:
    """Decoded points of one group instance; repeating sub-groups as tuples."""

    name: str
    points: Mapping[str, PointValue]
    groups: Mapping[str, tuple[GroupValues, ...]]

    def __getitem__(self, name: str) -> PointValue:
        return self.points[name]

    def __contains__(self, name: object) -> bool:
        return name in self.points

    def get(self, name: str, default: PointValue = None) -> PointValue:
        return self.points.get(name, default)

    def group(self, name: str, index: int = 0) -> GroupValues:
        """Instance ``index`` (0-based) of sub-group ``name``."""
        return self.groups[name][index]


@dataclass(frozen=True)
class ModelValues(GroupValues):
    """One model as read: scaled points (None = not implemented) and its groups."""

    model_id: int = 0
    address: int = 0
    length: int = 0
    decode_errors: tuple[str, ...] = field(default=())
    """Problems pysunspec2 reported while decoding (e.g. L differs from the definition)."""
    bad_scale: tuple[str, ...] = field(default=())
    """Points read as None because their scale factor is outside SF_RANGE ("W (W_SF=-20)")."""


SF_RANGE = (-10, 10)
"""Scale factors SunSpec allows (sunssf): anything else is a bad register, never 10^-20."""


class _BadScaleFactor(ValueError):
    pass


def _scale(raw: int | float, sf: int) -> float:
    if sf >= 0:
        return float(raw * 10**sf)
    return round(raw * 10.0**sf, -sf)  # drop binary noise such as 230.10000000000002


def _point_value(point: Any, group: Any, model: Any) -> PointValue:
    raw = point.value  # pysunspec2 already maps not-implemented markers to None
    if raw is None:
        return None
    sf_ref = point.pdef.get(ss_mdef.SF)
    if sf_ref is None or not isinstance(raw, (int, float)):
        return raw if isinstance(raw, (int, float, str)) else None
    try:
        sf_value: Any = int(sf_ref)
    except (TypeError, ValueError):
        sf_point = group.points.get(sf_ref) or model.points.get(sf_ref)
        sf_value = None if sf_point is None else sf_point.value
    if sf_value is None:
        # A value without its scale factor is a number of unknown magnitude:
        # report it as not implemented rather than unscaled.
        return None
    if not SF_RANGE[0] <= int(sf_value) <= SF_RANGE[1]:
        raise _BadScaleFactor(f"{sf_ref}={int(sf_value)}")
    return _scale(raw, int(sf_value))


def _convert_group(group: Any, model: Any, invalid: list[str] | None = None, prefix: str = ""
                   ) -> tuple[dict[str, PointValue], dict[str, tuple[GroupValues, ...]]]:
    """``invalid`` collects the points whose scale factor is outside SF_RANGE (they read None)."""
    points: dict[str, PointValue] = {}
    for name, point in group.points.items():
        if point.pdef.get(ss_mdef.TYPE) == ss_mdef.TYPE_PAD:
            continue
        try:
            points[name] = _point_value(point, group, model)
        except _BadScaleFactor as exc:
            points[name] = None
            if invalid is not None:
                invalid.append(f"{prefix}{name} ({exc})")
    groups: dict[str, tuple[GroupValues, ...]] = {}
    for gname, sub in group.groups.items():
        instances = sub if isinstance(sub, list) else [sub]
        converted = []
        for i, inst in enumerate(instances):
            p, g = _convert_group(inst, model, invalid, f"{prefix}{gname}[{i}].")
            converted.append(GroupValues(gname, MappingProxyType(p), MappingProxyType(g)))
        groups[gname] = tuple(converted)
    return points, groups


def decode_model(model_id: int, address: int, registers: Sequence[int]) -> ModelValues:
    """Decode a model's registers (from its ID register, ``2 + L`` of them) with pysunspec2."""
    if len(registers) < 2:
        raise ValueError("a model has at least its ID and L registers")
    try:
        ss_device.get_model_def(model_id)
    except ss_mdef.ModelDefinitionError as exc:
        raise ModelNotFound(f"no SunSpec definition for model {model_id}") from exc
    length = int(registers[1])
    data = b"".join(int(r).to_bytes(2, "big") for r in registers)
    model = ss_device.Model(model_id=model_id, model_addr=address, model_len=length, data=data)
    invalid: list[str] = []
    points, groups = _convert_group(model, model, invalid)
    errors = tuple(e for e in model.error_info.splitlines() if e.strip())
    return ModelValues(
        name=str(model.gname), points=MappingProxyType(points), groups=MappingProxyType(groups),
        model_id=model_id, address=address, length=length, decode_errors=errors, bad_scale=tuple(invalid),
    )


def top_level_points(model_id: int) -> dict[str, tuple[int, dict[str, Any]]]:
    """Top-level point definitions of a model by name: (offset from ID, definition)."""
    mdef = ss_device.get_model_def(model_id)
    out: dict[str, tuple[int, dict[str, Any]]] = {}
    offset = 0
    for pdef in mdef[ss_mdef.GROUP].get(ss_mdef.POINTS, []):
        out[str(pdef[ss_mdef.NAME])] = (offset, pdef)
        offset += int(pdef.get(ss_mdef.SIZE, 1))
    return out


def encode_write(model_id: int, name: str, value: float | int, pdef: Mapping[str, Any],
                  current: ModelValues) -> list[int]:
    """Registers for writing ``value`` (engineering units) to a point; ValueError if impossible."""
    ptype = str(pdef[ss_mdef.TYPE])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"model {model_id} {name}: need a finite number, got {value!r}")
    sf_ref = pdef.get(ss_mdef.SF)
    sf = 0
    if sf_ref is not None:
        try:
            sf = int(sf_ref)
        except (TypeError, ValueError):
            current_sf = current.points.get(str(sf_ref))
            if not isinstance(current_sf, int):
                raise ValueError(f"model {model_id} {name}: scale factor {sf_ref} is not implemented "
                                 "by the device, cannot encode a value") from None
            sf = current_sf
    if not SF_RANGE[0] <= sf <= SF_RANGE[1]:
        raise ValueError(f"model {model_id} {name}: scale factor {sf} outside {SF_RANGE[0]}..{SF_RANGE[1]}, "
                         "cannot encode a value")
    if ptype == "float32":
        raw_f = value / 10.0**sf
        try:
            data = struct.pack(">f", raw_f)
        except OverflowError as exc:
            raise ValueError(f"model {model_id} {name}={value}: out of float32 range") from exc
        return [int.from_bytes(data[0:2], "big"), int.from_bytes(data[2:4], "big")]
    if ptype not in _WRITE_INT_TYPES:
        raise ValueError(f"model {model_id} {name}: writing {ptype} points is not supported")
    code, lo, hi = _WRITE_INT_TYPES[ptype]
    raw = int(round(value / 10**sf)) if sf >= 0 else int(round(value * 10**-sf))
    if not lo <= raw <= hi:
        raise ValueError(f"model {model_id} {name}={value}: raw {raw} (SF {sf}) outside "
                         f"[{lo}, {hi}] of {ptype}")
    data = struct.pack(">" + code, raw)
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


__all__ = ["SF_RANGE", "GroupValues", "ModelValues", "PointValue", "decode_model", "encode_write",
           "top_level_points"]
