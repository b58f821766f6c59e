"""The strategies compared on one scenario, as plan sources for the edge's ``decide``.

Every strategy runs through the same edge decision (``edge_agent.energy_manager.decide``:
plan slot or fallback, then the safety clamp and PV curtailment for the export
cap); they differ only in the plan each house follows and in the battery:

* ``no_battery``: houses without their battery;
* ``battery_idle``: the battery is there and never used (the baseline for savings);
* ``self_consumption``: no plan, so the edge's fallback: charge from PV surplus,
  discharge to cover load (what a hybrid inverter does out of the box);
* ``tou``: each house plans for itself as the edge agent's ``tou`` mode does
  (``edge_agent.energy_manager.local_tou.LocalTouPlanner``: the time-of-use rule
  over the prices known so far with the house's own forecasts), no fleet limits;
* ``fleet``: the aggregator's fleet LP (``aggregator.dispatch.optimise``) on each
  house's own forecasts (``HistoryForecaster``: similar-day load, clear-sky PV
  scaled by what the panels did) and the futures around them it weighs
  (``aggregator.dispatch.futures``), re-planned every ``replan_s``, feeder limits in;
* ``perfect_foresight`` (``simulator.fleet.bound``, not a plan source): the LP with the
  real future and the engine's physics, its own solution as the run: the lower bound.

Prices are known as the scenario's ``price_knowledge`` says (``known_prices_until``):
day-ahead prices the next local day's after their publication (wall clock of the market's
zone), so a horizon runs to the end of today or of tomorrow there; a fixed tariff's are
known in advance, and a horizon runs to the end of tomorrow in the fleet's zone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, time

import numpy as np

from aggregator.dispatch.fleet_input import FeederLimits, HouseInput
from aggregator.dispatch.futures import DEFAULT_FUTURES, Future
from aggregator.dispatch.optimise import optimise
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.runs import RunPlacement
from aggregator.dispatch.solver_pool import WarmSolverPool
from aggregator.fleet.cycle import cycle_problem_and_runs
from edge_agent.energy_manager.forecast import HistoryForecaster, Site
from edge_agent.energy_manager.local_tou import LocalTouPlanner
from simulator.fleet.model import DEFAULT_RESERVE_SOC_PCT, DEFAULT_SOC_MIN_PCT, Scenario
from vpp_common.localtime import day_ahead_known_until
from vpp_common.messages import (
    DispatchPlan,
    PowerForecast,
    ShiftableRunFlexibility,
    SiteLimits,
    StorageFlexibility,
)
from vpp_common.tariff import PriceSeries

STRATEGIES = ("no_battery", "battery_idle", "self_consumption", "tou", "fleet", "perfect_foresight")
BATTERY_ID = "battery"
PERFORMANCE_RATIO = 0.85  # PV W at 1000 W/m2 per Wp: the forecaster's prior before it has history
AUCTION_HOUR_UTC = 11  # the older fixed publication (UTC); scenarios now say theirs (PriceKnowledge)


@dataclass(frozen=True)
class StrategyOptions:
    replan_s: int = 3600  # fleet and tou re-plan period
    dispatch: DispatchOptions = field(default_factory=lambda: DispatchOptions(time_limit_s=60.0))
    forecast_days: int = 7  # history the forecaster keeps
    perfect_foresight_window_days: int = 14  # longer periods are solved in windows of this many days
    realtime_feeder_control: bool = True  # fleet: live feeder envelopes between plans (aggregator.dispatch.realtime)
    plan_from_slot: int = 0  # warm-up: before it, battery strategies run self-consumption (forecasters learn)
    # fleet: the futures its plans weigh instead of the forecasts alone (aggregator.dispatch.futures; the
    # plans follow the first); () = plan on the forecasts (with the night reserve)
    futures: tuple[Future, ...] = DEFAULT_FUTURES


def price_publication(sc: Scenario) -> tuple[time, str]:
    """(publication time, its zone) of the scenario's prices.  Prices known in advance are
    planned with like day-ahead ones published at local midnight: to the end of tomorrow."""
    pk = sc.price_knowledge
    if pk.kind == "in_advance":
        return time(0), sc.timezone
    return pk.published, pk.market_timezone


def known_prices_until(sc: Scenario, now: datetime) -> int:
    """Exclusive slot index up to which prices are known at ``now``: the end of today or, once
    the next day's are published, of tomorrow (local days of the market's zone)."""
    published, tz = price_publication(sc)
    end = day_ahead_known_until(now, published, tz)
    return min(sc.t, int((end - sc.start).total_seconds() // sc.slot_s))


def storage(sc: Scenario, i: int, soc_pct: float,
            reserve_soc_pct: float = DEFAULT_RESERVE_SOC_PCT) -> StorageFlexibility:
    h = sc.houses[i]
    return StorageFlexibility(
        resource_id=BATTERY_ID, soc_pct=soc_pct, soc_min_pct=DEFAULT_SOC_MIN_PCT, soc_max_pct=100.0,
        reserve_soc_pct=reserve_soc_pct, capacity_wh=h.battery_kwh * 1000 if h.has_battery else 0.0,
        max_charge_power_w=h.battery_kw * 1000 if h.has_battery else 0.0,
        max_discharge_power_w=h.battery_kw * 1000 if h.has_battery else 0.0,
        charge_efficiency=h.efficiency, discharge_efficiency=h.efficiency,
    )


def fleet_problem(sc: Scenario, s0: int, s1: int, soc: np.ndarray, load_w: np.ndarray, pv_w: np.ndarray,
                  terminal_value_per_kwh: float | str, pv_clear_sky_w: np.ndarray | None = None,
                  futures: tuple[Future, ...] = (), cycle_s: float = 0.0,
                  reserve_soc_pct: float = DEFAULT_RESERVE_SOC_PCT,
                  shiftable_runs: Sequence[tuple[ShiftableRunFlexibility, ...]] | None = None) -> FleetProblem:
    """``fleet_problem_and_runs``'s problem."""
    return fleet_problem_and_runs(sc, s0, s1, soc, load_w, pv_w, terminal_value_per_kwh, pv_clear_sky_w, futures,
                                  cycle_s, reserve_soc_pct, shiftable_runs)[0]


