"""A house of any mix of simulated devices on one balance (``vpp-sim house --with ... --plug ...``):
SunSpec Modbus devices (battery inverter, PV inverter, grid meter, EV charger: simulator/split_house.py),
LAN micro-inverters (OpenDTU, APsystems EZ1, Enphase IQ Gateway), smart plugs (Shelly, Tasmota) with a
fixed load or an appliance behind them (simulator/appliances.py), and LAN meters (DSMR 5 P1, Shelly
Pro 3EM, Pro EM).  Every meter reads the same connection point:

    grid = base load + EV + plugs' draw + battery charge - Modbus PV - micro-inverters' output   (import > 0)

One physics (simulator/physics.py, the split house's) carries it: the plugs and micro-inverters are its
``other_w``, so the battery's self-consumption covers them as a real one regulating on its meter does,
and the SunSpec meter, the P1 port and the Shelly meters all show the same number.  A role that is not
served is not in the house: no battery (0 W), no Modbus PV (0 kWp), no EV.  The EV adds to the base load
while it charges (its schedule: split_house.EvSchedule).  Each device keeps its own port and faults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from simulator.appliances import WashingMachine, make_appliance
from simulator.hybrid_device import SimulatorConfig
from simulator.lan_base import LanFaults
from simulator.lan_cli import make_lan_sim
from simulator.p1_device import P1Sim
from simulator.physics import PhysicsConfig
from simulator.shelly_device import ShellySim
from simulator.split_house import ROLES, EvSchedule, Role, SplitHouseSimulator
from simulator.tasmota_device import TasmotaSim
from vpp_common.clock import Clock

MICROS = {"opendtu": "opendtu_hoymiles", "ez1": "apsystems_ez1", "envoy": "enphase_envoy"}
METERS = {"p1": "dsmr5_p1", "pro3em": "shelly_pro_3em", "proem": "shelly_pro_em"}
PLUG_MODELS = {"shelly": "shelly_plug_s", "tasmota": "tasmota_plug"}
APPLIANCE_NAMES = ("washer", "freezer", "station")
WITH_CHOICES = (*ROLES, *MICROS, *METERS)
_LIMIT_W = 50_000.0


@dataclass(frozen=True)
class PlugSpec:
    """A plug ``id`` with a fixed ``load_w`` or an ``appliance`` (washer, freezer, station) behind it."""

    id: str
    load_w: float | None = None
    appliance: str | None = None
    model: str = "shelly_plug_s"


def parse_plug(text: str) -> PlugSpec:
    """``ID=W`` or ``ID=washer|freezer|station``, ``@tasmota`` after it for a Tasmota plug (default Shelly)."""
    body, _, kind = text.partition("@")
    pid, _, what = body.partition("=")
    if kind and kind not in PLUG_MODELS:
        raise ValueError(f"--plug {text!r}: @{kind}? a plug is @shelly (default) or @tasmota")
    model = PLUG_MODELS[kind or "shelly"]
    if not pid or not pid.replace("_", "").replace("-", "").isalnum() or not what:
        raise ValueError(f"--plug {text!r}: need ID=W or ID=washer|freezer|station (ID: letters, digits, - or _)")
    if what in APPLIANCE_NAMES:
        return PlugSpec(pid, appliance=what, model=model)
    try:
        w = float(what)
    except ValueError:
        raise ValueError(f"--plug {text!r}: {what!r} is neither watts nor one of {', '.join(APPLIANCE_NAMES)}") from None
    if not 0 <= w <= 4000:  # false for NaN; a plug carries at most 16 A
        raise ValueError(f"--plug {text!r}: need 0 <= W <= 4000")
    return PlugSpec(pid, load_w=w, model=model)


@dataclass(frozen=True)
class MixSpec:
    """What the house has: ``devices`` are Modbus roles, micro-inverters and meters (WITH_CHOICES,
    each at most once), ``plugs`` its smart plugs; ``base_load_w`` what it draws besides plugs and EV,
    ``micro_pv_w`` what each micro-inverter's panels give."""

    devices: tuple[str, ...] = ()
    plugs: tuple[PlugSpec, ...] = ()
    base_load_w: float = 300.0
    micro_pv_w: float = 600.0
    soc_pct: float = 50.0
    apply_delay_s: float = 3.0
    arm_washers: bool = True

    def __post_init__(self) -> None:
        unknown = [d for d in self.devices if d not in WITH_CHOICES]
        if unknown:
            raise ValueError(f"--with {unknown[0]}: choose from {', '.join(WITH_CHOICES)}")
        twice = sorted({d for d in self.devices if self.devices.count(d) > 1})
        if twice:
            raise ValueError(f"--with {twice[0]} twice: each device once")
        ids = [p.id for p in self.plugs]
        clash = sorted({i for i in ids if ids.count(i) > 1 or i in WITH_CHOICES or i in ("dtu", "grid_meter")})
        if clash:
            raise ValueError(f"--plug {clash[0]}: ids must be unique and not a device's name")
        if not self.devices and not self.plugs:
            raise ValueError("an empty house: give --with or --plug")
        for name, v, hi in (("--load", self.base_load_w, _LIMIT_W), ("--micro-pv", self.micro_pv_w, 2_000.0),
                            ("--apply-delay", self.apply_delay_s, 600.0), ("--soc", self.soc_pct, 100.0)):
            if not (isinstance(v, int | float) and math.isfinite(v) and 0 <= v <= hi):
                raise ValueError(f"{name} {v}: need 0 .. {hi:g}")

    @property
    def modbus(self) -> tuple[Role, ...]:
        return tuple(r for r in ROLES if r in self.devices)

    @property
    def micros(self) -> tuple[str, ...]:
        return tuple(d for d in self.devices if d in MICROS)

    @property
    def meters(self) -> tuple[str, ...]:
        return tuple(d for d in self.devices if d in METERS)


