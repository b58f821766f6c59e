"""The LP HiGHS is given (``highs_lp``): without fixed columns and free rows, the same optimum;
bases read back in the full LP's layout restart HiGHS where it stopped."""

from __future__ import annotations

from dataclasses import replace

import highspy
import numpy as np
import pytest

from aggregator.dispatch.highs_block import HighsBlock, _new_highs
from aggregator.dispatch.highs_lp import BASIC, LOWER, basis_for, compact, pass_model, statuses
from aggregator.dispatch.lp_build import BlockLP, build
from aggregator.dispatch.problem import DispatchOptions
from tests.synthetic_fleet import random_fleet


def _lp(seed: int = 3) -> BlockLP:
    p = random_fleet(8, t=24, slot_s=3600, houses_per_feeder=8, seed=seed, feeder_export_limit_w_per_house=1500.0,
                     ev_share=0.25)
    p = replace(p, scenario_load_w=1.3 * p.load_w[None], scenario_pv_power_w=0.8 * p.pv_power_w[None],
                nonanticipative_slots=2)
    return build(p, DispatchOptions())


def _full_optimum(lp: BlockLP) -> float:
    h = _new_highs()
    m = lp.matrix
    h.passModel(m.shape[1], m.shape[0], m.nnz, int(highspy.MatrixFormat.kRowwise), int(highspy.ObjSense.kMinimize),
                0.0, lp.cost, lp.var_lb, lp.var_ub, lp.row_lb, lp.row_ub, m.indptr, m.indices, m.data,
                np.zeros(m.shape[1], dtype=np.int32))
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return float(h.getInfo().objective_function_value)


def _solve(lp: BlockLP, start=None, alien: bool = False):  # type: ignore[no-untyped-def]
    c = compact(lp, start)
    h = _new_highs()
    pass_model(h, c)
    if start is not None:
        assert h.setBasis(basis_for(c, start, alien)) == highspy.HighsStatus.kOk
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    x = np.asarray(h.getSolution().col_value)
    return h, c, x


def test_the_compact_lp_leaves_out_fixed_columns_and_free_rows_and_has_the_same_optimum() -> None:
    lp = _lp()
    h, c, x = _solve(lp)
    fixed = lp.var_lb == lp.var_ub
    free = np.isneginf(lp.row_lb) & np.isposinf(lp.row_ub)
    assert fixed.any() and free.any()  # night PV, no EV, the futures' free tie rows
    assert c.cols.size == np.count_nonzero(~fixed) and c.rows.size == np.count_nonzero(~free)
    obj = float(h.getInfo().objective_function_value)
    assert obj == pytest.approx(_full_optimum(lp), rel=1e-7)
    full = c.full_x(x, lp.var_lb)
    assert full.shape == lp.var_lb.shape and np.array_equal(full[fixed], lp.var_lb[fixed])
    assert float(lp.cost @ full) == pytest.approx(obj, rel=1e-9)
    viol = lp.matrix @ full
    assert (viol >= lp.row_lb - 1e-5).all() and (viol <= lp.row_ub + 1e-5).all()


def test_columns_fixed_away_from_zero_move_the_rows_bounds() -> None:
    lp = _lp()
    lb, ub = lp.var_lb.copy(), lp.var_ub.copy()
    e = 2 * lp.n * lp.t  # the stored energy of the first house, first slot (group "e")
    level = 0.5 * (lb[e] + ub[e]) if np.isfinite(ub[e]) else lb[e] + 100.0
    lb[e] = ub[e] = level
    pinned = replace(lp, var_lb=lb, var_ub=ub)
    h, c, x = _solve(pinned)
    assert e not in c.cols
    assert float(h.getInfo().objective_function_value) == pytest.approx(_full_optimum(pinned), rel=1e-7)
    assert c.full_x(x, pinned.var_lb)[e] == level


def test_a_basis_read_back_restarts_without_iterations() -> None:
    lp = _lp()
    h, c, x = _solve(lp)
    cols, rows = statuses(h, c, lp, x)
    assert cols.shape == lp.var_lb.shape and rows.shape == lp.row_lb.shape
    # as HiGHS gives its own basis
    mine = basis_for(c, (cols, rows), alien=False)
    theirs = h.getBasis()
    assert [int(s) for s in mine.col_status] == [int(s) for s in theirs.col_status]
    assert [int(s) for s in mine.row_status] == [int(s) for s in theirs.row_status]
    assert np.count_nonzero(cols == BASIC) + np.count_nonzero(rows == BASIC) == lp.row_lb.size
    again, _, _ = _solve(lp, (cols, rows))
    assert again.getInfo().simplex_iteration_count == 0


