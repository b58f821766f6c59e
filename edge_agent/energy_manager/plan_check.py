"""Checks of the plans and grid signals from the aggregator, before any of their numbers is
used (pure).

NaN passes every comparison (``max(-100, min(100, nan))`` is 100, so a NaN target was written
as full charge), and a negative limit turns "export at most" into "import at least".  Each
number is checked against what it may be; a plan or a signal with one bad number is refused
whole (its other numbers were computed with it), and the agent answers a refused plan with
PlanStatus REJECTED and the reason.

What is *not* refused, because legitimate plans carry it:

* grid envelopes, grid-signal limits and the fallback's export cap beyond the site limits,
  up to +-inf ("no bound"): they only ever tighten the configured limits (intersected), so a
  wide one changes nothing (the aggregator relaxes a house cap that cannot be met, a feeder
  without a limit has an infinite share, the fallback cap is the house's own limit);
* slots past ``valid_until``: the lease is shorter than the planning horizon.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from vpp_common.messages import DispatchPlan, Envelope, GridSignal

MAX_PLAN_W = 1e8  # no house connection comes near 100 MW: a larger battery power is an error
# the aggregator plans within the ratings the agent advertised (the same floats); the margin
# only absorbs rounding on the way (a plan made while the nameplate was read once more, JSON)
NAMEPLATE_TOLERANCE = 0.01
NAMEPLATE_TOLERANCE_W = 1.0
TARGET_TOLERANCE_W = 1.0  # a fixed target outside its own envelope: the plan contradicts itself


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a plan or signal is refused: ``label`` short and stable (a metric label value),
    ``detail`` for people (the slot, the field, the value)."""

    label: str
    detail: str

    def __str__(self) -> str:
        return self.detail


def _bad_power(value: float) -> str | None:
    if not math.isfinite(value):
        return "non_finite"
    if abs(value) > MAX_PLAN_W:
        return "absurd_value"
    return None


def _battery_problem(where: str, target_w: float, env: Envelope) -> Problem | None:
    for name, v in (("target_power_w", target_w), ("envelope.min_w", env.min_w), ("envelope.max_w", env.max_w)):
        label = _bad_power(v)
        if label is not None:
            return Problem(label, f"{where}: {name} = {v}")
    if not env.min_w <= env.max_w:
        return Problem("inverted_envelope", f"{where}: envelope min {env.min_w} W > max {env.max_w} W")
    if env.min_w == env.max_w and abs(target_w - env.min_w) > TARGET_TOLERANCE_W:
        return Problem("target_outside_envelope",
                       f"{where}: target {target_w} W outside its fixed envelope ({env.min_w} W)")
    return None


def grid_envelope_problem(where: str, env: Envelope) -> Problem | None:
    """A grid envelope only tightens the site limits: any width will do (an infinite bound is
    no bound), but not NaN, not an infinite bound on the wrong side, not inverted."""
    if math.isnan(env.min_w) or math.isnan(env.max_w) or env.min_w == math.inf or env.max_w == -math.inf:
        return Problem("non_finite", f"{where}: grid envelope ({env.min_w}, {env.max_w}) W")
    if env.min_w > env.max_w:
        return Problem("inverted_envelope", f"{where}: grid envelope min {env.min_w} W > max {env.max_w} W")
    return None


def plan_problem(plan: DispatchPlan) -> Problem | None:
    """What makes ``plan`` unusable whatever the house: ids, lease, slots (contiguous from
    ``valid_from``, covering the lease), every number (finite, not absurd, envelopes not
    inverted); None if nothing."""
    if not plan.plan_id:
        return Problem("plan_id", "plan_id is empty")
    if plan.version < 1:
        return Problem("version", f"version must be >= 1, got {plan.version}")
    if plan.slot_duration_s <= 0:
        return Problem("slots", f"slot_duration must be > 0, got {plan.slot_duration_s} s")
    if plan.valid_until <= plan.valid_from:
        return Problem("lease", "valid_until must be after valid_from")
    if not plan.slots:
        return Problem("slots", "plan has no slots")
    try:
        return _slots_problem(plan)
    except OverflowError:  # datetime arithmetic out of range: a slot or lease beyond year 9999
        return Problem("slots", "slot times out of range")


