"""The planning cycle's decisions as pure functions: from a snapshot of the fleet's state to
the fleet problem, and from a solution to versioned, leased plans.  The planner gathers the
snapshot from the store and does the I/O; everything here is arithmetic on values."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

import numpy as np

from aggregator.config import FeederConfig
from aggregator.dispatch import storages
from aggregator.dispatch.events import FleetEvent
from aggregator.dispatch.fleet_input import (
    FeederLimits,
    HouseInput,
    forecast_arrays,
    prepare_problem,
)
from aggregator.dispatch.futures import Future
from aggregator.dispatch.plans import lease_end
from aggregator.dispatch.problem import FleetProblem
from aggregator.dispatch.runs import RunPlacement, place_runs, with_run_load
from aggregator.store import FleetEventRecord, HouseRecord
from vpp_common.messages import (
    DispatchPlan,
    Flexibility,
    LimitOverride,
    ResourceKind,
    RunStart,
    SiteLimits,
    StorageFlexibility,
)


def feeder_limits_w(f: FeederConfig) -> tuple[float, float]:
    """A configured feeder's import and export limits, W (inf: none)."""
    return (f.import_limit_w or float("inf"), f.export_limit_w if f.export_limit_w is not None else float("inf"))


def tightened(limits: SiteLimits, override: LimitOverride | None) -> SiteLimits:
    """A house's limits under a temporary override: overrides only ever tighten."""
    if override is None:
        return limits
    return SiteLimits(min(limits.max_import_w, override.limits.max_import_w),
                      min(limits.max_export_w, override.limits.max_export_w))


def house_storages(house: HouseRecord, flex: Flexibility) -> tuple[StorageFlexibility, ...]:
    """The house's storages, its own battery (by the Hello's battery resources, not by
    position) first, then the S2 FRBC RMs' its agent reports."""
    own = {r.resource_id for r in house.hello.resources if r.kind is ResourceKind.BATTERY}
    return storages.house_first(flex.storages, own)


def house_input(house: HouseRecord, flex: Flexibility, override: LimitOverride | None,
                feeder_id: str | None) -> HouseInput | None:
    """One house of the problem, from what the fleet knows of it; None without a storage.
    Several storages are planned as one (``aggregator.dispatch.storages.planned``)."""
    ordered = house_storages(house, flex)
    if not ordered:
        return None
    storage, parts = storages.planned(ordered)
    pv_rated = sum(r.rated_power_w for r in house.hello.resources if r.kind is ResourceKind.PV)
    return HouseInput(house.house_id, tightened(house.hello.limits, override), storage,
                      flex.load_forecast, flex.pv_forecast, pv_rated, feeder_id, flex.pv_clear_sky_forecast,
                      flex.shiftable_runs, parts)


def tied_slots(cycle_s: float, slot_s: int) -> int:
    """The slots a cycle's plans are followed for (until the next re-plan): the futures depart
    from the forecasts after them."""
    return max(1, math.ceil(cycle_s / slot_s))


def terminal_value(setting: float | str, import_price_per_kwh: np.ndarray,
                   export_price_per_kwh: np.ndarray) -> float:
    """Value of energy left in the batteries at the horizon's end, per kWh; ``"mean_price"``:
    the horizon's mean of buying and selling it."""
    if setting == "mean_price":
        return float(np.mean((import_price_per_kwh + export_price_per_kwh) / 2))
    assert not isinstance(setting, str), setting
    return setting


def cycle_problem(inputs: Sequence[HouseInput], *, start: datetime, slot_s: int, cycle_s: float,
                  import_price_per_kwh: np.ndarray, export_price_per_kwh: np.ndarray,
                  feeders: Mapping[str, FeederLimits], futures: Sequence[Future],
                  terminal_value_per_kwh: float | str, now: datetime | None = None) -> FleetProblem:
    """The fleet problem of a cycle starting at ``start`` over the horizon of the known prices,
    the houses' shiftable runs in their load (``cycle_problem_and_runs``)."""
    return cycle_problem_and_runs(
        inputs, start=start, slot_s=slot_s, cycle_s=cycle_s, import_price_per_kwh=import_price_per_kwh,
        export_price_per_kwh=export_price_per_kwh, feeders=feeders, futures=futures,
        terminal_value_per_kwh=terminal_value_per_kwh, now=now)[0]


