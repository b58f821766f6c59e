"""Fleet dispatch LP: decomposition vs monolithic, negative prices, relaxation, fairness, fallbacks.

Solver tolerances: HiGHS defaults (the default ``DispatchOptions.solver``; primal and
dual feasibility 1e-7), or GLOP's (1e-8, on the scaled problem).  We compare costs with a relative tolerance of
0.1 % (the acceptance bound; in practice the gap is ~1e-9) and limits with an
absolute tolerance of 0.01 W.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from aggregator.dispatch.optimise import optimise
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.solve import FleetSolution, solve_fleet
from tests.synthetic_fleet import random_fleet

LIMIT_TOL_W = 0.01


def _exchange(p: FleetProblem, sol: FleetSolution) -> np.ndarray:
    """Grid power per house (N, T), import > 0, from a fleet solution."""
    g = np.zeros((p.n, p.t))
    for b in sol.blocks:
        g[b.houses] = b.import_w - b.export_w + b.over_import_w - b.over_export_w
    return g


def _violations(p: FleetProblem, g: np.ndarray) -> dict[str, np.ndarray]:
    """Per limit family, a boolean array of (element, slot) where the limit is exceeded."""
    nf = np.zeros((len(p.feeder_ids), p.t))
    np.add.at(nf, p.feeder_of, g)
    nx = np.zeros((len(p.transformer_ids), p.t))
    np.add.at(nx, p.transformer_of, nf)
    return {
        "feeder_import": nf > p.feeder_import_limit_w + LIMIT_TOL_W,
        "feeder_export": -nf > p.feeder_export_limit_w + LIMIT_TOL_W,
        "transformer_import": nx > p.transformer_import_limit_w + LIMIT_TOL_W,
        "transformer_export": -nx > p.transformer_export_limit_w + LIMIT_TOL_W,
        "house_import": g > p.max_import_w + LIMIT_TOL_W,
        "house_export": -g > p.max_export_w + LIMIT_TOL_W,
    }


@pytest.mark.parametrize(
    ("n", "t", "per_feeder", "seed", "export_lim", "import_lim", "x_limits"),
    [
        (200, 24, 25, 1, 1200.0, np.inf, False),  # hourly slots keep the monolithic LP quick
        (150, 24, 30, 2, 2000.0, 1500.0, True),  # transformer limits: blocks are transformers
        (40, 96, 10, 3, 1000.0, 1200.0, False),  # full 96 x 15 min horizon
        (200, 96, 50, 4, 1500.0, np.inf, False),  # the acceptance size, full horizon
    ],
)
def test_decomposed_matches_monolithic(n, t, per_feeder, seed, export_lim, import_lim, x_limits) -> None:
    p = random_fleet(
        n, t=t, slot_s=86400 // t, houses_per_feeder=per_feeder, seed=seed,
        feeder_export_limit_w_per_house=export_lim, feeder_import_limit_w_per_house=import_lim,
        transformer_limits=x_limits, ev_share=0.2,
    )
    opts = DispatchOptions()
    dec = solve_fleet(p, opts)
    mono = solve_fleet(p, opts, monolithic=True)
    assert not dec.failed and not mono.failed
    assert len(dec.blocks) > 1
    assert dec.lp_objective == pytest.approx(mono.lp_objective, rel=1e-3, abs=1e-6)
    assert dec.objective == pytest.approx(mono.objective, rel=1e-3, abs=1e-6)
    v_dec, v_mono = _violations(p, _exchange(p, dec)), _violations(p, _exchange(p, mono))
    for kind in v_dec:
        assert not (v_dec[kind] & ~v_mono[kind]).any(), kind


def _small(n: int = 6, t: int = 24, **kw) -> FleetProblem:
    return random_fleet(n, t=t, slot_s=3600, houses_per_feeder=n, seed=7, **kw)


def test_negative_prices_never_charge_and_discharge_together() -> None:
    p = _small(8)
    # import is paid for at midday, export costs money: burning energy in battery losses would pay
    imp = p.import_price_per_kwh.copy()
    exp = p.export_price_per_kwh.copy()
    imp[10:15] = -0.50
    exp[10:15] = -0.30
    p = replace(p, import_price_per_kwh=imp, export_price_per_kwh=exp,
                capacity_wh=np.full(p.n, 10000.0), max_charge_w=np.full(p.n, 5000.0), max_discharge_w=np.full(p.n, 5000.0))
    opts = DispatchOptions()
    sol = solve_fleet(p, opts)
    assert not sol.failed
    for b in sol.blocks:
        assert (np.minimum(b.charge_w, b.discharge_w) <= opts.simultaneous_tol_w).all()
    # the plain LP did burn energy, so the mode-fixing re-solve was exercised
    assert sum(b.mode_fix_passes for b in sol.blocks) >= 1
    res = optimise(p, opts)
    for plan in res.plans.values():
        for s in plan.slots[10:15]:
            assert "negative import price" in s.reason


def test_binding_feeder_export_limit_shares_curtailment_by_pv_size() -> None:
    n = 6
    p = _small(n)
    rated = np.array([3000.0, 5000.0, 8000.0, 3000.0, 5000.0, 8000.0])
    sun = np.clip(np.sin((np.arange(24) - 6) / 12 * np.pi), 0, None)
    p = replace(
        p,
        pv_rated_w=rated,
        pv_power_w=-rated[:, None] * sun[None, :],
        load_w=np.full((n, 24), 300.0),
        capacity_wh=np.zeros(n), max_charge_w=np.zeros(n), max_discharge_w=np.zeros(n),  # no battery to hide in
        feeder_export_limit_w=np.full((1, 24), 6000.0),
    )
    res = optimise(p, DispatchOptions())
    assert not res.relaxations
    curtail = np.zeros((n, 24))
    from aggregator.dispatch.solve import solve_fleet as _sf

    sol = _sf(p, DispatchOptions())
    for b in sol.blocks:
        curtail[b.houses] = b.curtail_w
    noon = 12
    assert curtail[:, noon].sum() > 1000  # the limit binds
    share = curtail[:, noon] / rated
    assert share == pytest.approx(np.full(n, share[0]), abs=1e-6)
    reason = res.plans[p.house_ids[2]].slots[noon].reason
    assert "export limit 6.0 kW binds" in reason and "PV curtailed" in reason


def test_infeasible_limits_are_relaxed_and_reported() -> None:
    n = 4
    p = _small(n)
    p = replace(
        p,
        load_w=np.full((n, 24), 2000.0),
        pv_power_w=np.zeros((n, 24)), pv_rated_w=np.zeros(n),
        capacity_wh=np.zeros(n), max_charge_w=np.zeros(n), max_discharge_w=np.zeros(n),
        feeder_import_limit_w=np.full((1, 24), 5000.0),  # fleet needs 8 kW
        max_import_w=np.full((n, 24), 1500.0),  # each house needs 2 kW
    )
    res = optimise(p, DispatchOptions())
    assert res.status == "optimal" and len(res.plans) == n
    feeder = [r for r in res.relaxations if r.kind == "feeder_import"]
    house = [r for r in res.relaxations if r.kind == "house_import"]
    assert len(feeder) == 24 and all(r.excess_w == pytest.approx(3000.0, abs=1e-3) for r in feeder)
    assert len(house) == n * 24 and all(r.excess_w == pytest.approx(500.0, abs=1e-3) for r in house)
    assert "relaxed" in res.plans[p.house_ids[0]].slots[0].reason


def test_time_limit_hit_returns_previous_plan_shifted_or_fallback() -> None:
    p = _small(5)
    good = optimise(p, DispatchOptions(), version=1, now=p.start)
    assert good.status == "optimal"
    tight = DispatchOptions(time_limit_s=1e-9)
    later = p.start + timedelta(hours=2)
    res = optimise(p, tight, previous=good.plans, version=2, now=later)
    assert res.status == "fallback" and set(res.fallback_houses) == set(p.house_ids)
    plan = res.plans[p.house_ids[0]]
    assert plan.version == 2 and len(plan.slots) == 22 and plan.slots[0].start == later
    bare = optimise(p, tight, version=2, now=later)
    assert len(bare.plans) == p.n
    assert all("fallback" in pl.slots[0].reason for pl in bare.plans.values())


def test_plans_are_leases_with_targets_inside_envelopes() -> None:
    p = random_fleet(12, t=96, houses_per_feeder=6, seed=4, feeder_export_limit_w_per_house=1500.0, ev_share=0.3)
    res = optimise(p, DispatchOptions(), now=p.start)
    assert set(res.plans) == set(p.house_ids)
    for plan in res.plans.values():
        assert plan.valid_until == p.start + timedelta(hours=24) and len(plan.slots) == 96
        for s in plan.slots:
            sp = s.setpoints[0]
            assert sp.envelope.min_w - 1e-9 <= sp.target_power_w <= sp.envelope.max_w + 1e-9
            assert s.reason


def test_ev_gets_its_energy_by_the_deadline() -> None:
    p = random_fleet(10, t=96, houses_per_feeder=10, seed=5, ev_share=1.0)
    sol = solve_fleet(p, DispatchOptions())
    b = sol.blocks[0]
    got = b.ev_w[:, : int(p.ev_deadline_slot[0])].sum(axis=1) * p.slot_h
    assert got == pytest.approx(p.ev_need_wh[b.houses], rel=1e-6)


def test_process_pool_gives_the_same_cost() -> None:
    p = random_fleet(40, t=24, slot_s=3600, houses_per_feeder=10, seed=6, feeder_export_limit_w_per_house=1500.0)
    local = solve_fleet(p, DispatchOptions())
    pool = ProcessPoolExecutor(max_workers=2)
    try:
        pooled = solve_fleet(p, DispatchOptions(workers=2), pool=pool)
    finally:
        pool.shutdown(wait=True)
    assert pooled.objective == pytest.approx(local.objective, rel=1e-9)


def test_grid_envelopes_share_each_feeder_limit() -> None:
    """Houses that keep to their plan's grid envelope keep their feeder within its limits,
    whatever the forecast got wrong: the bounds of a feeder's houses add up to its limit."""
    p = _small(n=8, t=24)
    p = replace(p, feeder_export_limit_w=np.full_like(p.feeder_export_limit_w, 9000.0),
                feeder_import_limit_w=np.full_like(p.feeder_import_limit_w, 30000.0))
    res = optimise(p)
    for f in range(len(p.feeder_ids)):
        houses = [p.house_ids[i] for i in np.flatnonzero(p.feeder_of == f)]
        for s in range(p.t):
            envs = [res.plans[h].slots[s].grid_envelope for h in houses]
            lo = sum(max(e.min_w, -p.max_export_w[0, s]) for e in envs)
            assert lo >= -9000.0 - 1.0
            assert sum(e.max_w for e in envs) <= 30000.0 + 1.0


