"""The agent's own time-of-use plan (``tou`` mode): no aggregator needed (pure, injected time).

Every slot, and whenever the prices, the limits or the battery's description
change, the planner re-plans over the known price horizon with the house's own
PV and load forecast (``vpp_common.tou``: cheap slots charge up to the SoC the
expensive ones need, the peak is covered from the battery).  The result is an
ordinary :class:`DispatchPlan`, followed through the same ``decide`` path as an
aggregator's plan, so the safety envelope is applied last either way.

Its lease is short (``lease_slots``): if the agent stops re-planning (no SoC,
no prices), the plan expires and ``decide`` falls back to self-consumption.
Powers in W, charging > 0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from edge_agent.energy_manager.history import Forecaster
from vpp_common.messages import DispatchPlan, SiteLimits, StorageFlexibility
from vpp_common.tariff import PriceSource
from vpp_common.timeslots import align_down
from vpp_common.tou import TouPlanInput, make_plan


@dataclass(frozen=True, slots=True)
class _PlanKey:
    """What a plan was made from: a change of any of these re-plans."""

    start: datetime
    prices: tuple[float, ...]
    limits: SiteLimits
    storage: StorageFlexibility  # the battery's description, without its SoC


class LocalTouPlanner:
    def __init__(self, prices: PriceSource, slot_s: int = 900, horizon_slots: int = 96, lease_slots: int = 2,
                 cycle_cost_per_kwh: float = 0.005) -> None:
        if horizon_slots < 1 or lease_slots < 1:
            raise ValueError("horizon_slots and lease_slots must be >= 1")
        self.prices = prices
        self.slot_s = slot_s
        self.horizon_slots = horizon_slots
        self.lease_slots = lease_slots
        self.cycle_cost_per_kwh = cycle_cost_per_kwh
        self.current: DispatchPlan | None = None
        self.replans = 0
        self._key: _PlanKey | None = None

    def _horizon(self, start: datetime, now: datetime) -> int:
        """Slots with known prices (a day-ahead series is known only so far), at least one."""
        known_until = getattr(self.prices, "known_until", None)
        if known_until is None:
            return self.horizon_slots
        known = int((known_until(now) - start).total_seconds() // self.slot_s)
        return max(1, min(self.horizon_slots, known))

    def plan(self, now: datetime, storage: StorageFlexibility, limits: SiteLimits,
             forecaster: Forecaster | None) -> DispatchPlan:
        """The plan to follow at ``now``: the current one, or a new one at each slot start (a new
        forecast) and when the prices, limits or battery description change.  The SoC alone
        does not re-plan within a slot: the envelopes absorb deviations until the next one."""
        start = align_down(now, self.slot_s)
        n = self._horizon(start, now)
        imp, exp = self.prices.prices(start, self.slot_s, n)
        key = _PlanKey(start, tuple(np.round(imp, 6).tolist()) + tuple(np.round(exp, 6).tolist()), limits,
                       replace(storage, soc_pct=0.0))
        if self.current is not None and key == self._key and self.current.is_valid_at(now):
            return self.current
        load = pv = None
        if forecaster is not None:
            fc = forecaster.forecast(start, n)
            if fc.slot_s != self.slot_s or fc.start != start or len(fc.load_w) < n:
                raise ValueError(f"forecast slots ({fc.start}, {fc.slot_s} s) do not match the plan's "
                                 f"({start}, {self.slot_s} s)")
            load, pv = np.asarray(fc.load_w[:n], dtype=float), np.asarray(fc.pv_w[:n], dtype=float)
        else:  # no forecast yet: plan for an idle house (the envelopes still follow the real balance)
            load, pv = np.zeros(n), np.zeros(n)
        # an import limit below 0 (a feeder envelope's "export at least", minutes long) is the live
        # control's, not a plan's for hours: planned as 0
        inp = TouPlanInput(start=start, slot_s=self.slot_s, import_price_per_kwh=imp, storage=storage,
                           max_import_w=max(limits.max_import_w, 0.0), load_forecast_w=load, pv_forecast_w=pv,
                           export_price_per_kwh=exp, max_export_w=limits.max_export_w,
                           cycle_cost_per_kwh=self.cycle_cost_per_kwh)
        self.replans += 1
        version = (self.current.version + 1) if self.current is not None else 1
        lease_s = min(n, self.lease_slots) * self.slot_s
        plan = make_plan(f"local-tou-{start.isoformat()}", version, now, inp, lease_s)
        self.current, self._key = plan, key
        return plan
