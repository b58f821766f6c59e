"""A SunSpec house's readings from the models its devices offer and answered (pure).

Which models each role's device is read for, the house's values from them
(edge_agent.drivers.sunspec_roles: consumption positive, battery charging
> 0, PV production < 0), the points read fine but holding nothing, and the
battery device's nameplate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edge_agent.drivers.sunspec_points import ModelValues
from edge_agent.drivers.sunspec_roles import (
    BATTERY_COMMANDS,
    BATTERY_SOC,
    BATTERY_W,
    CAPACITY_WH,
    GRID_W,
    NAMEPLATE_READINGS,
    PV_AC_W,
    PV_DC_W,
    ROLE_READINGS,
    WCHAMAX,
    Command,
    Reading,
    Role,
    offered_command,
)
from edge_agent.resources.house import DeviceConfigurationError, Nameplate
from edge_agent.resources.plausibility import (
    HOME_MAX_CAPACITY_WH,
    HOME_MAX_POWER_W,
    Refused,
    rating,
)

ROLE_ORDER: tuple[Role, ...] = ("meter", "battery", "pv", "ev_charger")

Read = Mapping[Role, Mapping[int, ModelValues]]
"""This poll's models by role (the role's device's models)."""


@dataclass(frozen=True, slots=True)
class SunSpecSigns:
    """Signs SunSpec leaves to the vendor: a meter's W (import positive?) per meter role, 802 W
    (discharging positive?)."""

    meter_import_positive: bool = True
    ev_import_positive: bool = True
    battery_discharge_positive: bool = True


@dataclass(frozen=True, slots=True)
class HouseReadings:
    """None: not read, or not implemented."""

    grid_w: float | None
    soc_pct: float | None
    battery_w: float | None
    pv_w: float | None
    ev_w: float | None
    inverter_ac_w: float | None  # the hybrid inverter's AC power, production negative (PV and battery)


def wanted(found: Mapping[Role, frozenset[int]]) -> dict[Role, tuple[int, ...]]:
    """The models each role reads per poll."""
    return {role: tuple(dict.fromkeys(m for r in ROLE_READINGS[role] for m in r.models(found[role])))
            for role in ROLE_ORDER if role in found}


def house_readings(found: Mapping[Role, frozenset[int]], read: Read, signs: SunSpecSigns,
                   hybrid: bool) -> HouseReadings:
    """``hybrid``: PV and battery are one inverter (its AC power is their sum)."""
    grid = _signed(GRID_W.value(found["meter"], read["meter"]), signs.meter_import_positive)
    battery = _signed(BATTERY_W.value(found["battery"], read["battery"]), not signs.battery_discharge_positive)
    pv: float | None = 0.0  # no PV device: no PV
    ac: float | None = None
    if "pv" in found:
        ac = PV_AC_W.value(found["pv"], read["pv"])
        pv = PV_DC_W.value(found["pv"], read["pv"])
        if pv is None and ac is not None:  # hybrid: AC out = PV + discharge
            pv = (ac - battery if battery is not None else None) if hybrid else ac
    ev = None
    if "ev_charger" in found:
        ev = _signed(GRID_W.value(found["ev_charger"], read["ev_charger"]), signs.ev_import_positive)
    return HouseReadings(grid, BATTERY_SOC.value(found["battery"], read["battery"]), battery, pv, ev,
                         ac if hybrid else None)


def _signed(value: float | None, positive: bool) -> float | None:
    return -value if value is not None and not positive else value


def unreadable(found: Mapping[Role, frozenset[int]], read: Read, device_names: Mapping[Role, str]) -> list[Refused]:
    """The points a role needs that a model read fine but holds as not implemented (SunSpec's
    markers: 0x8000, 0xFFFF, NaN) or with a scale factor outside -10..10: their measurement is
    missing, and the device is reported, never taken for 0 W.  Needed: each reading's first chosen
    point (a fallback such as 802 SoC is not)."""
    needed: dict[tuple[str, int], tuple[Mapping[int, ModelValues], list[str]]] = {}  # (device, model)
    for role in ROLE_ORDER:
        for reading in ROLE_READINGS[role] if role in found else ():
            chosen = reading.chosen(found[role])
            if reading.reported and chosen and chosen[0].model in read[role]:
                _, names = needed.setdefault((device_names[role], chosen[0].model), (read[role], []))
                names += [] if chosen[0].name in names else [chosen[0].name]
    out: list[Refused] = []
    for (device, model_id), (models, names) in needed.items():
        v = models[model_id]
        bad = [b for b in v.bad_scale if b.split(" ")[0] in names]  # "W (W_SF=-20)"
        if bad:
            out.append(Refused("device", "scale_factor", f"{device} model {model_id}: "
                               f"{', '.join(bad)}: scale factor outside -10..10, read as missing"))
        gone = [n for n in names if v.get(n) is None and not any(b.split(" ")[0] == n for b in bad)]
        if gone:
            out.append(Refused("device", "not_implemented", f"{device} model {model_id}: "
                               f"{', '.join(gone)} not implemented (SunSpec marker), read as missing"))
    return out




