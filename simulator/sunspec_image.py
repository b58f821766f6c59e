"""SunSpec register images built from the model definitions that pysunspec2 ships.

An image is the block of holding registers a SunSpec device serves::

    base      "SunS" (0x5375 0x6E53)
    base + 2  model [ID][L][L registers]
    ...       next model at previous address + 2 + L
    end       0xFFFF 0x0000

Register layouts are never retyped here: every offset, size, type and scale
factor reference comes from ``sunspec2.device.get_model_def(model_id)``.

Values come in two flavours:

* *raw*: what the registers hold as a number (an int16 is -32767..32767, a
  string is text); ``None`` means "not implemented" and is written as the
  SunSpec marker of the type (int16 0x8000, uint16 0xFFFF, int32 0x80000000,
  uint32 0xFFFFFFFF, acc 0, float32 NaN, sunssf 0x8000, strings all NUL).
* *engineering*: ``raw * 10**SF`` with ``SF`` read from the model's scale
  factor point (or the constant in the definition).

Out-of-range values raise :class:`ValueError`: nothing is clamped, because a
silently clamped register is a wrong register.  Power signs are whatever the
SunSpec model says (e.g. model 103 ``W`` is production positive); the image
knows no physics.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sunspec2.device as ss_device

SUNS_MARKER: tuple[int, int] = (0x5375, 0x6E53)
"""The two registers "SunS" that start every SunSpec register map."""
END_MODEL_ID = 0xFFFF
"""Model ID that ends the chain (followed by L = 0)."""
DEFAULT_BASE_ADDRESS = 40000

RawValue = int | float | str | bytes
"""A point's register content as a Python value (before scaling)."""
Value = int | float | str | bytes | None
"""A decoded value; ``None`` means the point is not implemented."""

# Not-implemented markers and valid raw ranges by SunSpec type.  The marker is
# excluded from the valid range so that a real value can never be mistaken
# for "not implemented" (except acc = 0, which the SunSpec spec defines as
# the marker although a fresh counter may really be 0).
_INT_TYPES: dict[str, tuple[int, str, int, int, int]] = {
    # type: (registers, struct code, marker, min valid, max valid)
    "int16": (1, "h", -0x8000, -0x7FFF, 0x7FFF),
    "uint16": (1, "H", 0xFFFF, 0, 0xFFFE),
    "count": (1, "H", 0xFFFF, 0, 0xFFFE),
    "acc16": (1, "H", 0, 0, 0xFFFF),
    "enum16": (1, "H", 0xFFFF, 0, 0xFFFE),
    "bitfield16": (1, "H", 0xFFFF, 0, 0xFFFE),
    "sunssf": (1, "h", -0x8000, -10, 10),
    "int32": (2, "i", -0x80000000, -0x7FFFFFFF, 0x7FFFFFFF),
    "uint32": (2, "I", 0xFFFFFFFF, 0, 0xFFFFFFFE),
    "acc32": (2, "I", 0, 0, 0xFFFFFFFF),
    "enum32": (2, "I", 0xFFFFFFFF, 0, 0xFFFFFFFE),
    "bitfield32": (2, "I", 0xFFFFFFFF, 0, 0xFFFFFFFE),
    "ipaddr": (2, "I", 0, 0, 0xFFFFFFFF),
    "int64": (4, "q", -0x8000000000000000, -0x7FFFFFFFFFFFFFFF, 0x7FFFFFFFFFFFFFFF),
    "uint64": (4, "Q", 0xFFFFFFFFFFFFFFFF, 0, 0xFFFFFFFFFFFFFFFE),
    "acc64": (4, "Q", 0, 0, 0xFFFFFFFFFFFFFFFF),
}
_FLOAT_TYPES: dict[str, tuple[int, str, bytes]] = {
    # type: (registers, struct code, NaN marker bytes)
    "float32": (2, "f", struct.pack(">I", 0x7FC00000)),
    "float64": (4, "d", struct.pack(">Q", 0x7FF8000000000000)),
}
_BYTES_TYPES = {"string", "ipv6addr", "eui48"}
PAD_VALUE = 0x8000
"""Content of ``pad`` registers (SunSpec: pad = 0x8000)."""

