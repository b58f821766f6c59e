"""One control decision per tick (pure): plan slot or fallback, then the safety envelope.

Powers in W, consumption positive: battery charging > 0, grid import > 0,
PV production < 0.  ``base_w`` is the house without its battery
(load + PV = grid - battery): the battery power that makes grid exchange zero
is ``-base_w``.

Clamp by construction: whatever the inputs (NaN or infinite readings, limits, plan values,
negative limits), the setpoint is finite and within the battery's nameplate and SoC rules;
an input that is not a usable number idles the battery (0 W, reason given, ``clamped_by``
"invalid_input").  NaN passes every comparison, so every input is checked before use and the
result is checked after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from vpp_common.messages import (
    DispatchPlan,
    FallbackMode,
    PlanSlot,
    SiteLimits,
    SiteTelemetry,
    Validity,
)


@dataclass(frozen=True, slots=True)
class BatteryLimits:
    max_charge_w: float  # nameplate, positive magnitude
    max_discharge_w: float  # nameplate, positive magnitude
    reserve_soc_pct: float
    max_soc_pct: float = 100.0
    max_ramp_w_per_s: float = 0.0  # largest setpoint change per second; 0 = no ramp limit
    # with both known, discharge tapers so that one control period at the setpoint cannot take
    # the SoC below the reserve (a setpoint holds until the next tick); 0 = unknown, no taper
    capacity_wh: float = 0.0
    control_period_s: float = 0.0
    discharge_efficiency: float = 0.95
    # lowest SoC, below the reserve, while the live feeder envelope holds import below the
    # house's consumption, only as far as it needs (docs/architecture.md); None = the reserve
    feeder_floor_soc_pct: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    battery_w: float  # setpoint to write, charging > 0
    mode: str  # "plan" | "fallback" | "safe_idle"
    reason: str
    clamped_by: tuple[str, ...] = ()  # safety rules that changed the desired setpoint
    pv_limit_w: float | None = None  # PV production cap (magnitude, W) for the export cap; None = no cap


RELEASE_HEADROOM_W = 1000.0  # a PV limit is lifted once export is this far below the cap
PV_LIMIT_BINDING_W = 50.0  # PV this close to its limit is held back by it (the real surplus is unknown)


def pv_limit_binding(pv_w: float, active_limit_w: float | None) -> bool:
    """True if the inverter produces at its limit: more PV may be there than is measured."""
    return active_limit_w is not None and -pv_w >= active_limit_w - PV_LIMIT_BINDING_W


def fresh_for_control(t: SiteTelemetry, has_battery: bool = True) -> bool:
    """True if a setpoint may be based on ``t``: grid, battery and SoC valid (not stale, missing or
    implausible; a house without a battery: the grid).  The Resource Managers mark a failed read stale
    at once, and a poll is bounded by the request timeouts, so validity is the test (an age limit would
    misfire on accelerated clocks whose poll period exceeds stale_after_s, e.g. the demo)."""
    return t.grid_power_w.usable and (not has_battery or (t.battery_power_w.usable and t.battery_soc_pct.usable))


def pv_limit_for_export_cap(base_w: float, pv_w: float, battery_w: float, max_export_w: float,
                            active_limit_w: float | None = None) -> float | None:
    """The PV production cap (W, magnitude) that keeps export within ``max_export_w``
    once the battery is at ``battery_w``; None when no curtailment is needed.

    Called with the battery already at its charging limit, so PV is curtailed only
    when the battery cannot absorb the surplus (S2 PEBC: the envelope's lower limit).
    """
    grid_w = base_w + battery_w
    excess_w = -max_export_w - grid_w  # > 0: exporting this much too much; < 0: headroom
    if active_limit_w is not None:
        # A limit in force follows the cap: it rises by the headroom, so PV held at its limit
        # gets what the battery and the cap leave.  It is lifted only with a clear margin to
        # the cap: lifted as soon as PV dips below it, it flaps when the sun comes back, and
        # every flap overshoots for a control period (measured live, 20 houses, 10 h: 12-20
        # kWh over a feeder limit, against 0.8-1.3 with the margin).  With the margin, PV
        # held at its limit may still hide more than the margin: then the cap is exceeded
        # for the one control period before the limit is set again (never lifting a binding
        # limit, only raising it, measured 1.8-2.4 kWh live: the house then tracks its cap
        # exactly and every lag shows).
        if -excess_w >= RELEASE_HEADROOM_W:
            return None
        return max(0.0, -pv_w - excess_w)
    if excess_w <= 1e-3:  # the clamp put the grid at the cap: rounding is not an excess
        return None
    return max(0.0, -pv_w - excess_w)


INVALID_INPUT = "invalid_input"  # the rule named when an input was not a usable number: idle


_INF = math.inf


def limits_problem(limits: SiteLimits) -> str | None:
    """Why ``limits`` cannot be used (NaN, a negative export limit, an import limit below 0 that
    is not finite or beyond the export limit; +inf is no limit), or None.  An import limit
    below 0 is "export at least" (a feeder envelope asking a battery to help its neighbours)."""
    if limits.max_import_w >= 0 and limits.max_export_w >= 0:  # false for NaN: the fast path of every tick
        return None
    if math.isnan(limits.max_export_w) or limits.max_export_w < 0:
        return f"site limit max_export_w = {limits.max_export_w}"
    if not (-limits.max_export_w <= limits.max_import_w < _INF) or limits.max_import_w == -_INF:
        return f"site limit max_import_w = {limits.max_import_w}"
    return None


def battery_problem(battery: BatteryLimits) -> str | None:
    """Why ``battery`` cannot be used (a rating, SoC bound or period not a finite number, a
    rating below 0), or None."""
    b = battery
    if (0 <= b.max_charge_w < _INF and 0 <= b.max_discharge_w < _INF and 0 <= b.max_ramp_w_per_s < _INF
            and 0 <= b.capacity_wh < _INF and 0 <= b.control_period_s < _INF and 0 <= b.discharge_efficiency < _INF
            and -_INF < b.reserve_soc_pct < _INF and -_INF < b.max_soc_pct < _INF
            and (b.feeder_floor_soc_pct is None or 0 <= b.feeder_floor_soc_pct <= b.reserve_soc_pct)):  # NaN: false
        return None
    for name in ("max_charge_w", "max_discharge_w", "max_ramp_w_per_s", "capacity_wh", "control_period_s",
                 "discharge_efficiency"):
        v = getattr(battery, name)
        if not math.isfinite(v) or v < 0:
            return f"battery {name} = {v}"
    for name in ("reserve_soc_pct", "max_soc_pct"):
        v = getattr(battery, name)
        if not math.isfinite(v):
            return f"battery {name} = {v}"
    return f"battery feeder_floor_soc_pct = {b.feeder_floor_soc_pct} (0 to the reserve {b.reserve_soc_pct})"


def tighten_limits(limits: SiteLimits, other: SiteLimits) -> SiteLimits:
    """``limits`` tightened by ``other``, never loosened; a bound of ``other`` that is not a
    limit (NaN or negative: refused where it came in; an import bound below 0 is one, "export
    at least", if finite and within the export limit) leaves the limit as it is."""
    def one(own: float, new: float, least: float = 0.0) -> float:
        return own if not new >= least or new == -_INF else min(own, new)

    # an import bound below 0 ("export at least", a feeder envelope) is a limit, within the export one
    exp = one(limits.max_export_w, other.max_export_w)
    imp = one(limits.max_import_w, other.max_import_w, -exp if math.isfinite(exp) else -_INF)
    return SiteLimits(max(imp, -exp), exp)  # an "export at least" in force gives way to a tighter export limit


def safety_clamp(desired_w: float, base_w: float, soc_pct: float, limits: SiteLimits,
                 battery: BatteryLimits) -> tuple[float, tuple[str, ...]]:
    """Apply, last and whatever the plan says: nameplate, SoC reserve/max, import
    limit and export cap.  Returns the setpoint and the rules that bound it.

    Where the export cap cannot be met with the battery alone (battery full or at
    its limit), the setpoint stays at the battery's limit; PV curtailment is the
    remaining lever (PEBC), applied by the caller.

    Any input that is not a usable number gives 0 W and ``("invalid_input",)``; the result
    is always finite and within [-max_discharge_w, max_charge_w] (0 W when even that is not
    known).
    """
    if (not (math.isfinite(desired_w) and math.isfinite(base_w) and math.isfinite(soc_pct))
            or limits_problem(limits) is not None or battery_problem(battery) is not None):
        return 0.0, (INVALID_INPUT,)
    return _clamp(desired_w, base_w, soc_pct, limits, battery)


def _clamp(desired_w: float, base_w: float, soc_pct: float, limits: SiteLimits,
           battery: BatteryLimits, feeder_envelope: bool = False) -> tuple[float, tuple[str, ...]]:
    """:func:`safety_clamp` on inputs already checked (decide checks them once per tick).
    ``feeder_envelope``: ``limits`` hold the aggregator's live feeder envelope; where its import
    bound is below the house's consumption, the battery may go below its reserve down to its
    feeder floor, only as far as the bound needs."""
    rules = []
    lo, hi = _battery_bounds(soc_pct, battery, battery.reserve_soc_pct)
    floor = battery.feeder_floor_soc_pct
    if feeder_envelope and floor is not None and floor < battery.reserve_soc_pct and base_w > limits.max_import_w:
        lo = min(lo, max(_battery_bounds(soc_pct, battery, floor)[0], limits.max_import_w - base_w))
    # grid = base + battery must lie in [-max_export, max_import]
    grid_lo = -limits.max_export_w - base_w
    grid_hi = limits.max_import_w - base_w
    value = desired_w
    if value > grid_hi:
        value = grid_hi
        rules.append("import_limit")
    if value < grid_lo:
        value = grid_lo
        rules.append("export_cap")
    if value > hi:
        value = hi
        rules.append("soc_max" if hi < battery.max_charge_w else "nameplate")
    if value < lo:
        value = lo
        rules.append("soc_reserve" if lo > -battery.max_discharge_w else "nameplate")
    # finite by assertion: from finite inputs the rules above give nothing else (a check, not
    # an ``assert``: python -O must not remove it)
    if not (math.isfinite(value) and lo <= value <= hi):
        return 0.0, (INVALID_INPUT,)
    return value, tuple(rules)


def _battery_bounds(soc_pct: float, battery: BatteryLimits, floor_pct: float) -> tuple[float, float]:
    """The setpoint range the nameplate and the SoC allow, discharging down to ``floor_pct``:
    (most discharge, most charge), W."""
    lo, hi = -battery.max_discharge_w, battery.max_charge_w
    if soc_pct <= floor_pct:
        lo = max(lo, 0.0)
    elif battery.capacity_wh > 0 and battery.control_period_s > 0:
        above_wh = (soc_pct - floor_pct) / 100 * battery.capacity_wh
        lo = max(lo, -above_wh * battery.discharge_efficiency * 3600 / battery.control_period_s)
    if soc_pct >= battery.max_soc_pct:
        hi = min(hi, 0.0)
    elif battery.capacity_wh > 0 and battery.control_period_s > 0:
        # charge tapers the same way: a battery that fills mid-period stops charging at once,
        # and its surplus reaches the grid until the next tick (past an export cap or a feeder
        # envelope); tapered, the PV limit below covers it
        room_wh = (battery.max_soc_pct - soc_pct) / 100 * battery.capacity_wh
        hi = min(hi, room_wh * 3600 / battery.control_period_s)
    return lo, hi


def ramp(desired_w: float, previous_w: float | None, dt_s: float, max_ramp_w_per_s: float) -> float:
    """Move from ``previous_w`` toward ``desired_w`` by at most the ramp limit."""
    if previous_w is None or not math.isfinite(previous_w) or not max_ramp_w_per_s > 0:
        return desired_w
    step = max_ramp_w_per_s * (dt_s if dt_s > 0 else 0.0)  # NaN: no step
    return min(previous_w + step, max(previous_w - step, desired_w))


def slot_limits(limits: SiteLimits, slot: PlanSlot | None) -> SiteLimits:
    """The site limits tightened by the plan slot's grid envelope.

    Where a shared feeder limit binds, the fleet plan bounds the house's exchange
    (e.g. "export no more than planned"): when the real PV beats the forecast, the
    surplus must be stored or curtailed here, not pushed onto the feeder.
    """
    env = slot.grid_envelope if slot is not None else None
    if env is None:
        return limits
    # an envelope bound past 0 ("import at least") holds the limit at 0; a NaN bound (refused
    # when the plan came in) holds it at 0 too: never a negative or NaN limit
    imp = env.max_w if env.max_w > 0 else 0.0
    exp = -env.min_w if -env.min_w > 0 else 0.0
    return tighten_limits(limits, SiteLimits(imp, exp))


def decide(now: datetime, telemetry: SiteTelemetry, plan: DispatchPlan | None, stream_ok: bool,
           limits: SiteLimits, battery: BatteryLimits | None, resource_id: str = "battery",
           previous_w: float | None = None, dt_s: float = 0.0, active_pv_limit_w: float | None = None,
           plan_grid_envelope: bool = True) -> Decision:
    """The battery setpoint for this tick.

    ``plan`` is the adopted plan (or None); ``stream_ok`` is False once the
    stream has been down past its grace period, which forces the fallback.
    Without usable grid, battery and SoC measurements the battery idles.
    ``previous_w`` and ``dt_s`` (since that setpoint) feed the ramp limit, which
    yields to the grid limits: safety is applied last.  ``plan_grid_envelope`` False:
    ``limits`` already hold a live feeder envelope from the aggregator, which replaces
    the plan slot's (made on forecasts).  ``battery`` None: the house has none
    (:func:`decide_without_battery`).
    """
    if battery is None:
        return decide_without_battery(now, telemetry, plan, stream_ok, limits, active_pv_limit_w, plan_grid_envelope)
    grid, bat, soc = telemetry.grid_power_w, telemetry.battery_power_w, telemetry.battery_soc_pct
    if not fresh_for_control(telemetry):
        return Decision(0.0, "safe_idle", "measurements missing or stale: idle the battery")
    assert grid.value is not None and bat.value is not None and soc.value is not None
    base_w = grid.value - bat.value
    problem = _input_problem(grid.value, bat.value, soc.value, base_w, limits, battery)
    if problem is not None:
        return _refused(problem)
    if previous_w is not None and not math.isfinite(previous_w):
        previous_w = None  # no ramp from a value that is not one
    active_pv_limit_w = _usable_pv_limit(active_pv_limit_w)
    slot = plan.slot_at(now) if plan is not None and stream_ok else None
    if plan_grid_envelope:
        limits = slot_limits(limits, slot)
    aim = _aim(now, plan, stream_ok, slot, resource_id, base_w, limits)
    if isinstance(aim, Decision):
        return aim
    desired, mode, reason, limits = aim
    pv_w = _pv_reading(telemetry)
    if pv_w is not None and pv_limit_binding(pv_w, active_pv_limit_w):
        # PV is held at its limit, so the real surplus is larger than measured: the battery takes
        # all it may before any PV stays curtailed (the limit below rises by what it takes)
        desired = max(desired, battery.max_charge_w)
    ramped = ramp(desired, previous_w, dt_s, battery.max_ramp_w_per_s)
    if not math.isfinite(ramped) or limits_problem(limits) is not None:
        return _refused(f"setpoint {ramped} W within limits {limits}")
    value, rules = _clamp(ramped, base_w, soc.value, limits, battery, feeder_envelope=not plan_grid_envelope)
    if INVALID_INPUT in rules:
        return _refused(f"setpoint {ramped} W could not be clamped")
    if ramped != desired:
        rules = ("ramp", *rules)
    return Decision(value, mode, reason, rules, _pv_limit(base_w, pv_w, value, limits, active_pv_limit_w))


def decide_without_battery(now: datetime, telemetry: SiteTelemetry, plan: DispatchPlan | None, stream_ok: bool,
                           limits: SiteLimits, active_pv_limit_w: float | None = None,
                           plan_grid_envelope: bool = True) -> Decision:
    """A house without a battery (a house of LAN devices only): the PV limit is its one lever, for the
    export cap, the plan slot's grid envelope (as :func:`decide`) and the fallback's export cap.  Nothing
    here holds the import limit (no battery to discharge).  ``battery_w`` is 0.  A stale grid reading
    decides nothing (the caller writes nothing on it); a missing one (stale for longer than
    ``device.stale_after_s``) holds the PV to the export cap: a micro-inverter keeps its last limit
    for ever (no revert timer), and with the load unknown only PV <= cap keeps export <= cap."""
    if (problem := limits_problem(limits)) is not None:
        return _refused(problem)
    grid = telemetry.grid_power_w
    if not grid.usable or grid.value is None:
        if grid.validity is Validity.MISSING and math.isfinite(limits.max_export_w):
            return Decision(0.0, "safe_idle", "no grid reading: PV held to the export cap whatever the load",
                            ("export_cap",), limits.max_export_w)
        return Decision(0.0, "safe_idle", "grid reading stale: no PV limit decided")
    if not math.isfinite(grid.value):
        return _refused(f"grid power = {grid.value}")
    slot = plan.slot_at(now) if plan is not None and stream_ok else None
    if plan_grid_envelope:
        limits = slot_limits(limits, slot)
    if slot is not None:
        mode, reason = "plan", slot.reason or "plan slot"
    else:
        mode, reason, limits = _fallback(now, plan, stream_ok, limits)
    pv_limit = _pv_limit(grid.value, _pv_reading(telemetry), 0.0, limits, _usable_pv_limit(active_pv_limit_w))
    return Decision(0.0, mode, reason, ("export_cap",) if pv_limit is not None else (), pv_limit)


def _fallback(now: datetime, plan: DispatchPlan | None, stream_ok: bool,
              limits: SiteLimits) -> tuple[str, str, SiteLimits]:
    """The fallback's mode, reason and limits (its export cap tightens them)."""
    fallback = plan.fallback if plan is not None else FallbackMode.SELF_CONSUMPTION
    fallback_cap = plan.fallback_max_export_w if plan is not None else 0.0
    if fallback_cap > 0:  # NaN is not (and is refused when the plan comes in)
        limits = tighten_limits(limits, SiteLimits(limits.max_import_w, fallback_cap))
    why = ("no plan" if plan is None else "stream down" if not stream_ok
           else "plan not yet valid" if now < plan.valid_from else "plan expired")
    return "fallback", f"{why}: {fallback.value}", limits


def _aim(now: datetime, plan: DispatchPlan | None, stream_ok: bool, slot: PlanSlot | None, resource_id: str,
         base_w: float, limits: SiteLimits) -> tuple[float, str, str, SiteLimits] | Decision:
    """What the battery should do before ramp and safety: the plan slot's setpoint, or the
    fallback (whose export cap tightens ``limits``); returns (W, mode, reason, limits), or the
    refusal of a plan value that is not a number."""
    sp = slot.setpoint(resource_id) if slot is not None else None
    if slot is not None and sp is not None:
        env = sp.envelope
        # fixed setpoint, or follow the house balance within the envelope
        desired = sp.target_power_w if env.min_w == env.max_w else env.clamp(-base_w)
        if not math.isfinite(desired):
            return _refused(f"plan setpoint {sp.target_power_w} W in envelope ({env.min_w}, {env.max_w}) W")
        return desired, "plan", slot.reason or "plan slot", limits
    fallback = plan.fallback if plan is not None else FallbackMode.SELF_CONSUMPTION
    mode, reason, limits = _fallback(now, plan, stream_ok, limits)
    return -base_w if fallback is FallbackMode.SELF_CONSUMPTION else 0.0, mode, reason, limits


def _usable_pv_limit(limit_w: float | None) -> float | None:
    """The PV limit in force if it is one (finite, not below 0), else None."""
    return limit_w if limit_w is not None and math.isfinite(limit_w) and limit_w >= 0 else None


def _pv_reading(telemetry: SiteTelemetry) -> float | None:
    """The PV power if it is a usable, finite reading, else None."""
    pv = telemetry.pv_power_w
    return pv.value if pv.usable and pv.value is not None and math.isfinite(pv.value) else None


def _pv_limit(base_w: float, pv_w: float | None, battery_w: float, limits: SiteLimits,
              active_pv_limit_w: float | None) -> float | None:
    """The PV limit for the export cap once the battery is at ``battery_w`` (the safety clamp
    already pushed it as far toward charging as it may go: what export is still over the cap can
    only be curtailed); None without a PV reading or when none is needed."""
    if pv_w is None:
        return None
    pv_limit = pv_limit_for_export_cap(base_w, pv_w, battery_w, limits.max_export_w, active_pv_limit_w)
    if pv_limit is not None and not math.isfinite(pv_limit):
        pv_limit = None if pv_limit > 0 else 0.0  # +inf: no cap needed; NaN: curtail all
    return pv_limit


def _input_problem(grid_w: float, battery_w: float, soc_pct: float, base_w: float, limits: SiteLimits,
                   battery: BatteryLimits) -> str | None:
    if math.isfinite(grid_w) and math.isfinite(battery_w) and math.isfinite(soc_pct) and math.isfinite(base_w):
        return limits_problem(limits) or battery_problem(battery)
    for name, v in (("grid power", grid_w), ("battery power", battery_w), ("SoC", soc_pct),
                    ("house balance", base_w)):
        if not math.isfinite(v):
            return f"{name} = {v}"
    return limits_problem(limits) or battery_problem(battery)


def _refused(problem: str) -> Decision:
    return Decision(0.0, "safe_idle", f"not a usable number ({problem}): idle the battery", (INVALID_INPUT,))