def fleet_problem_and_runs(sc: Scenario, s0: int, s1: int, soc: np.ndarray, load_w: np.ndarray, pv_w: np.ndarray,
                           terminal_value_per_kwh: float | str, pv_clear_sky_w: np.ndarray | None = None,
                           futures: tuple[Future, ...] = (), cycle_s: float = 0.0,
                           reserve_soc_pct: float = DEFAULT_RESERVE_SOC_PCT,
                           shiftable_runs: Sequence[tuple[ShiftableRunFlexibility, ...]] | None = None
                           ) -> tuple[FleetProblem, RunPlacement]:
    """The aggregator's problem for slots [s0, s1): built by the aggregator's own cycle code
    (``aggregator.fleet.cycle.cycle_problem`` from per-house flexibility and forecasts), with
    the scenario's feeders and their limits slot by slot.  ``cycle_s``: the re-plan period
    (the futures depart from the forecasts after it); ``pv_clear_sky_w``: (N, T) magnitudes,
    for the ``futures`` (see ``prepare_problem``); ``shiftable_runs``: each house's runs (S2 PPBC),
    placed by the cycle before the LP (``aggregator.dispatch.runs``) against each feeder's lowest
    import limit over the horizon (the problem then gets the limits slot by slot)."""
    start = sc.slot_start(s0)

    def fc(values: np.ndarray) -> PowerForecast:
        return PowerForecast(start, sc.slot_s, tuple(values.tolist()))

    houses = [
        HouseInput(
            house_id=h.house_id, limits=SiteLimits(h.import_limit_w, h.export_cap_w),
            storage=storage(sc, i, soc[i], reserve_soc_pct),
            load_forecast=fc(load_w[i]), pv_forecast=fc(-pv_w[i]), pv_rated_w=h.pv_kwp * 1000, feeder_id=h.feeder,
            pv_clear_sky_forecast=None if pv_clear_sky_w is None else fc(-pv_clear_sky_w[i]),
            shiftable_runs=tuple(shiftable_runs[i]) if shiftable_runs is not None else (),
        )
        for i, h in enumerate(sc.houses)
    ]
    feeders = {f: FeederLimits(float(sc.feeder_import_limit_w[k, s0:s1].min()), transformer_id=f"tx:{f}")
               for k, f in enumerate(sc.feeder_ids)}
    assert s1 <= sc.t, (s1, sc.t)  # the horizon is the prices' (cycle_problem)
    p, placement = cycle_problem_and_runs(houses, start=start, slot_s=sc.slot_s, cycle_s=cycle_s,
                                          import_price_per_kwh=sc.import_price_per_kwh[s0:s1],
                                          export_price_per_kwh=sc.export_price_per_kwh[s0:s1], feeders=feeders,
                                          futures=futures, terminal_value_per_kwh=terminal_value_per_kwh)
    order = [sc.feeder_ids.index(f) for f in p.feeder_ids]  # prepare_problem orders feeders by first house
    return replace(p, feeder_import_limit_w=sc.feeder_import_limit_w[order, s0:s1],
                   feeder_export_limit_w=sc.feeder_export_limit_w[order, s0:s1]), placement