SUPPORTED_TYPES = frozenset(_INT_TYPES) | frozenset(_FLOAT_TYPES) | _BYTES_TYPES | {"pad"}


def type_size(point_type: str, size: int | None = None) -> int:
    """Registers taken by a point of ``point_type`` (strings need ``size``)."""
    if point_type in _INT_TYPES:
        return _INT_TYPES[point_type][0]
    if point_type in _FLOAT_TYPES:
        return _FLOAT_TYPES[point_type][0]
    if point_type == "pad":
        return 1
    if point_type == "ipv6addr":
        return 8
    if point_type == "eui48":
        return 4
    if point_type == "string":
        if size is None:
            raise ValueError("string points need a size")
        return size
    raise ValueError(f"unknown SunSpec type {point_type!r}")


def raw_range(point_type: str) -> tuple[int, int]:
    """Inclusive range of valid raw integers (marker excluded) for an integer type."""
    if point_type not in _INT_TYPES:
        raise ValueError(f"{point_type!r} is not an integer SunSpec type")
    _, _, _, lo, hi = _INT_TYPES[point_type]
    return lo, hi


def _bytes_to_regs(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def _regs_to_bytes(registers: Sequence[int]) -> bytes:
    return b"".join(int(r).to_bytes(2, "big") for r in registers)


def encode_raw(point_type: str, raw: RawValue | None, size: int | None = None) -> list[int]:
    """Registers (big-endian, high word first) for a raw value; ``None`` -> marker.

    Raises ValueError if ``raw`` is out of the type's range or collides with
    the not-implemented marker.
    """
    n = type_size(point_type, size)
    if point_type == "pad":
        if raw is not None:
            raise ValueError("pad registers carry no value")
        return [PAD_VALUE]
    if point_type in _INT_TYPES:
        _, code, marker, lo, hi = _INT_TYPES[point_type]
        if raw is None:
            return _bytes_to_regs(struct.pack(">" + code, marker))
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"{point_type} needs an int, got {raw!r}")
        if not lo <= raw <= hi:
            raise ValueError(f"{raw} out of range for {point_type} [{lo}, {hi}]")
        return _bytes_to_regs(struct.pack(">" + code, raw))
    if point_type in _FLOAT_TYPES:
        _, code, nan_bytes = _FLOAT_TYPES[point_type]
        if raw is None:
            return _bytes_to_regs(nan_bytes)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            raise ValueError(f"{point_type} needs a finite number, got {raw!r} (None = not implemented)")
        try:
            return _bytes_to_regs(struct.pack(">" + code, float(raw)))
        except OverflowError as exc:
            raise ValueError(f"{raw} out of range for {point_type}") from exc
    # Byte-like types: strings, IPv6 and EUI-48 addresses.
    if raw is None:
        return [0] * n
    if point_type == "string":
        if not isinstance(raw, str):
            raise ValueError(f"string needs a str, got {raw!r}")
        data = raw.encode("utf-8")
        if not data or data[0] == 0:
            raise ValueError("empty string: use None for not implemented")
    else:
        if not isinstance(raw, (bytes, bytearray)):
            raise ValueError(f"{point_type} needs bytes, got {raw!r}")
        data = bytes(raw)
    if len(data) > 2 * n:
        raise ValueError(f"{raw!r} needs {len(data)} bytes, point has {2 * n}")
    return _bytes_to_regs(data.ljust(2 * n, b"\0"))


