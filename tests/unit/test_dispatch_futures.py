"""The scenario LP: plans that weigh several futures around the forecast (aggregator.dispatch.futures)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from aggregator.dispatch.fleet_input import HouseInput, prepare_problem
from aggregator.dispatch.futures import DEFAULT_FUTURES, Future, futures_fields, make_futures
from aggregator.dispatch.highs_block import HighsBlock
from aggregator.dispatch.lp_build import build
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.solve import solve_fleet
from tests.synthetic_fleet import clear_sky_pv_w, random_fleet
from vpp_common.messages import PowerForecast, SiteLimits, StorageFlexibility

NO_HEDGES = DispatchOptions(night_load_margin=1.0, throughput_cost_per_kwh=0.0, holding_cost_per_kwh_h=0.0)


def test_futures_fields_put_the_first_future_in_the_forecasts_place() -> None:
    """The fields ``prepare_problem`` and benchmarks/dispatch.py give a problem: the forecasts alone
    without futures; the first future as the forecast and the others as scenarios with them."""
    p = random_fleet(4, t=8, seed=3)
    clear = clear_sky_pv_w(p)
    assert (clear <= p.pv_power_w + 1e-9).all()  # the clear sky gives at least the cloudy forecast
    none = futures_fields(p.load_w, p.pv_power_w, clear, (), tied_slots=2)
    assert none["load_w"] is p.load_w and none["nonanticipative_slots"] == 0
    assert replace(p, **none).scenarios == 1  # type: ignore[arg-type]
    one = futures_fields(p.load_w, p.pv_power_w, clear, (Future(1.2, 0.0),), tied_slots=2)
    assert one["nonanticipative_slots"] == 0 and replace(p, **one).scenarios == 1  # type: ignore[arg-type]
    assert one["load_w"][:, 2:] == pytest.approx(1.2 * p.load_w[:, 2:])  # type: ignore[index]
    two = replace(p, **futures_fields(p.load_w, p.pv_power_w, clear, DEFAULT_FUTURES, tied_slots=2))  # type: ignore[arg-type]
    two.validate()
    assert two.scenarios == 2 and two.nonanticipative_slots == 2
    fl, _ = make_futures(p.load_w, p.pv_power_w, clear, DEFAULT_FUTURES, 2)
    assert (two.load_w == fl[0]).all() and (two.scenario_load_w[0] == fl[1]).all()


def test_futures_depart_from_the_forecast_after_the_tied_slots() -> None:
    load = np.full((2, 6), 400.0)
    pv = np.array([[-1000.0] * 6, [0.0] * 6])
    clear = np.array([[-3000.0] * 6, [-500.0] * 6])
    clear[0, 5] = -200.0  # a clear sky below the forecast: the forecast counts
    fl, fp = make_futures(load, pv, clear, (Future(1.5, -0.5), Future(0.5, 0.5), Future(1.0, 1.0)), tied_slots=2)
    assert fl.shape == fp.shape == (3, 2, 6)
    assert (fl[:, :, :2] == 400.0).all() and (fp[:, :, :2] == pv[:, :2]).all()  # the tied slots: the forecast
    assert fl[0, :, 2:] == pytest.approx(600.0) and fl[1, :, 2:] == pytest.approx(200.0)
    assert fp[0, 0, 2:] == pytest.approx(-500.0)  # 50 % less PV
    assert fp[1, 0, 2:5] == pytest.approx(-2000.0)  # half way to the clear sky
    assert fp[2, 0, 2:5] == pytest.approx(-3000.0) and fp[2, 0, 5] == pytest.approx(-1000.0)
    assert fp[2, 1, 2:] == pytest.approx(-500.0)  # no PV forecast, but a clear sky: it may come
    with pytest.raises(ValueError, match="pv_toward_clear_sky"):
        Future(1.0, 1.5)
    with pytest.raises(ValueError, match="load_factor"):
        Future(-1.0, 0.0)


def _evening(futures_load_kw: tuple[float, ...]) -> FleetProblem:
    """One house at 18:00 with 2 kWh stored: export pays 0.10 in the first hour only, then
    nothing; import costs 0.30.  No load in the first hour; after it the futures differ."""
    n, t = 1, 8
    p = random_fleet(n, t=t, slot_s=900, houses_per_feeder=1, seed=3)
    tied = 4
    later = np.arange(t) >= tied
    loads = [np.where(later, kw * 1000.0, 0.0)[None, :] for kw in futures_load_kw]
    return replace(
        p, load_w=loads[0], pv_power_w=np.zeros((n, t)), pv_rated_w=np.zeros(n),
        capacity_wh=np.full(n, 2000.0), soc_pct=np.full(n, 100.0), soc_min_pct=np.zeros(n), soc_max_pct=np.full(n, 100.0),
        reserve_soc_pct=np.zeros(n), max_charge_w=np.full(n, 8000.0), max_discharge_w=np.full(n, 8000.0),
        charge_efficiency=np.ones(n), discharge_efficiency=np.ones(n),
        import_price_per_kwh=np.full(t, 0.30), export_price_per_kwh=np.where(later, 0.0, 0.10),
        terminal_value_per_kwh=0.0, max_import_w=np.full((n, t), 1e5), max_export_w=np.full((n, t), 1e5),
        scenario_load_w=np.array(loads[1:]), scenario_pv_power_w=np.zeros((len(loads) - 1, n, t)),
        nonanticipative_slots=tied,
    )


def _sold_first_hour_kwh(p: FleetProblem) -> float:
    b = solve_fleet(p, NO_HEDGES).blocks[0]
    return float(b.export_w[0, :4].sum() * 0.25 / 1000)


def test_a_plan_over_two_futures_keeps_what_the_heavier_one_needs_when_that_is_worth_more() -> None:
    # the mean future (1 kWh of night load): sell the other 1 kWh now at 0.10
    assert _sold_first_hour_kwh(_evening((1.0,))) == pytest.approx(1.0, abs=1e-6)
    # a light (no load) and a heavy (2 kWh) future, equally likely: a kWh sold now earns 0.10,
    # kept it saves 0.30 in half the futures (0.15): keep it all
    assert _sold_first_hour_kwh(_evening((0.0, 2.0))) == pytest.approx(0.0, abs=1e-6)
    # a future with no night at all among three: selling wins (0.10 > 0.30 / 3 ... = 0.10 at the
    # margin for the second kWh, more than that for the first): at most the kWh only one future needs
    sold = _sold_first_hour_kwh(_evening((0.0, 0.0, 2.0)))
    assert 0.0 <= sold <= 2.0 + 1e-6


def test_the_tied_slots_are_one_schedule_for_every_future() -> None:
    p = _evening((0.0, 2.0))
    lp = build(p, NO_HEDGES)
    assert lp.scenarios == 2 and lp.n == 2
    x, _ = HighsBlock().solve(lp, 10.0)
    c, d = lp.group(x, "c"), lp.group(x, "d")
    assert c[0, :4] == pytest.approx(c[1, :4]) and d[0, :4] == pytest.approx(d[1, :4])
    # after them each future has its own: the heavy one covers its night from the battery
    assert d[1, 4:] == pytest.approx(2000.0) and lp.group(x, "imp")[1].sum() == pytest.approx(0.0, abs=1e-6)


def test_identical_futures_plan_as_the_forecast_alone() -> None:
    p = random_fleet(12, t=48, slot_s=900, houses_per_feeder=6, seed=5, feeder_export_limit_w_per_house=1500)
    opts = replace(NO_HEDGES, throughput_cost_per_kwh=0.005)
    alone = solve_fleet(p, opts)
    twice = solve_fleet(replace(p, scenario_load_w=p.load_w[None], scenario_pv_power_w=p.pv_power_w[None],
                                nonanticipative_slots=4), opts)
    assert twice.objective == pytest.approx(alone.objective, rel=1e-6, abs=1e-6)  # the mean of two equal costs
    for a, b in zip(alone.blocks, twice.blocks, strict=True):
        assert b.energy_wh.shape == a.energy_wh.shape  # the plans come from the first future only
        assert b.feeder_over_export_w.shape == a.feeder_over_export_w.shape


def test_a_shifted_scenario_lp_restarts_from_its_mapped_basis() -> None:
    p = random_fleet(6, t=32, slot_s=900, houses_per_feeder=6, seed=9, feeder_export_limit_w_per_house=1500)
    fut = replace(p, scenario_load_w=1.4 * p.load_w[None], scenario_pv_power_w=0.7 * p.pv_power_w[None],
                  nonanticipative_slots=4)
    block = HighsBlock()
    block.solve(build(fut, NO_HEDGES), 10.0)
    block.release()
    later = replace(fut, start=fut.start + timedelta(seconds=fut.slot_s))
    lp = build(later, NO_HEDGES)
    _, warm_obj = block.solve(lp, 10.0)
    block.release()
    assert block.last_start in ("mapped", "warm")
    _, cold_obj = HighsBlock().solve(lp, 10.0)
    assert warm_obj == pytest.approx(cold_obj, rel=1e-7, abs=1e-6)


def _input(i: int, clear_sky: bool) -> HouseInput:
    start = random_fleet(1, t=8).start
    pv = PowerForecast(start, 900, tuple([-1000.0] * 8))
    return HouseInput(
        house_id=f"h{i}", limits=SiteLimits(10_000, 5_000),
        storage=StorageFlexibility("battery", 50, 5, 100, 10, 10_000, 5_000, 5_000),
        load_forecast=PowerForecast(start, 900, tuple([500.0] * 8)), pv_forecast=pv, pv_rated_w=4000,
        pv_clear_sky_forecast=PowerForecast(start, 900, tuple([-3000.0] * 8)) if clear_sky else None,
    )


def test_prepare_problem_puts_the_first_future_in_the_forecasts_place() -> None:
    houses = [_input(0, True), _input(1, False)]
    p = prepare_problem(houses, start=houses[0].load_forecast.start, slot_s=900, horizon_slots=8,  # type: ignore[union-attr]
                        import_price_per_kwh=np.full(8, 0.3), export_price_per_kwh=np.full(8, 0.08),
                        futures=DEFAULT_FUTURES, tied_slots=4)
    p.validate()
    assert p.scenarios == 2 and p.nonanticipative_slots == 4
    heavy, light = DEFAULT_FUTURES
    assert p.load_w[:, :4] == pytest.approx(500.0) and p.load_w[:, 4:] == pytest.approx(500.0 * heavy.load_factor)
    assert p.scenario_load_w[0, :, 4:] == pytest.approx(500.0 * light.load_factor)
    assert p.scenario_pv_power_w[0, 0, 4:] == pytest.approx(-3000.0)  # the clear sky
    assert p.scenario_pv_power_w[0, 1, 4:] == pytest.approx(-1000.0)  # none sent: PV as forecast
    plain = prepare_problem(houses, start=p.start, slot_s=900, horizon_slots=8, import_price_per_kwh=np.full(8, 0.3),
                            export_price_per_kwh=np.full(8, 0.08))
    assert plain.scenarios == 1 and plain.load_w == pytest.approx(500.0)
