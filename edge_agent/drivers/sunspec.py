"""Generic SunSpec driver over Modbus TCP: discovery, model reads, point writes.

Modbus I/O only: this module knows registers, models and scale factors,
nothing about energy, policies or sign conventions of the house.  Values are
returned exactly as the SunSpec model defines them (e.g. model 103 ``W`` is
production positive, model 203 ``W`` sign depends on the meter vendor); the
Resource Managers translate them into the house convention.  Decoding and
encoding are :mod:`edge_agent.drivers.sunspec_points`.

* One ``AsyncModbusTcpClient`` per device, created on first use; after a
  timeout or a lost connection it is closed and the *next* call reconnects
  (a timed-out request may still be answered later, and a stale answer must
  not be taken for the next request's).
* Errors are classified by reaction, see :mod:`edge_agent.drivers.errors`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sunspec2.mdef as ss_mdef

from edge_agent.drivers.errors import (
    DeviceRejected,
    DeviceUnavailable,
    ModelNotFound,
    NotSunSpec,
)
from edge_agent.drivers.modbus_link import LinkedDevice, ModbusLink
from edge_agent.drivers.sunspec_points import (
    ModelValues,
    decode_model,
    encode_write,
    top_level_points,
)
from edge_agent.drivers.write_guard import Verdict, WriteGuard

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


# Modbus exceptions that mean "not now", not "nothing here": 5 acknowledge, 6 busy, 10 gateway path
# unavailable, 11 gateway target did not respond (an RS-485 gateway up while the inverter behind it
# boots).  Discovery must not take them for "not SunSpec" (a configuration error).
NOT_READY_EXCEPTION_CODES = frozenset({5, 6, 10, 11})


def _raise_if_not_ready(exc: DeviceRejected, name: str) -> None:
    if exc.exception_code in NOT_READY_EXCEPTION_CODES:
        raise DeviceUnavailable(f"not ready: {exc}", device=name) from exc


class SunSpecDevice(LinkedDevice):
    """One SunSpec device (host, port, unit id) reached over Modbus TCP.

    ``timeout_s`` bounds connecting and each request.  Operations on one
    device are serialised (one request at a time, as many devices require).
    """

    def __init__(self, host: str, port: int = 502, unit_id: int = 1, timeout_s: float = 2.0,
                 *, base_addresses: Sequence[int] = SUNS_BASE_ADDRESSES,
                 write_guard: WriteGuard | None = None) -> None:
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.timeout_s = timeout_s
        self._link = ModbusLink(host, port, timeout_s, self.name)
        self.base_addresses = tuple(base_addresses)
        self.write_guard = write_guard
        """Optional per-register write limiter (edge_agent.drivers.write_guard); None = write everything."""
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
        return self._link.connected

    # -- requests (connect, close and one request at a time: LinkedDevice) --------

    async def _read(self, address: int, count: int) -> list[int]:
        if not 1 <= count <= MAX_READ_REGISTERS:
            raise ValueError(f"read count {count} outside 1..{MAX_READ_REGISTERS}")
        rr = await self._request(
            f"read {count}", address,
            lambda c: c.read_holding_registers(address, count=count, device_id=self.unit_id))
        regs = [int(r) for r in rr.registers]
        if len(regs) != count:
            self._link.drop()
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
        async with self._lock:
            loc = await self._locate(model_id, index)
            current = await self._read_model(model_id, index)
            encoded, complete = self._encode(loc, values, current)
            # A point the guard finds unchanged is written anyway when another point of the same
            # call changes: the call is one command (e.g. limit, revert time, enable), and the
            # device may have changed a point by itself (a revert timer resetting an enable).
            if all(e.verdict == "unchanged" for e in encoded):
                encoded = []
            for offset, regs in _runs(encoded):
                await self._write(loc.address + offset, regs)
                if self.write_guard is not None:
                    for e in encoded:
                        if offset <= e.offset < offset + len(regs):
                            self.write_guard.record((self.unit_id, loc.address + e.offset), e.registers)
            return complete

    def _encode(self, loc: ModelLocation, values: Mapping[str, float | int], current: ModelValues
                ) -> tuple[list[_Encoded], bool]:
        """Every value checked and encoded (ValueError before anything is written), and whether the
        write guard let all of them out (False: it deferred one)."""
        defs = top_level_points(loc.model_id)
        encoded: list[_Encoded] = []
        complete = True
        for order, (name, value) in enumerate(values.items()):
            if name not in defs:
                raise ValueError(f"model {loc.model_id} has no top-level point {name!r}")
            offset, pdef = defs[name]
            if pdef.get(ss_mdef.ACCESS, ss_mdef.ACCESS_R) != ss_mdef.ACCESS_RW:
                raise ValueError(f"model {loc.model_id} {name} is read-only")
            regs = encode_write(loc.model_id, name, value, pdef, current)
            if offset + len(regs) > loc.length + 2:
                raise ValueError(f"model {loc.model_id} {name}: not within this device's model (L={loc.length})")
            verdict: Verdict = "write"
            if self.write_guard is not None:
                verdict = self.write_guard.decide((self.unit_id, loc.address + offset), regs)
                if verdict == "deferred":
                    complete = False  # the next call carries the newest value
                    continue
            encoded.append(_Encoded(offset, regs, order, verdict))
        return encoded, complete

    def invalidate_written(self, model_id: int, names: Sequence[str], index: int = 0) -> None:
        """The device no longer holds what was written to these points (read back different): the
        write guard lets the next write of them out at once (see WriteGuard.invalidate)."""
        if self.write_guard is None or self._models is None:
            return
        found = [m for m in self._models if m.model_id == model_id]
        if not 0 <= index < len(found):
            return
        defs = top_level_points(model_id)
        for name in names:
            if name in defs:
                self.write_guard.invalidate((self.unit_id, found[index].address + defs[name][0]))


@dataclass(frozen=True, slots=True)
class _Encoded:
    offset: int  # from the model's ID register
    registers: list[int]
    order: int  # position in the caller's values
    verdict: Verdict


def _runs(encoded: Sequence[_Encoded]) -> list[tuple[int, list[int]]]:
    """Points at adjacent offsets joined into one request each (at most MAX_WRITE_REGISTERS), the
    requests in the order their first point was given (so "rates, then mode" can be expressed)."""
    runs: list[tuple[int, list[int], int]] = []
    for e in sorted(encoded, key=lambda e: e.offset):
        last = runs[-1] if runs else None
        if last is not None and last[0] + len(last[1]) == e.offset \
                and len(last[1]) + len(e.registers) <= MAX_WRITE_REGISTERS:
            runs[-1] = (last[0], last[1] + e.registers, min(last[2], e.order))
        else:
            runs.append((e.offset, list(e.registers), e.order))
    return [(offset, regs) for offset, regs, _ in sorted(runs, key=lambda r: r[2])]


__all__ = [
    "MAX_READ_REGISTERS",
    "MAX_WRITE_REGISTERS",
    "SUNS_BASE_ADDRESSES",
    "NOT_READY_EXCEPTION_CODES",
    "ModelLocation",
    "SunSpecDevice",
]
