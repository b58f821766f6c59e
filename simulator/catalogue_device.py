"""One Modbus TCP simulator per vendor catalogue entry, driven by the house physics.

The simulator reads the *addresses and encodings* from the same catalogue
file the driver uses (edge_agent/catalogue/<id>.toml), but implements each
vendor's *behaviour* itself (:class:`Behaviour` subclasses), so a wrong
control sequence in a catalogue file shows up as "no effect" in tests:

* ``sungrow_sh``: EMS mode 13049 (0 self-consumption, 2 forced) with the
  command 13050 (0xAA charge, 0xBB discharge, 0xCC stop) and forced power
  13051 (W).  No device-side timeout (Sungrow holds forced mode).
* ``huawei_sun2000_luna2000``: forcible mode 47100 (0 stop, 1 charge,
  2 discharge) with power 47247/47249 (W) for 47083 minutes, then the
  battery returns to its working mode (revert).
* ``victron_gx``: Hub4Mode 2902 = 3 (external control) and the VE.Bus
  AC setpoint (unit 227, register 37, W, + = charging).  Simplification:
  the setpoint is taken as the battery's AC power (the real Multi adds
  AC-coupled PV and AC-out loads).  Without a new setpoint for 60 s the
  Multi drops it and returns to its own ESS control (revert).

Measured registers are filled by each point's ``role`` from the physics
snapshot, encoded with the point's scale, sign and word order (per-phase
points of one role share the value equally).  Time advances lazily on each
request with the injected clock, as in :mod:`simulator.hybrid_device`, and
faults are the same :class:`~simulator.hybrid_device.Faults`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agent.drivers.catalogue import CatalogueEntry, PointDef, decode_raw, load_entry
from simulator.hybrid_device import DroppableServer, FaultInjection
from simulator.physics import (
    SELF_CONSUMPTION,
    BatteryCommand,
    HousePhysics,
    PhysicsConfig,
    PhysicsSnapshot,
)
from vpp_common.clock import Clock

log = logging.getLogger(__name__)

_RAW_RANGE = {"int16": (-(1 << 15), (1 << 15) - 1), "uint16": (0, 0xFFFF),
              "int32": (-(1 << 31), (1 << 31) - 1), "uint32": (0, 0xFFFFFFFF)}


@dataclass(frozen=True)
class AcceptedWrite:
    """A write the device accepted: unit, point names, and the clock time."""

    unit_id: int
    address: int
    values: tuple[int, ...]
    points: tuple[str, ...]
    at: datetime


class Behaviour:
    """Vendor control semantics: turns the written registers into a BatteryCommand."""

    def __init__(self, sim: CatalogueSimulator) -> None:
        self.sim = sim
        self.deadline: datetime | None = None

    def on_write(self, points: tuple[str, ...], now: datetime) -> BatteryCommand:
        raise NotImplementedError

    def on_revert(self) -> BatteryCommand:
        """Called at ``deadline``: the device drops the external command."""
        return SELF_CONSUMPTION


def _fixed(power_w: float) -> BatteryCommand:
    return BatteryCommand(lower_w=power_w, upper_w=power_w)


class SungrowBehaviour(Behaviour):
    def on_write(self, points: tuple[str, ...], now: datetime) -> BatteryCommand:
        g = self.sim.get
        if g("ems_mode") != 2:
            return SELF_CONSUMPTION
        cmd, p = g("charge_command"), g("forced_power")
        return _fixed(p) if cmd == 0xAA else _fixed(-p) if cmd == 0xBB else _fixed(0.0)


class HuaweiBehaviour(Behaviour):
    def on_write(self, points: tuple[str, ...], now: datetime) -> BatteryCommand:
        g = self.sim.get
        mode = g("forcible_mode")
        if "forcible_mode" in points:
            self.deadline = now + timedelta(minutes=g("forcible_duration")) if mode else None
        if mode == 1:
            return _fixed(g("forcible_charge_power"))
        if mode == 2:
            return _fixed(-g("forcible_discharge_power"))
        return SELF_CONSUMPTION

    def on_revert(self) -> BatteryCommand:
        self.sim.set("forcible_mode", 0)
        return SELF_CONSUMPTION


class VictronBehaviour(Behaviour):
    TIMEOUT_S = 60.0

    def on_write(self, points: tuple[str, ...], now: datetime) -> BatteryCommand:
        g = self.sim.get
        if g("hub4_mode") != 3:
            self.deadline = None
            return SELF_CONSUMPTION
        if "ac_setpoint_l1" in points:
            self.deadline = now + timedelta(seconds=self.TIMEOUT_S)
        if self.deadline is None:
            return SELF_CONSUMPTION
        p = g("ac_setpoint_l1")
        if g("disable_charge") == 1:
            p = min(p, 0.0)
        if g("disable_feed_in") == 1:
            p = max(p, 0.0)
        return _fixed(p)


BEHAVIOURS: dict[str, type[Behaviour]] = {
    "sungrow_sh": SungrowBehaviour,
    "huawei_sun2000_luna2000": HuaweiBehaviour,
    "victron_gx": VictronBehaviour,
}


@dataclass
class _Space:
    """One unit's holding or input register space as a dense array from ``start``."""

    start: int
    registers: list[int] = field(default_factory=list)


