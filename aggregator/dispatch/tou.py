"""The simple time-of-use plan for one house (pure): moved to :mod:`vpp_common.tou`, which the
edge agent shares for its local time-of-use mode; re-exported here for existing importers."""

from __future__ import annotations

from vpp_common.tou import TouPlanInput, make_plan, plan_slots

__all__ = ["TouPlanInput", "make_plan", "plan_slots"]
