"""The LP a block gives HiGHS, and bases moved between it and the block's full LP.

HiGHS is given the block's LP without its fixed columns and free rows (``Compact``): in
a 50-house block with two futures about half the columns are fixed at 0 (no EV, no
night reserve, no over-cap slack, no export without a PV surplus) and a third of the
rows are the free tie rows of the slots after the first.  A cold solve's presolve drops
them too, but a solve from a basis skips presolve, and each of its setup steps
(scaling, factorisation, checks) and iterations scanned them (docs/performance.md).

Bases are kept in the full LP's layout, one status byte per column and row (numpy), so
that ``highs_block`` maps them slot by slot whatever was left out.  They are read from
HiGHS as its basic variables (a numpy array) and the solution, not as ``HighsBasis``
lists: reading those costs ~0.4 us per entry (45 ms for one block's columns).

A column that the start basis has basic stays in the LP even when fixed, and a free row
that it has nonbasic stays too: then a basis of the previous cycle has as many basic
variables as the new LP has rows, and HiGHS takes it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np

from aggregator.dispatch.lp_build import GROUPS, BlockLP

LOWER, BASIC, UPPER, ZERO = 0, 1, 2, 3  # highspy.HighsBasisStatus values
_STATUS = np.array([highspy.HighsBasisStatus(i) for i in range(5)], dtype=object)
_ROWWISE = int(highspy.MatrixFormat.kRowwise)
_MINIMIZE = int(highspy.ObjSense.kMinimize)

Statuses = tuple[np.ndarray, np.ndarray]  # (per column, per row) of the full LP, int8


@dataclass(frozen=True)
class Compact:
    """The part of a ``BlockLP`` HiGHS solves: columns ``cols`` and rows ``rows`` of it (sorted
    indices), the left-out columns at their fixed value."""

    cols: np.ndarray
    rows: np.ndarray
    indptr: np.ndarray  # row-wise matrix of the kept rows and columns (int32)
    indices: np.ndarray
    data: np.ndarray
    col_lb: np.ndarray
    col_ub: np.ndarray
    cost: np.ndarray
    row_lb: np.ndarray
    row_ub: np.ndarray
    offset: float  # the objective of the left-out columns
    n_cols: int  # of the full LP
    n_rows: int

    def full_x(self, x: np.ndarray, var_lb: np.ndarray) -> np.ndarray:
        """A solution of this LP as one of the full LP (left-out columns at their fixed value)."""
        out = var_lb.copy()
        out[self.cols] = x
        return out

    def positions(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(which of the full LP's ``cols`` are in this LP, their positions in it)."""
        pos = np.minimum(np.searchsorted(self.cols, cols), max(self.cols.size - 1, 0))
        present = self.cols[pos] == cols if self.cols.size else np.zeros(cols.size, dtype=bool)
        return present, pos[present]


def compact(lp: BlockLP, start: Statuses | None = None) -> Compact:
    """``lp`` without its fixed columns and free rows, except those ``start`` needs (see the
    module docstring)."""
    fixed = lp.var_lb == lp.var_ub
    free = np.isneginf(lp.row_lb) & np.isposinf(lp.row_ub)
    if start is not None:
        fixed &= start[0] != BASIC
        free &= start[1] == BASIC
    cols = np.flatnonzero(~fixed).astype(np.int32)
    rows = np.flatnonzero(~free).astype(np.int32)
    m = lp.matrix
    row_lb, row_ub = lp.row_lb, lp.row_ub
    at = np.where(fixed, lp.var_lb, 0.0)
    if at.any():  # fixed columns at a value other than 0 move the rows' bounds
        moved = m @ at
        row_lb, row_ub = row_lb - moved, row_ub - moved
    indptr, indices, data = _submatrix(m.indptr, m.indices, m.data, rows, ~fixed)
    # not ``@``: OpenBLAS runs a dot product of this size on threads, 4-8 ms on a busy machine
    offset = float(np.sum(lp.cost[fixed] * lp.var_lb[fixed]))
    return Compact(cols, rows, indptr, indices, data, lp.var_lb[cols], lp.var_ub[cols], lp.cost[cols],
                   row_lb[rows], row_ub[rows], offset, lp.var_lb.size, lp.row_lb.size)


