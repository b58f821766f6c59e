"""When a shiftable run starts (a washing machine's programme): pure decisions of the run's window,
the house's prices and PV surplus, the aggregator's chosen start and the import limit.

Rules (docs/appliances.md): a run starts at the plan's start when that lies within its window;
otherwise in the cheapest window of its profile that ends by its deadline, PV surplus counted at the
feed-in price; at the last moment whatever the prices (the deadline is never missed); not while the
import limit would be passed by its start, unless the deadline forces it.  Once started a run is
never interrupted (the caller never switches a running appliance off).

Every input is hostile: an unknown (NaN, infinite, absurd) price is taken as the dearest known one
(it is never chosen for being cheap), an unknown export price as the cheapest known one (else 0),
an unknown PV surplus as none, an unknown grid reading as no limit pressure; never as 0 where 0
would invite a start.  The shared price and window helpers serve the pausable loads
(appliance_pause.py) and the power stations (appliance_charge.py) too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Literal

from edge_agent.energy_manager.load_switching import MAX_POWER_W, finite
from vpp_common.messages import ProfileStep

MAX_PRICE = 1e4  # currency/kWh: beyond is no price
MAX_CANDIDATES = 7 * 96  # starts weighed per decision (a week of 15-minute slots)
RunReason = Literal["deadline", "plan", "cheapest_window", "pv_surplus", "import_limit", "not_yet"]


@dataclass(frozen=True, slots=True)
class Outlook:
    """What the house expects from ``start`` in slots of ``slot_s``: import and export prices
    (currency/kWh) and the PV surplus (W spare after the household load, >= 0) per slot; any value
    may be unknown (NaN).  ``surplus_now_w``: measured now (the grid's export, W >= 0; None unknown)."""

    start: datetime
    slot_s: int
    import_price: tuple[float, ...]
    export_price: tuple[float, ...]
    surplus_w: tuple[float, ...] = ()
    surplus_now_w: float | None = None

    def clean(self) -> Outlook:
        """Unknown prices filled as the module says (dearest import, cheapest export), surplus >= 0."""
        imp = [finite(p, -MAX_PRICE, MAX_PRICE) for p in self.import_price]
        exp = [finite(p, -MAX_PRICE, MAX_PRICE) for p in self.export_price]
        known_imp = [p for p in imp if p is not None]
        known_exp = [p for p in exp if p is not None]
        dear = max(known_imp) if known_imp else 1.0  # no price at all: every slot alike
        low = min(known_exp) if known_exp else 0.0
        n = len(imp)
        surplus = [finite(s, 0.0, MAX_POWER_W) or 0.0 for s in self.surplus_w[:n]]
        return Outlook(self.start, self.slot_s, tuple(dear if p is None else p for p in imp),
                       tuple(low if i >= len(exp) or exp[i] is None else exp[i] for i in range(n)),  # type: ignore[misc]
                       tuple(surplus + [0.0] * (n - len(surplus))), finite(self.surplus_now_w, 0.0, MAX_POWER_W))


@dataclass(frozen=True, slots=True)
class House:
    """The house now: grid power (W, import > 0; None unknown), its import limit in force (W), the outlook."""

    now: datetime
    grid_w: float | None
    max_import_w: float | None
    outlook: Outlook


def slot_cost_rate(o: Outlook, i: int, power_w: float, now_slot: bool) -> float:
    """Currency per hour of drawing ``power_w`` in slot ``i`` of a clean outlook: what PV surplus
    covers at the export price (the feed-in forgone), the rest at the import price.  Beyond the
    outlook: the dearest import price (no window there is chosen for being cheap)."""
    if i < 0 or i >= len(o.import_price):
        return power_w / 1000.0 * (max(o.import_price) if o.import_price else 1.0)
    surplus = o.surplus_now_w if now_slot and o.surplus_now_w is not None else o.surplus_w[i]
    covered = min(power_w, surplus)
    return (covered * o.export_price[i] + (power_w - covered) * o.import_price[i]) / 1000.0


def profile_cost(o: Outlook, profile: Sequence[ProfileStep], start: datetime, now: datetime) -> float:
    """What the profile costs started at ``start`` (currency), slot by slot of a clean outlook."""
    cost, t = 0.0, (start - o.start).total_seconds()
    now_slot = math.floor((now - o.start).total_seconds() / o.slot_s)
    for step in profile:
        left = step.duration_s
        while left > 1e-9:
            i = math.floor(t / o.slot_s)
            part = min(left, (i + 1) * o.slot_s - t)
            cost += slot_cost_rate(o, i, step.power_w, i == now_slot) * part / 3600.0
            t, left = t + part, left - part
    return cost


def candidate_starts(o: Outlook, now: datetime, latest_start: datetime) -> list[datetime]:
    """Now, every slot boundary after it up to the latest start, and the latest start."""
    out = [now]
    k = math.floor((now - o.start).total_seconds() / o.slot_s) + 1
    while len(out) < MAX_CANDIDATES:
        t = o.start + timedelta(seconds=k * o.slot_s)
        if t >= latest_start:
            break
        out.append(t)
        k += 1
    if latest_start > now:
        out.append(latest_start)
    return out


def cheapest_start(o: Outlook, profile: Sequence[ProfileStep], now: datetime, latest_start: datetime) -> datetime:
    """The start (from now to ``latest_start``) where the profile costs least; the earliest of equals."""
    clean = o.clean()
    best, best_cost = now, math.inf
    for t in candidate_starts(clean, now, latest_start):
        c = profile_cost(clean, profile, t, now)
        if c < best_cost - 1e-9 * max(1.0, abs(best_cost) if math.isfinite(best_cost) else 1.0):
            best, best_cost = t, c
    return best


def duration(profile: Sequence[ProfileStep]) -> timedelta:
    return timedelta(seconds=sum(p.duration_s for p in profile))


@dataclass(frozen=True, slots=True)
class RunDecision:
    start: bool  # start now
    reason: RunReason
    planned: datetime  # the start it aims at (now if it starts)
    plan_ignored: str = ""  # why the plan's start was not used ("" if there was none or it was)


def _plan_start_problem(plan_start: datetime | None, earliest: datetime, latest_start: datetime) -> str:
    if plan_start is None:
        return ""
    if not earliest <= plan_start <= latest_start:
        return (f"the plan's start {plan_start:%Y-%m-%d %H:%M} is outside the run's window "
                f"({earliest:%H:%M} to {latest_start:%H:%M} for its start)")
    return ""


def decide_run(profile: Sequence[ProfileStep], earliest: datetime, latest_end: datetime, house: House,
               plan_start: datetime | None, tick_s: float) -> RunDecision:
    """Start now or not, for a requested run not yet started.  ``tick_s``: the time to the next
    decision (a start that must happen before then happens now)."""
    now = house.now
    latest_start = latest_end - duration(profile)
    if now + timedelta(seconds=max(0.0, finite(tick_s, 0.0, 86_400.0) or 0.0)) >= latest_start:
        return RunDecision(True, "deadline", now)  # the last moment: whatever prices and limits say
    ignored = _plan_start_problem(plan_start, earliest, latest_start)
    if now < earliest:
        return RunDecision(False, "not_yet", earliest, ignored)
    if plan_start is not None and not ignored:
        planned, reason = plan_start, "plan"
    else:
        planned = cheapest_start(house.outlook, profile, now, latest_start)
        surplus = finite(house.outlook.surplus_now_w, 0.0, MAX_POWER_W)
        first_w = profile[0].power_w if profile else 0.0
        reason = "pv_surplus" if surplus is not None and first_w > 0 and surplus >= first_w / 2 else "cheapest_window"
    if planned > now:
        return RunDecision(False, reason, planned, ignored)  # type: ignore[arg-type]
    if would_pass_limit(house, max((p.power_w for p in profile), default=0.0)):
        return RunDecision(False, "import_limit", now, ignored)
    return RunDecision(True, reason, now, ignored)  # type: ignore[arg-type]


def would_pass_limit(house: House, extra_w: float) -> bool:
    """Drawing ``extra_w`` more would take the import past the limit in force (unknown: no)."""
    grid = finite(house.grid_w, -MAX_POWER_W, MAX_POWER_W)
    limit = finite(house.max_import_w, -MAX_POWER_W, MAX_POWER_W)  # < 0: a feeder envelope's "export at least"
    return grid is not None and limit is not None and grid + extra_w > limit


def next_local(after: datetime, at: time, tz: tzinfo) -> datetime:
    """The first moment at or after ``after`` whose local time of day (zone ``tz``) is ``at``."""
    day = after.astimezone(tz).date()
    for d in range(3):
        cand = datetime.combine(day + timedelta(days=d), at, tz)
        if cand >= after:
            return cand
    raise AssertionError("a day has every time of day")  # not reached


def run_window(requested: datetime, ready_by: time, tz: tzinfo, profile: Sequence[ProfileStep],
               margin_s: float = 0.0) -> tuple[datetime, datetime]:
    """The run's window: from its request to the first ``ready_by`` (local time) it can still meet
    with ``margin_s`` to spare (the decisions' interval: a start is made at a decision)."""
    end = next_local(requested, ready_by, tz)
    if end - requested < duration(profile) + timedelta(seconds=margin_s):
        end = next_local(end + timedelta(minutes=1), ready_by, tz)
    return requested, max(end, requested + duration(profile))


__all__ = ["House", "Outlook", "RunDecision", "candidate_starts", "cheapest_start", "decide_run", "duration",
           "next_local", "profile_cost", "run_window", "slot_cost_rate", "would_pass_limit"]
