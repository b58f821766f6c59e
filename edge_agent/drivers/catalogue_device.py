"""A device described by a vendor catalogue entry (edge_agent.drivers.catalogue), over Modbus TCP.

Reads every point of the entry in contiguous blocks, maps the points' roles
to values (docs/architecture.md signs) and runs the entry's control sequences; every
write passes an optional :class:`~edge_agent.drivers.write_guard.WriteGuard`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pymodbus.client import AsyncModbusTcpClient

from edge_agent.drivers.catalogue import (
    SUMMED_ROLES,
    CatalogueEntry,
    ControlStep,
    decode,
    decode_raw,
    encode,
)
from edge_agent.drivers.errors import DeviceUnavailable
from edge_agent.drivers.modbus_link import LinkedDevice, ModbusLink
from edge_agent.drivers.write_guard import Verdict, WriteGuard

MAX_READ_REGISTERS = 125


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
    """A read point: engineering ``value`` in ``unit`` (docs/architecture.md sign), and its raw integer."""

    name: str
    value: float
    raw: int
    unit: str


class CatalogueDevice(LinkedDevice):
    """A device described by a :class:`CatalogueEntry`, reached over Modbus TCP.

    ``unit_id`` overrides the entry's default unit (points with their own
    unit keep it).  Requests are serialised (one at a time).  Errors:
    DeviceUnavailable (transient), DeviceRejected (exception response),
    ValueError for a write to a non-writable point or a value outside its
    enumeration (a caller bug).
    """

    def __init__(self, entry: CatalogueEntry, host: str, port: int = 502, unit_id: int | None = None,
                 timeout_s: float = 2.0, *, max_gap: int = 0, write_guard: WriteGuard | None = None) -> None:
        self.entry = entry
        self.host = host
        self.port = port
        self.unit_id = entry.device.unit_id if unit_id is None else unit_id
        self.timeout_s = timeout_s
        self._blocks = plan_blocks(entry, max_gap=max_gap)
        self.write_guard = write_guard
        self._link = ModbusLink(host, port, timeout_s, self.name)
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return f"{self.entry.device.id}://{self.host}:{self.port}/{self.unit_id}"

    def _unit(self, name: str) -> int:
        own = self.entry.points[name].unit_id
        return self.unit_id if own is None else own

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


__all__ = ["MAX_READ_REGISTERS", "Block", "CatalogueDevice", "PointReading", "plan_blocks"]