def _submatrix(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, rows: np.ndarray,
               keep_col: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``rows`` and the columns where ``keep_col`` of a CSR matrix, renumbered (CSR arrays)."""
    counts = np.diff(indptr)[rows]
    total = int(counts.sum())
    # position of every entry of the kept rows in the full arrays
    first = np.repeat(indptr[rows] - np.cumsum(counts) + counts, counts)
    pos = first + np.arange(total)
    idx = indices[pos]
    ok = keep_col[idx]
    new_col = np.cumsum(keep_col, dtype=np.int64) - 1
    per_row = np.bincount(np.repeat(np.arange(rows.size), counts)[ok], minlength=rows.size)
    out_ptr = np.zeros(rows.size + 1, dtype=np.int32)
    np.cumsum(per_row, out=out_ptr[1:])
    return out_ptr, new_col[idx[ok]].astype(np.int32), data[pos[ok]]


def pass_model(h: highspy.Highs, c: Compact) -> highspy.HighsStatus:
    """Give ``c`` to a new HiGHS model.  As arrays (~3.5 ms for a 50-house block): a ``HighsLp``
    whose fields are set from Python converts them element by element (~8 ms)."""
    return h.passModel(
        c.cols.size, c.rows.size, c.data.size, _ROWWISE, _MINIMIZE, c.offset,
        c.cost, c.col_lb, c.col_ub, c.row_lb, c.row_ub, c.indptr, c.indices, c.data,
        np.zeros(c.cols.size, dtype=np.int32),  # every column continuous (an empty array is refused)
    )


def basis_for(c: Compact, start: Statuses, alien: bool) -> highspy.HighsBasis:
    """The HiGHS basis of ``c`` from the full LP's statuses ``start``.  Not alien only if it has
    as many basic variables as rows (else HiGHS would refuse it)."""
    cs, rs = _fit(start[0][c.cols], c.col_lb, c.col_ub), _fit(start[1][c.rows], c.row_lb, c.row_ub)
    basis = highspy.HighsBasis()
    basis.col_status = _STATUS[cs].tolist()
    basis.row_status = _STATUS[rs].tolist()
    basis.alien = alien or int(np.count_nonzero(cs == BASIC) + np.count_nonzero(rs == BASIC)) != rs.size
    basis.valid = True
    return basis


def _fit(status: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """Nonbasic statuses moved off infinite bounds (a bound that was finite last cycle may not be)."""
    out = status.copy()
    out[(out == UPPER) & np.isposinf(ub)] = LOWER
    out[(out == LOWER) & np.isneginf(lb)] = UPPER
    out[(out == UPPER) & np.isposinf(ub)] = ZERO  # free
    return out


def statuses(h: highspy.Highs, c: Compact, lp: BlockLP, x: np.ndarray) -> Statuses:
    """The optimal basis of ``h`` (solved ``c`` of ``lp``, ``x`` its column values) in the full
    LP's layout: left-out rows basic, left-out columns nonbasic.

    A fixed column's (or equality row's) status is the side its reduced cost (dual) points to,
    as HiGHS gives it; left-out columns too, their reduced costs computed from the row duals:
    a fixed column whose bounds open in the next cycle then starts dual feasible (from LOWER
    everywhere, a warm start took 4x the iterations)."""
    _, basic = h.getBasicVariables()  # type: ignore[attr-defined]  # in highspy, not in its stubs
    sol = h.getSolution()
    row_dual = np.asarray(sol.row_dual)
    y = np.zeros(c.n_rows)
    y[c.rows] = row_dual
    reduced = lp.cost - lp.matrix.T @ y
    full_c = np.where(reduced < 0, UPPER, LOWER).astype(np.int8)
    cs = _at_bound(x, c.col_lb, c.col_ub, fixed=full_c[c.cols])
    rs = _at_bound(np.asarray(sol.row_value), c.row_lb, c.row_ub,
                   fixed=np.where(row_dual > 0, UPPER, LOWER).astype(np.int8))
    cs[basic[basic >= 0]] = BASIC
    rs[-1 - basic[basic < 0]] = BASIC
    full_c[c.cols] = cs
    full_r = np.full(c.n_rows, BASIC, dtype=np.int8)
    full_r[c.rows] = rs
    return full_c, full_r


def _at_bound(v: np.ndarray, lb: np.ndarray, ub: np.ndarray, fixed: np.ndarray | np.int8) -> np.ndarray:
    """The bound a nonbasic value is at: UPPER where nearer its upper than its lower bound;
    ``fixed`` where both are one."""
    out = np.where(ub - v < v - lb, UPPER, LOWER).astype(np.int8)
    eq = lb == ub
    out[eq] = fixed[eq] if isinstance(fixed, np.ndarray) else fixed
    out[np.isneginf(lb) & np.isposinf(ub)] = ZERO
    return out


def seating(old_keys: np.ndarray, new_keys: np.ndarray) -> np.ndarray | None:
    """For each house of a new block, the house of a sibling block whose basis it starts from:
    the houses of each ranked alike (feeder, then battery, EV, PV, SoC: ``BlockLP.house_keys``).
    None if the blocks' feeders differ in size."""
    if old_keys.shape != new_keys.shape or not old_keys.size:
        return None
    old, new = np.lexsort(old_keys.T[::-1]), np.lexsort(new_keys.T[::-1])
    if not np.array_equal(old_keys[old, 0], new_keys[new, 0]):
        return None
    order = np.empty(old.size, dtype=np.int64)
    order[new] = old
    return order