def decode_raw(point_type: str, registers: Sequence[int]) -> Value:
    """Raw value held by ``registers``; the not-implemented marker gives ``None``."""
    data = _regs_to_bytes(registers)
    if point_type == "pad":
        return None
    if point_type in _INT_TYPES:
        n, code, marker, _, _ = _INT_TYPES[point_type]
        value = int(struct.unpack(">" + code, data[: 2 * n])[0])
        return None if value == marker else value
    if point_type in _FLOAT_TYPES:
        n, code, _ = _FLOAT_TYPES[point_type]
        fvalue = float(struct.unpack(">" + code, data[: 2 * n])[0])
        return None if math.isnan(fvalue) else fvalue
    if point_type == "string":
        if not data or data[0] == 0:
            return None
        return data.rstrip(b"\0").decode("utf-8", errors="replace")
    if point_type in _BYTES_TYPES:
        return None if not any(data) else data
    raise ValueError(f"unknown SunSpec type {point_type!r}")


def scale(raw: int | float, sf: int) -> float:
    """Engineering value of ``raw`` with scale factor ``sf`` (value = raw x 10^sf)."""
    if sf >= 0:
        return float(raw * 10**sf)
    # round() removes binary noise such as 0.1 * 2301 = 230.10000000000002.
    return round(raw * 10.0**sf, -sf)


def unscale(value: float, sf: int) -> int:
    """Raw integer for an engineering value (raw = round(value / 10^sf))."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"need a finite number, got {value!r}")
    if sf >= 0:
        return int(round(value / 10**sf))
    return int(round(value * 10**-sf))


@dataclass(frozen=True)
class ModelSpec:
    """One model to place in an image.

    ``repeat`` gives the instance count of repeating groups whose count the
    definition leaves open (count 0 or a count point), by group name, e.g.
    ``ModelSpec(160, repeat={"module": 2})``.  ``length`` overrides L: a
    shorter L drops the trailing points that no longer fit (model 1 with
    L=65 loses its Pad), a longer L appends pad registers.
    """

    model_id: int
    repeat: Mapping[str, int] = field(default_factory=dict)
    length: int | None = None


@dataclass(frozen=True)
class PointLocation:
    """Where a point lives: absolute Modbus address (0-based protocol address)."""

    model_id: int
    name: str
    group: str | None
    """Dotted group path below the model (None for top-level points)."""
    indices: tuple[int, ...]
    """0-based instance index for each repeating group on the path."""
    address: int
    offset: int
    """Registers from the model's ID register (ID = 0, L = 1)."""
    size: int
    type: str
    sf: str | int | None
    """Scale factor: the name of a sunssf point, a constant, or None."""
    access: str
    """"R" or "RW" as the definition says."""
    units: str | None

    @property
    def index(self) -> int | None:
        """Instance index in the innermost repeating group (None at top level)."""
        return self.indices[-1] if self.indices else None


@dataclass(frozen=True)
class ModelLayout:
    """A model placed in an image: ``address`` is its ID register."""

    model_id: int
    address: int
    length: int
    points: tuple[PointLocation, ...]

    @property
    def end(self) -> int:
        """First address after this model (where the next ID goes)."""
        return self.address + 2 + self.length


def _resolve_count(gdef: Mapping[str, Any], repeat: Mapping[str, int]) -> int:
    declared = gdef.get("count")
    name = str(gdef["name"])
    if declared is None:
        return 1  # a plain (non-repeating) group
    try:
        fixed = int(declared)
    except (TypeError, ValueError):
        fixed = 0  # count taken from a point: the configuration decides
    if fixed > 0:
        if name in repeat and repeat[name] != fixed:
            raise ValueError(f"group {name!r} has a fixed count {fixed}, not {repeat[name]}")
        return fixed
    count = repeat.get(name, 1)
    if count < 0:
        raise ValueError(f"group {name!r}: count must be >= 0, got {count}")
    return count


