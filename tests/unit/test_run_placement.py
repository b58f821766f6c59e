"""Shiftable runs (S2 PPBC) placed before the fleet LP (aggregator.dispatch.runs): the cheapest
window, PV surplus at the export price, the import limits, windows that are too short or over,
degenerate profiles; and the shared cycle: runs in the LP's load, none = the same problem."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from aggregator.dispatch.fleet_input import FeederLimits, HouseInput, prepare_problem
from aggregator.dispatch.futures import DEFAULT_FUTURES
from aggregator.dispatch.optimise import optimise
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.runs import energy_on_slots, place_runs
from aggregator.fleet import cycle
from vpp_common.messages import (
    PowerForecast,
    ProfileStep,
    RunStart,
    RunState,
    ShiftableRunFlexibility,
    SiteLimits,
    StorageFlexibility,
)

T0 = datetime(2026, 5, 4, tzinfo=UTC)
SLOT = 900
T = 96  # a day of 15-min slots
INF = float("inf")


def _battery(capacity_wh: float = 10_000.0, power_w: float = 4000.0) -> StorageFlexibility:
    return StorageFlexibility("battery", 50.0, 5.0, 100.0, 10.0, capacity_wh, power_w, power_w)


def _house(house_id: str = "h1", *, load_w: float | np.ndarray = 300.0, pv_w: float | np.ndarray = 0.0,
           max_import_w: float = 17_000.0, runs: tuple[ShiftableRunFlexibility, ...] = (),
           feeder: str | None = None) -> HouseInput:
    load = np.broadcast_to(np.asarray(load_w, dtype=float), (T,))
    pv = np.broadcast_to(np.asarray(pv_w, dtype=float), (T,))
    return HouseInput(house_id, SiteLimits(max_import_w, 10_000.0), _battery(),
                      PowerForecast(T0, SLOT, tuple(load.tolist())), PowerForecast(T0, SLOT, tuple((-pv).tolist())),
                      6000.0, feeder, shiftable_runs=runs)


def _prices(imp: np.ndarray | None = None, exp: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    pi = np.full(T, 0.30) if imp is None else imp
    return pi, np.full(T, exp)


def _problem(houses: list[HouseInput], pi: np.ndarray, pe: np.ndarray,
             feeders: dict[str, FeederLimits] | None = None) -> FleetProblem:
    return prepare_problem(houses, start=T0, slot_s=SLOT, horizon_slots=T, import_price_per_kwh=pi,
                           export_price_per_kwh=pe, feeders=feeders)


def _place(houses: list[HouseInput], pi: np.ndarray, pe: np.ndarray, now: datetime = T0,
           feeders: dict[str, FeederLimits] | None = None):  # type: ignore[no-untyped-def]
    p = _problem(houses, pi, pe, feeders)
    from aggregator.dispatch.fleet_input import forecast_arrays

    load, pv = forecast_arrays(houses, T0, SLOT, T)
    return place_runs(p, [h.shiftable_runs for h in houses], load, pv, now)


def _run(rid: str = "washer", *, earliest_h: float = 0.0, latest_h: float = 24.0, steps: tuple[tuple[float, float], ...]
         = ((3600.0, 1000.0), (3600.0, 100.0)), state: RunState = RunState.WAITING,
         start: datetime | None = None) -> ShiftableRunFlexibility:
    return ShiftableRunFlexibility(rid, tuple(ProfileStep(d, w) for d, w in steps), T0 + timedelta(hours=earliest_h),
                                   T0 + timedelta(hours=latest_h), state, start)


def _at(h: float) -> datetime:
    return T0 + timedelta(hours=h)


def test_energy_on_slots_splits_steps_across_slots() -> None:
    prof = (ProfileStep(1800.0, 2000.0), ProfileStep(900.0, 400.0))  # 1 kWh + 0.1 kWh
    e = energy_on_slots(prof, np.array([450.0, -900.0]), SLOT, 4)
    assert e[0] == pytest.approx([250.0, 500.0, 300.0, 50.0])  # from 7.5 min into the first slot
    assert e[1] == pytest.approx([500.0, 100.0, 0.0, 0.0])  # began a slot before: its last 15 min of each step
    assert e.sum(axis=1) == pytest.approx([1100.0, 600.0])


def test_the_cheapest_window_wins() -> None:
    pi = np.full(T, 0.30)
    pi[40:48] = 0.10  # 10:00-12:00
    pi[60:68] = 0.12
    out = _place([_house(runs=(_run(),))], pi, np.full(T, 0.05))
    assert out.starts("h1") == (RunStart("washer", _at(10)),)
    assert out.placed == 1 and out.running == 0
    load = out.load_w[0]
    assert load[40:44] == pytest.approx([1000.0] * 4) and load[44:48] == pytest.approx([100.0] * 4)
    assert load.sum() * SLOT / 3600 == pytest.approx(1100.0)  # the run's energy, all of it


def test_flat_prices_tie_to_the_earliest_allowed_start() -> None:
    out = _place([_house(runs=(_run(earliest_h=3.1),))], *_prices())
    assert out.starts("h1") == (RunStart("washer", _at(3.1)),)  # not aligned: its own earliest start


def test_pv_surplus_is_worth_the_export_price() -> None:
    pv = np.zeros(T)
    pv[48:56] = 2000.0  # 12:00-14:00, 1.7 kW surplus over the 300 W load
    out = _place([_house(pv_w=pv, runs=(_run(),))], *_prices())
    assert out.starts("h1")[0].start == _at(12)


def test_a_surplus_too_small_for_the_run_counts_only_as_far_as_it_goes() -> None:
    pv = np.zeros(T)
    pv[20:28] = 500.0  # 200 W surplus, 05:00-07:00
    pi = np.full(T, 0.30)
    pi[80:88] = 0.20  # 20:00-22:00: cheaper than 0.30 for 0.9 kWh and 0.05 for 0.2 kWh
    out = _place([_house(pv_w=pv, runs=(_run(),))], pi, np.full(T, 0.05))
    assert out.starts("h1")[0].start == _at(20)


def test_the_house_import_limit_is_respected() -> None:
    pi = np.full(T, 0.30)
    pi[8:16] = 0.05  # 02:00-04:00 cheapest
    load = np.full(T, 300.0)
    load[8:16] = 3000.0  # but a heat pump's hours: 3 kW of a 3.5 kW connection
    out = _place([_house(load_w=load, max_import_w=3500.0, runs=(_run(),))], pi, np.full(T, 0.05))
    assert out.starts("h1")[0].start == _at(1)  # its 100 W step fits in the cheap hours, its 1 kW step not
    assert (out.load_w[0] + load <= 3500.0 + 1e-9).all()


def test_the_feeder_import_headroom_is_respected_and_shared_in_house_order() -> None:
    pi = np.full(T, 0.30)
    pi[8:12] = 0.05  # 02:00-03:00 cheapest, one hour only
    one_h = ((3600.0, 2000.0),)
    houses = [_house(h, runs=(_run(steps=one_h),), feeder="f") for h in ("h1", "h2")]
    feeders = {"f": FeederLimits(import_limit_w=2600.0 + 600.0)}  # 2 x 300 W load + room for one run
    out = _place(houses, pi, np.full(T, 0.05), feeders=feeders)
    assert out.starts("h1")[0].start == _at(2)  # first by id: the cheap hour
    assert out.starts("h2")[0].start != _at(2)  # the feeder has no room left there
    total = out.load_w.sum(axis=0) + 600.0
    assert (total <= 3200.0 + 1e-9).all()


def test_an_unavoidable_excess_goes_where_it_is_least() -> None:
    load = np.full(T, 3400.0)
    load[30:38] = 2000.0
    out = _place([_house(load_w=load, max_import_w=3500.0, runs=(_run(steps=((3600.0, 1000.0),)),))], *_prices())
    assert out.starts("h1")[0].start == _at(7.5)  # over by nothing there, not cheapest-first at 00:00


def test_a_window_that_has_passed_is_ignored() -> None:
    out = _place([_house(runs=(_run(earliest_h=1.0, latest_h=3.0),))], *_prices(), now=_at(1.5))
    assert out.starts("h1") == () and out.houses["h1"].passed == ("washer",) and not out.load_w.any()


def test_a_window_exactly_the_run_s_length_has_one_start() -> None:
    out = _place([_house(runs=(_run(earliest_h=5.0, latest_h=7.0),))], *_prices(np.linspace(1, 0, T)))
    assert out.starts("h1") == (RunStart("washer", _at(5)),)


def test_no_start_before_now() -> None:
    pi = np.full(T, 0.30)
    pi[0:8] = 0.01  # cheapest before now
    out = _place([_house(runs=(_run(),))], pi, np.full(T, 0.05), now=_at(1.6))
    assert out.starts("h1")[0].start == _at(1.6)  # the earliest still allowed (it overlaps the cheap slots)


def test_a_zero_energy_profile_goes_to_the_earliest_start() -> None:
    out = _place([_house(runs=(_run(earliest_h=2.0, steps=((7200.0, 0.0),)),))], *_prices(np.linspace(1, 0, T)))
    assert out.starts("h1") == (RunStart("washer", _at(2)),) and not out.load_w.any()


def test_a_generating_step_never_makes_the_load_negative() -> None:
    h = _house(load_w=0.0, runs=(_run(steps=((3600.0, -5000.0),)),))
    pi, pe = _prices()
    problem, placement = cycle.cycle_problem_and_runs(
        [h], start=T0, slot_s=SLOT, cycle_s=3600.0, import_price_per_kwh=pi, export_price_per_kwh=pe,
        feeders={}, futures=DEFAULT_FUTURES, terminal_value_per_kwh=0.1)
    problem.validate()
    assert (problem.load_w >= 0).all() and (problem.scenario_load_w >= 0).all() and placement.placed == 1


def test_running_runs_are_fixed_load_and_done_runs_nothing() -> None:
    running = _run("dryer", state=RunState.RUNNING, start=T0 - timedelta(hours=1.5))  # 30 min of 100 W left
    done = _run("dishwasher", state=RunState.DONE, start=T0 - timedelta(hours=3))
    out = _place([_house(runs=(running, done))], *_prices())
    assert out.running == 1 and out.placed == 0 and out.starts("h1") == ()
    assert out.load_w[0][:2] == pytest.approx([100.0, 100.0]) and not out.load_w[0][2:].any()


def test_a_scheduled_run_is_placed_again_and_one_start_per_resource() -> None:
    pi = np.full(T, 0.30)
    pi[60:68] = 0.10
    scheduled = _run(state=RunState.SCHEDULED, start=_at(2))
    twin = _run(earliest_h=1.0)  # the same resource twice: the second is not placed
    out = _place([_house(runs=(scheduled, twin))], pi, np.full(T, 0.05))
    assert out.starts("h1") == (RunStart("washer", _at(15)),)


def test_runs_placed_one_after_another_see_each_other() -> None:
    pv = np.zeros(T)
    pv[48:52] = 1300.0  # one hour of 1 kW surplus
    one_h = ((3600.0, 1000.0),)
    out = _place([_house(pv_w=pv, runs=(_run("a", steps=one_h), _run("b", steps=one_h, latest_h=23.0)))], *_prices())
    starts = {s.resource_id: s.start for s in out.starts("h1")}
    assert starts["b"] == _at(12)  # the earlier deadline is placed first
    assert starts["a"] == _at(0)  # no surplus left: flat import price, ties to the earliest


def test_a_window_beyond_the_horizon_waits_for_a_later_cycle() -> None:
    out = _place([_house(runs=(_run(earliest_h=30.0, latest_h=40.0),))], *_prices())
    assert out.starts("h1") == () and out.houses["h1"].later == 1
    late = _run(earliest_h=22.5, latest_h=34.0)  # may start tomorrow, cannot end today: later
    assert _place([_house(runs=(late,))], *_prices()).houses["h1"].later == 1


def test_a_run_that_must_start_before_the_horizon_ends_is_placed_within_it() -> None:
    out = _place([_house(runs=(_run(earliest_h=23.0, latest_h=25.5),))], *_prices())  # ends after 24:00
    assert out.starts("h1") == (RunStart("washer", _at(23)),)
    assert out.load_w[0][92:].sum() * SLOT / 3600 == pytest.approx(1000.0)  # the first hour's step


def test_utc_only_a_window_across_a_clock_change_is_plain_hours() -> None:
    start = datetime(2026, 3, 29, tzinfo=UTC)  # Europe's clocks go forward at 01:00 UTC
    pi = np.full(T, 0.30)
    pi[4:12] = 0.10  # 01:00-03:00 UTC
    h = HouseInput("h1", SiteLimits(17_000.0, 10_000.0), _battery(), shiftable_runs=(ShiftableRunFlexibility(
        "washer", (ProfileStep(7200.0, 500.0),), start, start + timedelta(hours=6)),))
    p = prepare_problem([h], start=start, slot_s=SLOT, horizon_slots=T, import_price_per_kwh=pi,
                        export_price_per_kwh=np.full(T, 0.05))
    out = place_runs(p, [h.shiftable_runs], np.full((1, T), 400.0), np.zeros((1, T)), start)
    assert out.starts("h1")[0].start == start + timedelta(hours=1)


def test_without_runs_the_cycle_problem_is_bit_identical_and_runs_reach_the_lp() -> None:
    pi, pe = _prices()
    pv = np.zeros(T)
    pv[48:56] = 2000.0  # 12:00-14:00, 1.7 kW surplus: the battery stores it
    kw = dict(start=T0, slot_s=SLOT, cycle_s=3600.0, import_price_per_kwh=pi, export_price_per_kwh=pe,
              feeders={}, futures=DEFAULT_FUTURES, terminal_value_per_kwh="mean_price")
    plain = [_house(pv_w=pv)]
    base = prepare_problem(plain, start=T0, slot_s=SLOT, horizon_slots=T, import_price_per_kwh=pi,
                           export_price_per_kwh=pe, futures=DEFAULT_FUTURES, tied_slots=4)
    same, placement = cycle.cycle_problem_and_runs(plain, **kw)  # type: ignore[arg-type]
    assert placement.placed == 0 and np.array_equal(same.load_w, base.load_w)
    assert np.array_equal(same.scenario_load_w, base.scenario_load_w)
    with_run, placement = cycle.cycle_problem_and_runs([_house(pv_w=pv, runs=(_run(),))], **kw)  # type: ignore[arg-type]
    assert placement.starts("h1") == (RunStart("washer", _at(12)),)
    added = with_run.load_w - same.load_w
    assert added[0, 48:52] == pytest.approx([1000.0] * 4)
    for k in range(with_run.scenario_load_w.shape[0]):  # every future: the run is not scaled
        assert (with_run.scenario_load_w[k] - same.scenario_load_w[k]) == pytest.approx(added)
    a = optimise(same, DispatchOptions(), None, now=T0)
    b = optimise(with_run, DispatchOptions(), None, now=T0)
    charge = [[s.setpoints[0].target_power_w for s in r.plans["h1"].slots[48:52]] for r in (a, b)]
    # the plans follow the first future (load x 1.4, PV x 0.7): 980 W of surplus into the battery,
    # none left once the run takes 1 kW of it
    assert charge[0] == pytest.approx([980.0] * 4, abs=1.0)
    assert max(charge[1]) <= 1.0


def test_the_largest_run_the_wire_allows_is_placed_and_the_lp_takes_it() -> None:
    # 96 steps alternating +-1 MW (service.bounds.MAX_POWER_W) filling a 7-day window exactly: it must
    # start at once and cannot end within the day's horizon; the LP relaxes the house's limits
    from aggregator.service.bounds import MAX_POWER_W
    from aggregator.service.load_convert import MAX_PROFILE_STEPS, MAX_WINDOW

    step_s = MAX_WINDOW.total_seconds() / MAX_PROFILE_STEPS
    steps = tuple((step_s, MAX_POWER_W if k % 2 == 0 else -MAX_POWER_W) for k in range(MAX_PROFILE_STEPS))
    run = _run(steps=steps, latest_h=MAX_WINDOW.total_seconds() / 3600)
    pi, pe = _prices()
    problem, placement = cycle.cycle_problem_and_runs(
        [_house(runs=(run,))], start=T0, slot_s=SLOT, cycle_s=3600.0, import_price_per_kwh=pi,
        export_price_per_kwh=pe, feeders={}, futures=DEFAULT_FUTURES, terminal_value_per_kwh=0.1)
    assert placement.starts("h1") == (RunStart("washer", T0),)
    assert np.isfinite(problem.load_w).all() and problem.load_w[0, 0] == pytest.approx(MAX_POWER_W + 300.0)
    result = optimise(problem, DispatchOptions(), None, now=T0)
    assert "h1" in result.plans and result.relaxations