def seat_houses(basis: Statuses, fair_keys: np.ndarray, order: np.ndarray, layout: tuple[int, int, int, int],
                t: int, fair_row0: int) -> tuple[Statuses, np.ndarray]:
    """A block's basis (and fairness row keys) with its houses reordered: new house ``i`` takes
    house ``order[i]``'s columns and rows, in every future.  The layout is ``lp_build``'s: house
    groups of columns first; rows balance and SoC per house and slot, EV rows per house (if
    any), feeder and transformer rows, the futures' tie rows per house and slot, fairness."""
    n, n_f, n_x, k = layout
    n0 = n // k
    every = np.concatenate([j * n0 + order for j in range(k)])  # in every future
    cols, rows = basis[0].copy(), basis[1].copy()
    g = len(GROUPS) * n * t
    cols[:g] = cols[:g].reshape(len(GROUPS), n, t)[:, every].ravel()
    rows[: 2 * n * t] = rows[: 2 * n * t].reshape(2, n, t)[:, every].ravel()
    per_slot = 2 * n + n_f + n_x + 2 * (k - 1) * n0
    n_ev = fair_row0 - per_slot * t
    if n_ev not in (0, n):
        raise ValueError("not lp_build's layout")
    if n_ev:
        rows[2 * n * t : 2 * n * t + n] = rows[2 * n * t : 2 * n * t + n][every]
    ties = 2 * n * t + n_ev + (n_f + n_x) * t
    rows[ties:fair_row0] = rows[ties:fair_row0].reshape(-1, n0, t)[:, order].ravel()
    # fairness rows: the same (house, slot) rows, renumbered and in the new houses' order
    seat = np.empty(n, dtype=np.int64)
    seat[every] = np.arange(n)
    keys = seat[fair_keys // t] * t + fair_keys % t
    by_key = np.argsort(keys, kind="stable")
    rows[fair_row0:] = rows[fair_row0:][by_key]
    return (cols, rows), keys[by_key]