def check_roles(found: Mapping[Role, frozenset[int]], devices: Mapping[Role, str], hybrid: bool,
                address: str) -> Command:
    """The battery's command; DeviceConfigurationError if a device (``devices``: role -> name) cannot
    serve its role.  ``address``: the battery device's host:port."""
    split = len(set(devices.values())) > 1

    def where(role: Role) -> str:
        return f"the {role.replace('_', ' ')} device {devices[role]}" if split else f"device {devices[role]}"

    for role in ("meter", "ev_charger"):
        if role in found and GRID_W.source(found[role]) is None:
            raise DeviceConfigurationError(
                f"{where(role)} offers SunSpec models {sorted(found[role])}: a meter model "
                "(203; or 201-204, 211-214) is needed" if split else
                f"device at {address} offers SunSpec models {sorted(found[role])}: 203 meter and battery "
                "control (124 storage or 704 DER controls) are needed")
    bat = found["battery"]
    command = offered_command(BATTERY_COMMANDS, bat)
    if command is None:
        raise DeviceConfigurationError(f"{where('battery')} offers SunSpec models {sorted(bat)}: battery control "
                                       "(124 storage or 704 DER controls) is needed")
    if BATTERY_SOC.source(bat) is None:
        raise DeviceConfigurationError("no state of charge: without model 124 the device needs 713 or 802")
    pv = found.get("pv", frozenset())
    if "pv" in found and not hybrid and PV_DC_W.source(pv) is None and PV_AC_W.source(pv) is None:
        raise DeviceConfigurationError(f"{where('pv')} offers SunSpec models {sorted(pv)}: PV power needs an "
                                       "inverter model (101-103, 111-113, 701) or 160 MPPT")
    return command



@dataclass(frozen=True, slots=True)
class NameplateRead:
    nameplate: Nameplate
    rated_w: float | None
    """The inverter's own rating if plausible (a hybrid's PV rating: the base of WMaxLimPct)."""
    refused: tuple[Refused, ...]
    not_controllable: str | None
    """Why the battery cannot be driven (a bad 124 WChaMax); None if it can."""


def nameplate_models(offered: frozenset[int]) -> list[int]:
    """The battery device's models its nameplate is read from."""
    return sorted({p.model for r in NAMEPLATE_READINGS if (p := r.source(offered)) is not None}
                  | ({WCHAMAX.model} & offered))


def sunspec_nameplate(offered: frozenset[int], read: Mapping[int, ModelValues], command: Command) -> NameplateRead:
    """The battery device's nameplate from ``read`` (its :func:`nameplate_models`), each value refused
    if no home has it.  A command in % needs its base (124 WChaMax), one in W the charge and
    discharge ratings that bound it: DeviceConfigurationError if they are missing."""
    refused: list[Refused] = []

    def plausible(reading: Reading) -> float | None:
        p = reading.source(offered)
        if p is None:
            return None
        wh = reading is CAPACITY_WH
        v, why = rating(p.label, p.value(read.get(p.model)), HOME_MAX_CAPACITY_WH if wh else HOME_MAX_POWER_W,
                        "Wh" if wh else "W")
        refused.extend([why] if why is not None else [])
        return v

    rated, capacity, max_charge, max_discharge = (plausible(r) for r in NAMEPLATE_READINGS)
    not_controllable = None
    if command.scale == "pct":
        raw_wchamax = WCHAMAX.value(read.get(WCHAMAX.model))
        wchamax, why = rating(WCHAMAX.label, raw_wchamax)
        refused.extend([why] if why is not None else [])
        if raw_wchamax and not wchamax:  # a bad register: setpoints cannot be scaled, the battery not driven
            not_controllable = f"{WCHAMAX.label} reads {raw_wchamax:g} W, not a home battery"
        elif not wchamax:
            raise DeviceConfigurationError(f"{WCHAMAX.label} is not implemented: cannot scale battery setpoints")
        wchamax = wchamax or max_charge or max_discharge or 1.0  # never used: the battery is not controllable
    else:
        wchamax = max_charge
        if not (wchamax and max_discharge):
            raise DeviceConfigurationError("no battery charge/discharge rating (702 WChaRteMaxRtg, "
                                           "WDisChaRteMaxRtg): cannot bound WSet")
    nameplate = Nameplate(rated_power_w=rated or wchamax, capacity_wh=capacity or 0.0,
                          max_charge_w=max_charge or wchamax, max_discharge_w=max_discharge or wchamax,
                          wchamax_w=wchamax)
    return NameplateRead(nameplate, rated, tuple(refused), not_controllable)


__all__ = ["ROLE_ORDER", "HouseReadings", "NameplateRead", "Read", "SunSpecSigns", "check_roles", "house_readings", "nameplate_models",
           "sunspec_nameplate", "unreadable", "wanted"]
