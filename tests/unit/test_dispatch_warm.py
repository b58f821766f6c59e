"""Warm re-solves (solver_pool.WarmSolverPool, highs_block.HighsBlock) give the cold optimum.

Costs are compared with a relative tolerance of 1e-6: both solves are simplex
optima of the same LP (HiGHS tolerances 1e-7), so they differ only by round-off.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from aggregator.dispatch.block_solve import solve_block
from aggregator.dispatch.highs_block import HighsBlock
from aggregator.dispatch.lp_build import build
from aggregator.dispatch.optimise import optimise
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.solve import solve_fleet
from aggregator.dispatch.solver_pool import WarmSolverPool
from tests.synthetic_fleet import random_fleet

REL = 1e-6


def _fleet(n: int = 30, seed: int = 11) -> FleetProblem:
    return random_fleet(n, t=24, slot_s=3600, houses_per_feeder=10, seed=seed,
                        feeder_export_limit_w_per_house=1500.0, ev_share=0.2)


def _forecast_update(p: FleetProblem, seed: int = 1) -> FleetProblem:
    """New load and PV forecasts for the same fleet: only bounds and right-hand sides change."""
    rng = np.random.default_rng(seed)
    return replace(p, load_w=p.load_w * rng.uniform(0.95, 1.05, p.load_w.shape),
                   pv_power_w=p.pv_power_w * rng.uniform(0.97, 1.0, p.pv_power_w.shape))


def test_warm_block_resolve_after_a_forecast_update_matches_cold() -> None:
    p = _fleet(10)
    p2 = _forecast_update(p)
    opts = DispatchOptions()
    assert (build(p, opts).matrix != build(p2, opts).matrix).nnz == 0  # same structure
    model = HighsBlock()
    houses = np.arange(p.n)
    first = solve_block(houses, p, opts, model=model)
    warm = solve_block(houses, p2, opts, model=model)
    cold = solve_block(houses, p2, opts)
    assert not first.warm and warm.warm and not cold.warm
    assert warm.objective == pytest.approx(cold.objective, rel=REL)
    assert model.warm_solves == 1 and model.cold_solves == 1


def test_price_change_is_warm_and_matches_cold() -> None:
    p = _fleet(10)
    p2 = replace(p, import_price_per_kwh=p.import_price_per_kwh * 1.1)
    opts = DispatchOptions()
    model = HighsBlock()
    solve_block(np.arange(p.n), p, opts, model=model)
    warm = solve_block(np.arange(p.n), p2, opts, model=model)
    assert warm.warm
    assert warm.objective == pytest.approx(solve_block(np.arange(p.n), p2, opts).objective, rel=REL)


def test_structure_change_falls_back_to_cold() -> None:
    p = _fleet(10)
    opts = DispatchOptions()
    model = HighsBlock()
    solve_block(np.arange(p.n), p, opts, model=model)
    q = p.subset(np.arange(8))
    again = solve_block(np.arange(q.n), q, opts, model=model)
    assert again.start == "cold" and model.cold_solves == 2  # no seeds given: nothing to start from
    assert again.objective == pytest.approx(solve_block(np.arange(q.n), q, opts).objective, rel=REL)


def test_warm_pool_replan_matches_cold_and_keeps_guarantees() -> None:
    p = _fleet(40)
    p2 = _forecast_update(p)
    opts = DispatchOptions(workers=2)
    with WarmSolverPool(workers=2) as pool:
        first = optimise(p, opts, pool=pool, now=p.start)
        again = optimise(p2, opts, pool=pool, now=p.start)
    cold = optimise(p2, DispatchOptions(), now=p.start)
    assert first.timings["warm_blocks"] == 0
    assert again.timings["warm_blocks"] >= 1  # a block whose fairness rows moved may go cold
    assert again.status == "optimal" and set(again.plans) == set(p.house_ids)
    assert again.cost == pytest.approx(cold.cost, rel=REL)
    assert list(again.plans) == list(p.house_ids)  # fleet order, whatever order blocks finished in


def test_warm_pool_follows_a_changing_fleet() -> None:
    """Blocks routed to the same worker every cycle; a fleet that gains a feeder still solves."""
    small, big = _fleet(20), _fleet(40)
    opts = DispatchOptions()
    with WarmSolverPool(workers=2) as pool:
        a = solve_fleet(small, opts, pool=pool)
        b = solve_fleet(big, opts, pool=pool)
        c = solve_fleet(big, opts, pool=pool)
    assert a.objective == pytest.approx(solve_fleet(small, opts).objective, rel=REL)
    assert b.objective == pytest.approx(c.objective, rel=REL)
    assert c.warm_blocks == len(c.blocks)  # nothing changed: every block starts from its basis


def test_in_process_warm_pool_and_negative_prices() -> None:
    p = random_fleet(8, t=24, slot_s=3600, houses_per_feeder=8, seed=7)
    imp, exp = p.import_price_per_kwh.copy(), p.export_price_per_kwh.copy()
    imp[10:15], exp[10:15] = -0.50, -0.30
    p = replace(p, import_price_per_kwh=imp, export_price_per_kwh=exp, capacity_wh=np.full(p.n, 10000.0),
                max_charge_w=np.full(p.n, 5000.0), max_discharge_w=np.full(p.n, 5000.0))
    opts = DispatchOptions()
    pool = WarmSolverPool(workers=0)
    try:
        for q in (p, _forecast_update(p)):
            sol = solve_fleet(q, opts, pool=pool)
            assert sum(b.mode_fix_passes for b in sol.blocks) >= 1
            for b in sol.blocks:
                assert (np.minimum(b.charge_w, b.discharge_w) <= opts.simultaneous_tol_w).all()
            assert sol.objective == pytest.approx(solve_fleet(q, opts).objective, rel=1e-3)
    finally:
        pool.shutdown()


def test_time_limit_in_warm_pool_gives_fallback_then_recovers() -> None:
    p = _fleet(10)
    with WarmSolverPool(workers=1) as pool:
        good = optimise(p, DispatchOptions(), pool=pool, now=p.start)
        # a forecast update needs simplex iterations, which the time limit does not allow
        bad = optimise(_forecast_update(p), DispatchOptions(time_limit_s=1e-9), good.plans, pool=pool,
                       version=2, now=p.start)
        again = optimise(p, DispatchOptions(), pool=pool, version=3, now=p.start)
    assert bad.status == "fallback" and len(bad.plans) == p.n
    assert again.status == "optimal" and again.cost == pytest.approx(good.cost, rel=REL)


def test_glop_and_highs_agree() -> None:
    p = _fleet(20)
    assert solve_fleet(p, DispatchOptions(solver="glop")).objective == pytest.approx(
        solve_fleet(p, DispatchOptions(solver="highs")).objective, rel=1e-6)


def test_plain_executor_still_accepted() -> None:
    p = _fleet(20)
    pool = ProcessPoolExecutor(max_workers=2)
    try:
        res = optimise(p, DispatchOptions(workers=2), pool=pool)
    finally:
        pool.shutdown(wait=True)
    assert res.status == "optimal" and res.timings["warm_blocks"] == 0


def _shift(p: FleetProblem, slots: int) -> FleetProblem:
    """The same fleet ``slots`` slots later: every time series rolled, the horizon moved."""
    roll = lambda a: np.roll(a, -slots, axis=-1)  # noqa: E731
    return replace(p, start=p.start + timedelta(seconds=slots * p.slot_s), load_w=roll(p.load_w),
                   pv_power_w=roll(p.pv_power_w), import_price_per_kwh=roll(p.import_price_per_kwh),
                   export_price_per_kwh=roll(p.export_price_per_kwh),
                   ev_deadline_slot=np.maximum(p.ev_deadline_slot - slots, 0))


def _warm_after(p, q, opts):  # type: ignore[no-untyped-def]
    """Solve ``p`` then ``q`` on one block model; (q's warm result, the model, q's cold objective)."""
    model = HighsBlock()
    solve_block(np.arange(p.n), p, opts, model=model)
    warm = solve_block(np.arange(q.n), q, opts, model=model)
    return warm, model, solve_block(np.arange(q.n), q, opts).objective


@pytest.mark.parametrize("slots", [1, 3])
def test_horizon_shift_maps_the_basis_and_matches_cold(slots: int) -> None:
    p = random_fleet(10, t=96, houses_per_feeder=10, seed=12, feeder_export_limit_w_per_house=1200.0, ev_share=0.3)
    q = _shift(p, slots)
    opts = DispatchOptions()
    assert build(p, opts).fair_keys.size > 0  # the fairness rows exist and move with the sun
    assert not np.array_equal(build(p, opts).fair_keys, build(q, opts).fair_keys)
    moved, model, cold = _warm_after(p, q, opts)
    assert moved.warm and model.mapped_solves == 1
    assert moved.objective == pytest.approx(cold, rel=REL)


@pytest.mark.parametrize(("slots", "t_new"), [(4, 92), (4, 60), (4, 150), (0, 48)])
def test_a_horizon_of_another_length_maps_the_basis_and_matches_cold(slots: int, t_new: int) -> None:
    # the horizon ends where the known prices end: it shrinks through the day (96 -> 92 four
    # slots later), and grows when the next day's prices come
    p = random_fleet(10, t=96, houses_per_feeder=10, seed=12, feeder_export_limit_w_per_house=1200.0, ev_share=0.3)
    longer = random_fleet(10, t=max(t_new + slots, 96), houses_per_feeder=10, seed=12,
                          feeder_export_limit_w_per_house=1200.0, ev_share=0.3)
    q = _shift(longer, slots)
    keep = slice(0, t_new)
    q = replace(q, load_w=q.load_w[:, keep], pv_power_w=q.pv_power_w[:, keep],
                max_import_w=q.max_import_w[:, keep], max_export_w=q.max_export_w[:, keep],
                feeder_import_limit_w=q.feeder_import_limit_w[:, keep],
                feeder_export_limit_w=q.feeder_export_limit_w[:, keep],
                transformer_import_limit_w=q.transformer_import_limit_w[:, keep],
                transformer_export_limit_w=q.transformer_export_limit_w[:, keep],
                import_price_per_kwh=q.import_price_per_kwh[keep], export_price_per_kwh=q.export_price_per_kwh[keep],
                ev_deadline_slot=np.minimum(q.ev_deadline_slot, t_new))
    opts = DispatchOptions()
    moved, model, cold = _warm_after(p, q, opts)
    assert moved.warm and model.mapped_solves == 1
    assert moved.objective == pytest.approx(cold, rel=REL)


def test_changed_fairness_rows_map_the_basis_and_match_cold() -> None:
    p = random_fleet(10, t=96, houses_per_feeder=10, seed=13, feeder_export_limit_w_per_house=4000.0)
    q = replace(p, pv_power_w=p.pv_power_w * 0.6)  # a cloudier forecast: the limit can bind in fewer slots
    opts = DispatchOptions()
    assert build(p, opts).fair_keys.size != build(q, opts).fair_keys.size
    again, model, cold = _warm_after(p, q, opts)
    assert again.warm and model.mapped_solves == 1
    assert again.objective == pytest.approx(cold, rel=REL)


def test_horizon_moved_backwards_or_by_part_of_a_slot_is_cold() -> None:
    p = _fleet(10)
    opts = DispatchOptions()
    model = HighsBlock()
    solve_block(np.arange(p.n), p, opts, model=model)
    for start in (p.start - timedelta(hours=1), p.start + timedelta(minutes=20)):
        q = replace(p, start=start)
        assert not solve_block(np.arange(q.n), q, opts, model=model).warm


def _wait_dead_unreaped(proc: object, timeout_s: float = 10.0) -> None:
    """Wait until a killed child is a zombie (or already reaped by its pool).  Never
    ``psutil.Process.wait()``: it reaps the child, and multiprocessing's ``is_alive`` then
    answers True for ever (waitpid fails with ECHILD), so the executor's shutdown spins."""
    import psutil

    assert isinstance(proc, psutil.Process)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)
    raise AssertionError(f"worker {proc.pid} did not die")


