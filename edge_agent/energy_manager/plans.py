"""Which plan the agent follows: adopt only newer versions, notice expiry (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from vpp_common.messages import DispatchPlan, PlanState, PlanStatus


@dataclass
class PlanBook:
    """Holds the adopted plan.  Not thread-safe; owned by the control loop."""

    current: DispatchPlan | None = None
    _expired_reported: bool = False

    def offer(self, plan: DispatchPlan, now: datetime) -> PlanStatus:
        """Adopt ``plan`` if its version is newer and it has not expired."""
        if self.current is not None and plan.version <= self.current.version:
            if plan.version == self.current.version and plan.plan_id == self.current.plan_id:
                # the aggregator re-sends the current plan after a reconnect: same lease, ack again
                return PlanStatus(plan.plan_id, plan.version, PlanState.ACCEPTED, now, "already following")
            return PlanStatus(plan.plan_id, plan.version, PlanState.REJECTED, now,
                              f"version {plan.version} is not newer than {self.current.version}")
        if plan.valid_until <= now:
            return PlanStatus(plan.plan_id, plan.version, PlanState.REJECTED, now, "lease already expired")
        self.current = plan
        self._expired_reported = False
        return PlanStatus(plan.plan_id, plan.version, PlanState.ACCEPTED, now)

    def active(self, now: datetime) -> DispatchPlan | None:
        plan = self.current
        return plan if plan is not None and plan.is_valid_at(now) else None

    def expiry(self, now: datetime) -> PlanStatus | None:
        """An EXPIRED status, once, when the adopted plan's lease has run out."""
        plan = self.current
        if plan is None or self._expired_reported or now < plan.valid_until:
            return None
        self._expired_reported = True
        return PlanStatus(plan.plan_id, plan.version, PlanState.EXPIRED, now, "lease ran out; following fallback")
