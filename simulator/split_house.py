"""One house behind four Modbus TCP devices: battery inverter, PV inverter, grid meter and EV charger.

Many houses have no hybrid inverter: an AC-coupled battery inverter, a
separate PV inverter, a grid meter at the connection point and a wallbox.
This simulator keeps one house physics (the :class:`SunSpecHybridSimulator`
model, never served itself) and serves a SunSpec *view* of it per device,
each on its own port with its own common model (model 1), its own faults
and its own connections:

=============  =========================  ============================================
role           models after model 1       what it is
=============  =========================  ============================================
battery        120, 124, 802              nameplate, storage controls, battery (SoC, W)
pv             120, 123, 160              rating, curtailment (WMaxLimPct), MPPT (DC W)
meter          203                        grid meter at the connection point
ev_charger     203                        the wallbox's meter: its power, part of the load
=============  =========================  ============================================

A view's model is the same definition (and length) as in the hybrid image,
so a read or write of a view's model maps one to one onto the hybrid's: a
write to the battery view's model 124 is validated and applied by the
hybrid (revert timers included), and every request first steps the house
to the clock.  The EV charger is measurement only: while a car charges
(``EvSchedule``) it takes up to its power out of the household load, so
the house balance (meter = load + battery + PV) is unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from simulator.hybrid_device import (
    _READ_FCS,
    _WRITE_FCS,
    DroppableServer,
    FaultInjection,
    SimulatorConfig,
    SunSpecHybridSimulator,
)
from simulator.sunspec_image import DEFAULT_BASE_ADDRESS, ModelSpec, SunSpecImage
from vpp_common.clock import Clock

log = logging.getLogger(__name__)

Role = Literal["battery", "pv", "meter", "ev_charger"]
ROLES: tuple[Role, ...] = ("battery", "pv", "meter", "ev_charger")
VIEW_MODELS: dict[Role, tuple[int, ...]] = {
    "battery": (120, 124, 802),
    "pv": (120, 123, 160),
    "meter": (203,),
    "ev_charger": (203,),
}
_MODEL_NAMES: dict[Role, str] = {"battery": "Battery Inverter", "pv": "PV Inverter", "meter": "Grid Meter",
                                 "ev_charger": "EV Charger"}


@dataclass(frozen=True)
class EvSchedule:
    """A car charging every day from ``start_hour`` to ``end_hour`` (UTC, may wrap midnight) at up to
    ``power_w`` W, taken from the household load (so never more than the load)."""

    start_hour: float = 18.0
    end_hour: float = 22.0
    power_w: float = 3_700.0

    def power_at(self, now: datetime, load_w: float) -> float:
        h = now.hour + now.minute / 60 + now.second / 3600
        on = self.start_hour <= h < self.end_hour if self.start_hour <= self.end_hour \
            else (h >= self.start_hour or h < self.end_hour)
        return max(0.0, min(self.power_w, load_w)) if on else 0.0


class DeviceView(FaultInjection):
    """One device of the split house: a SunSpec image of some of the house's models, served on its own port."""

    def __init__(self, house: SplitHouseSimulator, role: Role, host: str, port: int, unit_id: int) -> None:
        self.house = house
        self.role = role
        self.host = host
        self.port = port
        self.unit_id = unit_id
        hybrid = house.hybrid
        cfg = hybrid.config
        specs = {160: ModelSpec(160, repeat={"module": cfg.mppt_modules})}
        self.image = SunSpecImage([ModelSpec(1), *(specs.get(m, ModelSpec(m)) for m in VIEW_MODELS[role])],
                                  base_address=DEFAULT_BASE_ADDRESS)
        self.image.set(1, "Mn", cfg.manufacturer)
        self.image.set(1, "Md", _MODEL_NAMES[role])
        self.image.set(1, "SN", f"{cfg.serial_number}-{role}")
        self.image.set(1, "Vr", cfg.version)
        # view address -> hybrid address, per forwarded model (same definition, same length)
        self._maps: list[tuple[int, int, int]] = []  # (view start, hybrid start, registers incl. ID and L)
        for m in VIEW_MODELS[role]:
            v, h = self.image.model(m), hybrid.image.model(m)
            assert v.length == h.length, (m, v.length, h.length)
            self._maps.append((v.address, h.address, v.length + 2))
        self._init_faults()
        self._server: DroppableServer | None = None
        self.requests = 0
        self._ev_wh = 0.0  # the wallbox's own energy counter (the house meter's is not the car's)
        self._ev_at: datetime | None = None
        self._ev_w = 0.0
        self._refresh()

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        device = SimDevice(id=self.unit_id, simdata=[SimData(self.image.base_address, values=self.image.registers,
                                                             datatype=DataType.REGISTERS)], action=self._action)
        self.port = await self._serve(device, self.host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        self._signal_faults_changed()
        if server is not None:
            await server.stop()

    async def wait_listening(self) -> None:
        if self._server is not None:
            await self._server.wait_listening()

    # -- Modbus ------------------------------------------------------------------
    def _to_hybrid(self, address: int, count: int) -> int | None:
        for v, h, n in self._maps:
            if v <= address and address + count <= v + n:
                return h + (address - v)
        return None

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        read_back = function_code in _WRITE_FCS and set_values is None
        if not read_back:
            self.requests += 1
            refused = await self._apply_faults()
            if refused is not None:
                return refused
        if function_code not in _READ_FCS | _WRITE_FCS:
            return ExcCodes.ILLEGAL_FUNCTION
        hybrid = self.house.hybrid
        now = hybrid.advance(self.house.clock.now())
        if function_code in _WRITE_FCS and set_values is not None:
            target = self._to_hybrid(address, len(set_values))
            if target is None:
                return ExcCodes.ILLEGAL_ADDRESS  # model 1, a header, or across models: nothing writable
            refused = hybrid.accept_write(target, [int(v) for v in set_values], now)
            if refused is not None:
                return refused
        self._refresh()
        image = self.image.registers
        offset = self.image.base_address - start_address
        registers[offset:offset + len(image)] = image
        return None

    def _refresh(self) -> None:
        """Copy the house's models into this view, then what only this device measures."""
        if self._faults.frozen:
            return  # this device's registers stand still; the house carries on
        hybrid_regs = self.house.hybrid.image.registers
        base = self.house.hybrid.image.base_address
        for v, h, n in self._maps:
            self.image.write(v, hybrid_regs[h - base:h - base + n])
        if self.role == "ev_charger":
            s = self.house.hybrid.physics.snapshot
            ev_w = self.house.ev.power_at(s.at, s.load_power_w)
            sign = 1.0 if self.house.hybrid.config.meter_sign == "import_positive" else -1.0
            self.image.set(203, "W", sign * ev_w)
            for name in ("WphA", "WphB", "WphC"):
                self.image.set(203, name, sign * ev_w / 3.0)
            for name in ("AphA", "AphB", "AphC"):
                self.image.set(203, name, sign * ev_w / 3.0 / self.house.hybrid.config.grid_voltage_v)
            self.image.set(203, "A", sign * ev_w / self.house.hybrid.config.grid_voltage_v)
            if self._ev_at is not None:
                self._ev_wh += self._ev_w * max(0.0, (s.at - self._ev_at).total_seconds()) / 3600
            self._ev_at, self._ev_w = s.at, ev_w
            start = self.house.hybrid.config.energy_counter_start_wh
            self.image.set(203, "TotWhImp" if sign > 0 else "TotWhExp", start + self._ev_wh)
            self.image.set(203, "TotWhExp" if sign > 0 else "TotWhImp", start)
        if self._faults.implausible:
            for model_id, name, raw in ((124, "ChaState", 2500), (802, "SoC", 2500), (203, "W", 0x7FFF)):
                if model_id in VIEW_MODELS[self.role]:
                    self.image.set_raw(model_id, name, raw)


class SplitHouseSimulator:
    """A house whose battery inverter, PV inverter, grid meter and EV charger are separate devices.

    ``roles``: which devices to serve (default all four), each on its own port
    (``ports``, default free ones; see :attr:`views` after :meth:`start`).
    """

    def __init__(self, config: SimulatorConfig | None, clock: Clock, host: str = "127.0.0.1",
                 roles: tuple[Role, ...] = ROLES, ports: dict[Role, int] | None = None,
                 unit_ids: dict[Role, int] | None = None, ev: EvSchedule | None = None,
                 start: datetime | None = None) -> None:
        unknown = set(roles) - set(ROLES)
        if unknown or len(set(roles)) != len(roles):
            raise ValueError(f"SplitHouseSimulator.roles: distinct roles of {ROLES}, got {roles}")
        self.clock = clock
        self.ev = ev or EvSchedule()
        self.hybrid = SunSpecHybridSimulator(config, clock, host=host, start=start)  # the physics, never served
        self.views: dict[Role, DeviceView] = {
            r: DeviceView(self, r, host, (ports or {}).get(r, 0), (unit_ids or {}).get(r, 1)) for r in roles}

    async def start(self) -> None:
        started: list[DeviceView] = []
        try:
            for view in self.views.values():
                await view.start()
                started.append(view)
        except BaseException:
            for view in started:
                await view.stop()
            raise
        log.info("split house: %s", ", ".join(f"{r} on {v.host}:{v.port}" for r, v in self.views.items()))

    async def stop(self) -> None:
        for view in self.views.values():
            await view.stop()

    async def __aenter__(self) -> SplitHouseSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def port(self, role: Role) -> int:
        return self.views[role].port

    def ev_power_w(self) -> float:
        s = self.hybrid.snapshot()
        return self.ev.power_at(s.at, s.load_power_w)


__all__ = ["ROLES", "VIEW_MODELS", "DeviceView", "EvSchedule", "Role", "SplitHouseSimulator"]