def test_a_dead_worker_costs_one_cycle_of_fallbacks_then_restarts() -> None:
    import psutil

    p = _fleet(40)
    before = {c.pid for c in psutil.Process().children()}  # e.g. a Redis server of another fixture
    with WarmSolverPool(workers=2) as pool:
        pool.wait_ready()
        first = optimise(p, DispatchOptions(), pool=pool, now=p.start)
        workers = [c for c in psutil.Process().children()
                   if c.pid not in before and "resource_tracker" not in " ".join(c.cmdline())]
        assert len(workers) == 2
        workers[0].kill()  # a worker this test started (e.g. what the OOM killer would do)
        _wait_dead_unreaped(workers[0])
        later = optimise(p, DispatchOptions(), first.plans, pool=pool, version=2, now=p.start)
        again = optimise(p, DispatchOptions(), pool=pool, version=3, now=p.start)
    assert set(later.plans) == set(p.house_ids)  # every house has a plan, from the solver or a fallback
    assert again.status == "optimal" and again.cost == pytest.approx(first.cost, rel=REL)


def test_a_new_block_starts_from_a_siblings_basis_and_matches_cold() -> None:
    p = random_fleet(20, t=96, houses_per_feeder=10, seed=14, feeder_export_limit_w_per_house=2500.0, ev_share=0.2)
    (a, b) = p.blocks()
    opts = DispatchOptions()
    seeds: dict = {}
    first, second = HighsBlock(seeds), HighsBlock(seeds)
    solve_block(a, p.subset(a), opts, model=first)
    got = solve_block(b, p.subset(b), opts, model=second)
    assert first.last_start == "cold" and second.last_start == "seeded" and not got.warm
    assert got.objective == pytest.approx(solve_block(b, p.subset(b), opts).objective, rel=REL)