def test_decide_keeps_to_the_slots_grid_envelope() -> None:
    from datetime import UTC, datetime

    from edge_agent.energy_manager.decide import BatteryLimits, decide
    from vpp_common.messages import (
        DispatchPlan,
        Envelope,
        Measurement,
        PlanSlot,
        Setpoint,
        SiteLimits,
        SiteTelemetry,
        Validity,
    )

    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    m = lambda v: Measurement(v, Validity.VALID, now)  # noqa: E731
    # PV beats the forecast: 6 kW surplus; the plan allows 2 kW of export, the battery takes up to 3 kW
    tele = SiteTelemetry(now, m(-6000.0), m(-6500.0), m(0.0), m(50.0), m(500.0))
    slot = PlanSlot(now, (Setpoint("battery", 1000.0, Envelope(1000.0, 1000.0)),), Envelope(-2000.0, 17000.0))
    plan = DispatchPlan("p", 1, now, now, now + timedelta(hours=1), 3600, (slot,))
    d = decide(now, tele, plan, True, SiteLimits(17000.0, 6000.0), BatteryLimits(3000.0, 3000.0, 10.0))
    assert d.battery_w == 3000.0 and "export_cap" in d.clamped_by and "nameplate" in d.clamped_by
    assert d.pv_limit_w == pytest.approx(5500.0)  # 6.5 kW PV - 1 kW of surplus over the budget


