"""A house's several storages as the planner sees them (pure): its own battery and the FRBC
storages of S2 Resource Managers connected to its agent (a power station, a heat-pump buffer).

The LP plans one storage per house.  A house with several is planned as one *virtual*
storage (:func:`merge`: capacities and powers summed, SoC bounds and efficiencies
energy-weighted), and the plan's setpoint for it is then shared among them
(:func:`split_plan`), the house's own battery first: it is the storage the agent drives
fastest (every control tick, on the house balance) and the one the plan check knows by its
nameplate; an RM follows a fixed setpoint, with its own controller in between.  Each slot's
power goes to the storages in that order, each taking what its power rating and its energy
room (its SoC simulated through the plan) allow; what none can take is not given.  A house
with one storage keeps it as it is, and its plan is not touched: those plans stay bit for
bit what they were.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Collection, Sequence
from dataclasses import replace

from vpp_common.messages import DispatchPlan, Envelope, PlanSlot, Setpoint, StorageFlexibility


def usable(s: StorageFlexibility) -> bool:
    """Every number finite and in range (the wire checks them; this guards other callers):
    a storage with one bad number is left out, never planned on a guess."""
    numbers = (s.soc_pct, s.soc_min_pct, s.soc_max_pct, s.reserve_soc_pct, s.capacity_wh, s.max_charge_power_w,
               s.max_discharge_power_w, s.charge_efficiency, s.discharge_efficiency)
    return (all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers) and s.capacity_wh > 0
            and 0 <= s.soc_min_pct <= s.soc_max_pct <= 100 and s.max_charge_power_w >= 0
            and s.max_discharge_power_w >= 0 and 0 < s.charge_efficiency <= 1 and 0 < s.discharge_efficiency <= 1)


def house_first(storages: Sequence[StorageFlexibility], battery_ids: Collection[str]) -> tuple[StorageFlexibility, ...]:
    """The storages, the house's own batteries (named in its Hello) first, each id once (the
    first kept); then the others in the order sent."""
    seen: set[str] = set()
    own: list[StorageFlexibility] = []
    others: list[StorageFlexibility] = []
    for s in storages:
        if s.resource_id not in seen:
            seen.add(s.resource_id)
            (own if s.resource_id in battery_ids else others).append(s)
    return (*own, *others)


def planned(storages: Sequence[StorageFlexibility]) -> tuple[StorageFlexibility, tuple[StorageFlexibility, ...]]:
    """What the LP plans of a house's storages (ordered, at least one) and the parts its setpoint
    is split among (empty: none to split).  One storage, or none usable: the first as it is
    (the LP's own checks leave a house with a bad number out and say why); several: the
    usable ones merged, one with a bad number left out (never planned on a guess)."""
    parts = tuple(s for s in storages if usable(s))
    if len(storages) == 1 or not parts:
        return storages[0], ()
    return merge(parts), parts if len(parts) > 1 else ()


def _soc(s: StorageFlexibility) -> float:
    return min(max(s.soc_pct, s.soc_min_pct), s.soc_max_pct)


def _floor(s: StorageFlexibility) -> float:
    return max(s.reserve_soc_pct, s.soc_min_pct)


def merge(parts: Sequence[StorageFlexibility]) -> StorageFlexibility:
    """One storage for the LP, named after the first part; one part: that part itself."""
    if len(parts) == 1:
        return parts[0]
    cap = sum(s.capacity_wh for s in parts)

    def weighted(value) -> float:  # type: ignore[no-untyped-def]
        return sum(value(s) * s.capacity_wh for s in parts) / cap

    soc_min, soc_max = weighted(lambda s: s.soc_min_pct), weighted(lambda s: s.soc_max_pct)
    return StorageFlexibility(
        resource_id=parts[0].resource_id,
        soc_pct=min(max(weighted(_soc), soc_min), soc_max),  # rounding must not put it outside its bounds
        soc_min_pct=soc_min, soc_max_pct=soc_max,
        reserve_soc_pct=min(max(weighted(_floor), soc_min), soc_max),
        capacity_wh=cap,
        max_charge_power_w=sum(s.max_charge_power_w for s in parts),
        max_discharge_power_w=sum(s.max_discharge_power_w for s in parts),
        charge_efficiency=min(1.0, weighted(lambda s: s.charge_efficiency)),
        discharge_efficiency=min(1.0, weighted(lambda s: s.discharge_efficiency)),
    )


def share(target_w: float, parts: Sequence[StorageFlexibility], soc: list[float], slot_h: float) -> list[float]:
    """One slot's power among the parts in order, each within its rating and its energy room
    at ``soc`` (updated in place).  What none can take is not given: the virtual storage's
    averaged efficiencies and reserve promised a little more than the parts hold, and no
    device could deliver it (each would stop at its own bound)."""
    out = [0.0] * len(parts)
    left = target_w
    for i, s in enumerate(parts):
        if abs(left) <= 1e-9:
            break
        if left > 0:
            room = (s.soc_max_pct - soc[i]) / 100 * s.capacity_wh / (s.charge_efficiency * slot_h)
            out[i] = min(left, s.max_charge_power_w, max(room, 0.0))
        else:
            room = (soc[i] - _floor(s)) / 100 * s.capacity_wh * s.discharge_efficiency / slot_h
            out[i] = max(left, -s.max_discharge_power_w, -max(room, 0.0))
        left -= out[i]
    for i, s in enumerate(parts):
        stored = out[i] * s.charge_efficiency if out[i] > 0 else out[i] / s.discharge_efficiency
        soc[i] += stored * slot_h / s.capacity_wh * 100
    return out


def _slot_setpoints(sp: Setpoint, parts: Sequence[StorageFlexibility], powers: list[float]) -> tuple[Setpoint, ...]:
    """The first part follows the house balance within the virtual envelope less what the
    others are fixed at (within its rating, never excluding its own target); the others are
    fixed at their share."""
    first, rest = parts[0], sum(powers[1:])

    def within(v: float) -> float:
        return min(max(v, -first.max_discharge_power_w), first.max_charge_power_w)

    lo, hi = within(sp.envelope.min_w - rest), within(sp.envelope.max_w - rest)
    head = Setpoint(first.resource_id, powers[0], Envelope(min(lo, powers[0]), max(hi, powers[0])))
    return (head, *(Setpoint(s.resource_id, p, Envelope(p, p)) for s, p in zip(parts[1:], powers[1:], strict=True)))


def split_plan(plan: DispatchPlan, parts: Sequence[StorageFlexibility]) -> DispatchPlan:
    """``plan``'s setpoint for the virtual storage (named after ``parts[0]``) as one setpoint per
    part; fewer than two parts: ``plan`` itself.  The split plan has its own id (a plan id names
    one plan's slots: the service may have encoded the unsplit ones ahead)."""
    if len(parts) < 2:
        return plan
    slot_h = plan.slot_duration_s / 3600
    soc = [_soc(s) for s in parts]
    name = parts[0].resource_id
    slots = []
    for slot in plan.slots:
        sp = slot.setpoint(name)
        if sp is None or not math.isfinite(sp.target_power_w):
            slots.append(slot)
            continue
        powers = share(sp.target_power_w, parts, soc, slot_h)
        others = tuple(x for x in slot.setpoints if x.resource_id != name)
        slots.append(PlanSlot(slot.start, (*_slot_setpoints(sp, parts, powers), *others), slot.grid_envelope,
                              slot.reason))
    return replace(plan, plan_id=str(uuid.uuid4()), slots=tuple(slots))
