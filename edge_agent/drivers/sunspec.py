"""Generic SunSpec driver over Modbus TCP: discovery, model reads, point writes.

Modbus I/O only: this module knows registers, models and scale factors,
nothing about energy, policies or sign conventions of the house.  Values are
returned exactly as the SunSpec model defines them (e.g. model 103 ``W`` is
production positive, model 203 ``W`` sign depends on the meter vendor); the
Resource Managers translate them into the house convention.

Register layouts are not retyped here: decoding uses pysunspec2's
``sunspec2.device.Model`` built from the definitions it ships, and writes
look up offsets, types, access and scale factor names in the same
definitions.

* Values are scaled (``raw x 10^SF``); a not-implemented point - or one whose
  scale factor is not implemented - is ``None``, never a number.
* One ``AsyncModbusTcpClient`` per device, created on first use; after a
  timeout or a lost connection it is closed and the *next* call reconnects
  (a timed-out request may still be answered later, and a stale answer must
  not be taken for the next request's).
* Errors are classified by reaction, see :mod:`edge_agent.drivers.errors`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import sunspec2.device as ss_device
import sunspec2.mdef as ss_mdef
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from edge_agent.drivers.errors import (
    DeviceRejected,
    DeviceUnavailable,
    ModelNotFound,
    NotSunSpec,
)
from edge_agent.drivers.write_guard import WriteGuard

log = logging.getLogger(__name__)

SUNS_MARKER: tuple[int, int] = (0x5375, 0x6E53)
""""SunS" in two registers."""
SUNS_BASE_ADDRESSES: tuple[int, ...] = (40000, 0, 50000)
"""Where SunSpec maps start, in the order the specification says to probe."""
END_MODEL_ID = 0xFFFF
MAX_READ_REGISTERS = 125
"""Modbus limit for one read holding registers request."""
MAX_WRITE_REGISTERS = 123
"""Modbus limit for one write multiple registers request."""
MAX_MODELS = 256
"""A chain longer than this is broken (or not SunSpec)."""

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
class ModelLocation:
    """A model found by discovery: ``address`` is its ID register, ``length`` its L."""

    model_id: int
    address: int
    length: int

    @property
    def end(self) -> int:
        """Address of the next model's ID register."""
        return self.address + 2 + self.length


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


def _top_level_points(model_id: int) -> dict[str, tuple[int, dict[str, Any]]]:
    """Top-level point definitions of a model by name: (offset from ID, definition)."""
    mdef = ss_device.get_model_def(model_id)
    out: dict[str, tuple[int, dict[str, Any]]] = {}
    offset = 0
    for pdef in mdef[ss_mdef.GROUP].get(ss_mdef.POINTS, []):
        out[str(pdef[ss_mdef.NAME])] = (offset, pdef)
        offset += int(pdef.get(ss_mdef.SIZE, 1))
    return out


