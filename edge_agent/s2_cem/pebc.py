"""What the CEM asks of a PEBC Resource Manager (power can only be limited: curtailable PV, an
EV charger that can be held back), pure.

* The envelope: the device window (what keeps the grid within [-export cap, import limit],
  energy_manager/device_share.py), narrowed by the plan slot's envelope for the RM's resource
  id if the plan names it, then moved into the RM's allowed limit ranges (PEBC.PowerConstraints:
  a lower limit it cannot go below, an upper one it cannot go above).  Both bounds of the window
  cannot hold (a PV inverter that cannot consume): the export cap wins, the RM gets the lower.
* Sent when it limits the device (a bound inside the allowed range by more than the deadband),
  when it changes by more than the deadband, once more when it stops limiting (the device is
  free again), and before the last one runs out (each lasts ``ENVELOPE_S``).
* Without a fresh measured power of the device, a grid reading or constraints valid now:
  nothing is sent (the window cannot be known).  Several electric commodities (per-phase
  limits): each phase gets its share.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from s2python.pebc import PEBCPowerConstraints

from edge_agent.energy_manager.device_share import device_window
from edge_agent.s2_cem.state import RmSnapshot
from vpp_common.messages import CurtailmentFlexibility, DispatchPlan, SiteLimits

PEBC = "POWER_ENVELOPE_BASED_CONTROL"
INSTRUCTION = "PEBC.Instruction"
ENVELOPE_S = 900.0  # one envelope element; renewed after half of it
ELECTRIC_PREFIX = "ELECTRIC.POWER."


@dataclass(frozen=True, slots=True)
class Envelope:
    constraints_id: str
    commodities: tuple[str, ...]  # one envelope per electric commodity, each its share
    lower_w: float  # the device's total, W (consumption > 0)
    upper_w: float
    limiting: bool
    reason: str


def allowed_ranges(c: PEBCPowerConstraints) -> tuple[tuple[str, ...], tuple[float, float], tuple[float, float]]:
    """The electric commodities, and the totals' (least, most) lower and upper limits."""
    ranges = [r for r in c.allowed_limit_ranges
              if r.commodity_quantity.value.startswith(ELECTRIC_PREFIX) and not r.abnormal_condition_only]
    commodities = tuple(sorted({r.commodity_quantity.value for r in ranges}))
    n = len(commodities)

    def span(kind: str) -> tuple[float, float]:
        rs = [r.range_boundary for r in ranges if r.limit_type.value == kind]
        return n * min(r.start_of_range for r in rs), n * max(r.end_of_range for r in rs)

    return commodities, span("LOWER_LIMIT"), span("UPPER_LIMIT")


def _valid(c: PEBCPowerConstraints, now: datetime) -> bool:
    return c.valid_from <= now and (c.valid_until is None or now < c.valid_until)


def _plan_envelope(plan: DispatchPlan | None, now: datetime, resource_id: str) -> tuple[float, float] | None:
    slot = plan.slot_at(now) if plan is not None else None
    sp = slot.setpoint(resource_id) if slot is not None else None
    return (sp.envelope.min_w, sp.envelope.max_w) if sp is not None else None


def decide_envelope(snap: RmSnapshot, now: datetime, plan: DispatchPlan | None, grid_w: float | None,
                    limits: SiteLimits, stale_after_s: float, deadband_w: float) -> Envelope | None:
    """The PEBC.Instruction's envelope to send now, or None."""
    c = snap.power_constraints
    if (snap.control_type != PEBC or c is None or snap.resource_id is None or snap.stale(now, stale_after_s)
            or not _valid(c, now)):
        return None
    fresh = snap.power_w is not None and (now - snap.power_w.at).total_seconds() <= stale_after_s
    window = device_window(grid_w, snap.power_w.value if fresh and snap.power_w is not None else None, limits)
    if window is None:
        return None
    lo, hi = window
    planned = _plan_envelope(plan, now, snap.resource_id)
    if planned is not None:
        lo, hi = max(lo, planned[0]), min(hi, planned[1])
    commodities, lower_range, upper_range = allowed_ranges(c)
    lower = min(max(lo, lower_range[0]), lower_range[1])
    upper = min(max(hi, upper_range[0]), upper_range[1])
    upper = max(upper, lower)  # both cannot hold: the export cap (the lower limit) wins
    limiting = lower > lower_range[0] + deadband_w or upper < upper_range[1] - deadband_w
    if not limiting:
        lower, upper = lower_range[0], upper_range[1]  # free: the whole allowed range
    reason = "site limits" if planned is None else "plan envelope and site limits"
    env = Envelope(str(c.id), commodities, lower, upper, limiting, reason)
    return env if _news(snap, env, now, deadband_w) else None


def _news(snap: RmSnapshot, env: Envelope, now: datetime, deadband_w: float) -> bool:
    last = next((r for r in reversed(snap.instructions) if r.kind == INSTRUCTION), None)
    if last is None or last.operation_mode_id != env.constraints_id:
        return env.limiting  # nothing asked yet: only a limit is worth a message
    was_limiting = last.factor == 1.0  # the record's factor: 1 while it limited
    if not env.limiting:
        return was_limiting  # once, to free the device
    if abs(env.lower_w - last.power_w) > deadband_w or abs(env.upper_w - (last.upper_w or 0.0)) > deadband_w:
        return True
    return now - last.sent_at > timedelta(seconds=ENVELOPE_S / 2)  # renew before it runs out


def as_curtailment(snap: RmSnapshot, now: datetime, stale_after_s: float) -> CurtailmentFlexibility | None:
    """A producing PEBC RM (a PV inverter) as curtailable production for the fleet: its fresh
    measured production and how far it may produce; None for one that cannot produce (an EV
    charger held back is not PV), without constraints valid now or a fresh measured power."""
    c = snap.power_constraints
    if snap.resource_id is None or c is None or not _valid(c, now) or snap.power_w is None \
            or (now - snap.power_w.at).total_seconds() > stale_after_s:
        return None
    commodities, lower_range, _ = allowed_ranges(c)
    if not commodities or not lower_range[0] < 0:
        return None
    return CurtailmentFlexibility(snap.resource_id, min(snap.power_w.value, 0.0), lower_range[0])