def cycle_problem_and_runs(inputs: Sequence[HouseInput], *, start: datetime, slot_s: int, cycle_s: float,
                           import_price_per_kwh: np.ndarray, export_price_per_kwh: np.ndarray,
                           feeders: Mapping[str, FeederLimits], futures: Sequence[Future],
                           terminal_value_per_kwh: float | str,
                           now: datetime | None = None) -> tuple[FleetProblem, RunPlacement]:
    """The fleet problem of a cycle and where its houses' shiftable runs go: each run placed in
    its cheapest window on the houses' forecasts (``aggregator.dispatch.runs``, none before
    ``now``, default ``start``), its power (and the running runs') added to the house's load in
    every future.  Without runs the problem is the one without this step, bit for bit."""
    problem = prepare_problem(inputs, start=start, slot_s=slot_s, horizon_slots=len(import_price_per_kwh),
                              import_price_per_kwh=import_price_per_kwh, export_price_per_kwh=export_price_per_kwh,
                              feeders=feeders, futures=tuple(futures), tied_slots=tied_slots(cycle_s, slot_s))
    problem = replace(problem, terminal_value_per_kwh=terminal_value(terminal_value_per_kwh, import_price_per_kwh,
                                                                     export_price_per_kwh))
    if not any(h.shiftable_runs for h in inputs):
        return problem, RunPlacement(np.zeros((problem.n, problem.t)))
    load, pv = forecast_arrays(inputs, start, slot_s, problem.t)
    placement = place_runs(problem, [h.shiftable_runs for h in inputs], load, pv, now or start)
    return with_run_load(problem, placement.load_w), placement


def events_to_slots(records: Sequence[FleetEventRecord], start: datetime, slot_s: int) -> list[FleetEvent]:
    """Operators' fleet events (times) as events of a horizon starting at ``start`` (slots): every
    slot that overlaps [record.start, record.end) is capped.  Slots before the horizon are
    negative; ``optimise`` clips events to the horizon."""
    out = []
    for r in records:
        s = math.floor((r.start - start).total_seconds() / slot_s)
        e = math.ceil((r.end - start).total_seconds() / slot_s)
        if e > s:
            out.append(FleetEvent(s, e, max_w=r.max_w, direction=r.direction, reduce_w=r.reduce_by_w,
                                  event_id=r.event_id))
    return out


def leased(plan: DispatchPlan, *, version: int, created_at: datetime, lease_s: float,
           fallback_max_export_w: float, run_starts: tuple[RunStart, ...] = ()) -> DispatchPlan:
    """A solved plan as the house gets it: its version, valid for at most the lease (an agent
    that hears nothing more falls back when it ends), the house's export limit for its fallback.
    It keeps its id: each solved (or shifted) plan has its own, and the service may have encoded
    the slots it names ahead (``PlanOutbox.prepare``).  ``run_starts``: the cycle's starts of the
    house's shiftable runs (``RunPlacement``)."""
    valid_until = lease_end(plan.valid_until, created_at, lease_s)  # from when it is made, not its first slot
    return replace(plan, version=version, created_at=created_at, valid_until=valid_until,
                   fallback_max_export_w=fallback_max_export_w, run_starts=run_starts)


def flexibility_w(storage: StorageFlexibility) -> tuple[float, float]:
    """Power the house's battery could still add (charging) and shed (discharging), W."""
    up = storage.max_charge_power_w if storage.soc_pct < storage.soc_max_pct else 0.0
    down = storage.max_discharge_power_w if storage.soc_pct > storage.reserve_soc_pct else 0.0
    return up, down