def test_a_failed_warm_start_is_retried_cold(monkeypatch: pytest.MonkeyPatch) -> None:
    from aggregator.dispatch import highs_block

    p = _fleet(10)
    opts = DispatchOptions()
    model = HighsBlock()
    solve_block(np.arange(p.n), p, opts, model=model)
    real_run = highs_block.HighsBlock._run

    def trouble_when_warm(self: HighsBlock, time_limit_s: float):  # numerical trouble, not a time limit
        if self.last_start != "cold":
            raise highs_block.HighsFailed("HiGHS status Unknown", time_limit=False)
        return real_run(self, time_limit_s)

    monkeypatch.setattr(highs_block.HighsBlock, "_run", trouble_when_warm)
    again = solve_block(np.arange(p.n), _forecast_update(p), opts, model=model)
    assert model.warm_solves == 1 and model.cold_solves == 2 and again.start == "cold"
    monkeypatch.undo()
    assert again.objective == pytest.approx(solve_block(np.arange(p.n), _forecast_update(p), opts).objective, rel=REL)


def test_a_shut_down_pool_refuses_work() -> None:
    pool = WarmSolverPool(workers=1)
    pool.shutdown()
    pool.shutdown()  # idempotent
    with pytest.raises(RuntimeError):
        solve_fleet(_fleet(10), DispatchOptions(), pool=pool)


def test_pool_workers_exit_when_their_parent_is_killed() -> None:
    """A replica killed with SIGKILL cannot shut its solver pool down: the workers go by themselves."""
    import subprocess
    import sys
    import time

    import psutil

    code = ("from aggregator.dispatch.solver_pool import WarmSolverPool\n"
            "import psutil, sys, time\n"
            "pool = WarmSolverPool(workers=1); pool.wait_ready()\n"
            "print(*[c.pid for c in psutil.Process().children() if 'resource_tracker' not in ' '.join(c.cmdline())],"
            " flush=True)\n"
            "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        workers = [psutil.Process(int(pid)) for pid in parent.stdout.readline().split()]
        assert workers
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 15
        while any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers):
            assert time.monotonic() < deadline, "a pool worker outlived its killed parent"
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