class _BalanceP1(P1Sim):
    """A P1 port whose power is the house's balance."""

    def __init__(self, house: MixHouse) -> None:
        self.house = house
        super().__init__(interval_s=1.0)

    @property  # type: ignore[override]  # P1Sim's attribute, here the house's balance
    def power_w(self) -> float:
        return self.house.grid_w()

    @power_w.setter
    def power_w(self, value: float) -> None:
        """Not set from outside: the house makes it (P1Sim's constructor sets it)."""


class _BalanceShelly(ShellySim):
    """A Shelly Pro 3EM / Pro EM at the connection point: its power is the house's balance."""

    def __init__(self, house: MixHouse, model: str) -> None:
        self.house = house
        super().__init__(model, mac="C8F09E0A1B2C" if model == "shelly_pro_3em" else "C8F09E0A1B2D")

    @property  # type: ignore[override]  # ShellySim's attribute, here the house's balance
    def power_w(self) -> float:
        return self.house.grid_w()

    @power_w.setter
    def power_w(self, value: float) -> None:
        """Not set from outside: the house makes it."""


class MixHouse:
    """The devices of ``spec`` on one balance, on ``clock`` (the physics and the appliances; the LAN
    devices' counters and a limit's apply delay run in real seconds, as in their own simulators)."""

    def __init__(self, spec: MixSpec, clock: Clock, host: str = "127.0.0.1") -> None:
        self.spec = spec
        self.clock = clock
        roles = spec.modbus
        battery_w = 5_000.0 if "battery" in roles else 0.0
        self.ev = EvSchedule()  # before the physics: its load profile asks it
        physics = PhysicsConfig(initial_soc_pct=spec.soc_pct, pv_kwp=8.0 if "pv" in roles else 0.0,
                                battery_max_charge_w=battery_w, battery_max_discharge_w=battery_w,
                                load_profile=self._load_w)
        self.split = SplitHouseSimulator(SimulatorConfig(physics=physics), clock, host=host, roles=roles, ev=self.ev)
        self.split.hybrid.physics.other_w = self._other_w
        self.micros: dict[str, LanFaults] = {}
        for name in spec.micros:
            sim = make_lan_sim(MICROS[name], power_w=-spec.micro_pv_w)
            pv = sim.pv  # type: ignore[attr-defined]  # every micro-inverter has one
            pv.apply_delay_s = spec.apply_delay_s
            if name == "opendtu":  # a DTU of several Hoymiles (lan-house's 2 kW); the EZ1 is 800 W, the Envoy's 2 kW
                pv.rated_w = pv.limit_w = 2_000.0
            self.micros[name] = sim
        self.meters: dict[str, LanFaults] = {
            m: _BalanceP1(self) if m == "p1" else _BalanceShelly(self, METERS[m]) for m in spec.meters}
        self.plugs: dict[str, ShellySim | TasmotaSim] = {}
        for p in spec.plugs:
            plug: ShellySim | TasmotaSim = ShellySim("shelly_plug_s") if p.model == "shelly_plug_s" else TasmotaSim()
            if p.appliance is not None:
                appliance = make_appliance(p.appliance, clock)
                if isinstance(appliance, WashingMachine) and spec.arm_washers:
                    appliance.arm()
                plug.appliance = appliance
            else:
                plug.load_w = float(p.load_w or 0.0)
            self.plugs[p.id] = plug

    # -- the balance ---------------------------------------------------------------------------
    def _load_w(self, now: datetime) -> float:
        """The physics' household load: the base load, and the car while it charges."""
        ev = self.ev.power_at(now, math.inf) if "ev_charger" in self.spec.modbus else 0.0
        return self.spec.base_load_w + ev

    def plugs_w(self) -> float:
        return sum(p.plug_load_w() for p in self.plugs.values())

    def micro_pv_w(self) -> float:
        """What the micro-inverters give now (W >= 0), each limit applied once its delay has passed."""
        total = 0.0
        for sim in self.micros.values():
            pv = sim.pv  # type: ignore[attr-defined]
            pv.advance()
            total += pv.power_w()
        return total

    def _other_w(self, _now: datetime) -> float:
        return self.plugs_w() - self.micro_pv_w()

    def grid_w(self) -> float:
        """The connection point now (import > 0), as every meter of the house reads it."""
        hybrid = self.split.hybrid
        hybrid.advance(self.clock.now())
        return hybrid.physics.snapshot.grid_power_w

    def device(self, name: str) -> LanFaults | ShellySim | TasmotaSim | None:
        """A LAN device or plug by its id (for a fault control channel); None for an unknown one."""
        return self.micros.get(name) or self.meters.get(name) or self.plugs.get(name)

    # -- serving -------------------------------------------------------------------------------
    async def start(self, host: str | None = None, first_port: int | None = None) -> dict[str, int]:
        """Start every device, the Modbus ones first (``first_port``: on it and the next ones; default
        free ports); their ports by id (Modbus role, micro-inverter, meter or plug id)."""
        at = (lambda i: 0) if first_port is None else (lambda i: first_port + i)
        for i, view in enumerate(self.split.views.values()):
            view.port = at(i)
            if host is not None:
                view.host = host
        await self.split.start()
        ports: dict[str, int] = {r: v.port for r, v in self.split.views.items()}
        try:
            lan: list[tuple[str, LanFaults]] = [*self.micros.items(), *self.meters.items(), *self.plugs.items()]
            for name, sim in lan:
                port = at(len(ports))
                ports[name] = await sim.start(host, port)  # type: ignore[attr-defined]
        except BaseException:
            await self.stop()
            raise
        return ports

    async def stop(self) -> None:
        for sim in [*self.meters.values(), *self.micros.values(), *self.plugs.values()]:
            if sim.listener is not None:
                await sim.stop()  # type: ignore[attr-defined]
        await self.split.stop()


__all__ = ["APPLIANCE_NAMES", "METERS", "MICROS", "PLUG_MODELS", "WITH_CHOICES", "MixHouse", "MixSpec", "PlugSpec",
           "parse_plug"]
