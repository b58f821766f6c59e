"""Perfect foresight is a lower bound (simulator.fleet.bound): no strategy's figures beat it.

What the bound's LP minimises is the report's cost plus the penalty on energy over the
feeder limits, so that sum is a bound whatever the prices.  Its energy over limits is the
least any strategy has as long as the penalty outweighs the prices (it does here), and so
its cost is the least among the strategies with no more energy over limits; a strategy that
puts more over them (self-consumption and tou do not see the feeder limits) may buy a lower
cost with it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.dispatch.problem import DispatchOptions
from simulator.fleet.engine import clear_sky_table, simulate
from simulator.fleet.kpis import kpis
from simulator.fleet.model import House, Scenario
from simulator.fleet.strategies import STRATEGIES, StrategyOptions

PENALTY_PER_KWH = DispatchOptions().penalty_per_kwh
TOL_EUR = 0.01  # a cent (the report rounds to it), or 1e-6 relative
TOL_KWH = 1e-3  # the report rounds to Wh


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Scenario, int]:
    n = draw(st.integers(2, 4))
    slot_s = draw(st.sampled_from([900, 3600]))
    t = draw(st.sampled_from([1, 2])) * 86400 // slot_s
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    hour = (np.arange(t) * slot_s / 3600) % 24
    sun = np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)
    houses, load, pv = [], [], []
    for i in range(n):
        kwp = float(rng.choice([0.0, 4.0, 8.0]))
        bat_kwh = float(rng.choice([0.0, 5.0, 10.0]))
        soc0 = float(rng.choice([rng.uniform(5.0, 10.0), rng.uniform(5.0, 100.0)]))
        houses.append(House(f"h{i}", kwp, bat_kwh, 3.0 if bat_kwh else 0.0, float(rng.choice([np.inf, 0.6 * kwp * 1000 + 500])),
                            17250.0, f"f{i % 2}", initial_soc_pct=soc0, efficiency=float(rng.uniform(0.85, 0.98))))
        pv.append(kwp * 1000 * 0.8 * sun * rng.uniform(0.2, 1.0, t))
        load.append(rng.uniform(100, 2500, t))
    if draw(st.booleans()):  # flat prices: self-consumption is near the best, every kWh of floor shows
        imp, exp = np.full(t, 0.30), np.full(t, 0.08)
    else:
        imp = rng.uniform(-0.05, 0.5, t)
        exp = np.minimum(imp, rng.uniform(-0.1, 0.15, t))
    f_imp = np.where(rng.random((2, t)) < 0.5, np.inf, rng.uniform(1000, 6000, (2, t)))
    f_exp = np.where(rng.random((2, t)) < 0.5, np.inf, rng.uniform(500, 6000, (2, t)))
    sc = Scenario("random", datetime(2025, 6, 2, tzinfo=UTC), slot_s, tuple(houses), np.array(load), np.array(pv),
                  imp, exp, ("f0", "f1"), f_imp, f_exp, 52.5, 13.4)
    sc.validate()
    warmup = draw(st.sampled_from([0, t // 4]))
    return sc, warmup


def test_the_bound_runs_batteries_as_low_as_the_others_can() -> None:
    # flat prices, no feeder limits: self-consumption is near the best there is, and it takes
    # the batteries below the 10 % reserve (the edge checks it at a slot's start) to 5 %
    t = 96
    hour = np.arange(t) / 4
    pv = 4000 * 0.8 * 0.2 * np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)
    houses = tuple(House(f"h{i}", 4.0, 10.0, 3.0, np.inf, 17250.0, "f0", initial_soc_pct=30.0) for i in range(2))
    sc = Scenario("flat", datetime(2025, 6, 2, tzinfo=UTC), 900, houses, np.full((2, t), 800.0), np.array([pv, pv]),
                  np.full(t, 0.30), np.full(t, 0.08), ("f0",), np.full((1, t), np.inf), np.full((1, t), np.inf),
                  52.5, 13.4)
    runs = {name: simulate(sc, name) for name in ("self_consumption", "perfect_foresight")}
    cost = {name: kpis(sc, tr.grid_w, tr.battery_w, tr.soc_pct, tr.pv_used_w)["cost"] for name, tr in runs.items()}
    assert runs["self_consumption"].soc_pct[:, -1].min() < 10.0
    assert runs["perfect_foresight"].soc_pct[:, -1] == pytest.approx(5.0)
    assert cost["perfect_foresight"] < cost["self_consumption"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_no_strategy_beats_perfect_foresight(case: tuple[Scenario, int]) -> None:
    sc, warmup = case
    options = StrategyOptions(plan_from_slot=warmup, dispatch=DispatchOptions(time_limit_s=60.0))
    clear_sky = clear_sky_table(sc)
    fig = {}
    for name in STRATEGIES:
        tr = simulate(sc, name, options, clear_sky=clear_sky)
        fig[name] = kpis(sc, tr.grid_w, tr.battery_w, tr.soc_pct, tr.pv_used_w, first_slot=warmup)
    best = fig["perfect_foresight"]
    for name, f in fig.items():
        tol = max(TOL_EUR, 1e-6 * abs(best["cost"]))
        assert f["energy_over_limits_kwh"] >= best["energy_over_limits_kwh"] - TOL_KWH, (name, f, best)
        worse_or_as_bad = f["energy_over_limits_kwh"] <= best["energy_over_limits_kwh"] + TOL_KWH
        if worse_or_as_bad:
            assert f["cost"] >= best["cost"] - tol, (name, f["cost"], best["cost"])
        assert (f["cost"] + PENALTY_PER_KWH * f["energy_over_limits_kwh"]
                >= best["cost"] + PENALTY_PER_KWH * best["energy_over_limits_kwh"] - tol), (name, f, best)