class PlanSource:
    """What each house follows.  ``update`` is called at the start of every slot."""

    name = "none"
    uses_battery = True
    realtime_feeders = False  # the aggregator shares feeder limits live between plans

    def __init__(self, sc: Scenario, options: StrategyOptions) -> None:
        self.sc, self.options = sc, options
        self.plans: list[DispatchPlan | None] = [None] * sc.n
        self.solves = 0
        self.solve_s = 0.0
        self.fallbacks = 0

    def update(self, s: int, soc: np.ndarray) -> None:
        pass

    # shiftable runs (simulator.fleet.appliance_runs): the engine gives a source the houses' runs as
    # their agents report them (``shiftable``); a source whose plans place them names their starts
    shiftable: Callable[[int], list[tuple[ShiftableRunFlexibility, ...]]] | None = None
    places_runs = False  # the engine schedules the runs at the edge (else they start when armed)

    def run_start(self, house: int, run_id: str) -> datetime | None:
        """The start of a run the house's plan names (None: none; the edge decides)."""
        return None

    def horizon_if_due(self, s: int) -> tuple[datetime, int] | None:
        """(now, end slot of the known prices) when a re-plan is due at slot ``s`` (after the
        warm-up, every ``replan_s``), else None."""
        if s < self.options.plan_from_slot or s % self.replan_slots:
            return None
        now = self.sc.slot_start(s)
        return now, known_prices_until(self.sc, now)

    @property
    def replan_slots(self) -> int:
        """Slots between re-plans (at least one)."""
        return max(1, self.options.replan_s // self.sc.slot_s)

    def observe(self, s: int, load_w: np.ndarray, pv_w: np.ndarray) -> None:
        """What the meters measured in slot ``s`` (magnitudes, W)."""


class NoBattery(PlanSource):
    name = "no_battery"
    uses_battery = False


class BatteryIdle(PlanSource):
    name = "battery_idle"
    uses_battery = False


class SelfConsumption(PlanSource):
    """The inverter's own self-consumption; with shiftable runs the agent's forecaster too (its
    appliance scheduler weighs the forecast PV surplus)."""

    name = "self_consumption"
    places_runs = True

    def __init__(self, sc: Scenario, options: StrategyOptions,
                 clear_sky: Callable[[list[datetime]], np.ndarray] | None = None) -> None:
        super().__init__(sc, options)
        if sc.appliance_runs and clear_sky is not None:
            self.forecasters = house_forecasters(sc, options, clear_sky)

    def observe(self, s: int, load_w: np.ndarray, pv_w: np.ndarray) -> None:
        if hasattr(self, "forecasters"):
            observe_all(self.forecasters, self.sc, s, load_w, pv_w)


def house_forecasters(sc: Scenario, options: StrategyOptions,
                      clear_sky: Callable[[list[datetime]], np.ndarray]) -> list[HistoryForecaster]:
    """Each house's own forecaster, as its edge agent has one (similar-day load, clear-sky PV
    scaled by what the panels did)."""
    return [HistoryForecaster(sc.slot_s, days=options.forecast_days,
                              site=Site(sc.latitude, sc.longitude, h.pv_kwp * 1000 * PERFORMANCE_RATIO),
                              clear_sky=clear_sky, timezone=sc.timezone)
            for h in sc.houses]


def observe_all(forecasters: list[HistoryForecaster], sc: Scenario, s: int, load_w: np.ndarray,
                pv_w: np.ndarray) -> None:
    """Each house's forecaster learns slot ``s``; where PV was curtailed (less produced than
    the sun gave), the agent knows its inverter was held at a limit and says so."""
    at = sc.slot_start(s)
    limited = (pv_w < sc.pv_w[:, s] - 1.0).tolist()
    for f, lo, pv, lim in zip(forecasters, load_w.tolist(), pv_w.tolist(), limited, strict=True):
        f.add(at, lo, pv, pv_limited=lim)


class LocalTou(PlanSource):
    """The edge agent's ``tou`` mode, house by house: its LocalTouPlanner on the day-ahead prices
    known at the time and its own forecaster (the same code as ``edge-agent`` with
    ``control.mode = "tou"``), re-planned every ``replan_s``."""

    name = "tou"
    places_runs = True

    def __init__(self, sc: Scenario, options: StrategyOptions,
                 clear_sky: Callable[[list[datetime]], np.ndarray]) -> None:
        super().__init__(sc, options)
        published, market_tz = price_publication(sc)
        prices = PriceSeries([sc.slot_start(s) for s in range(sc.t)], sc.import_price_per_kwh.tolist(),
                             sc.export_price_per_kwh.tolist(), slot_s=sc.slot_s, published=published,
                             market_timezone=market_tz)
        # the agent re-plans every slot with a lease of two; here every replan_s, so the lease spans it
        lease = max(2, options.replan_s // sc.slot_s + 1)
        self.planners = [LocalTouPlanner(prices, sc.slot_s, lease_slots=lease) for _ in sc.houses]
        self.forecasters = house_forecasters(sc, options, clear_sky)

    def observe(self, s: int, load_w: np.ndarray, pv_w: np.ndarray) -> None:
        observe_all(self.forecasters, self.sc, s, load_w, pv_w)

    def update(self, s: int, soc: np.ndarray) -> None:
        sc = self.sc
        if (due := self.horizon_if_due(s)) is None:
            return
        now, _ = due
        for i, h in enumerate(sc.houses):
            if not h.has_battery:
                continue
            limits = SiteLimits(h.import_limit_w, h.export_cap_w if np.isfinite(h.export_cap_w) else 1e9)
            self.plans[i] = self.planners[i].plan(now, storage(sc, i, float(soc[i])), limits, self.forecasters[i])
        self.solves += 1


class _Lp(PlanSource):
    pool: ProcessPoolExecutor | WarmSolverPool | None = None
    run_starts: dict[tuple[str, str], datetime] = {}  # (house, run) -> the start the last placement chose

    def run_start(self, house: int, run_id: str) -> datetime | None:
        return self.run_starts.get((self.sc.houses[house].house_id, run_id))

    def _dispatch_options(self) -> DispatchOptions:
        return self.options.dispatch

    def _terminal_value(self, s0: int, s1: int) -> float | str:
        """Value of energy left at the horizon's end: the mean of import and export price (a rolling
        horizon must not empty the battery at its end only because the plan stops there), as
        the aggregator's ``terminal_value_per_kwh = "mean_price"``."""
        return "mean_price"

    def _solve(self, s0: int, s1: int, soc: np.ndarray, load: np.ndarray, pv: np.ndarray,
               pv_clear_sky: np.ndarray | None = None, futures: tuple[Future, ...] = ()) -> None:
        import time

        sc = self.sc
        tv = self._terminal_value(s0, s1)
        # the futures depart from the forecast after the slots until the next re-plan
        runs = self.shiftable(s0) if self.shiftable is not None else None
        p, placement = fleet_problem_and_runs(sc, s0, s1, soc, load, pv, terminal_value_per_kwh=tv,
                                              pv_clear_sky_w=pv_clear_sky, futures=futures,
                                              cycle_s=self.replan_slots * sc.slot_s, shiftable_runs=runs)
        self.run_starts = {(hid, rs.resource_id): rs.start for hid, hr in placement.houses.items()
                           for rs in hr.starts}
        t0 = time.perf_counter()
        prev = {h.house_id: pl for h, pl in zip(sc.houses, self.plans, strict=True) if pl is not None}
        res = optimise(p, self._dispatch_options(), prev, version=s0 + 1, now=sc.slot_start(s0), pool=self.pool)
        self.solve_s += time.perf_counter() - t0
        self.solves += 1
        self.fallbacks += len(res.fallback_houses)
        for i, h in enumerate(sc.houses):
            self.plans[i] = res.plans.get(h.house_id)


class Fleet(_Lp):
    name = "fleet"
    realtime_feeders = True
    places_runs = True

    def __init__(self, sc: Scenario, options: StrategyOptions, clear_sky: Callable[[list[datetime]], np.ndarray]) -> None:
        super().__init__(sc, options)
        self.forecasters = house_forecasters(sc, options, clear_sky)

    def observe(self, s: int, load_w: np.ndarray, pv_w: np.ndarray) -> None:
        observe_all(self.forecasters, self.sc, s, load_w, pv_w)

    def update(self, s: int, soc: np.ndarray) -> None:
        if (due := self.horizon_if_due(s)) is None:
            return
        now, end = due
        fc = [f.forecast(now, end - s) for f in self.forecasters]
        clear = np.array([f.pv_w if f.pv_clear_sky_w is None else f.pv_clear_sky_w for f in fc])
        self._solve(s, end, soc, np.array([f.load_w for f in fc]), np.array([f.pv_w for f in fc]), clear,
                    self.options.futures)


def make_source(name: str, sc: Scenario, options: StrategyOptions,
                clear_sky: Callable[[list[datetime]], np.ndarray]) -> PlanSource:
    classes: dict[str, type[PlanSource]] = {c.name: c for c in (NoBattery, BatteryIdle)}
    if name == "self_consumption":
        return SelfConsumption(sc, options, clear_sky)
    if name == "fleet":
        return Fleet(sc, options, clear_sky)
    if name == "tou":
        return LocalTou(sc, options, clear_sky)
    if name not in classes:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return classes[name](sc, options)
