"""One block LP solved by HiGHS, started from the block's previous optimal basis.

A forecast update changes only bounds, costs and right-hand sides, not the
matrix, so the previous optimal basis is a good (often nearly optimal) start: a
50-house feeder re-solves in ~0.03 s instead of ~0.25 s from scratch.  Two
changes of the matrix are common and cheap to follow: the fairness rows (which
exist only where a feeder's export limit could bind, so they move with the PV
forecast) and a horizon moved forward by whole slots.  Then the previous basis
is mapped onto the new rows and columns (``SavedStart.mapped``) and given to HiGHS
as an "alien" basis, which it repairs before it starts.  Anything else (other
houses, feeders, slot count or parameters) is solved from scratch.

Between cycles only the basis (one byte per column and row) and fingerprints of
the matrix are kept, not the HiGHS model: a solved 50-house model with two futures
holds ~45 MB, so keeping 200 of them alive for 10,000 houses would need ~9 GB.
HiGHS is given the LP without its fixed columns and free rows (``highs_lp``).
"""

from __future__ import annotations

import ctypes
import os
import sys
import zlib
from dataclasses import dataclass, field, replace

import highspy
import numpy as np

from aggregator.dispatch.highs_lp import (
    BASIC,
    Compact,
    Statuses,
    basis_for,
    compact,
    pass_model,
    seat_houses,
    seating,
    statuses,
)
from aggregator.dispatch.lp_build import BlockLP


class HighsFailed(RuntimeError):
    """HiGHS stopped without an optimal solution (time limit, numerical trouble)."""

    def __init__(self, message: str, time_limit: bool) -> None:
        super().__init__(message)
        self.time_limit = time_limit


_STARTED_QUIETLY = False


