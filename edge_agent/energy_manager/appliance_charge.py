"""When a portable power station on a plug charges: pure decisions of its day's energy, the house's
prices and PV surplus, and the import limit.

The plug measures power, not the station's state of charge: the agent counts the energy it let in
since the day began (the day ends at ``ready_by``) and takes the station as full once it draws less
than ``full_below_w`` while switched on (its own charger stopped).  It charges on PV surplus whenever
the surplus (the grid's export, its own draw counted back) covers at least half its power
(the rest is bought); otherwise, while the day's energy
is not in, in the cheapest slots before ``ready_by`` that still get it in, and at the end whatever
the price (the deadline).  Not while the import limit binds, unless the deadline forces it.  It
stays on and off ``min_switch_s``.  Unknown readings are not counted as energy (it charges more,
never less); an unknown state leaves the plug alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta, tzinfo
from typing import Literal

from edge_agent.energy_manager.appliances import House, next_local, slot_cost_rate, would_pass_limit
from edge_agent.energy_manager.load_switching import MAX_POWER_W, finite
from vpp_common.messages import ProfileStep, RunState, ShiftableRunFlexibility
from vpp_common.timeslots import align_down

ChargeReason = Literal["pv_surplus", "cheapest_hours", "deadline", "full", "import_limit", "not_needed", "waiting"]
FULL_AFTER_S = 120.0  # on this long drawing less than full_below_w: full (its charger stopped)
MAX_GAP_S = 600.0  # a sample further from the last one is not integrated (the agent was away)


@dataclass(frozen=True, slots=True)
class ChargeRules:
    need_wh: float
    charge_w: float
    ready_by: time
    tz: tzinfo
    full_below_w: float = 10.0
    min_switch_s: float = 300.0


@dataclass(frozen=True, slots=True)
class ChargeState:
    """On/off as read back (None unknown), since when, the day's end, the energy let in this day
    (Wh), whether it was seen full this day, the last sample (time, W) for the integration, since
    when it draws less than ``full_below_w`` while on."""

    on: bool | None = None
    changed_at: datetime | None = None
    day_end: datetime | None = None
    charged_wh: float = 0.0
    full: bool = False
    sample: tuple[datetime, float] | None = None
    low_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class ChargeAction:
    on: bool
    reason: ChargeReason


def observe_charge(rules: ChargeRules, state: ChargeState, on: bool | None, power_w: float | None,
                   now: datetime) -> ChargeState:
    """The state after a read: a new day when ``ready_by`` passed, the energy since the last valid
    sample, full once it draws (almost) nothing while on."""
    if state.day_end is None or now >= state.day_end:
        state = ChargeState(state.on, state.changed_at, next_local(now + timedelta(seconds=1), rules.ready_by, rules.tz))
    power = finite(power_w, 0.0, MAX_POWER_W)
    charged = state.charged_wh
    if state.sample is not None and power is not None:
        dt = (now - state.sample[0]).total_seconds()
        if 0 < dt <= MAX_GAP_S:
            charged += (state.sample[1] + power) / 2 * dt / 3600.0
    sample = (now, power) if power is not None else None
    if on is None:
        return replace(state, on=None, charged_wh=charged, sample=sample, low_since=None)
    changed = state.changed_at if state.on in (None, on) else now
    low = on and power is not None and power < rules.full_below_w
    low_since = (state.low_since or now) if low else None
    full = state.full or (low_since is not None and (now - low_since).total_seconds() >= FULL_AFTER_S)
    return ChargeState(on, changed, state.day_end, charged, full, sample, low_since)


def remaining_wh(rules: ChargeRules, state: ChargeState) -> float:
    return 0.0 if state.full else max(0.0, rules.need_wh - state.charged_wh)


def _cheapest_now(rules: ChargeRules, house: House, left_s: float, deadline: datetime) -> bool:
    """The current slot is among the cheapest slots before the deadline that give ``left_s`` of charging."""
    o = house.outlook.clean()
    now_i = math.floor((house.now - o.start).total_seconds() / o.slot_s)
    end_i = math.ceil((deadline - o.start).total_seconds() / o.slot_s)
    rates = sorted((slot_cost_rate(o, i, rules.charge_w, i == now_i), i) for i in range(now_i, max(end_i, now_i + 1)))
    need_slots = math.ceil(left_s / o.slot_s - 1e-9)
    return any(i == now_i for _, i in rates[:max(need_slots, 1)])


def decide_charge(rules: ChargeRules, state: ChargeState, house: House) -> ChargeAction | None:
    """Switch on, off or nothing (None).  ``house.grid_w`` counts the station as drawing now."""
    now = house.now
    if state.on is None or state.day_end is None:
        return None
    want, reason = _want(rules, state, house)
    if want == state.on:
        return None
    held = state.changed_at is not None and (now - state.changed_at).total_seconds() < rules.min_switch_s
    return ChargeAction(want, reason) if reason == "deadline" or not held else None


def _want(rules: ChargeRules, state: ChargeState, house: House) -> tuple[bool, ChargeReason]:
    assert state.day_end is not None
    if state.full:
        return False, "full"
    own = rules.charge_w if state.on else 0.0
    grid = finite(house.grid_w, -MAX_POWER_W, MAX_POWER_W)
    spare = None if grid is None else own - grid  # the export it would leave (its own draw counted back)
    left_wh = remaining_wh(rules, state)
    left_s = left_wh / rules.charge_w * 3600.0
    if left_wh > 0 and (state.day_end - house.now).total_seconds() <= left_s + 60.0:
        return True, "deadline"
    if would_pass_limit(house, rules.charge_w - own):
        return False, "import_limit"
    if spare is not None and spare >= rules.charge_w / 2:
        return True, "pv_surplus"
    if left_wh <= 0:
        return False, "not_needed"
    if _cheapest_now(rules, house, left_s, state.day_end):
        return True, "cheapest_hours"
    return False, "waiting"


def charge_flexibility(resource_id: str, rules: ChargeRules, state: ChargeState,
                       now: datetime) -> ShiftableRunFlexibility | None:
    """The day's energy still to come as a PPBC run at its charge power, from this 15-minute slot
    to ``ready_by`` (trimmed to what fits); RUNNING while charging, DONE once in; None before the
    first reading."""
    if state.day_end is None:
        return None
    earliest = align_down(now, 900)
    left_s = min(remaining_wh(rules, state) / rules.charge_w * 3600.0, (state.day_end - earliest).total_seconds())
    left_s = round(left_s / 60.0) * 60.0  # whole minutes: the update goes out on changes only
    if left_s <= 0:
        full_s = min(rules.need_wh / rules.charge_w * 3600.0, (state.day_end - earliest).total_seconds())
        return ShiftableRunFlexibility(resource_id, (ProfileStep(max(full_s, 60.0), rules.charge_w),), earliest,
                                       max(state.day_end, earliest + timedelta(seconds=max(full_s, 60.0))),
                                       RunState.DONE, earliest)
    running = bool(state.on)
    return ShiftableRunFlexibility(resource_id, (ProfileStep(left_s, rules.charge_w),), earliest, state.day_end,
                                   RunState.RUNNING if running else RunState.WAITING, earliest if running else None)


__all__ = ["ChargeAction", "ChargeRules", "ChargeState", "charge_flexibility", "decide_charge", "observe_charge",
           "remaining_wh"]
