"""What the CEM asks of an OMBC Resource Manager (a device with operation modes: a heat pump's
off / low / high, a freezer's on / off), and how it goes up to the fleet (pure).

* Reachable modes: those for normal conditions; with transitions described, the present mode
  and those one transition away whose blocking timers have finished (OMBC.TimerStatus): the
  RM's timers are respected, never overridden.
* The wanted power: the plan slot's setpoint for the RM's resource id, clamped into the device
  window (the site limits in force, energy_manager/device_share.py); then the reachable mode
  and factor nearest it (instructions.nearest).  Without a plan for it the RM is left to
  itself, unless its present power puts the grid past a limit: then the nearest power within
  (a pause when the import limit binds).  Once the limit leaves room (with the deadband to
  spare) for the power it ran at before, it is asked back to it ("released").  No grid reading, no present power, stale: nothing.
* To the fleet: a SwitchableLoadFlexibility with the modes for normal conditions (at most 16,
  each at the middle of its power range), the active mode and since when, and the longest
  timer as the shortest stay in a mode (the aggregator must not count on faster switching).
"""

from __future__ import annotations

from datetime import datetime

from s2python.ombc import OMBCOperationMode, OMBCSystemDescription

from edge_agent.energy_manager.device_share import device_window, violation
from edge_agent.s2_cem.instructions import Target, nearest, wanted_power
from edge_agent.s2_cem.state import InstructionRecord, RmSnapshot
from vpp_common.messages import DispatchPlan, LoadMode, SiteLimits, SwitchableLoadFlexibility

OMBC = "OPERATION_MODE_BASED_CONTROL"
ELECTRIC_PREFIX = "ELECTRIC.POWER."
MAX_FLEET_MODES = 16  # the fleet's wire (aggregator/service/load_convert.py)


def mode_range(mode: OMBCOperationMode) -> tuple[float, float] | None:
    """(power at factor 0, at factor 1), W over the electric commodities; None without one."""
    ranges = [r for r in mode.power_ranges if r.commodity_quantity.value.startswith(ELECTRIC_PREFIX)]
    if not ranges:
        return None
    return sum(r.start_of_range for r in ranges), sum(r.end_of_range for r in ranges)


def reachable(desc: OMBCSystemDescription, present: str | None, timers: dict[str, datetime],
              now: datetime) -> list[OMBCOperationMode]:
    modes = [m for m in desc.operation_modes if not m.abnormal_condition_only]
    if not desc.transitions or present is None:
        return modes
    ok = {present} | {str(t.to) for t in desc.transitions
                      if str(t.from_) == present and not t.abnormal_condition_only
                      and all(timers.get(str(b), now) <= now for b in t.blocking_timers)}
    return [m for m in modes if str(m.id) in ok]


def present_power(snap: RmSnapshot, now: datetime, stale_after_s: float) -> float | None:
    """The measured power if fresh, else the active mode's power at its factor."""
    if snap.power_w is not None and (now - snap.power_w.at).total_seconds() <= stale_after_s:
        return snap.power_w.value
    desc, state = snap.ombc_description, snap.mode
    mode = next((m for m in desc.operation_modes if str(m.id) == state.operation_mode_id), None) \
        if desc is not None and state is not None else None
    span = mode_range(mode) if mode is not None else None
    return span[0] + state.factor * (span[1] - span[0]) if span is not None and state is not None else None


def decide_mode(snap: RmSnapshot, now: datetime, plan: DispatchPlan | None, grid_w: float | None,
                limits: SiteLimits, stale_after_s: float, deadband_w: float) -> tuple[Target, float | None] | None:
    """The OMBC.Instruction to send now and the power to restore after a pause, or None."""
    desc = snap.ombc_description
    if snap.control_type != OMBC or desc is None or snap.resource_id is None or snap.stale(now, stale_after_s):
        return None
    device_w = present_power(snap, now, stale_after_s)
    window = device_window(grid_w, device_w, limits)
    if window is None or device_w is None:
        return None  # the limits cannot be checked: ask nothing
    last = snap.instructions[-1] if snap.instructions else None
    restore = last.restore_w if last is not None and last.reason.startswith("site limit") else None
    wanted = wanted_power(plan, now, snap.resource_id)
    if wanted is not None:
        reason, restore = "plan setpoint", None
    elif violation(device_w, window) > deadband_w:
        wanted, reason = device_w, "site limit"  # the nearest power within: a pause when the import limit binds
        restore = restore if restore is not None else device_w
    elif restore is not None and violation(restore, (window[0] + deadband_w, window[1] - deadband_w)) == 0:
        wanted, reason, restore = restore, "released: the site limits leave room again", None
    else:
        return None  # no plan for it: the device is left to itself
    present = snap.mode.operation_mode_id if snap.mode is not None else None
    spans = [(str(m.id), span) for m in reachable(desc, present, dict(snap.timers), now)
             if (span := mode_range(m)) is not None]
    target = nearest("", spans, wanted, window, present, reason)
    if target is None or (last is not None and not _differs(target, last, deadband_w)):
        return None
    if target.operation_mode_id == present and abs(target.power_w - device_w) <= deadband_w:
        return None  # it is there already (or its timers keep it there)
    return target, restore


def _differs(target: Target, rec: InstructionRecord, deadband_w: float) -> bool:
    return target.operation_mode_id != rec.operation_mode_id or abs(target.power_w - rec.power_w) > deadband_w


def as_flexibility(snap: RmSnapshot) -> SwitchableLoadFlexibility | None:
    """The RM's modes as the fleet sees them (S2 OMBC), or None without a description."""
    desc = snap.ombc_description
    if desc is None or snap.resource_id is None:
        return None
    modes = [(str(m.id), (span[0] + span[1]) / 2) for m in desc.operation_modes
             if not m.abnormal_condition_only and (span := mode_range(m)) is not None]
    if not modes:
        return None
    if len(modes) > MAX_FLEET_MODES:  # the lowest, the highest and those evenly between
        modes.sort(key=lambda m: m[1])
        modes = [modes[round(i * (len(modes) - 1) / (MAX_FLEET_MODES - 1))] for i in range(MAX_FLEET_MODES)]
    active = snap.mode.operation_mode_id if snap.mode is not None else ""
    if all(active != m[0] for m in modes):
        active = ""  # unknown stays unknown
    longest = max((t.duration.root / 1000.0 for t in desc.timers), default=0.0)
    return SwitchableLoadFlexibility(snap.resource_id, tuple(LoadMode(i, p) for i, p in modes), active,
                                     snap.mode.at if active and snap.mode is not None else None,
                                     min(longest, 86_400.0), 0.0)