def _encode_write(model_id: int, name: str, value: float | int, pdef: Mapping[str, Any],
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


# Modbus exceptions that mean "not now", not "nothing here": 5 acknowledge, 6 busy, 10 gateway path
# unavailable, 11 gateway target did not respond (an RS-485 gateway up while the inverter behind it
# boots).  Discovery must not take them for "not SunSpec" (a configuration error).
NOT_READY_EXCEPTION_CODES = frozenset({5, 6, 10, 11})


def _raise_if_not_ready(exc: DeviceRejected, name: str) -> None:
    if exc.exception_code in NOT_READY_EXCEPTION_CODES:
        raise DeviceUnavailable(f"not ready: {exc}", device=name) from exc


class SunSpecDevice:
    """One SunSpec device (host, port, unit id) reached over Modbus TCP.

    ``timeout_s`` bounds connecting and each request.  Operations on one
    device are serialised (one request at a time, as many devices require).
    """

    def __init__(self, host: str, port: int = 502, unit_id: int = 1, timeout_s: float = 2.0,
                 *, base_addresses: Sequence[int] = SUNS_BASE_ADDRESSES,
                 write_guard: WriteGuard | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.timeout_s = timeout_s
        self.base_addresses = tuple(base_addresses)
        self.write_guard = write_guard
        """Optional per-register write limiter (edge_agent.drivers.write_guard); None = write everything."""
        self._client: AsyncModbusTcpClient | None = None
        self._lock = asyncio.Lock()
        self._models: tuple[ModelLocation, ...] | None = None
        self._base_address: int | None = None

    @property
    def name(self) -> str:
        return f"sunspec://{self.host}:{self.port}/{self.unit_id}"

    @property
    def models(self) -> tuple[ModelLocation, ...] | None:
        """Models found by the last :meth:`discover` (None before)."""
        return self._models

    @property
    def base_address(self) -> int | None:
        """Where "SunS" was found (None before discovery)."""
        return self._base_address

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    # -- connection ----------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection now (otherwise the first call does). DeviceUnavailable if it fails."""
        async with self._lock:
            await self._ensure_connected()

    async def close(self) -> None:
        """Close the connection; a later call reconnects."""
        async with self._lock:
            self._drop()

    async def __aenter__(self) -> SunSpecDevice:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _ensure_connected(self) -> AsyncModbusTcpClient:
        if self._client is None:
            # reconnect_delay=0: pymodbus must not reconnect in a background
            # task; the next call of this driver reconnects.  retries=0: the
            # caller owns the retry policy (backoff, staleness).
            self._client = AsyncModbusTcpClient(
                self.host, port=self.port, timeout=self.timeout_s, retries=0,
                reconnect_delay=0, name=self.name,
            )
        if not self._client.connected and not await self._client.connect():
            raise DeviceUnavailable("cannot connect", device=self.name)
        return self._client

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()

    async def _request(self, what: str, address: int, call: Any) -> Any:
        """Run one Modbus request; map failures to driver errors."""
        client = await self._ensure_connected()
        try:
            rr = await call(client)
        except asyncio.CancelledError:
            self._drop()  # the answer may still arrive and must not be read as another's
            raise
        except ConnectionException as exc:
            self._drop()
            raise DeviceUnavailable(f"{what} at {address}: connection lost ({exc})", device=self.name) from exc
        except (TimeoutError, ModbusException, OSError) as exc:
            # ModbusIOException is how pymodbus reports a timeout.
            self._drop()
            raise DeviceUnavailable(f"{what} at {address}: no valid answer ({exc})", device=self.name) from exc
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0) or 0)
            raise DeviceRejected(f"{what} at {address} refused", exception_code=code,
                                 function_code=int(rr.function_code), address=address, device=self.name)
        return rr

    async def _read(self, address: int, count: int) -> list[int]:
        if not 1 <= count <= MAX_READ_REGISTERS:
            raise ValueError(f"read count {count} outside 1..{MAX_READ_REGISTERS}")
        rr = await self._request(
            f"read {count}", address,
            lambda c: c.read_holding_registers(address, count=count, device_id=self.unit_id))
        regs = [int(r) for r in rr.registers]
        if len(regs) != count:
            self._drop()
            raise DeviceUnavailable(f"read {count} at {address}: got {len(regs)} registers", device=self.name)
        return regs

    async def _write(self, address: int, values: list[int]) -> None:
        await self._request(
            f"write {len(values)}", address,
            lambda c: c.write_registers(address, values, device_id=self.unit_id))

    # -- SunSpec -------------------------------------------------------------

    async def discover(self) -> tuple[ModelLocation, ...]:
        """Find "SunS" (40000, then 0, then 50000) and walk the model chain by each model's L.

        Raises NotSunSpec if no base address holds the marker or the chain is
        broken, DeviceUnavailable if the device cannot be reached.
        """
        async with self._lock:
            return await self._discover()

    async def _discover(self) -> tuple[ModelLocation, ...]:
        base: int | None = None
        for candidate in self.base_addresses:
            try:
                marker = await self._read(candidate, 2)
            except DeviceRejected as exc:
                _raise_if_not_ready(exc, self.name)
                continue  # nothing mapped there (illegal address)
            if tuple(marker) == SUNS_MARKER:
                base = candidate
                break
        if base is None:
            raise NotSunSpec(f"no SunSpec marker at {list(self.base_addresses)}", device=self.name)
        models: list[ModelLocation] = []
        address = base + 2
        while True:
            if address + 2 > 0x10000 or len(models) >= MAX_MODELS:
                raise NotSunSpec(f"model chain from {base} does not end", device=self.name)
            try:
                model_id, length = await self._read(address, 2)
            except DeviceRejected as exc:
                _raise_if_not_ready(exc, self.name)
                if not models:
                    raise NotSunSpec(f"no model after the marker at {base}", device=self.name) from exc
                # Some devices omit the end marker and refuse reads past the last model.
                log.warning("%s: chain ends without end marker at %d", self.name, address)
                break
            if model_id == END_MODEL_ID:
                break
            if model_id == 0:
                log.warning("%s: model id 0 at %d taken as the end of the chain", self.name, address)
                break
            models.append(ModelLocation(model_id, address, length))
            address += 2 + length
        self._models = tuple(models)
        self._base_address = base
        return self._models

    async def _locate(self, model_id: int, index: int) -> ModelLocation:
        if self._models is None:
            await self._discover()
        assert self._models is not None
        found = [m for m in self._models if m.model_id == model_id]
        if not 0 <= index < len(found):
            raise ModelNotFound(f"model {model_id} instance {index} not offered "
                                f"(device has {len(found)})", device=self.name)
        return found[index]

    async def read_model(self, model_id: int, index: int = 0) -> ModelValues:
        """Read model ``model_id`` (its ``index``-th instance, 0-based) and decode it.

        Discovers first if needed.  Reads the whole model in chunks of at most
        125 registers.  Values are scaled; not implemented -> None.
        """
        async with self._lock:
            return await self._read_model(model_id, index)

    async def _read_model(self, model_id: int, index: int) -> ModelValues:
        loc = await self._locate(model_id, index)
        total = loc.length + 2
        registers: list[int] = []
        while len(registers) < total:
            n = min(MAX_READ_REGISTERS, total - len(registers))
            registers += await self._read(loc.address + len(registers), n)
        values = decode_model(model_id, loc.address, registers)
        if values.decode_errors:
            log.warning("%s: model %d decoded with problems: %s", self.name, model_id,
                        "; ".join(values.decode_errors))
        return values

    async def write_points(self, model_id: int, values: Mapping[str, float | int], index: int = 0) -> bool:
        """Write top-level points of a model in engineering units.

        The model is read first so that the device's *current* scale factors
        encode the values.  Every value is checked before anything is written:
        an unknown or read-only point, a scale factor the device does not
        implement, or a value out of the point's raw range raises ValueError
        (nothing is clamped).  Points at adjacent addresses go out in one
        write_registers request; separate runs are written in the order their
        first point appears in ``values`` (so "rates, then mode" can be
        expressed).  A rejected run raises DeviceRejected; runs before it stay
        written.

        Returns False if the write guard deferred any point (too soon or over
        its hourly budget: the device does not hold that value yet, call
        again), True otherwise (points it skipped as unchanged count as held).
        """
        if not values:
            return True
        defs = _top_level_points(model_id)
        async with self._lock:
            loc = await self._locate(model_id, index)
            current = await self._read_model(model_id, index)
            encoded: list = []  # (offset, registers, order[, verdict])
            complete = True
            for order, (name, value) in enumerate(values.items()):
                if name not in defs:
                    raise ValueError(f"model {model_id} has no top-level point {name!r}")
                offset, pdef = defs[name]
                if pdef.get(ss_mdef.ACCESS, ss_mdef.ACCESS_R) != ss_mdef.ACCESS_RW:
                    raise ValueError(f"model {model_id} {name} is read-only")
                regs = _encode_write(model_id, name, value, pdef, current)
                if offset + len(regs) > loc.length + 2:
                    raise ValueError(f"model {model_id} {name}: not within this device's model (L={loc.length})")
                verdict = "write"
                if self.write_guard is not None:
                    verdict = self.write_guard.decide((self.unit_id, loc.address + offset), regs)
                    if verdict == "deferred":
                        complete = False  # the next call carries the newest value
                        continue
                encoded.append((offset, regs, order, verdict))
            # A point the guard finds unchanged is written anyway when another point of the same
            # call changes: the call is one command (e.g. limit, revert time, enable), and the
            # device may have changed a point by itself (a revert timer resetting an enable).
            if all(v == "unchanged" for *_, v in encoded):
                encoded = []
            encoded = [(o, r, od) for o, r, od, _v in encoded]
            runs: list[tuple[int, list[int], int]] = []
            for offset, regs, order in sorted(encoded):
                last = runs[-1] if runs else None
                if last is not None and last[0] + len(last[1]) == offset \
                        and len(last[1]) + len(regs) <= MAX_WRITE_REGISTERS:
                    runs[-1] = (last[0], last[1] + regs, min(last[2], order))
                else:
                    runs.append((offset, list(regs), order))
            for offset, regs, _ in sorted(runs, key=lambda r: r[2]):
                await self._write(loc.address + offset, regs)
                if self.write_guard is not None:
                    for off, pregs, _order in encoded:
                        if offset <= off < offset + len(regs):
                            self.write_guard.record((self.unit_id, loc.address + off), pregs)
            return complete

    def invalidate_written(self, model_id: int, names: Sequence[str], index: int = 0) -> None:
        """The device no longer holds what was written to these points (read back different): the
        write guard lets the next write of them out at once (see WriteGuard.invalidate)."""
        if self.write_guard is None or self._models is None:
            return
        found = [m for m in self._models if m.model_id == model_id]
        if not 0 <= index < len(found):
            return
        defs = _top_level_points(model_id)
        for name in names:
            if name in defs:
                self.write_guard.invalidate((self.unit_id, found[index].address + defs[name][0]))


__all__ = [
    "MAX_READ_REGISTERS",
    "MAX_WRITE_REGISTERS",
    "SUNS_BASE_ADDRESSES",
    "GroupValues",
    "ModelLocation",
    "ModelValues",
    "SunSpecDevice",
    "decode_model",
]
