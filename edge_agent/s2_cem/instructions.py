"""What the CEM asks of an FRBC Resource Manager (pure): a wanted power -> an operation mode and
its factor, within the house's safety envelope (energy_manager/device_share.py).

* The wanted power comes from the house's plan: the plan slot's setpoint for the RM's
  resource id.  Without one the RM is left to itself (no instruction), unless its present
  power puts the grid past the site limits: then it is asked for the nearest power that does
  not (an external device never bypasses the export cap or the import limit).  Without a
  usable grid reading or the RM's present power the limits cannot be checked: nothing is asked.
* The reachable powers: per operation mode (not ``abnormal_condition_only``; with transitions
  described, only the present mode and those one transition away), the element whose fill
  level range holds the present fill level; factor 0..1 maps its power range start..end
  (summed over the phases).  One actuator: the first (several actuators: a later increment).
* The mode whose reachable power is nearest the wanted power (clamped into the grid window)
  wins; on a tie the present mode (no transition), then the least power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from s2python.frbc import FRBCActuatorDescription, FRBCOperationMode, FRBCSystemDescription

from edge_agent.energy_manager.device_share import clamp_into, device_window, violation
from edge_agent.s2_cem.state import InstructionRecord, RmSnapshot
from vpp_common.messages import DispatchPlan, SiteLimits

ELECTRIC_PREFIX = "ELECTRIC.POWER."


@dataclass(frozen=True, slots=True)
class Target:
    actuator_id: str
    operation_mode_id: str
    factor: float
    power_w: float
    reason: str


def mode_power_range(mode: FRBCOperationMode, fill_level: float) -> tuple[float, float] | None:
    """(power at factor 0, power at factor 1), W over all phases, at ``fill_level``; None if
    no element holds it or it has no electric power."""
    element = next((e for e in mode.elements
                    if e.fill_level_range.start_of_range <= fill_level <= e.fill_level_range.end_of_range), None)
    if element is None:
        return None
    ranges = [r for r in element.power_ranges if r.commodity_quantity.value.startswith(ELECTRIC_PREFIX)]
    if not ranges:
        return None
    return sum(r.start_of_range for r in ranges), sum(r.end_of_range for r in ranges)


def allowed_modes(actuator: FRBCActuatorDescription, present_mode: str | None) -> list[FRBCOperationMode]:
    modes = [m for m in actuator.operation_modes if not m.abnormal_condition_only]
    if not actuator.transitions or present_mode is None:
        return modes
    reachable = {present_mode} | {str(t.to) for t in actuator.transitions
                                  if str(t.from_) == present_mode and not t.abnormal_condition_only}
    return [m for m in modes if str(m.id) in reachable]


def choose(desc: FRBCSystemDescription, fill_level: float, wanted_w: float, window: tuple[float, float] | None,
           present_mode: str | None, reason: str) -> Target | None:
    """The operation mode and factor nearest ``wanted_w`` within ``window``; None if no mode is
    reachable at this fill level."""
    if not math.isfinite(wanted_w) or not math.isfinite(fill_level):
        return None
    actuator = desc.actuators[0]
    spans = [(str(m.id), span) for m in allowed_modes(actuator, present_mode)
             if (span := mode_power_range(m, fill_level)) is not None]
    return nearest(str(actuator.id), spans, wanted_w, window, present_mode, reason)


def nearest(actuator_id: str, spans: list[tuple[str, tuple[float, float]]], wanted_w: float,
            window: tuple[float, float] | None, present_mode: str | None, reason: str) -> Target | None:
    """Of the modes (id, (power at factor 0, at factor 1)), the one and factor nearest ``wanted_w``
    clamped into ``window``; a tie: the present mode, then the least power."""
    aim = clamp_into(wanted_w, *window) if window is not None else wanted_w
    best: tuple[tuple[float, float, int, float], Target] | None = None
    for mode_id, (start, end) in spans:
        power = clamp_into(aim, min(start, end), max(start, end))
        factor = 0.0 if end == start else min(1.0, max(0.0, (power - start) / (end - start)))
        power = start + factor * (end - start)
        key = (violation(power, window), abs(power - aim), 0 if mode_id == present_mode else 1, abs(power))
        if best is None or key < best[0]:
            why = reason if key[0] == 0 else f"{reason}; no mode keeps the grid within the site limits"
            best = (key, Target(actuator_id, mode_id, factor, power, why))
    return best[1] if best is not None else None


def wanted_power(plan: DispatchPlan | None, now: datetime, resource_id: str) -> float | None:
    """The plan slot's setpoint for the RM's resource (W), or None."""
    slot = plan.slot_at(now) if plan is not None else None
    sp = slot.setpoint(resource_id) if slot is not None else None
    return sp.target_power_w if sp is not None and math.isfinite(sp.target_power_w) else None


def present_power(snap: RmSnapshot, now: datetime, stale_after_s: float) -> float | None:
    """The RM's measured power if it is fresh, else the power of its active mode and factor."""
    if snap.power_w is not None and (now - snap.power_w.at).total_seconds() <= stale_after_s:
        return snap.power_w.value
    desc = snap.system_description
    if desc is None or snap.fill_level is None:
        return None
    state = snap.actuator(str(desc.actuators[0].id))
    mode = next((m for m in desc.actuators[0].operation_modes if str(m.id) == (state and state.operation_mode_id)),
                None)
    span = mode_power_range(mode, snap.fill_level.value) if mode is not None and state is not None else None
    return span[0] + state.factor * (span[1] - span[0]) if span is not None and state is not None else None


def decide_instruction(snap: RmSnapshot, now: datetime, plan: DispatchPlan | None, grid_w: float | None,
                       limits: SiteLimits, stale_after_s: float, deadband_w: float) -> Target | None:
    """The instruction to send to this FRBC RM now, or None (nothing to ask, or nothing new)."""
    desc = snap.system_description
    if (snap.control_type != "FILL_RATE_BASED_CONTROL" or desc is None or snap.fill_level is None
            or snap.resource_id is None or snap.stale(now, stale_after_s)):
        return None
    device_w = present_power(snap, now, stale_after_s)
    window = device_window(grid_w, device_w, limits)
    if window is None or device_w is None:
        return None  # the limits cannot be checked (no grid reading, the RM's power unknown): ask nothing
    wanted = wanted_power(plan, now, snap.resource_id)
    if wanted is not None:
        reason = "plan setpoint"
    elif violation(device_w, window) > deadband_w:
        wanted, reason = device_w, "site limit"  # the nearest power within the limits
    else:
        return None  # no plan for it: the device is left to itself
    state = snap.actuator(str(desc.actuators[0].id))
    target = choose(desc, snap.fill_level.value, wanted, window, state.operation_mode_id if state else None, reason)
    if target is None or not _news(target, snap.instructions, deadband_w):
        return None
    return target


def _news(target: Target, sent: tuple[InstructionRecord, ...], deadband_w: float) -> bool:
    """Worth sending: another mode or a power beyond the deadband from the last instruction (one
    the RM refused or finished is not asked again unchanged: no instruction every tick)."""
    return not sent or _differs(target, sent[-1], deadband_w)


def _differs(target: Target, rec: InstructionRecord, deadband_w: float) -> bool:
    return target.operation_mode_id != rec.operation_mode_id or abs(target.power_w - rec.power_w) > deadband_w