def start_highs_quietly() -> None:
    """HiGHS' C++ constructor prints a copyright banner on stdout, once per process, before
    ``output_flag`` can be set.  A solver's stdout is a CLI's (``vpp-sim run`` prints its
    report there, others JSON): the first Highs of a process is made here, with the banner
    sent to /dev/null.  Idempotent; called by every new model."""
    global _STARTED_QUIETLY
    if _STARTED_QUIETLY:
        return
    _STARTED_QUIETLY = True
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    try:
        sys.stdout.flush()
        os.dup2(devnull, 1)
        highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def keep_freed_memory() -> bool:
    """In a solver process (glibc): keep memory HiGHS frees for its next model instead of
    giving it back to the system.  Every solve allocates and zeroes ~20 MB of vectors; with
    glibc's defaults the large ones are mapped fresh each time (page faults and zeroing),
    ~40 % of a 50-house re-solve that needs no iteration (docs/performance.md).  Allocations under 32 MB come from
    the heap, and up to 512 MB free at its top stays mapped: the process keeps its peak
    instead of returning to its idle size.  False where it does not apply (no glibc)."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 512 << 20))


def _new_highs() -> highspy.Highs:
    start_highs_quietly()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    # one thread: blocks run in parallel in worker processes already; a HiGHS thread
    # pool per process would only oversubscribe the cores
    h.setOptionValue("threads", 1)
    return h


def matrix_fingerprints(lp: BlockLP) -> tuple[bytes, bytes]:
    """Identify the constraint matrix (shape, pattern and coefficients): (all of it, all
    rows before the fairness rows).  CRC-32 (~0.8 ms per 50-house block with two futures;
    blake2b took 3.7 ms): two matrices taken for one by chance (1 in 4e9) would only give
    HiGHS a poor start, which it repairs or which is retried cold (``HighsBlock.solve``)."""
    m = lp.matrix
    r = m.shape[0] if lp.fair_row0 < 0 else lp.fair_row0
    end = int(m.indptr[r])
    crc = zlib.crc32(np.asarray([r, m.shape[1]], dtype=np.int64).data)
    for a in (m.indptr[: r + 1], m.indices[:end], m.data[:end]):
        crc = zlib.crc32(np.ascontiguousarray(a).data, crc)
    core = crc
    crc = zlib.crc32(np.asarray(m.shape, dtype=np.int64).data, crc)
    for a in (m.indptr[r + 1 :], m.indices[end:], m.data[end:]):
        crc = zlib.crc32(np.ascontiguousarray(a).data, crc)
    return crc.to_bytes(4, "little"), core.to_bytes(4, "little")


_DEVEX = 1  # HiGHS option simplex_dual_edge_weight_strategy: 0 Dantzig, 1 devex, 2 steepest edge


def _shift_slots(status: np.ndarray, t: int, shift: int, t_new: int | None = None) -> np.ndarray:
    """(k*t,) statuses laid out as k rows of t slots, moved ``shift`` slots earlier onto rows of
    ``t_new`` slots (default ``t``); new slots past the old horizon repeat its last one."""
    t_new = t if t_new is None else t_new
    m = status.reshape(-1, t)
    out = np.empty((m.shape[0], t_new), dtype=m.dtype)
    kept = min(t - shift, t_new)
    out[:, :kept] = m[:, shift : shift + kept]
    out[:, kept:] = m[:, -1:]
    return out.ravel()


def layout(lp: BlockLP) -> tuple[int, int, int, int]:
    """What a basis needs to fit another LP slot by slot: houses, feeders, transformers, futures."""
    return lp.n, lp.n_feeders, lp.n_transformers, lp.scenarios


@dataclass(frozen=True)
class SavedStart:
    """What a block keeps between cycles to start the next solve from."""

    fingerprint: bytes  # whole matrix
    core_fingerprint: bytes  # all rows but the fairness rows
    basis: Statuses  # per column and row of the full LP (highs_lp)
    n_rows: int
    fair_row0: int
    fair_keys: np.ndarray
    t: int
    start_s: float
    slot_s: int
    layout: tuple[int, int, int, int] = (0, 0, 0, 1)
    house_keys: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))  # BlockLP.house_keys

    def seated(self, lp: BlockLP) -> SavedStart:
        """This (sibling block's) basis with its houses in the order that best fits ``lp``'s
        (``highs_lp.seating``): a 50-house block then started from it with 18-40 % fewer
        iterations (docs/performance.md).  Itself if the blocks' feeders differ."""
        order = seating(self.house_keys, lp.house_keys)
        if order is None:
            return self
        basis, fair_keys = seat_houses(self.basis, self.fair_keys, order, self.layout, self.t, self.fair_row0)
        return replace(self, basis=basis, fair_keys=fair_keys, house_keys=self.house_keys[order])

    def shift_to(self, lp: BlockLP) -> int | None:
        """Slots the horizon moved forward since this basis, or None if it cannot be reused.

        The horizon may also have another length: it ends where the known prices end, so it
        shrinks slot by slot through the day and grows when the next day's prices come."""
        if layout(lp) != self.layout or lp.slot_s != self.slot_s or lp.slot_s <= 0:
            return None
        moved = (lp.start_s - self.start_s) / lp.slot_s
        shift = int(round(moved))
        return shift if abs(moved - shift) < 1e-9 and 0 <= shift < self.t else None

    def mapped(self, lp: BlockLP, shift: int) -> Statuses:
        """This basis moved by ``shift`` slots onto ``lp``'s rows (an "alien" basis: HiGHS
        repairs the count of basic variables and any singularity before it starts).

        Columns and rows other than fairness rows are laid out per (house, feeder or
        transformer) x slot, except one EV row per house.  Fairness rows are matched by
        (house, slot); new ones start with their slack basic (the row inactive).
        """
        t0, t = self.t, lp.t
        cols, rows = self.basis
        if cols.size != lp.var_lb.size // t * t0 or rows.size != self.n_rows:
            raise ValueError("the basis does not fit this LP's layout")
        # per-slot row blocks: balance and SoC (2 per house), feeders and transformers, and a
        # scenario LP's ties (2 per house of each future but the first)
        n0 = lp.n // lp.scenarios
        per_slot = 2 * lp.n + lp.n_feeders + lp.n_transformers + 2 * (lp.scenarios - 1) * n0
        head = 2 * lp.n  # balance and SoC come before the EV rows
        n_ev_old = self.fair_row0 - per_slot * t0
        n_ev = lp.fair_row0 - per_slot * t
        new_rows = np.full(lp.matrix.shape[0], BASIC, dtype=np.int8)
        new_rows[: head * t] = _shift_slots(rows[: head * t0], t0, shift, t)
        if n_ev == n_ev_old:
            new_rows[head * t : head * t + n_ev] = rows[head * t0 : head * t0 + n_ev]
        new_rows[head * t + n_ev : lp.fair_row0] = _shift_slots(rows[head * t0 + n_ev_old : self.fair_row0], t0,
                                                                shift, t)
        if lp.fair_keys.size and self.fair_keys.size:
            s_new = lp.fair_keys % t
            want = lp.fair_keys // t * t0 + s_new + shift  # the old (house, slot) of each new fairness row
            pos = np.clip(np.searchsorted(self.fair_keys, want), 0, self.fair_keys.size - 1)
            hit = (self.fair_keys[pos] == want) & (s_new + shift < t0)
            old_fair = rows[self.fair_row0 :]
            new_rows[lp.fair_row0 :][hit] = old_fair[pos[hit]]
        return _shift_slots(cols, t0, shift, t), new_rows


def _load(lp: BlockLP, start: Statuses | None = None) -> tuple[highspy.Highs, Compact]:
    """A new HiGHS model of ``lp`` (``highs_lp.compact``, keeping what ``start`` needs)."""
    h = _new_highs()
    c = compact(lp, start)
    if pass_model(h, c) == highspy.HighsStatus.kError:
        raise HighsFailed("HiGHS refused the model", time_limit=False)
    return h, c


ShapeKey = tuple[int, ...]


def shape_key(lp: BlockLP) -> ShapeKey:
    """Blocks with equal keys have the same columns and non-fairness rows, position by position."""
    return (lp.var_lb.size, lp.fair_row0, lp.n, lp.t, lp.n_feeders, lp.n_transformers, lp.scenarios)


class HighsBlock:
    """The warm-start memory of one block: its last optimal basis and matrix fingerprints.

    Use: ``solve`` (warm when it can), any number of ``resolve_with_upper``, then
    ``release`` (keeps the basis, frees the model).

    ``seeds`` (shared by the blocks of one process): the latest optimal basis per block
    shape.  A block without a basis of its own starts from a sibling's (another feeder
    of the same size): its houses differ but the shape of the optimum (charge at noon,
    discharge in the evening peak) does not, so that start cut a 50-house solve from
    ~0.21 s to ~0.05 s here.
    """

    def __init__(self, seeds: dict[ShapeKey, SavedStart] | None = None) -> None:
        self._h: highspy.Highs | None = None  # only between solve and release
        self._c: Compact | None = None  # what the model holds of ``_lp``
        self._lp: BlockLP | None = None
        self._fp: tuple[bytes, bytes] | None = None  # of the LP being solved
        self._x: np.ndarray | None = None  # the model's last solution (its columns)
        self._start: SavedStart | None = None
        self._seeds = seeds
        self.last_start = "cold"  # how the last solve started: "warm", "mapped", "seeded", "cold"
        self.warm_solves = 0  # same matrix, same horizon: the basis as it was
        self.mapped_solves = 0  # horizon moved or fairness rows changed: the basis mapped over
        self.seeded_solves = 0  # a sibling block's basis
        self.cold_solves = 0

    def solve(self, lp: BlockLP, time_limit_s: float) -> tuple[np.ndarray, float]:
        """Solve ``lp``, from the previous basis when the matrix (or all of it but the
        fairness rows) is the same as last time and the horizon moved by whole slots,
        else from a sibling's basis, else from scratch."""
        fp = matrix_fingerprints(lp)
        start, how = self._warm_basis(lp, fp)
        self._start = None
        (self._h, self._c), self._lp, self._fp = _load(lp, start), lp, fp
        if start is not None and self._h.setBasis(basis_for(self._c, start, alien=how != "warm")) \
                != highspy.HighsStatus.kOk:
            how = "cold"  # HiGHS refused it
        self.last_start = how
        setattr(self, f"{how}_solves", getattr(self, f"{how}_solves") + 1)
        if how == "warm":
            # From the block's own optimal basis only a few pivots remain, and dual steepest
            # edge would first spend more on computing its weights than they save: devex
            # pricing re-solved 20 warm 50-house blocks in 1.08-1.10 s instead of 1.42-1.50 s.
            # (From a sibling's basis or cold, devex was slower: 4.4-5.0 s vs 3.2 s.)
            self._h.setOptionValue("simplex_dual_edge_weight_strategy", _DEVEX)
        try:
            return self._run(time_limit_s)
        except HighsFailed as exc:
            if how == "cold" or exc.time_limit:
                raise
            # A repaired alien basis can, rarely, leave HiGHS in numerical trouble: a start
            # must never cost a plan, so try once more from scratch.
            (self._h, self._c), self._lp, self._fp = _load(lp), lp, fp
            self.last_start = "cold"
            self.cold_solves += 1
            return self._run(time_limit_s)

    def _warm_basis(self, lp: BlockLP, fp: tuple[bytes, bytes]) -> tuple[Statuses | None, str]:
        try:
            return self._start_basis(lp, fp)
        except (ValueError, IndexError):  # a basis that does not fit after all: a start must never cost a plan
            return None, "cold"

    def _start_basis(self, lp: BlockLP, fp: tuple[bytes, bytes]) -> tuple[Statuses | None, str]:
        if lp.fair_row0 < 0:
            return None, "cold"
        st = self._start
        shift = st.shift_to(lp) if st is not None else None
        # the same rows but for the fairness rows, or another horizon length (its matrix is
        # another size, but slot by slot the same): map the basis over
        if st is not None and shift is not None and (fp[1] == st.core_fingerprint or lp.t != st.t):
            if shift == 0 and fp[0] == st.fingerprint:
                return st.basis, "warm"  # the forecast update: nothing but bounds and costs changed
            return st.mapped(lp, shift), "mapped"
        seed = self._seeds.get(shape_key(lp)) if self._seeds is not None else None
        if seed is not None:
            return seed.seated(lp).mapped(lp, 0), "seeded"
        return None, "cold"

    def resolve_with_upper(self, ub: np.ndarray, time_limit_s: float) -> tuple[np.ndarray, float]:
        """Re-solve after lowering some variable upper bounds (the mode fixing); HiGHS keeps
        the basis it just found, so this takes a few iterations."""
        assert self._h is not None and self._lp is not None and self._c is not None
        idx = np.flatnonzero(self._lp.var_ub != ub)
        # a column left out of the model is fixed at its lower bound, 0 for the charge and
        # discharge this lowers: nothing to change there
        present, pos = self._c.positions(idx)
        if pos.size:
            self._h.changeColsBounds(pos.size, pos.astype(np.int32), self._lp.var_lb[idx[present]], ub[idx[present]])
            col_ub = self._c.col_ub.copy()
            col_ub[pos] = ub[idx[present]]
            self._c = replace(self._c, col_ub=col_ub)
        self._lp = replace(self._lp, var_ub=ub)
        return self._run(time_limit_s)

    def release(self) -> None:
        """Keep the optimal basis for the next cycle and free the model.

        The basis is of the last LP solved, mode-fixing bounds included; it stays a
        valid basis when those bounds are lifted again, so it is still a good start.
        """
        h, c, lp, fp, x = self._h, self._c, self._lp, self._fp, self._x
        if h is not None and c is not None and lp is not None and fp is not None and x is not None \
                and h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
            self._start = SavedStart(fp[0], fp[1], statuses(h, c, lp, x), lp.matrix.shape[0], lp.fair_row0,
                                     lp.fair_keys, lp.t, lp.start_s, lp.slot_s, layout(lp), lp.house_keys)
            if self._seeds is not None:
                self._seeds[shape_key(lp)] = self._start
        self._h, self._c, self._lp, self._fp, self._x = None, None, None, None, None

    def _run(self, time_limit_s: float) -> tuple[np.ndarray, float]:
        h, c, lp = self._h, self._c, self._lp
        assert h is not None and c is not None and lp is not None
        h.setOptionValue("time_limit", float(time_limit_s))
        h.run()
        status = h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            self._h, self._c, self._lp, self._fp, self._x = None, None, None, None, None  # no start for the next cycle
            raise HighsFailed(f"HiGHS status {h.modelStatusToString(status)}",
                              time_limit=status == highspy.HighsModelStatus.kTimeLimit)
        self._x = np.asarray(h.getSolution().col_value)
        return c.full_x(self._x, lp.var_lb), float(h.getInfo().objective_function_value)
