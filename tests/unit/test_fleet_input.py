"""prepare_problem: houses on no configured feeder are grouped into unlimited blocks."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from aggregator.dispatch import fleet_input
from aggregator.dispatch.fleet_input import FeederLimits, HouseInput, prepare_problem
from aggregator.dispatch.optimise import optimise
from vpp_common.messages import PowerForecast, SiteLimits, StorageFlexibility

START = datetime(2026, 6, 1, tzinfo=UTC)
SLOT_S, T = 900, 96


def _house(i: int, feeder: str | None = None) -> HouseInput:
    rng = np.random.default_rng(i)
    hours = np.arange(T) * SLOT_S / 3600
    pv = -np.maximum(0.0, np.sin((hours - 6) / 12 * math.pi)) * rng.uniform(3000, 6000)
    load = rng.uniform(200, 900, T)
    return HouseInput(
        house_id=f"h{i:04d}", limits=SiteLimits(11_000, 4_600),
        storage=StorageFlexibility("battery", rng.uniform(20, 80), 5, 100, 10, 10_000, 5_000, 5_000),
        load_forecast=PowerForecast(START, SLOT_S, tuple(load)),
        pv_forecast=PowerForecast(START, SLOT_S, tuple(np.where(pv < 0, pv, 0.0))),
        pv_rated_w=6000, feeder_id=feeder,
    )


def _prices() -> tuple[np.ndarray, np.ndarray]:
    hours = np.arange(T) * SLOT_S / 3600
    imp = 0.25 + 0.1 * np.sin((hours - 12) / 24 * 2 * math.pi)
    return imp, np.full(T, 0.08)


def test_unassigned_houses_form_blocks_of_at_most_50_in_house_order() -> None:
    houses = [_house(i) for i in reversed(range(120))] + [_house(1000 + i, "f1") for i in range(10)]
    imp, exp = _prices()
    p = prepare_problem(houses, start=START, slot_s=SLOT_S, horizon_slots=T, import_price_per_kwh=imp,
                        export_price_per_kwh=exp, feeders={"f1": FeederLimits(20_000, 15_000, "tx1")})
    blocks = sorted(p.blocks(), key=len)
    assert sorted(len(b) for b in blocks) == [10, 20, 50, 50]
    f1 = p.feeder_ids.index("f1")
    assert {p.feeder_of[h] for h in blocks[0]} == {f1}  # the configured feeder stays a block of its own
    first_group = [b for b in blocks if p.feeder_ids[p.feeder_of[b[0]]] == "unassigned:0"][0]
    assert sorted(p.house_ids[h] for h in first_group) == [f"h{i:04d}" for i in range(50)]
    assert np.isinf(p.feeder_export_limit_w[p.feeder_of[first_group[0]]]).all()


def test_grouping_changes_nothing_but_the_number_of_lps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing couples unassigned houses: their plans cost the same grouped or alone."""
    houses = [_house(i) for i in range(6)]
    imp, exp = _prices()

    def cost_with(group: int) -> tuple[float, int]:
        monkeypatch.setattr(fleet_input, "UNASSIGNED_BLOCK_HOUSES", group)
        p = prepare_problem(houses, start=START, slot_s=SLOT_S, horizon_slots=T, import_price_per_kwh=imp,
                            export_price_per_kwh=exp)
        res = optimise(p, now=START)
        assert res.status == "optimal" and set(res.plans) == {h.house_id for h in houses}
        return res.cost, len(p.blocks())

    grouped, n_grouped = cost_with(4)
    alone, n_alone = cost_with(1)
    assert (n_grouped, n_alone) == (2, 6)
    # equal up to the solver's tolerances and the mode fixing (which of equally good
    # simultaneous charge/discharge slots a re-solve forbids): measured 3e-5 apart
    assert grouped == pytest.approx(alone, rel=1e-4)