def test_night_reserve_keeps_battery_energy_for_a_heavier_night_than_forecast() -> None:
    # one house, 10 kWh stored at 18:00, a 500 W night (6 kWh by 06:00, no PV), export paid
    # well and nothing for energy left at the end: the plan sells what the night does not need
    n, t = 1, 12
    p = replace(
        _small(n, t), load_w=np.full((n, t), 500.0), pv_power_w=np.zeros((n, t)), pv_rated_w=np.zeros(n),
        capacity_wh=np.full(n, 10_000.0), soc_pct=np.full(n, 100.0), soc_min_pct=np.zeros(n),
        reserve_soc_pct=np.zeros(n), max_charge_w=np.full(n, 5000.0), max_discharge_w=np.full(n, 5000.0),
        charge_efficiency=np.ones(n), discharge_efficiency=np.ones(n),
        import_price_per_kwh=np.full(t, 0.30), export_price_per_kwh=np.full(t, 0.20), terminal_value_per_kwh=0.0,
    )

    def sold_kwh(margin: float) -> float:
        opts = DispatchOptions(night_load_margin=margin, throughput_cost_per_kwh=0.0, holding_cost_per_kwh_h=0.0)
        sol = solve_fleet(p, opts)
        b = sol.blocks[0]
        assert (b.import_w <= LIMIT_TOL_W).all()  # the forecast night is covered either way
        return float(b.export_w.sum() / 1000)

    assert sold_kwh(1.0) == pytest.approx(4.0, abs=1e-6)  # 10 - 6 kWh
    assert sold_kwh(1.5) == pytest.approx(1.0, abs=1e-6)  # 3 kWh kept for a night 50 % heavier
    # the reserve is no grid flow: a house without a battery plans exactly as before
    nb = replace(p, capacity_wh=np.zeros(n), max_charge_w=np.zeros(n), max_discharge_w=np.zeros(n))
    for margin in (1.0, 1.5):
        b = solve_fleet(nb, DispatchOptions(night_load_margin=margin)).blocks[0]
        assert b.import_w == pytest.approx(np.full((n, t), 500.0))