class CatalogueSimulator(FaultInjection):
    """A vendor device from a catalogue entry, served over Modbus TCP on every unit id the entry uses.

    ``port=0`` binds a free port (see :attr:`port` after :meth:`start`).
    """

    def __init__(self, entry: CatalogueEntry | str, clock: Clock, physics: PhysicsConfig | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.entry = entry if isinstance(entry, CatalogueEntry) else load_entry(entry)
        if self.entry.device.id not in BEHAVIOURS:
            raise ValueError(f"no simulator behaviour for catalogue entry {self.entry.device.id!r}")
        self.clock = clock
        self.host = host
        self.port = port
        self.writes: list[AcceptedWrite] = []
        self.reverts: list[datetime] = []
        self.reboots: list[datetime] = []
        self._init_faults()
        self._server: DroppableServer | None = None
        self._inflight: set[asyncio.Task[object]] = set()
        self._physics = HousePhysics(physics or PhysicsConfig(), clock.now())
        self._spaces: dict[tuple[int, str], _Space] = {}
        for name, p in self.entry.points.items():
            key = (self.entry.unit_of(name), p.function)
            end = p.address + p.size
            sp = self._spaces.get(key)
            if sp is None:
                self._spaces[key] = _Space(p.address, [0] * p.size)
            else:
                new_start = min(sp.start, p.address)
                new_end = max(sp.start + len(sp.registers), end)
                sp.registers = ([0] * (sp.start - new_start) + sp.registers
                                + [0] * (new_end - sp.start - len(sp.registers)))
                sp.start = new_start
        self._behaviour = BEHAVIOURS[self.entry.device.id](self)
        self._init_static()
        self._refresh(self._physics.snapshot)

    # -- register access by point name ----------------------------------------

    def _loc(self, name: str) -> tuple[PointDef, _Space, int]:
        p = self.entry.points[name]
        sp = self._spaces[(self.entry.unit_of(name), p.function)]
        return p, sp, p.address - sp.start

    def get(self, name: str) -> float:
        """Engineering value of a point (raw x scale x sign)."""
        p, sp, off = self._loc(name)
        return decode_raw(p, sp.registers[off:off + p.size], self.entry.word_order_of(name)) * p.scale * p.sign

    def set(self, name: str, value: float) -> None:
        """Set a point from an engineering value; out-of-range raw values saturate (like a device would)."""
        p, sp, off = self._loc(name)
        self._set_raw(name, round(value / p.scale / p.sign) if math.isfinite(value) else 0)

    def _set_raw(self, name: str, raw: int) -> None:
        p, sp, off = self._loc(name)
        lo, hi = _RAW_RANGE[p.type]
        u = max(lo, min(hi, raw)) & ((1 << (16 * p.size)) - 1)
        if p.size == 1:
            regs = [u]
        else:
            regs = [u >> 16, u & 0xFFFF]
            if self.entry.word_order_of(name) == "little":
                regs.reverse()
        sp.registers[off:off + p.size] = regs

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        def bits() -> list[SimData]:  # no coils/discrete inputs, but pymodbus needs a block
            return [SimData(0, values=[0], datatype=DataType.BITS)]

        devices = []
        for unit in sorted({u for u, _ in self._spaces}):
            blocks: list[list[SimData]] = []
            for fn in ("holding", "input"):
                sp = self._spaces.get((unit, fn))
                start, size = (sp.start, len(sp.registers)) if sp else (0, 1)
                blocks.append([SimData(start, values=[0] * size, datatype=DataType.REGISTERS)])
            devices.append(SimDevice(id=unit, simdata=(bits(), bits(), blocks[0], blocks[1]), action=self._action_for(unit)))
        self.port = await self._serve(devices, self.host, self.port)
        log.info("%s simulator on %s:%d", self.entry.device.id, self.host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._signal_faults_changed()
        await server.stop()
        current = asyncio.current_task()
        pending = [t for t in self._inflight if t is not current and not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._inflight.clear()
        await asyncio.sleep(0)

    async def __aenter__(self) -> CatalogueSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def physics(self) -> HousePhysics:
        return self._physics

    def snapshot(self) -> PhysicsSnapshot:
        """Advance to ``clock.now()`` (as a request would) and return the physics state."""
        self._advance(self.clock.now())
        return self._physics.snapshot

    async def wait_listening(self) -> None:
        """After clearing a ``disconnect`` fault: return once the port accepts connections again."""
        if self._server is not None:
            await self._server.wait_listening()

    # -- Modbus side -------------------------------------------------------------

    def _action_for(self, unit: int):  # type: ignore[no-untyped-def]
        async def action(function_code: int, start_address: int, address: int, count: int,
                         registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
            task = asyncio.current_task()
            if task is not None:
                self._inflight.add(task)
            try:
                read_back = function_code in (6, 16) and set_values is None
                if not read_back:
                    refused = await self._apply_faults()
                    if refused is not None:
                        return refused
                if function_code not in (3, 4, 6, 16):
                    return ExcCodes.ILLEGAL_FUNCTION
                fn = "input" if function_code == 4 else "holding"
                sp = self._spaces.get((unit, fn))
                if sp is None:
                    return ExcCodes.ILLEGAL_ADDRESS
                now = self._advance(self.clock.now())
                if set_values is not None and function_code in (6, 16):
                    refused = self._accept_write(unit, address, [int(v) for v in set_values], now)
                    if refused is not None:
                        return refused
                offset = sp.start - start_address
                regs = sp.registers
                if self._faults.implausible:
                    regs = self._implausible(unit, fn)
                registers[offset:offset + len(regs)] = regs
                return None
            finally:
                if task is not None:
                    self._inflight.discard(task)

        return action

    def _accept_write(self, unit: int, address: int, values: list[int], now: datetime) -> ExcCodes | None:
        end = address + len(values)
        touched: list[str] = []
        for name, p in self.entry.points.items():
            if self.entry.unit_of(name) != unit or p.function != "holding":
                continue
            if p.address < end and address < p.address + p.size:
                if not p.writable or p.address < address or p.address + p.size > end:
                    return ExcCodes.ILLEGAL_ADDRESS
                touched.append(name)
        if sum(self.entry.points[n].size for n in touched) != len(values):
            return ExcCodes.ILLEGAL_ADDRESS  # a register that belongs to no point
        for name in touched:
            p = self.entry.points[name]
            raw = decode_raw(p, values[p.address - address:p.address - address + p.size], self.entry.word_order_of(name))
            v = raw * p.scale * p.sign
            if (p.allowed is not None and raw not in p.allowed) or (p.min is not None and v < p.min) \
                    or (p.max is not None and v > p.max):
                return ExcCodes.ILLEGAL_VALUE
        sp = self._spaces[(unit, "holding")]
        sp.registers[address - sp.start:end - sp.start] = values
        command = self._behaviour.on_write(tuple(touched), now)
        self._physics.set_command(command, now)
        self._refresh(self._physics.snapshot)
        self.writes.append(AcceptedWrite(unit, address, tuple(values), tuple(touched), now))
        return None

    def _advance(self, now: datetime) -> datetime:
        now = max(now, self._physics.snapshot.at)
        self._run_periodic_faults(now)
        deadline = self._behaviour.deadline
        if deadline is not None and deadline <= now:
            deadline = max(deadline, self._physics.snapshot.at)
            self._behaviour.deadline = None
            self._physics.set_command(self._behaviour.on_revert(), deadline)
            self.reverts.append(deadline)
            log.info("%s: device-side timeout, back to its own control", self.entry.device.id)
        self._physics.step(now)
        self._refresh(self._physics.snapshot)
        return now

    # -- physics -> registers ----------------------------------------------------------

    def _init_static(self) -> None:
        cfg = self._physics.config
        for name, p in self.entry.points.items():
            if p.role == "max_charge_w":
                self.set(name, cfg.battery_max_charge_w)
            elif p.role == "max_discharge_w":
                self.set(name, cfg.battery_max_discharge_w)
        if "hub4_mode" in self.entry.points:
            self.set("hub4_mode", 1)
        if "min_soc" in self.entry.points:
            self.set("min_soc", cfg.min_soc_pct)
        if "forcible_duration" in self.entry.points:
            self.set("forcible_duration", 0)

    def _refresh(self, s: PhysicsSnapshot) -> None:
        if self._faults.frozen:
            return  # the registers keep the last refresh's values; the physics carries on
        self._write_measurements(s)

    # -- fault events (simulator.hybrid_device.Faults) --------------------------------

    def reboot(self, down_s: float = 0.0) -> None:
        """Reboot now: every writable register back to its power-on value (0, then the entry's
        defaults: Hub4Mode 1, minimum SoC), no external command, timers cleared."""
        self._down_for(down_s)
        now = max(self.clock.now(), self._physics.snapshot.at)
        for name, p in self.entry.points.items():
            if p.writable and p.function == "holding":
                self._set_raw(name, 0)
        self._init_static()
        self._behaviour.deadline = None
        self._physics.set_command(SELF_CONSUMPTION, now)
        self._refresh(self._physics.snapshot)
        self.reboots.append(now)

    def expire_revert(self) -> None:
        """The device-side timeout expires now: the vendor's revert (back to its own control)."""
        now = max(self.clock.now(), self._physics.snapshot.at)
        self._behaviour.deadline = None
        self._physics.set_command(self._behaviour.on_revert(), now)
        self._refresh(self._physics.snapshot)
        self.reverts.append(now)

    def _write_measurements(self, s: PhysicsSnapshot) -> None:
        values = {"soc_pct": s.soc_pct, "battery_power_w": s.battery_power_w, "pv_power_w": s.pv_power_w,
                  "grid_power_w": s.grid_power_w, "inverter_power_w": -s.inverter_ac_power_w}
        counts: dict[str, int] = {}
        for p in self.entry.points.values():
            if p.role in values:
                counts[p.role] = counts.get(p.role, 0) + 1
        for name, p in self.entry.points.items():
            if p.role in values:
                self.set(name, values[p.role] / counts[p.role])

    def _implausible(self, unit: int, fn: str) -> list[int]:
        """A copy of the space with SoC at 250 % and powers at their type's limit."""
        saved = list(self._spaces[(unit, fn)].registers)
        for name, p in self.entry.points.items():
            if (self.entry.unit_of(name), p.function) != (unit, fn):
                continue
            if p.role == "soc_pct":
                self.set(name, 250.0)
            elif p.role in ("battery_power_w", "pv_power_w", "grid_power_w", "inverter_power_w"):
                self._set_raw(name, _RAW_RANGE[p.type][1])
        out = list(self._spaces[(unit, fn)].registers)
        self._spaces[(unit, fn)].registers[:] = saved
        return out


__all__ = ["BEHAVIOURS", "AcceptedWrite", "Behaviour", "CatalogueSimulator"]