def test_a_basic_column_that_is_now_fixed_stays_in_the_lp() -> None:
    lp = _lp()
    h, c, x = _solve(lp)
    cols, rows = statuses(h, c, lp, x)
    basic = np.flatnonzero((cols == BASIC) & (lp.var_lb == 0.0))
    j = int(basic[0])
    ub = lp.var_ub.copy()
    ub[j] = 0.0  # e.g. a charge the mode fixing forbids
    later = replace(lp, var_ub=ub)
    c2 = compact(later, (cols, rows))
    assert j in c2.cols
    assert not basis_for(c2, (cols, rows), alien=False).alien  # as many basic variables as rows
    again, _, _ = _solve(later, (cols, rows))
    assert float(again.getInfo().objective_function_value) == pytest.approx(_full_optimum(later), rel=1e-7)


def test_a_nonbasic_status_at_a_bound_now_infinite_is_moved() -> None:
    lp = _lp()
    h, c, x = _solve(lp)
    cols, rows = statuses(h, c, lp, x)
    cols = np.where(cols == BASIC, BASIC, 2).astype(np.int8)  # every nonbasic column "at upper"
    c2 = compact(lp, (cols, rows))
    b = basis_for(c2, (cols, rows), alien=True)
    st = np.array([int(s) for s in b.col_status])
    assert not ((st == 2) & np.isposinf(c2.col_ub)).any()
    assert (st[np.isposinf(c2.col_ub) & (st != BASIC)] == LOWER).all()


def test_the_block_solves_with_and_without_a_start_agree() -> None:
    lp = _lp()
    block = HighsBlock()
    _, cold = block.solve(lp, 10.0)
    block.release()
    _, warm = block.solve(lp, 10.0)
    assert block.last_start == "warm"
    block.release()
    assert warm == pytest.approx(cold, rel=1e-9) and cold == pytest.approx(_full_optimum(lp), rel=1e-7)


def test_a_sibling_with_the_same_houses_in_another_order_starts_at_the_optimum() -> None:
    p = random_fleet(10, t=24, slot_s=3600, houses_per_feeder=10, seed=4, feeder_export_limit_w_per_house=1200.0,
                     ev_share=0.3)
    p = replace(p, scenario_load_w=1.3 * p.load_w[None], scenario_pv_power_w=0.8 * p.pv_power_w[None],
                nonanticipative_slots=2)
    shuffled = p.subset(np.random.default_rng(0).permutation(p.n))
    opts = DispatchOptions()
    lp, other = build(p, opts), build(shuffled, opts)
    assert lp.fair_keys.size and not np.array_equal(lp.house_keys, other.house_keys)
    seeds: dict = {}
    first, second = HighsBlock(seeds), HighsBlock(seeds)
    _, obj = first.solve(lp, 10.0)
    first.release()
    _, again = second.solve(other, 10.0)
    assert second.last_start == "seeded"
    assert second._h is not None and second._h.getInfo().simplex_iteration_count == 0  # its own optimum, reseated
    second.release()
    assert again == pytest.approx(obj, rel=1e-9)


def test_no_seating_across_feeders_of_other_sizes() -> None:
    from aggregator.dispatch.highs_lp import seating

    a = np.array([[0, 5000, 0, 3000, 50], [0, 0, 0, 0, 20], [1, 5000, 0, 0, 30.0]])
    b = a[[2, 0, 1]]
    order = seating(a, b)
    assert order is not None and np.array_equal(a[order], b)
    c = a.copy()
    c[2, 0] = 0  # three houses on feeder 0 now
    assert seating(a, c) is None
    assert seating(a, a[:2]) is None


def test_a_solver_process_can_keep_freed_memory() -> None:
    import subprocess
    import sys

    # in a child: the setting stays with the process that makes it
    code = "from aggregator.dispatch.highs_block import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ("True" if sys.platform == "linux" else out.strip())