def layout_model(spec: ModelSpec, address: int) -> tuple[ModelLayout, dict[tuple[str | None, tuple[int, ...], str], int]]:
    """Lay out one model at ``address``; also return the count points to fill.

    The second value maps (group path, indices, point name) of count points to
    the number of instances they must announce.
    """
    mdef = ss_device.get_model_def(spec.model_id)
    points: list[PointLocation] = []
    counts: dict[tuple[str | None, tuple[int, ...], str], int] = {}

    def walk(gdef: Mapping[str, Any], offset: int, path: str | None, indices: tuple[int, ...]) -> int:
        own_counts: list[tuple[Mapping[str, Any], int]] = []
        for pdef in gdef.get("points", []):
            ptype = str(pdef["type"])
            if ptype not in SUPPORTED_TYPES:
                raise ValueError(f"model {spec.model_id}: unsupported type {ptype!r}")
            size = type_size(ptype, int(pdef["size"]) if "size" in pdef else None)
            sf_ref = pdef.get("sf")
            sf: str | int | None
            try:
                sf = int(sf_ref) if sf_ref is not None else None
            except (TypeError, ValueError):
                sf = str(sf_ref)
            points.append(PointLocation(
                model_id=spec.model_id, name=str(pdef["name"]), group=path, indices=indices,
                address=address + offset, offset=offset, size=size, type=ptype, sf=sf,
                access=str(pdef.get("access", "R")), units=pdef.get("units"),
            ))
            offset += size
        for sub in gdef.get("groups", []):
            n = _resolve_count(sub, spec.repeat)
            sub_path = str(sub["name"]) if path is None else f"{path}.{sub['name']}"
            repeating = sub.get("count") is not None
            if repeating:
                own_counts.append((sub, n))
            for i in range(n):
                offset = walk(sub, offset, sub_path, indices + (i,) if repeating else indices)
        # Announce instance counts: a group counted by a named point gets that
        # point; a lone "count"-type point (model 160's N) counts the single
        # repeating child group.
        count_points = [p for p in gdef.get("points", []) if p["type"] == "count"]
        for sub, n in own_counts:
            declared = sub.get("count")
            if isinstance(declared, str) and not declared.lstrip("-").isdigit():
                # Like pysunspec2, a named count is a point at the model's top level.
                counts[(None, (), declared)] = n
            elif len(own_counts) == 1 and len(count_points) == 1:
                counts[(path, indices, str(count_points[0]["name"]))] = n
        return offset

    natural_end = walk(mdef["group"], 0, None, ())
    natural_len = natural_end - 2
    length = natural_len if spec.length is None else spec.length
    if length < 0 or length > 0xFFFE:
        raise ValueError(f"model {spec.model_id}: bad length {length}")
    if length < natural_len:
        # Vendors ship shorter models (model 1 with L=65): the points that do
        # not fit entirely are simply not there.
        points = [p for p in points if p.offset + p.size <= length + 2]
    return ModelLayout(spec.model_id, address, length, tuple(points)), counts


ScaledInput = int | float | str | bytes | None


