"""What a house's devices can and cannot do, from the SunSpec models they offer (pure).

Stated once at start-up (log), by ``edge-agent scan`` and over the uplink (a
resource that cannot be controlled is NOT_CONTROLLABLE, no flexibility is
advertised for it, and plans for it are rejected with the reason).

The battery is controlled only when its power is *measured*: with a hybrid
that has no battery model (802) and no MPPT model (160), the inverter's AC
power is PV and battery together, and nothing separates them.  A setpoint
could then neither be checked (is the battery doing it?) nor bounded (ramp,
reserve taper, the export cap's share of PV): the agent reports the battery
as not controllable rather than act on a guess.  Grid power, SoC and (from
the balance) the household load are still measured and sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from edge_agent.drivers.sunspec_roles import (
    BATTERY_COMMANDS,
    BATTERY_W,
    GRID_W,
    PV_AC_W,
    PV_DC_W,
    PV_LIMIT_COMMANDS,
    Point,
    offered_command,
)
from edge_agent.drivers.sunspec_roles import BATTERY_SOC as BATTERY_SOC_READING
from vpp_common.messages import DispatchPlan

BATTERY_POWER = "battery_power"
BATTERY_SOC = "battery_soc"
BATTERY_CONTROL = "battery_control"
PV_POWER = "pv_power"
PV_CURTAILMENT = "pv_curtailment"
GRID_POWER = "grid_power"
ALL = (GRID_POWER, BATTERY_SOC, BATTERY_POWER, BATTERY_CONTROL, PV_POWER, PV_CURTAILMENT)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """``can``: capability -> how (the models used); ``cannot``: capability -> why not."""

    can: Mapping[str, str] = field(default_factory=dict)
    cannot: Mapping[str, str] = field(default_factory=dict)

    @property
    def battery_reason(self) -> str | None:
        """Why the battery cannot be controlled (None: it can): control needs power, SoC and a command."""
        why = [f"{k.replace('_', ' ')}: {self.cannot[k]}" for k in (BATTERY_CONTROL, BATTERY_POWER, BATTERY_SOC)
               if k in self.cannot]
        return "battery not controllable (" + "; ".join(why) + ")" if why else None

    @property
    def pv_reason(self) -> str | None:
        """Why PV cannot be curtailed (None: it can)."""
        return f"PV not curtailable ({self.cannot[PV_CURTAILMENT]})" if PV_CURTAILMENT in self.cannot else None

    def without(self, capability: str, why: str) -> Capabilities:
        """The same, with ``capability`` lost for ``why`` (e.g. a nameplate found implausible)."""
        can = {k: v for k, v in self.can.items() if k != capability}
        return replace(self, can=can, cannot={**self.cannot, capability: why})

    def to_dict(self) -> dict[str, Any]:
        return {"can": dict(self.can), "cannot": dict(self.cannot),
                "battery_controllable": self.battery_reason is None, "pv_curtailable": self.pv_reason is None}

    def lines(self) -> list[str]:
        out = [f"  can:    {k.replace('_', ' ')} ({v})" for k, v in self.can.items()]
        out += [f"  cannot: {k.replace('_', ' ')} ({v})" for k, v in self.cannot.items()]
        return out

    def log(self, logger: logging.Logger, device: str) -> None:
        """At start: what the device does at INFO, what it cannot at WARNING (an operator may act)."""
        logger.info("%s can: %s", device, "; ".join(f"{k} ({v})" for k, v in self.can.items()) or "nothing")
        for k, v in self.cannot.items():
            logger.warning("%s cannot: %s (%s)", device, k, v)


def plan_refusal(plan: DispatchPlan, controllable: Callable[[str], str | None], battery_id: str) -> str | None:
    """Why a plan cannot be delivered by this house (None: it can): the agent follows a plan with
    the battery, so a house whose battery cannot be controlled delivers none, and a setpoint for a
    resource that takes none cannot be met.  Such a plan is REJECTED with this reason, never
    ACCEPTED and then idled."""
    why = controllable(battery_id)
    if why is not None:
        return why
    for slot in plan.slots:
        for sp in slot.setpoints:
            why = controllable(sp.resource_id)
            if why is not None:
                return f"setpoint for {sp.resource_id}: {why}"
    return None


def catalogue_capabilities(entry_id: str, roles: Iterable[str | None], has_control: bool) -> Capabilities:
    """Capabilities of a vendor catalogue entry from its point roles (PV curtailment is in no entry yet)."""
    roles = set(roles)
    can: dict[str, str] = {}
    cannot: dict[str, str] = {}
    for cap, role in ((GRID_POWER, "grid_power_w"), (BATTERY_SOC, "soc_pct"), (BATTERY_POWER, "battery_power_w"),
                      (PV_POWER, "pv_power_w")):
        if role in roles:
            can[cap] = f"catalogue point {role}"
        else:
            cannot[cap] = f"no {role} point in catalogue entry {entry_id}"
    if has_control:
        can[BATTERY_CONTROL] = f"catalogue entry {entry_id} control sequence"
    else:
        cannot[BATTERY_CONTROL] = f"no control section in catalogue entry {entry_id}"
    cannot[PV_CURTAILMENT] = "PV curtailment is in no catalogue entry"
    return Capabilities(can, cannot)


def sunspec_capabilities(found: Mapping[Any, frozenset[int]], hybrid: bool) -> Capabilities:
    """Capabilities of SunSpec devices by role (``battery``, ``pv``, ``meter``; models each offers),
    read from the points edge_agent.drivers.sunspec_roles maps them to.  ``hybrid``: PV and battery
    are one inverter (its AC power is their sum)."""
    can: dict[str, str] = {}
    cannot: dict[str, str] = {}
    bat = found.get("battery", frozenset())
    _either(can, cannot, GRID_POWER, _how(GRID_W.source(found.get("meter", frozenset()))),
            "no meter model (201-204, 211-214)")
    _either(can, cannot, BATTERY_SOC, _how(BATTERY_SOC_READING.source(bat)), "no model 124, 713 or 802")
    _either(can, cannot, BATTERY_POWER, _how(BATTERY_W.source(bat)), "no model 802 (battery)" + (
        ": the inverter's AC power is PV and battery together" if hybrid else ""))
    command = offered_command(BATTERY_COMMANDS, bat)
    _either(can, cannot, BATTERY_CONTROL, command.how if command else None,
            "no model 124 (storage) or 704 (DER controls)")
    pv = found.get("pv")
    if pv is not None:
        _pv_power(can, cannot, pv, hybrid, battery_measured=BATTERY_W.source(bat) is not None)
        limit = offered_command(PV_LIMIT_COMMANDS, pv)
        _either(can, cannot, PV_CURTAILMENT, limit.how if limit else None,
                "no model 123 (immediate controls) or 704 (DER controls)")
    return Capabilities(can, cannot)


def _how(point: Point | None) -> str | None:
    return None if point is None else point.label


def _either(can: dict[str, str], cannot: dict[str, str], capability: str, how: str | None, why_not: str) -> None:
    if how is not None:
        can[capability] = how
    else:
        cannot[capability] = why_not


def _pv_power(can: dict[str, str], cannot: dict[str, str], pv: frozenset[int], hybrid: bool,
              battery_measured: bool) -> None:
    """From the MPPTs, else the inverter's AC power (a hybrid's minus the measured battery)."""
    dc, ac = PV_DC_W.source(pv), PV_AC_W.source(pv)
    if dc is not None:
        can[PV_POWER] = dc.label
    elif ac is not None and not hybrid:
        can[PV_POWER] = ac.label
    elif ac is not None and battery_measured:
        can[PV_POWER] = f"{ac.label} minus {BATTERY_W.choices[0][0].label}"
    elif ac is not None:
        cannot[PV_POWER] = f"no model 160 (MPPT), and {ac.label} includes the unmeasured battery"
    else:
        cannot[PV_POWER] = "no model 160 (MPPT) or inverter model (101-103, 111-113, 701)"


__all__ = ["ALL", "BATTERY_CONTROL", "BATTERY_POWER", "BATTERY_SOC", "GRID_POWER", "PV_CURTAILMENT", "PV_POWER",
           "Capabilities", "catalogue_capabilities", "plan_refusal",
           "sunspec_capabilities"]
