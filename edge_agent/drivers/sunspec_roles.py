"""What a house's quantities and commands are in SunSpec: models and points as data.

The SunSpec counterpart of a vendor catalogue entry (edge_agent/catalogue/*.toml): every
model id and point name the SunSpec Resource Manager, the capability report and the frozen-data
check use is here, with the sign that turns SunSpec's convention into the house's (power
positive when consuming) and the unit a setpoint is written in.

* A :class:`Reading` is a quantity read from one of several models, in order of preference: the
  first choice with a model the device offers is the one read, and its points are tried in turn
  until one is implemented (713 SoC, else 802 SoC).  Signs the model leaves to the vendor (meter
  and 802 ``W``) are configured per device and applied by the Resource Manager.
* A :class:`Command` is one model's points written together, in order (a value in place before
  its enable), the points the device must then hold (read back every poll) and the writes that
  hand control back.
* :data:`COUNTERS` are what must advance while power flows (edge_agent.resources.frozen).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from edge_agent.drivers.sunspec_points import GroupValues

Sign = Literal[1, -1]
Role = Literal["battery", "pv", "meter", "ev_charger"]

METER_MODELS = (203, 213, 201, 211, 202, 212, 204, 214)
"""SunSpec meters, in order of preference: W is total real power in all of them."""
INVERTER_MODELS = (103, 113, 101, 111, 102, 112, 701)
"""AC power of an inverter (production positive), in order of preference."""


@dataclass(frozen=True, slots=True)
class Point:
    """One SunSpec point; ``group``: summed over the instances of this repeating group (160's modules);
    ``sf``: its scale factor point (the resolution of a counter or SoC)."""

    model: int
    name: str
    sign: Sign = 1
    group: str = ""
    sf: str = ""

    @property
    def label(self) -> str:
        return f"model {self.model} {self.name}"

    def value(self, values: GroupValues | None) -> float | None:
        """The value in the house's sign; None if not read or not implemented (in every instance)."""
        if values is None:
            return None
        if not self.group:
            return _num(values, self.name, self.sign)
        found = [v for inst in values.groups.get(self.group, ()) if (v := _num(inst, self.name, self.sign)) is not None]
        return sum(found) if found else None


def _num(values: GroupValues, name: str, sign: Sign) -> float | None:
    v = values.get(name)
    return sign * float(v) if isinstance(v, (int, float)) else None


@dataclass(frozen=True, slots=True)
class Reading:
    """A quantity: ``choices`` in order of preference, each a tuple of points tried in turn.
    ``reported``: the first chosen point not implemented is a device problem to report (a 160
    module may legitimately be absent; a fallback such as 802 SoC is not needed)."""

    choices: tuple[tuple[Point, ...], ...]
    reported: bool = True

    @classmethod
    def one_of(cls, *points: Point, reported: bool = True) -> Reading:
        return cls(tuple((p,) for p in points), reported)

    def chosen(self, offered: Collection[int]) -> tuple[Point, ...]:
        """The points of the first choice with a model in ``offered`` (() if none)."""
        return next((c for c in self.choices if any(p.model in offered for p in c)), ())

    def models(self, offered: Collection[int]) -> tuple[int, ...]:
        """The offered models to read for this quantity."""
        return tuple(dict.fromkeys(p.model for p in self.chosen(offered) if p.model in offered))

    def source(self, offered: Collection[int]) -> Point | None:
        """The point this quantity comes from when everything is implemented."""
        return next((p for p in self.chosen(offered) if p.model in offered), None)

    def value(self, offered: Collection[int], read: Mapping[int, GroupValues]) -> float | None:
        """The first implemented value of the chosen points among the models ``read``."""
        return next((v for p in self.chosen(offered) if (v := p.value(read.get(p.model))) is not None), None)


# -- measurements (sign: the house's, consumption positive) ----------------------------------------
GRID_W = Reading.one_of(*(Point(m, "W") for m in METER_MODELS))
"""Grid (or EV charger) power; the sign depends on the meter vendor (configured)."""
BATTERY_SOC = Reading(((Point(124, "ChaState", sf="ChaState_SF"),),
                       (Point(713, "SoC", sf="Pct_SF"), Point(802, "SoC", sf="SoC_SF"))))
BATTERY_W = Reading.one_of(Point(802, "W"))
"""Model 802 defines no sign: configured (discharging > 0 by default)."""
MPPT_MODEL, MPPT_MODULE = 160, "module"
PV_DC_W = Reading.one_of(Point(MPPT_MODEL, "DCW", sign=-1, group=MPPT_MODULE), reported=False)
"""PV power from the MPPTs (production negative); the first choice."""
PV_AC_W = Reading.one_of(*(Point(m, "W", sign=-1) for m in INVERTER_MODELS))
"""An inverter's AC power (production negative): a hybrid's includes the battery's."""

ROLE_READINGS: Mapping[Role, tuple[Reading, ...]] = {
    "meter": (GRID_W,), "ev_charger": (GRID_W,), "battery": (BATTERY_SOC, BATTERY_W), "pv": (PV_DC_W, PV_AC_W)}
"""What each role's device is read for, every poll."""
# -- nameplate ------------------------------------------------------------------------------------
RATED_W = Reading.one_of(Point(120, "WRtg"), Point(702, "WMaxRtg"))
"""The inverter's rating: the base of WMaxLimPct."""
CAPACITY_WH = Reading.one_of(Point(120, "WHRtg"), Point(713, "WHRtg"), Point(802, "WHRtg"))
MAX_CHARGE_W = Reading.one_of(Point(120, "MaxChaRte"), Point(702, "WChaRteMaxRtg"))
MAX_DISCHARGE_W = Reading.one_of(Point(120, "MaxDisChaRte"), Point(702, "WDisChaRteMaxRtg"))
NAMEPLATE_READINGS = (RATED_W, CAPACITY_WH, MAX_CHARGE_W, MAX_DISCHARGE_W)
WCHAMAX = Point(124, "WChaMax")
"""The base of 124's InWRte/OutWRte percentages."""

# -- commands -------------------------------------------------------------------------------------
Carried = Literal["setpoint", "revert_s", "charging"]


@dataclass(frozen=True, slots=True)
class Write:
    """A point set to a constant or to what the command carries: the setpoint (times ``sign``:
    SunSpec's sign from the house's), the revert time, or 1 when charging else 0.  ``tolerance``:
    how far it may read back from what was written and still hold (modes and enables exactly; the
    device stores what its scale factor allows: 0.01 %, 0.1 %, 1 W)."""

    point: str
    value: int | Carried
    sign: Sign = 1
    tolerance: float = 0.0


@dataclass(frozen=True, slots=True)
class Command:
    """``scale``: the setpoint in W, or in % of a rating (124 WChaMax, the PV inverter's rating)."""

    model: int
    scale: Literal["W", "pct"]
    writes: tuple[Write, ...]
    owned: tuple[str, ...]
    release: tuple[Write, ...]
    how: str

    def points(self, setpoint: float, revert_s: int) -> dict[str, float | int]:
        """The points to write, in order, for ``setpoint`` (in ``scale``)."""
        return {w.point: _carried(w, setpoint, revert_s) for w in self.writes}

    def release_points(self) -> dict[str, float | int]:
        return {w.point: _carried(w, 0.0, 0) for w in self.release}

    def tolerance(self) -> dict[str, float]:
        """Read-back tolerance by point (edge_agent.resources.readback)."""
        return {w.point: w.tolerance for w in self.writes + self.release}


def _carried(w: Write, setpoint: float, revert_s: int) -> float | int:
    if w.value == "setpoint":
        return setpoint * w.sign
    if w.value == "revert_s":
        return revert_s
    if w.value == "charging":
        return 1 if setpoint > 0 else 0
    return w.value


def offered_command(commands: tuple[Command, ...], offered: Collection[int]) -> Command | None:
    return next((c for c in commands if c.model in offered), None)


# The battery held at a power: 124's charge and discharge limits meet at it (StorCtl_Mod 3, InWRte = P,
# OutWRte = -P), else 704's WSet (injection positive); a revert timer hands it back if not refreshed.
BATTERY_COMMANDS = (
    Command(124, "pct", (Write("InWRte", "setpoint", tolerance=0.5), Write("OutWRte", "setpoint", -1, 0.5),
                         Write("InOutWRte_RvrtTms", "revert_s"), Write("ChaGriSet", "charging"),
                         Write("StorCtl_Mod", 3)),
            owned=("StorCtl_Mod", "InWRte", "OutWRte"), release=(Write("StorCtl_Mod", 0),),
            how="model 124 InWRte/OutWRte"),
    Command(704, "W", (Write("WSetRvrtTms", "revert_s"), Write("WSetMod", 1), Write("WSet", "setpoint", -1, 10.0),
                       Write("WSetEna", 1)),
            owned=("WSetEna", "WSet"), release=(Write("WSetEna", 0),), how="model 704 WSet"),
)
# PV capped at a % of the inverter's rating: 704 first (as evcc tries it), else 123.
PV_LIMIT_COMMANDS = (
    Command(704, "pct", (Write("WMaxLimPct", "setpoint", tolerance=0.5), Write("WMaxLimPctRvrtTms", "revert_s"),
                         Write("WMaxLimPctEna", 1)),
            owned=("WMaxLimPct", "WMaxLimPctEna"), release=(Write("WMaxLimPctEna", 0),),
            how="model 704 WMaxLimPct"),
    Command(123, "pct", (Write("WMaxLimPct", "setpoint", tolerance=0.5), Write("WMaxLimPct_RvrtTms", "revert_s"),
                         Write("WMaxLim_Ena", 1)),
            owned=("WMaxLimPct", "WMaxLim_Ena"), release=(Write("WMaxLim_Ena", 0),),
            how="model 123 WMaxLimPct"),
)


# -- what must advance ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Counter:
    """An energy counter ``name`` (the sum of ``points``) that advances at the power ``power`` flows, or only
    at production (``production_only``)."""

    name: str
    points: tuple[str, ...]
    power: str
    sf: str
    production_only: bool


_METER_COUNTER = Counter("TotWh", ("TotWhImp", "TotWhExp"), "W", "TotWh_SF", production_only=False)
_INVERTER_COUNTER = Counter("WH", ("WH",), "W", "WH_SF", production_only=True)
COUNTERS: Mapping[int, Counter] = {
    **{m: _METER_COUNTER for m in METER_MODELS},
    **{m: _INVERTER_COUNTER for m in (101, 102, 103, 111, 112, 113)},
    # injection for sure; some devices leave TotWhAbs at 0 while absorbing
    701: Counter("TotWh", ("TotWhInj", "TotWhAbs"), "W", "TotWh_SF", production_only=True),
}
MPPT_COUNTER = Counter("DCWH", ("DCWH",), "DCW", "DCWH_SF", production_only=True)
"""Per 160 module, with the modules' timestamp ``Tms`` at 1/s."""
HEARTBEATS: Mapping[int, Point] = {802: Point(802, "Hb")}
"""Points a device advances every second."""


__all__ = [
    "BATTERY_COMMANDS", "BATTERY_SOC", "BATTERY_W", "CAPACITY_WH", "COUNTERS", "GRID_W", "HEARTBEATS",
    "INVERTER_MODELS", "MAX_CHARGE_W", "MAX_DISCHARGE_W", "METER_MODELS", "MPPT_COUNTER", "MPPT_MODEL",
    "MPPT_MODULE", "NAMEPLATE_READINGS", "PV_AC_W", "PV_DC_W", "PV_LIMIT_COMMANDS", "RATED_W", "ROLE_READINGS",
    "WCHAMAX", "Command", "Counter", "Point", "Reading", "Role", "Write", "offered_command",
]