def _slots_problem(plan: DispatchPlan) -> Problem | None:
    step = timedelta(seconds=plan.slot_duration_s)
    for i, slot in enumerate(plan.slots):
        expected = plan.valid_from + i * step
        if slot.start != expected:
            return Problem("slots", f"slot {i} starts at {slot.start.isoformat()}, expected {expected.isoformat()}"
                                    " (slots must follow each other from valid_from, without gap or overlap)")
        seen: set[str] = set()
        for sp in slot.setpoints:
            if sp.resource_id in seen:
                return Problem("duplicate_setpoint", f"slot {i}: two setpoints for {sp.resource_id!r}")
            seen.add(sp.resource_id)
            p = _battery_problem(f"slot {i} {sp.resource_id}", sp.target_power_w, sp.envelope)
            if p is not None:
                return p
        if slot.grid_envelope is not None:
            p = grid_envelope_problem(f"slot {i}", slot.grid_envelope)
            if p is not None:
                return p
    end = plan.valid_from + len(plan.slots) * step
    if end < plan.valid_until:
        return Problem("slots", f"slots end at {end.isoformat()}, before the lease ends at "
                                f"{plan.valid_until.isoformat()} (a slot is missing)")
    fx = plan.fallback_max_export_w
    if math.isnan(fx) or fx < 0:  # tightens only, like a grid envelope: +inf is no cap
        return Problem("fallback", f"fallback.max_export_w = {fx} (must be a limit >= 0; 0: the site limit)")
    return None


def plan_house_problem(plan: DispatchPlan, battery_id: str, known_ids: Iterable[str],
                       max_charge_w: float | None, max_discharge_w: float | None) -> Problem | None:
    """What makes ``plan`` wrong for this house: a setpoint for a resource it does not have or
    does not control by setpoint, a battery power outside the nameplate (None: not known yet;
    the safety clamp still holds every setpoint to the device's ratings)."""
    known = set(known_ids)
    hi = lo = None
    if max_charge_w is not None and max_discharge_w is not None:
        hi = max_charge_w * (1 + NAMEPLATE_TOLERANCE) + NAMEPLATE_TOLERANCE_W
        lo = -max_discharge_w * (1 + NAMEPLATE_TOLERANCE) - NAMEPLATE_TOLERANCE_W
    for i, slot in enumerate(plan.slots):
        for sp in slot.setpoints:
            if sp.resource_id != battery_id:
                if sp.resource_id in known:
                    return Problem("not_controllable", f"slot {i}: a setpoint for {sp.resource_id!r}, which the agent"
                                                       f" does not control by setpoint (only {battery_id!r})")
                return Problem("unknown_resource", f"slot {i}: a setpoint for {sp.resource_id!r}, which this house"
                                                   f" does not have (it has {sorted(known | {battery_id})})")
            if hi is None or lo is None:
                continue
            env = sp.envelope
            for name, v in (("target_power_w", sp.target_power_w), ("envelope.min_w", env.min_w),
                            ("envelope.max_w", env.max_w)):
                if not lo <= v <= hi:
                    return Problem("outside_nameplate",
                                   f"slot {i} {sp.resource_id}: {name} = {v} W outside the battery's nameplate"
                                   f" (-{max_discharge_w:g} .. {max_charge_w:g} W)")
    return None


def limit_problem(name: str, value: float) -> Problem | None:
    """A site limit (positive magnitude): NaN and negative refused, +inf is no limit."""
    if math.isnan(value):
        return Problem("non_finite", f"{name} = {value}")
    if value < 0:
        return Problem("negative_limit", f"{name} = {value} W (limits are magnitudes >= 0)")
    return None


def grid_signal_problem(signal: GridSignal) -> Problem | None:
    """What makes a grid signal unusable: a limit that is NaN or negative (but a feeder
    envelope's import limit may be below 0, finite and within its export limit: "export at
    least", a battery helping its neighbours), a price that is not finite; None if nothing.  The signal is then refused whole
    and the one in force stays (until it expires): dropping only its limits would replace
    tighter limits in force with none."""
    if signal.limits is not None:
        imp, exp = signal.limits.max_import_w, signal.limits.max_export_w
        if signal.limits_are_feeder_envelope and math.isfinite(imp) and imp < 0 and -exp <= imp:
            imp = 0.0  # "export at least": a feeder envelope asks the battery to help its neighbours
        for name, v in (("max_import_w", imp), ("max_export_w", exp)):
            p = limit_problem(f"limits.{name}", v)
            if p is not None:
                return p
    for i, price in enumerate(signal.prices):
        for name, v in (("import_price_per_kwh", price.import_price_per_kwh),
                        ("export_price_per_kwh", price.export_price_per_kwh)):
            if not math.isfinite(v):
                return Problem("non_finite_price", f"prices[{i}].{name} = {v}")
    return None
