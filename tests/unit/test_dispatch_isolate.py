"""One house's data must not cost its block its plans (issue 20): the core's second line."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from aggregator.dispatch import optimise as optimise_mod
from aggregator.dispatch import solver_pool
from aggregator.dispatch.block_solve import InfeasibleError, solve_block
from aggregator.dispatch.isolate import bad_plan_rows, bisect_block, suspect_houses
from aggregator.dispatch.optimise import optimise
from aggregator.dispatch.plans import LazyPlans, plan_is_finite
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from tests.synthetic_fleet import random_fleet

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _fleet() -> FleetProblem:
    return random_fleet(6, t=24, slot_s=3600, houses_per_feeder=6, seed=7)  # one block of 6


def _poison(p: FleetProblem, name: str, value: float, house: int = 2) -> FleetProblem:
    a = getattr(p, name).copy()
    a[house] = value
    return replace(p, **{name: a})


@pytest.mark.parametrize(("name", "value"), [
    ("capacity_wh", math.nan), ("capacity_wh", 1e300), ("soc_pct", math.nan), ("load_w", 1e308),
    ("pv_power_w", -math.inf), ("max_import_w", math.nan), ("charge_efficiency", 0.0),
])
def test_a_poisoned_house_is_left_out_and_the_rest_planned_as_without_it(name: str, value: float) -> None:
    p = _fleet()
    result = optimise(_poison(p, name, value), DispatchOptions(), now=NOW)
    assert result.status == "optimal" and not result.fallback_houses
    assert [h for h, _ in result.excluded_houses] == [p.house_ids[2]]
    assert name in result.excluded_houses[0][1]
    keep = np.array([0, 1, 3, 4, 5])
    ref = optimise(p.subset(keep), DispatchOptions(), now=NOW)
    assert sorted(result.plans) == sorted(ref.plans)
    for h in ref.plans:
        got = [s.setpoints[0].target_power_w for s in result.plans[h].slots]
        want = [s.setpoints[0].target_power_w for s in ref.plans[h].slots]
        assert got == pytest.approx(want, abs=1.0)
        assert plan_is_finite(result.plans[h])


def test_suspect_houses_names_the_first_bad_field() -> None:
    p = _poison(_poison(_fleet(), "soc_max_pct", math.inf, 1), "discharge_efficiency", math.nan, 4)
    assert suspect_houses(p) == {1: "soc_max_pct", 4: "discharge_efficiency"}
    assert suspect_houses(_fleet()) == {}


def test_a_block_that_fails_with_one_house_is_solved_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finite data that still breaks the LP: bisection finds the house."""
    p = _fleet()
    culprit = p.house_ids[3]

    def failing(houses, sub, options, *args, **kw):  # type: ignore[no-untyped-def]
        if culprit in sub.house_ids:
            raise InfeasibleError("HiGHS status Unknown")
        return solve_block(houses, sub, options, *args, **kw)

    monkeypatch.setattr(solver_pool, "solve_block", failing)
    monkeypatch.setattr(optimise_mod, "solve_block", failing)
    result = optimise(p, DispatchOptions(), now=NOW)
    assert result.status == "optimal"
    assert [h for h, _ in result.excluded_houses] == [culprit]
    assert "LP failed" in result.excluded_houses[0][1]
    assert sorted(result.plans) == sorted(h for h in p.house_ids if h != culprit)


def test_bisection_gives_up_when_the_failure_is_not_a_few_houses() -> None:
    houses = np.arange(20)
    assert bisect_block(houses, lambda part: False, max_out=3) is None  # everything fails
    assert bisect_block(houses, lambda part: True) is None  # every part solves: not one house's
    assert bisect_block(houses, lambda part: not {4, 17} & set(part.tolist())).tolist() == [4, 17]


def test_plans_with_a_non_finite_number_are_dropped() -> None:
    p = _fleet()
    result = optimise(p, DispatchOptions(), now=NOW)
    assert isinstance(result.plans, LazyPlans)
    pk = result.plans._packs[0]
    pk.env_lo_w[1, 5] = -math.inf
    pk.grid_hi_w[4, 0] = math.nan
    assert bad_plan_rows(pk) == [1, 4]
    cleaned = optimise_mod._without_bad_plans(result)
    gone = {p.house_ids[1], p.house_ids[4]}
    assert {h for h, _ in cleaned.excluded_houses} == gone
    assert set(cleaned.plans) == set(p.house_ids) - gone
    again = pickle.loads(pickle.dumps(cleaned.plans))  # as it leaves the solver process
    assert set(again) == set(p.house_ids) - gone and all(h not in again for h in gone)
