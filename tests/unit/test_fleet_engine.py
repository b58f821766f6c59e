"""Fast mode: battery physics, key figures, and what each strategy does on a small fleet."""

from __future__ import annotations

import io

import numpy as np
import pytest

from simulator.fleet.engine import battery_step, simulate
from simulator.fleet.kpis import kpis
from simulator.fleet.runner import run_fast
from simulator.fleet.strategies import STRATEGIES, known_prices_until
from tests.fleet_fixtures import small_scenario


def test_battery_step_limits_energy() -> None:
    # 10 kWh at 95 % SoC: a 4 kW charge for 15 min (1 kWh) only fits 0.5 kWh / 0.95
    p, soc = battery_step(95.0, 10_000, 4000, 0.95, 0.25)
    assert p == pytest.approx(500 / 0.95 / 0.25) and soc == pytest.approx(100.0)
    p, soc = battery_step(6.0, 10_000, -4000, 0.95, 0.25, soc_min_pct=5.0)  # 100 Wh above the floor
    assert p == pytest.approx(-100 * 0.95 / 0.25) and soc == pytest.approx(5.0)
    p, soc = battery_step(50.0, 10_000, 2000, 0.9, 0.25)
    assert p == 2000 and soc == pytest.approx(50 + 2000 * 0.9 * 0.25 / 10_000 * 100)
    assert battery_step(50.0, 0.0, 2000, 0.9, 0.25) == (0.0, 50.0)


def test_kpis_by_hand() -> None:
    sc = small_scenario(n=2, days=1, export_limit_w=1000.0)
    t = sc.t
    grid = np.zeros((2, t))
    grid[0, 0] = 4000.0  # 1 kWh import at 0.20
    grid[1, 50] = -3000.0  # 0.75 kWh export at 0.08 on f1, 2 kW over its 1 kW limit
    bat = np.zeros((2, t))
    bat[0, 1] = 5000.0  # 1.25 kWh through a 10 kWh battery
    soc = np.full((2, t), 50.0)
    k = kpis(sc, grid, bat, soc, sc.pv_w)
    assert k["grid_cost"] == pytest.approx(0.2 - 0.06)
    assert k["energy_over_limits_kwh"] == pytest.approx(0.5)
    assert k["peak_feeder_load_w"] == 4000
    assert k["equivalent_cycles"] == pytest.approx(1.25 / 20 / 2, abs=1e-3)  # h01 has a battery that did nothing
    assert k["export_cap_violations"] == 0
    grid[1, 50] = -9000.0  # over the house's 5.6 kW cap
    assert kpis(sc, grid, bat, soc, sc.pv_w)["export_cap_violations"] == 1


def test_day_ahead_prices_known_after_the_auction() -> None:
    sc = small_scenario(days=3)
    assert known_prices_until(sc, sc.slot_start(40)) == 96  # 10:00 UTC: today only
    assert known_prices_until(sc, sc.slot_start(48)) == 192  # 12:00 UTC: tomorrow too


def test_no_battery_is_the_house_balance_with_curtailment_at_the_cap() -> None:
    sc = small_scenario(n=3, days=1)
    tr = simulate(sc, "no_battery")
    caps = np.array([h.export_cap_w for h in sc.houses])[:, None]
    assert np.allclose(tr.grid_w, np.maximum(sc.load_w - sc.pv_w, -caps))
    assert (tr.battery_w == 0).all()


@pytest.fixture(scope="module")
def small_run():
    # f0 and f1 export up to ~20 kW at noon without batteries; limit 12 kW
    sc = small_scenario(n=6, days=3, cloudy_day=1)
    return sc, run_fast(sc, STRATEGIES, warmup_slots=96, show_progress=False, workers=1)


def test_strategies_rank_as_they_should(small_run) -> None:
    sc, res = small_run
    f = res.figures
    assert f["no_battery"]["cost"] == f["battery_idle"]["cost"]
    assert f["self_consumption"]["cost"] < f["battery_idle"]["cost"]
    best = f["perfect_foresight"]["cost"]
    assert all(best <= v["cost"] + 0.05 for v in f.values()), {k: v["cost"] for k, v in f.items()}
    assert f["self_consumption"]["self_sufficiency"] > f["battery_idle"]["self_sufficiency"]
    assert f["fleet"]["share_of_perfect_foresight_saving"] > 0.5


def test_fleet_keeps_feeders_in_where_self_consumption_does_not(small_run) -> None:
    _, res = small_run
    f = res.figures
    assert f["self_consumption"]["energy_over_limits_kwh"] > 1.0
    assert f["fleet"]["energy_over_limits_kwh"] == pytest.approx(0.0, abs=0.05)
    assert f["perfect_foresight"]["energy_over_limits_kwh"] == pytest.approx(0.0, abs=0.05)
    assert all(v["export_cap_violations"] == 0 for v in f.values())


def test_fleet_uses_forecasts_not_the_future(small_run) -> None:
    # the cloudy day is a surprise to the forecaster (yesterday was sunny): plans were made on more PV
    _, res = small_run
    assert res.traces["fleet"].solves >= 48
    assert res.figures["fleet"]["cost"] > res.figures["perfect_foresight"]["cost"]


def test_tou_is_the_agents_own_planner() -> None:
    """Fast mode's ``tou`` runs the edge agent's ``tou`` code (LocalTouPlanner with the house's own
    forecaster), not a copy of its rule: one code path for the decision in both modes."""
    from edge_agent.energy_manager.local_tou import LocalTouPlanner
    from simulator.fleet.engine import clear_sky_table
    from simulator.fleet.strategies import StrategyOptions, make_source

    sc = small_scenario(n=2, days=2)
    src = make_source("tou", sc, StrategyOptions(), clear_sky_table(sc))
    assert all(isinstance(p, LocalTouPlanner) for p in src.planners)  # type: ignore[attr-defined]
    src.update(0, np.full(sc.n, 50.0))
    plans = [p for p in src.plans if p is not None]
    assert plans and all(p.plan_id.startswith("local-tou-") for p in plans)
    # the lease spans the re-plan period, so a house does not drop to its fallback in between
    assert all((p.valid_until - p.valid_from).total_seconds() >= StrategyOptions().replan_s for p in plans)


def test_strategies_beside_the_fleet_run_in_a_process_of_their_own_with_the_same_figures(small_run) -> None:
    sc, res = small_run  # one after another (workers=1)
    names = ("self_consumption", "tou", "fleet")
    out = io.StringIO()
    beside = run_fast(sc, names, warmup_slots=96, show_progress=True, workers=2, out=out)
    assert tuple(beside.traces) == names  # in the order asked for
    for name in names[:2]:  # (the LP's may differ: a warm solver pool can end at another optimal vertex)
        a, b = res.figures[name], beside.figures[name]
        assert {k: a[k] for k in b if k != "run"} == {k: v for k, v in b.items() if k != "run"}, name
    shown = out.getvalue()
    assert all(f"{name:>17}" in shown for name in names)  # a bar each
    assert shown.count(f"{sc.t}/{sc.t}") >= len(names)  # each finished