def _one_battery(t: int, soc_pct: float, **kw) -> FleetProblem:
    """One house with a 10 kWh / 5 kW lossless battery, a 500 W load, no PV, flat prices."""
    n = 1
    fields = dict(
        load_w=np.full((n, t), 500.0), pv_power_w=np.zeros((n, t)), pv_rated_w=np.zeros(n),
        capacity_wh=np.full(n, 10_000.0), soc_pct=np.full(n, soc_pct), soc_min_pct=np.full(n, 5.0),
        reserve_soc_pct=np.full(n, 10.0), max_charge_w=np.full(n, 5000.0), max_discharge_w=np.full(n, 5000.0),
        charge_efficiency=np.ones(n), discharge_efficiency=np.ones(n),
        import_price_per_kwh=np.full(t, 0.30), export_price_per_kwh=np.full(t, 0.08), terminal_value_per_kwh=0.0,
    )
    fields.update(kw)
    return replace(_small(n, t), **fields)


def test_battery_energy_is_sold_as_late_as_it_can_be() -> None:
    # 10 kWh at 18:00, a 6 kWh night, nothing for what is left at the end: 4 kWh are sold.
    # At a flat export price, the holding cost alone would sell them at once; sold late, they
    # are still there for a night heavier than forecast until the plan is made again.
    p = _one_battery(12, 100.0, reserve_soc_pct=np.zeros(1), soc_min_pct=np.zeros(1))
    b = solve_fleet(p, DispatchOptions(throughput_cost_per_kwh=0.0, night_load_margin=1.0)).blocks[0]
    assert b.export_w.sum() / 1000 == pytest.approx(4.0, abs=1e-6)
    assert b.export_w[0, -1] == pytest.approx(4000.0, abs=1e-3)  # all of it in the last hour
    # PV surplus is exported when it comes (no reason to store it to sell it later)
    pv = np.zeros((1, 12))
    pv[0, 2] = -3000.0
    q = replace(p, pv_power_w=pv, soc_pct=np.full(1, 60.0))
    b = solve_fleet(q, DispatchOptions(throughput_cost_per_kwh=0.0, night_load_margin=1.0)).blocks[0]
    assert b.export_w[0, 2] == pytest.approx(2500.0, abs=1e-3) and b.charge_w.sum() == pytest.approx(0.0, abs=1e-6)


def test_a_battery_below_its_reserve_is_not_bought_back_up_to_it() -> None:
    # 7 % at the start, reserve 10 %: no discharge below where it is, and no charge from the
    # grid only to reach the reserve (before, the LP charged it at full power from the start)
    p = _one_battery(6, 7.0)
    b = solve_fleet(p, DispatchOptions()).blocks[0]
    assert b.charge_w.sum() == pytest.approx(0.0, abs=1e-6) and b.discharge_w.sum() == pytest.approx(0.0, abs=1e-6)
    assert b.import_w == pytest.approx(np.full((1, 6), 500.0))
    assert b.energy_wh == pytest.approx(np.full((1, 6), 700.0))
