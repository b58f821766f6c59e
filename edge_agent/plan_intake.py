"""Plans and grid signals from the aggregator, checked before use.

A plan this house cannot follow (a bad number or slot, a resource it does not have or control,
a power beyond its nameplate) is REJECTED with the reason, to the aggregator (it would otherwise
believe the house follows it) and to the log (rate-limited); a refused grid signal is never
stored: the one in force stays until it expires, a refused limit must not loosen anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import datetime

from edge_agent.energy_manager.limits import effective_limits, feeder_envelope_active
from edge_agent.energy_manager.plan_check import (
    Problem,
    grid_signal_problem,
    plan_house_problem,
    plan_problem,
)
from edge_agent.energy_manager.plans import PlanBook
from edge_agent.house_battery import battery_ratings, uncontrollable
from edge_agent.metrics import AgentMetrics, AgentStats
from edge_agent.refusals import Refusals
from edge_agent.resources.capabilities import plan_refusal
from edge_agent.resources.house import HouseResourceManager, HouseSnapshot
from edge_agent.uplink.convert import InvalidGridSignal, InvalidPlan
from vpp_common.messages import DispatchPlan, GridSignal, PlanState, PlanStatus, SiteLimits


def house_plan_problem(plan: DispatchPlan, device: HouseResourceManager, snapshot: HouseSnapshot | None,
                       held: Collection[str] = ()) -> Problem | None:
    """Why this house cannot follow ``plan``: a bad number or slot (checked at the wire too),
    a setpoint for a resource it does not have or control, a battery power outside its
    nameplate; None if it can.  ``held``: the other devices' resource ids that take setpoints
    now (the S2 RMs' live sessions; their own instructions keep them inside the safety
    envelope).  A plan that names only those needs no controllable battery."""
    problem = plan_problem(plan)
    if problem is not None:
        return problem
    own = without_setpoints(plan, set(held) - {device.battery_id})
    if own is not plan and not any(slot.setpoints for slot in own.slots):
        return None  # only the RMs' setpoints: the house battery is not asked for anything
    plan = own
    if (why := plan_refusal(plan, lambda r: uncontrollable(device, r), device.battery_id)) is not None:
        # what the house cannot deliver is REJECTED with the reason, never ACCEPTED and then idled
        return Problem("not_controllable", why)
    # not known yet: the safety clamp holds the device's ratings
    max_charge, max_discharge = battery_ratings(device, snapshot)
    known = tuple(r.resource_id for r in getattr(device, "resources", ()))
    return plan_house_problem(plan, device.battery_id, known, max_charge, max_discharge)


def without_setpoints(plan: DispatchPlan, ids: set[str]) -> DispatchPlan:
    """``plan`` without the setpoints for ``ids`` (``plan`` itself if it names none of them)."""
    if not ids or not any(sp.resource_id in ids for slot in plan.slots for sp in slot.setpoints):
        return plan
    return replace(plan, slots=tuple(replace(slot, setpoints=tuple(sp for sp in slot.setpoints
                                                                   if sp.resource_id not in ids))
                                     for slot in plan.slots))


class PlanIntake:
    def __init__(self, limits: SiteLimits, plans: PlanBook, send: Callable[[PlanStatus], None],
                 metrics: AgentMetrics, stats: AgentStats, refusals: Refusals, wake: asyncio.Event) -> None:
        self.limits = limits  # the configured site limits
        self.grid_signal: GridSignal | None = None  # the last one checked
        self.plans, self.send, self.metrics, self.stats = plans, send, metrics, stats
        self.refusals, self._wake = refusals, wake

    def on_grid_signal(self, signal: GridSignal | Exception) -> None:
        """Store a checked grid signal; a refused one is counted and logged, never stored (the one
        in force stays until it expires: a refused limit must not loosen anything)."""
        if not isinstance(signal, Exception):
            problem = grid_signal_problem(signal)  # checked at the wire too; this also covers other callers
            signal = signal if problem is None else InvalidGridSignal(problem.detail, problem.label)
        if isinstance(signal, Exception):
            self.refusals.refuse("grid_signal", getattr(signal, "label", "malformed"), str(signal))
            return
        self.grid_signal = signal
        self._wake.set()

    def effective_limits(self, now: datetime) -> SiteLimits:
        """Configured limits, tightened (never loosened) by the aggregator's temporary ones."""
        return effective_limits(self.limits, self.grid_signal, now)

    def feeder_envelope_active(self, now: datetime) -> bool:
        """The aggregator's live feeder share holds: it replaces the plan's grid envelopes."""
        return feeder_envelope_active(self.grid_signal, now)

    def offer(self, plan: DispatchPlan | Exception, now: datetime, mode: str,
              problem: Callable[[DispatchPlan], Problem | None]) -> None:
        """A plan from the aggregator: adopted (newer, followable, vpp mode) or REJECTED, said back."""
        if isinstance(plan, Exception):
            self.reject_invalid(plan, now)
            return
        self.stats.plan_received_at[plan.version] = time.monotonic()
        if mode != "vpp":
            self._count(PlanStatus(plan.plan_id, plan.version, PlanState.REJECTED, now, f"agent runs in {mode} mode"))
            return
        p = problem(plan)
        if p is not None:
            self.reject_invalid(InvalidPlan(p.detail, p.label, plan.plan_id, plan.version), now)
            return
        if self._count(self.plans.offer(plan, now)):
            self._wake.set()  # apply the new slot now, not at the next tick

    def _count(self, status: PlanStatus) -> bool:
        """Send ``status``, counted; True if the plan was accepted."""
        self.send(status)
        accepted = status.state is PlanState.ACCEPTED
        if accepted:
            self.stats.plans_accepted += 1
        else:
            self.stats.plans_rejected += 1
        self.metrics.plans.labels("accepted" if accepted else "rejected").inc()
        return accepted

    def drop(self, now: datetime, reason: str) -> None:
        """Stop following the adopted plan (the house left vpp mode), REJECTED with ``reason``: the
        aggregator must not believe the house still follows it."""
        current = self.plans.current
        if current is not None:
            self.send(PlanStatus(current.plan_id, current.version, PlanState.REJECTED, now, reason))
            self.plans.current = None

    def reject_invalid(self, exc: Exception, now: datetime) -> None:
        """A plan this house must not follow: REJECTED with the reason, to the aggregator (it would
        otherwise believe the house follows it) and to the log (once, then rate-limited)."""
        plan_id, version = getattr(exc, "plan_id", ""), getattr(exc, "version", 0)
        label = getattr(exc, "label", "malformed")
        self.stats.plans_rejected += 1
        self.metrics.plans.labels("invalid").inc()
        self.refusals.refuse("plan", label, f"plan {plan_id or '?'} v{version}: {exc}")
        self.send(PlanStatus(plan_id, version, PlanState.REJECTED, now, f"{label}: {exc}"))
