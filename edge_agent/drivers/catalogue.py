"""Catalogue-driven Modbus driver: vendor register maps are data (edge_agent/catalogue/*.toml).

One TOML file per device model, validated with pydantic when loaded
(:func:`load_entry`).  Schema, per file:

* ``[device]``: ``id``, ``name``, ``source`` (public URL of the map),
  ``unit_id`` (default Modbus unit), ``word_order`` (``"big"``: high word
  first, ``"little"``: low word first, for 32-bit values),
  ``min_poll_interval_s``.
* ``[points.<name>]``: ``address`` (0-based protocol address), ``function``
  (``"holding"`` FC 3 / ``"input"`` FC 4), ``type`` (int16, uint16, int32,
  uint32), ``scale`` (engineering = raw x scale x sign), ``sign`` (+1/-1:
  turns the device's sign into DESIGN.md's, power positive when consuming),
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

import asyncio
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from edge_agent.drivers.errors import DeviceError, DeviceRejected, DeviceUnavailable
from edge_agent.drivers.write_guard import Verdict, WriteGuard

RegisterType = Literal["int16", "uint16", "int32", "uint32"]
WordOrder = Literal["big", "little"]
Role = Literal["soc_pct", "battery_power_w", "pv_power_w", "grid_power_w", "inverter_power_w",
               "max_charge_w", "max_discharge_w"]
SUMMED_ROLES: frozenset[str] = frozenset({"battery_power_w", "pv_power_w", "grid_power_w", "inverter_power_w"})
MAX_READ_REGISTERS = 125
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


def catalogue_ids() -> list[str]:
    """Ids of the entries shipped in edge_agent/catalogue (file stems)."""
    files = resources.files(CATALOGUE_PACKAGE)
    return sorted(f.name[:-5] for f in files.iterdir() if f.name.endswith(".toml"))


def load_entry(source: str | Path) -> CatalogueEntry:
    """Load and validate an entry by shipped id or by path.  CatalogueError with the field and reason."""
    if isinstance(source, Path) or source.endswith(".toml"):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogueError(f"cannot read catalogue file {path}: {exc}") from exc
        where = str(path)
    else:
        if source not in catalogue_ids():
            raise CatalogueError(f"unknown catalogue model {source!r}; known: {', '.join(catalogue_ids())}")
        text = resources.files(CATALOGUE_PACKAGE).joinpath(f"{source}.toml").read_text(encoding="utf-8")
        where = source
    try:
        return CatalogueEntry.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{where}: not valid TOML: {exc}") from exc
    except ValidationError as exc:
        raise CatalogueError(f"{where}: invalid catalogue entry: {exc}") from exc


@dataclass(frozen=True)
class Block:
    """A contiguous read: unit, function, start address, count and the points inside."""

    unit_id: int
    function: Literal["holding", "input"]
    address: int
    count: int
    points: tuple[str, ...]


def plan_blocks(entry: CatalogueEntry, names: Sequence[str] | None = None, max_gap: int = 0) -> list[Block]:
    """Group points into contiguous reads (gaps up to ``max_gap`` registers are read through)."""
    chosen = list(entry.points) if names is None else list(names)
    keyed = sorted(chosen, key=lambda n: (entry.unit_of(n), entry.points[n].function, entry.points[n].address))
    blocks: list[Block] = []
    cur: list[str] = []

    def flush() -> None:
        if cur:
            p0 = entry.points[cur[0]]
            end = max(entry.points[n].address + entry.points[n].size for n in cur)
            blocks.append(Block(entry.unit_of(cur[0]), p0.function, p0.address, end - p0.address, tuple(cur)))
            cur.clear()

    for n in keyed:
        p = entry.points[n]
        if cur:
            first = entry.points[cur[0]]
            end = max(entry.points[m].address + entry.points[m].size for m in cur)
            same = (entry.unit_of(n), p.function) == (entry.unit_of(cur[0]), first.function)
            if not same or p.address > end + max_gap or p.address + p.size - first.address > MAX_READ_REGISTERS:
                flush()
        cur.append(n)
    flush()
    return blocks


@dataclass(frozen=True)
class PointReading:
    """A read point: engineering ``value`` in ``unit`` (DESIGN.md sign), and its raw integer."""

    name: str
    value: float
    raw: int
    unit: str


class CatalogueDevice:
    """A device described by a :class:`CatalogueEntry`, reached over Modbus TCP.

    ``unit_id`` overrides the entry's default unit (points with their own
    unit keep it).  Requests are serialised (one at a time).  Errors:
    DeviceUnavailable (transient), DeviceRejected (exception response),
    ValueError for a write to a non-writable point or a value outside its
    enumeration (a caller bug).
    """

    def __init__(self, entry: CatalogueEntry, host: str, port: int = 502, unit_id: int | None = None,
                 timeout_s: float = 2.0, *, max_gap: int = 0, write_guard: WriteGuard | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.entry = entry
        self.host = host
        self.port = port
        self.unit_id = entry.device.unit_id if unit_id is None else unit_id
        self.timeout_s = timeout_s
        self._blocks = plan_blocks(entry, max_gap=max_gap)
        self.write_guard = write_guard
        self._client: AsyncModbusTcpClient | None = None
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return f"{self.entry.device.id}://{self.host}:{self.port}/{self.unit_id}"

    def _unit(self, name: str) -> int:
        own = self.entry.points[name].unit_id
        return self.unit_id if own is None else own

    async def connect(self) -> None:
        async with self._lock:
            await self._ensure_connected()

    async def close(self) -> None:
        async with self._lock:
            if self._client is not None:
                self._client.close()

    async def __aenter__(self) -> CatalogueDevice:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _ensure_connected(self) -> AsyncModbusTcpClient:
        if self._client is None:
            # retries=0 and no background reconnect: the caller owns retry policy and staleness.
            self._client = AsyncModbusTcpClient(self.host, port=self.port, timeout=self.timeout_s, retries=0,
                                                reconnect_delay=0, name=self.name)
        if not self._client.connected and not await self._client.connect():
            raise DeviceUnavailable("cannot connect", device=self.name)
        return self._client

    async def _request(self, what: str, address: int, call: Any) -> Any:
        client = await self._ensure_connected()
        try:
            rr = await call(client)
        except asyncio.CancelledError:
            client.close()  # a late answer must not be read as the next request's
            raise
        except (TimeoutError, ConnectionException, ModbusException, OSError) as exc:
            client.close()
            raise DeviceUnavailable(f"{what} at {address}: no valid answer ({exc})", device=self.name) from exc
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0) or 0)
            raise DeviceRejected(f"{what} at {address} refused", exception_code=code,
                                 function_code=int(rr.function_code), address=address, device=self.name)
        return rr

    async def _read_block(self, block: Block) -> list[int]:
        def call(c: AsyncModbusTcpClient) -> Any:
            unit = self.unit_id if block.unit_id == self.entry.device.unit_id else block.unit_id
            if block.function == "input":
                return c.read_input_registers(block.address, count=block.count, device_id=unit)
            return c.read_holding_registers(block.address, count=block.count, device_id=unit)

        rr = await self._request(f"read {block.function} {block.count}", block.address, call)
        regs = [int(r) for r in rr.registers]
        if len(regs) != block.count:
            raise DeviceUnavailable(f"read {block.count} at {block.address}: got {len(regs)}", device=self.name)
        return regs

    async def read_all(self) -> dict[str, PointReading]:
        """Read every point of the entry in contiguous blocks; all or nothing (no partial snapshot)."""
        out: dict[str, PointReading] = {}
        async with self._lock:
            for block in self._blocks:
                regs = await self._read_block(block)
                for name in block.points:
                    p = self.entry.points[name]
                    off = p.address - block.address
                    wo = self.entry.word_order_of(name)
                    raw = decode_raw(p, regs[off:off + p.size], wo)
                    out[name] = PointReading(name, decode(p, regs[off:off + p.size], wo), raw, p.unit)
        return out

    def measurements(self, readings: Mapping[str, PointReading]) -> dict[str, float]:
        """Values by role (W charge/consumption positive, % SoC); power roles summed over points."""
        out: dict[str, float] = {}
        for name, r in readings.items():
            role = self.entry.points[name].role
            if role is None:
                continue
            out[role] = out.get(role, 0.0) + r.value if role in SUMMED_ROLES else r.value
        return out

    async def _write_point(self, name: str, value: float) -> Verdict:
        p = self.entry.points.get(name)
        if p is None or not p.writable:
            raise ValueError(f"{self.entry.device.id}: point {name!r} is not writable")
        if p.min is not None:
            value = max(p.min, value)
        if p.max is not None:
            value = min(p.max, value)
        regs = encode(p, value, self.entry.word_order_of(name))
        if p.allowed is not None and decode_raw(p, regs, self.entry.word_order_of(name)) not in p.allowed:
            raise ValueError(f"{self.entry.device.id}: {value} not allowed for {name!r} ({p.allowed})")
        unit = self._unit(name)
        key = (unit, p.address)
        if self.write_guard is not None:
            verdict = self.write_guard.decide(key, regs)
            if verdict != "write":
                return verdict
        async with self._lock:
            await self._request(f"write {name}", p.address,
                                lambda c: c.write_registers(p.address, regs, device_id=unit))
        if self.write_guard is not None:
            self.write_guard.record(key, regs)
        return "write"

    async def command_battery(self, power_w: float) -> bool:
        """Hold the battery at ``power_w`` (W, charge positive; 0 = idle) via the entry's control sequence.

        Returns False if the write guard deferred a step (the device does not
        hold the command yet: call again), True otherwise.  Raises ValueError
        if the entry has no control section (not supported).
        """
        control = self.entry.control
        if control is None:
            raise ValueError(f"{self.entry.device.id}: no battery control in the catalogue entry")
        steps = control.charge if power_w > 0 else control.discharge if power_w < 0 else control.idle
        return await self._run(steps, power_w)

    async def release(self) -> bool:
        """Hand the battery back to the device's own mode (False: the write guard deferred a step)."""
        if self.entry.control is not None:
            return await self._run(self.entry.control.release, 0.0)
        return True

    async def _run(self, steps: Sequence[ControlStep], power_w: float) -> bool:
        complete = True
        for step in steps:
            v = step.value
            value = power_w if v == "power_w" else abs(power_w) if v == "abs_power_w" else float(v)
            complete = await self._write_point(step.point, value) != "deferred" and complete
        return complete


__all__ = [
    "Block", "CatalogueDevice", "CatalogueEntry", "CatalogueError", "ControlDef", "ControlStep", "DeviceDef",
    "PointDef", "PointReading", "catalogue_ids", "decode", "decode_raw", "encode", "load_entry", "plan_blocks",
]