class SunSpecImage:
    """A SunSpec register map in memory, addressable by (model, point).

    ``models`` lists model IDs or :class:`ModelSpec`; each model ID may appear
    once.  All points start as not implemented; ID, L, count points, the
    "SunS" marker and the end marker are filled in.
    """

    def __init__(self, models: Iterable[int | ModelSpec], base_address: int = DEFAULT_BASE_ADDRESS) -> None:
        specs = [m if isinstance(m, ModelSpec) else ModelSpec(int(m)) for m in models]
        ids = [s.model_id for s in specs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"each model may appear once, got {ids}")
        if not 0 <= base_address <= 0xFFFF:
            raise ValueError(f"base address {base_address} out of range")
        self.base_address = base_address
        layouts: list[ModelLayout] = []
        pending_counts: list[tuple[int, dict[tuple[str | None, tuple[int, ...], str], int]]] = []
        address = base_address + 2
        for spec in specs:
            layout, counts = layout_model(spec, address)
            layouts.append(layout)
            pending_counts.append((spec.model_id, counts))
            address = layout.end
        self._end_address = address + 2  # after the end marker
        if self._end_address > 0x10000:
            raise ValueError("image does not fit in the 16-bit address space")
        self.models: tuple[ModelLayout, ...] = tuple(layouts)
        self._by_id = {m.model_id: m for m in layouts}
        self._points: dict[tuple[int, str | None, tuple[int, ...], str], PointLocation] = {}
        self._by_address: dict[int, PointLocation] = {}
        self._regs: list[int] = [0] * (self._end_address - base_address)
        self._regs[0:2] = list(SUNS_MARKER)
        self._regs[-2:] = [END_MODEL_ID, 0]
        for layout in layouts:
            # Registers beyond the definition (L override longer) read as pad.
            for a in range(layout.address, layout.end):
                self._regs[a - base_address] = PAD_VALUE
            for p in layout.points:
                self._points[(p.model_id, p.group, p.indices, p.name)] = p
                for a in range(p.address, p.address + p.size):
                    self._by_address[a] = p
                self._store(p, encode_raw(p.type, None, p.size))
            self._store(self._points[(layout.model_id, None, (), "ID")], [layout.model_id])
            self._store(self._points[(layout.model_id, None, (), "L")], [layout.length])
        for model_id, counts in pending_counts:
            for (path, indices, name), n in counts.items():
                loc = self._points.get((model_id, path, indices, name))
                if loc is not None:
                    self.set_raw(model_id, name, n, indices or None, group=path)

    # -- layout --------------------------------------------------------------

    @property
    def end_address(self) -> int:
        """First address after the end marker."""
        return self._end_address

    def model(self, model_id: int) -> ModelLayout:
        """The layout of ``model_id`` (KeyError if the image has none)."""
        return self._by_id[model_id]

    def point(self, model_id: int, name: str, index: int | Sequence[int] | None = None,
              *, group: str | None = None) -> PointLocation:
        """Locate a point.  ``index`` (0-based) selects a repeating group instance.

        Without ``group``, a point with an ``index`` is looked up in the
        repeating groups of the model (it must be unambiguous); without an
        index, at the model's top level.
        """
        indices: tuple[int, ...] = () if index is None else (index,) if isinstance(index, int) else tuple(index)
        key: tuple[int, str | None, tuple[int, ...], str]
        if group is not None:
            key = (model_id, group, indices, name)
            if key not in self._points:
                raise KeyError(f"model {model_id} has no point {group}[{indices}].{name}")
            return self._points[key]
        if not indices:
            key = (model_id, None, (), name)
            if key not in self._points:
                raise KeyError(f"model {model_id} has no top-level point {name!r}")
            return self._points[key]
        found = [p for (mid, g, idx, n), p in self._points.items()
                 if mid == model_id and n == name and idx == indices and g is not None]
        if len(found) != 1:
            raise KeyError(f"model {model_id}: point {name!r} index {indices} matches {len(found)} points")
        return found[0]

    def point_at(self, address: int) -> PointLocation | None:
        """The point covering ``address`` (None for markers, ID/L are points)."""
        return self._by_address.get(address)

    def points(self, model_id: int) -> tuple[PointLocation, ...]:
        """All points of a model in address order."""
        return self._by_id[model_id].points

    # -- registers -----------------------------------------------------------

    @property
    def registers(self) -> list[int]:
        """A copy of the whole image, starting at ``base_address``."""
        return list(self._regs)

    def read(self, address: int, count: int) -> list[int]:
        """``count`` registers from ``address`` (IndexError outside the image)."""
        start = address - self.base_address
        if start < 0 or start + count > len(self._regs) or count < 0:
            raise IndexError(f"registers {address}..{address + count - 1} outside the image")
        return self._regs[start:start + count]

    def write(self, address: int, values: Sequence[int]) -> None:
        """Store raw registers (what a Modbus write does; no validation)."""
        start = address - self.base_address
        if start < 0 or start + len(values) > len(self._regs):
            raise IndexError(f"registers {address}..{address + len(values) - 1} outside the image")
        for i, v in enumerate(values):
            if not 0 <= int(v) <= 0xFFFF:
                raise ValueError(f"register value {v} is not 16-bit")
            self._regs[start + i] = int(v)

    def _store(self, loc: PointLocation, regs: Sequence[int]) -> None:
        start = loc.address - self.base_address
        self._regs[start:start + loc.size] = list(regs)

    # -- values --------------------------------------------------------------

    def set_raw(self, model_id: int, name: str, raw: RawValue | None,
                index: int | Sequence[int] | None = None, *, group: str | None = None) -> None:
        """Write a raw value (None writes the not-implemented marker)."""
        loc = self.point(model_id, name, index, group=group)
        if loc.name in ("ID", "L") and loc.group is None:
            raise ValueError("ID and L follow from the layout")
        self._store(loc, encode_raw(loc.type, raw, loc.size))

    def get_raw(self, model_id: int, name: str, index: int | Sequence[int] | None = None,
                *, group: str | None = None) -> Value:
        """The raw value (None if not implemented)."""
        loc = self.point(model_id, name, index, group=group)
        return decode_raw(loc.type, self.read(loc.address, loc.size))

    def clear(self, model_id: int, name: str, index: int | Sequence[int] | None = None,
              *, group: str | None = None) -> None:
        """Mark a point as not implemented."""
        self.set_raw(model_id, name, None, index, group=group)

    def scale_factor_of(self, loc: PointLocation) -> int | None:
        """Current scale factor of a point: None without one or if its SF point is not implemented.

        Like pysunspec2, an SF name is looked up in the point's own group
        instance first, then at the model's top level.
        """
        if loc.sf is None:
            return None
        if isinstance(loc.sf, int):
            return loc.sf
        sf_loc = self._points.get((loc.model_id, loc.group, loc.indices, loc.sf)) \
            or self._points.get((loc.model_id, None, (), loc.sf))
        if sf_loc is None:
            raise KeyError(f"model {loc.model_id}: scale factor {loc.sf!r} of {loc.name!r} missing")
        sf = decode_raw(sf_loc.type, self.read(sf_loc.address, sf_loc.size))
        return None if sf is None else int(sf)

    def set(self, model_id: int, name: str, value: ScaledInput,
            index: int | Sequence[int] | None = None, *, group: str | None = None) -> None:
        """Write an engineering value: raw = round(value / 10^SF).

        Set the scale factor point first.  None writes the not-implemented
        marker.  Raises ValueError if the SF point is not implemented or the
        raw value does not fit the type.
        """
        loc = self.point(model_id, name, index, group=group)
        if value is None or loc.sf is None:
            self.set_raw(model_id, name, value, index, group=group)
            return
        sf = self.scale_factor_of(loc)
        if sf is None:
            raise ValueError(f"model {model_id} {name}: scale factor {loc.sf!r} is not set")
        if isinstance(value, (str, bytes)):
            raise ValueError(f"model {model_id} {name}: needs a number, got {value!r}")
        raw: RawValue = unscale(value, sf) if loc.type not in _FLOAT_TYPES else value / 10.0**sf
        self._store(loc, encode_raw(loc.type, raw, loc.size))

    def get(self, model_id: int, name: str, index: int | Sequence[int] | None = None,
            *, group: str | None = None) -> Value:
        """The engineering value; None if the point or its scale factor is not implemented."""
        loc = self.point(model_id, name, index, group=group)
        raw = decode_raw(loc.type, self.read(loc.address, loc.size))
        if raw is None or loc.sf is None:
            return raw
        sf = self.scale_factor_of(loc)
        if sf is None or not isinstance(raw, (int, float)):
            return None
        return scale(raw, sf)
