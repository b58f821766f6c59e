"""Fleet events (caps on total fleet export or import in windows), coordinated across blocks by prices.

A fleet event is a cap on the fleet's total net export (or net import) in every slot of a
window, e.g. "reduce export by 2 MW from 12:00 to 14:00".  Such a row couples all blocks
(feeders/transformers), which are otherwise solved independently.  We keep the blocks
independent (cost linear in the fleet size) with Dantzig-Wolfe column generation:

* round 0 solves every block without events (the normal solve; it is also the baseline that
  "reduce by X W" events are measured from) and keeps each block's schedule as a column
  (true cost, fleet grid power per slot);
* the restricted master LP picks, per block, a convex mix of *all* its columns so that every
  event row holds (a penalised slack per event and slot keeps it feasible) at least cost;
* its duals (event rows: mu_kt >= 0; convexity rows: alpha_j) price the next round: every
  block is solved with an extra price on grid power in the windows (export dearer under an
  export cap, import dearer under an import cap).  A block's new column enters the master if
  its reduced cost  cost + sum_kt mu_kt sigma_k g_t - alpha_j  is negative;
* every pricing round gives a Lagrangian lower bound on the event-constrained LP,
  ``LB(mu) = sum_j v_j(mu) - sum_kt mu_kt cap_kt`` (v_j: the block LP's optimum at that
  price), so ``master cost - best LB`` bounds how far the plan can be from optimal;
* stop when that gap is below ``gap_tol`` (relative to max(1, |cost|)) or no block prices
  out a column below ``-rc_tol``, or after ``max_rounds`` pricing rounds.

Stabilisation (Wentges smoothing): blocks are priced at ``beta * mu_best + (1 - beta) *
mu_master`` (mu_best: the duals of the best lower bound so far).  Plain column generation
swings from "ignore the event" to "penalty price, stop all export" and back; smoothing damps
that.  While the master still needs its slack (its duals are then the penalty), the duals
priced are capped at the energy price range (a box).  When a smoothed or boxed round finds
no column that is improving at the master's own duals (a mis-price), the next round prices
at the master's duals, so an event that cannot be met still converges.

The final plan of each block is the master's mix of its columns: every column is feasible
for the block and the block's feasible set is convex, so the mix is feasible and each event
cap holds as the master says (to its tolerance; any slack is reported as shortfall).  Mixed
charge and discharge in one slot are netted (battery power c - d is what the plan carries),
so a plan never charges and discharges at once; grid power is unchanged by the netting.

Finish (``polish``): each block is then re-solved once with its share of every cap (its
grid power in the window in the mix) as a limit on its own feeder or transformer row.  The
mix meets that limit, so the re-solve costs at most as much, and the shares add up to the
master's allocation, so the caps still hold; the block keeps whichever is cheaper.  The
re-solve is a plain LP solution (consistent SoC line, no netting needed).  Its cost is
measured with the block LP's objective, which has fairness rows where the tightened limit
could bind: an upper bound of the same schedule's cost without them.

Sign convention: grid power > 0 is import.  Caps are positive magnitudes in W.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from ortools.linear_solver.python import model_builder as mb
from ortools.linear_solver.python import model_builder_helper as mbh

from aggregator.dispatch.highs_block import HighsBlock
from aggregator.dispatch.lp_build import GROUPS, build
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.solve import (
    BlockResult,
    BlockSolution,
    FleetSolution,
    InfeasibleError,
    _solve_lp,
    block_tasks,
    iter_blocks,
    solve_block,
)

if TYPE_CHECKING:
    from aggregator.dispatch.solver_pool import WarmSolverPool

DIRECTIONS = ("export", "import")
_ROW_SCALE = 1e-3  # event rows in kW: keeps the master's coefficients near the costs' scale


@dataclass(frozen=True)
class FleetEvent:
    """A cap on the fleet's total net export or net import in slots [start_slot, end_slot).

    ``direction`` "export": fleet export (-grid power) <= cap in every slot of the window;
    "import": fleet import (grid power) <= cap.  The cap is either ``max_w`` (W, positive
    magnitude, scalar or one value per window slot) or ``reduce_w``: "reduce export by 2 MW"
    is a cap of max(baseline - 2 MW, 0) per slot, the baseline taken from the event-free
    plan of the same problem (see ``cap_from_baseline``).  Exactly one of the two is given.
    """

    start_slot: int
    end_slot: int
    max_w: float | np.ndarray | None = None
    direction: str = "export"
    reduce_w: float | None = None
    event_id: str = ""

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.end_slot <= self.start_slot:
            raise ValueError("end_slot must be after start_slot")
        if (self.max_w is None) == (self.reduce_w is None):
            raise ValueError("give exactly one of max_w and reduce_w")
        if self.max_w is not None and np.any(np.asarray(self.max_w, dtype=float) < 0):
            raise ValueError("max_w must be >= 0 (a magnitude in W)")
        if self.reduce_w is not None and self.reduce_w < 0:
            raise ValueError("reduce_w must be >= 0 (W)")

    @property
    def sign(self) -> float:
        """+1 for import caps, -1 for export caps: the cap is ``sign * grid power <= cap``."""
        return 1.0 if self.direction == "import" else -1.0

    def clipped(self, t: int) -> FleetEvent | None:
        """This event restricted to a horizon of ``t`` slots, or None if it lies outside."""
        s, e = max(self.start_slot, 0), min(self.end_slot, t)
        if e <= s:
            return None
        mx = self.max_w
        if mx is not None and np.ndim(mx) == 1:
            mx = np.asarray(mx, dtype=float)[s - self.start_slot : e - self.start_slot]
        return replace(self, start_slot=s, end_slot=e, max_w=mx)


def fleet_grid_w(blocks: Sequence[BlockSolution], t: int) -> np.ndarray:
    """(T,) fleet net grid power in W (import > 0) of the given blocks."""
    out = np.zeros(t)
    for b in blocks:
        out += _grid_sum(b)
    return out


def cap_from_baseline(event: FleetEvent, baseline_grid_w: np.ndarray) -> np.ndarray:
    """The event's cap per window slot (W): ``max_w``, or the baseline's export (import)
    in the window minus ``reduce_w``, floored at 0."""
    n = event.end_slot - event.start_slot
    if event.max_w is not None:
        return np.broadcast_to(np.asarray(event.max_w, dtype=float), (n,)).copy()
    base = event.sign * baseline_grid_w[event.start_slot : event.end_slot]
    return np.maximum(np.maximum(base, 0.0) - float(event.reduce_w or 0.0), 0.0)


@dataclass(frozen=True)
class EventOutcome:
    """What the coordinated plan achieves for one event.  Powers in W, per window slot."""

    event: FleetEvent
    cap_w: np.ndarray  # the cap the plan had to meet (magnitude)
    achieved_w: np.ndarray  # the plan's fleet export (export events) or import (import events)
    baseline_w: np.ndarray  # the same without events
    shortfall_w: np.ndarray  # achieved above the cap (penalised slack; 0 when the cap could be met)
    price_per_kwh: np.ndarray  # the event price (master dual) per slot, currency per kWh, >= 0

    @property
    def binding(self) -> bool:
        return bool((self.baseline_w > self.cap_w + 1.0).any())


@dataclass
class EventSolve:
    """Result of a coordinated solve: the mixed plan per block and how it was reached."""

    solution: FleetSolution
    baseline: FleetSolution
    outcomes: list[EventOutcome]
    cost: float  # master objective: the plan's cost incl. penalties (currency)
    lower_bound: float  # best Lagrangian bound of the event-constrained LP (currency)
    rounds: int  # pricing rounds after the baseline solve
    converged: bool
    changed: dict[int, np.ndarray] = field(default_factory=dict)  # block index -> (N_b, T) bool
    grid_price_per_kwh: np.ndarray = field(default_factory=lambda: np.zeros(0))  # last duals as a grid price
    history: list[tuple[float, float]] = field(default_factory=list)  # (master cost, best bound) per round
    timings: dict[str, float] = field(default_factory=dict)  # baseline_s, pricing_s, master_s, polish_s, total_s
    polished_blocks: int = 0  # blocks whose plan is the resource-directive re-solve, not the mix

    @property
    def gap(self) -> float:
        """Upper bound of the distance to the optimum of the event-constrained LP (currency)."""
        return max(self.cost - self.lower_bound, 0.0)

    @property
    def gap_rel(self) -> float:
        return self.gap / max(1.0, abs(self.cost))


def _grid_sum(b: BlockSolution) -> np.ndarray:
    return (b.import_w - b.export_w + b.over_import_w - b.over_export_w).sum(axis=0)


def _mix(cols: list[BlockSolution], w: np.ndarray) -> BlockSolution:
    out = {}
    for f in fields(BlockSolution):
        vals = [getattr(c, f.name) for c in cols]
        if isinstance(vals[0], np.ndarray) and vals[0].dtype.kind == "f":
            out[f.name] = sum(wi * v for wi, v in zip(w, vals, strict=True))
        elif f.name in ("build_s", "solve_s"):
            out[f.name] = float(sum(vals))
        elif isinstance(vals[0], float):
            out[f.name] = float(sum(wi * v for wi, v in zip(w, vals, strict=True)))
        else:
            out[f.name] = vals[0]
    net = out["charge_w"] - out["discharge_w"]
    out["charge_w"], out["discharge_w"] = np.maximum(net, 0.0), np.maximum(-net, 0.0)
    return BlockSolution(**out)


@dataclass
class _Master:
    cost: float
    weights: list[np.ndarray]
    alpha: np.ndarray  # (B,) convexity duals
    mu: np.ndarray  # (R,) event-row multipliers >= 0, currency per W-slot
    slack_w: np.ndarray  # (R,)


def _solve_master(
    costs: list[list[float]], grids: list[list[np.ndarray]], rows: list[tuple[int, float, float]], pen_per_w: float
) -> _Master:
    """min sum c w + pen s; sum_k w_jk = 1; sigma * sum g w - s <= cap (per event row)."""
    nb, nr = len(costs), len(rows)
    nc = [len(c) for c in costs]
    ncol = sum(nc)
    nvar = ncol + nr
    cost = np.concatenate(
        [np.concatenate([np.asarray(c, dtype=float) for c in costs]), np.full(nr, pen_per_w / _ROW_SCALE)]
    )
    conv = sp.csr_matrix((np.ones(ncol), (np.repeat(np.arange(nb), nc), np.arange(ncol))), shape=(nb, nvar))
    slot = np.array([r[0] for r in rows], dtype=int)
    sign = np.array([r[1] for r in rows])
    cap = np.array([r[2] for r in rows])
    g = np.stack([gc for gj in grids for gc in gj])  # (columns, T)
    ev = sp.hstack([sp.csr_matrix((g[:, slot] * sign).T * _ROW_SCALE), -sp.identity(nr)]).tocsr()
    a = sp.vstack([conv, ev]).tocsr()
    lo = np.concatenate([np.ones(nb), np.full(nr, -np.inf)])
    hi = np.concatenate([np.ones(nb), cap * _ROW_SCALE])
    m = mb.Model()
    m.helper.fill_model_from_sparse_data(np.zeros(nvar), np.full(nvar, np.inf), cost, lo, hi, a)  # type: ignore[arg-type]  # stub dtype
    s = mbh.ModelSolverHelper("glop")
    s.solve(m.helper)
    if s.status() != mbh.SolveStatus.OPTIMAL:
        raise InfeasibleError(f"event master {s.status().name}")
    x, y = np.asarray(s.variable_values()), np.asarray(s.dual_values())
    # GLOP: reduced cost = c - A^T y, so a binding "<= cap" row has y <= 0; mu = -y >= 0
    mu = np.maximum(-y[nb:], 0.0) * _ROW_SCALE
    return _Master(
        cost=float(s.objective_value()),
        weights=list(np.split(np.maximum(x[:ncol], 0.0), np.cumsum(nc)[:-1])),
        alpha=y[:nb].copy(),
        mu=mu,
        slack_w=np.maximum(x[ncol:], 0.0) / _ROW_SCALE,
    )


def _prune(
    cols: dict[int, list[BlockSolution]],
    active: list[int],
    master: _Master,
    rows: list[tuple[int, float, float]],
    keep: int,
) -> None:
    """Drop unused columns (weight 0 in ``master``) of blocks with more than ``keep``, highest
    reduced cost first; the baseline (column 0) and every used column stay."""
    slots = np.array([r[0] for r in rows], dtype=int)
    signs = np.array([r[1] for r in rows])
    for k, j in enumerate(active):
        cj = cols[j]
        if len(cj) <= keep:
            continue
        w = master.weights[k]
        rc = [c.objective + float(np.dot(master.mu, signs * _grid_sum(c)[slots])) - master.alpha[k] for c in cj]
        drop = sorted((i for i in range(1, len(cj)) if w[i] <= 1e-9), key=lambda i: -rc[i])[: len(cj) - keep]
        cols[j] = [c for i, c in enumerate(cj) if i not in set(drop)]


def _master_of(
    cols: dict[int, list[BlockSolution]], active: list[int], rows: list[tuple[int, float, float]], pen_per_w: float
) -> _Master:
    costs = [[c.objective for c in cols[j]] for j in active]
    return _solve_master(costs, [[_grid_sum(c) for c in cols[j]] for j in active], rows, pen_per_w)


def _price(rows: list[tuple[int, float, float]], mu: np.ndarray, t: int, kwh: float) -> np.ndarray:
    """(T,) extra price on grid power (import > 0), currency per kWh, for multipliers ``mu``."""
    price = np.zeros(t)
    np.add.at(price, np.array([r[0] for r in rows], dtype=int), np.array([r[1] for r in rows]) * mu / kwh)
    return price


def _priced(sub: FleetProblem, price: np.ndarray) -> FleetProblem:
    """``sub`` with the coordination price on grid power folded into its energy prices: the
    same LP as ``build(sub, o, price)`` (import costs price + pi, export earns price + pi), so
    a solver pool that takes no price argument can solve it."""
    return replace(sub, import_price_per_kwh=sub.import_price_per_kwh + price,
                   export_price_per_kwh=sub.export_price_per_kwh + price)


_SHARE_TOL_W = 1e-3  # a block's share of a cap, W: slack for the LP tolerances


def _allocated(sub: FleetProblem, b: BlockSolution, events: list[FleetEvent]) -> FleetProblem:
    """``sub`` with its share of every event cap (its grid power in ``b`` in the window) as a
    limit of the block's own transformer (a block by transformer) or feeder (a block by feeder)."""
    by_x = bool(np.isfinite(sub.transformer_export_limit_w).any() or np.isfinite(sub.transformer_import_limit_w).any())
    names = ("transformer_export_limit_w", "transformer_import_limit_w") if by_x else (
        "feeder_export_limit_w", "feeder_import_limit_w")
    exp, imp = getattr(sub, names[0]).copy(), getattr(sub, names[1]).copy()
    g = _grid_sum(b)
    for e in events:
        w = slice(e.start_slot, e.end_slot)
        share = e.sign * g[w] + _SHARE_TOL_W
        lim = exp if e.direction == "export" else imp
        lim[:, w] = np.minimum(lim[:, w], share)
    return replace(sub, **{names[0]: exp, names[1]: imp})


def _solve_tasks(
    tasks: list[tuple[np.ndarray, FleetProblem]],
    options: DispatchOptions,
    pool: ProcessPoolExecutor | WarmSolverPool | None,
    models: dict[int, HighsBlock],
    keys: list[int],
) -> Iterator[tuple[int, BlockResult]]:
    """(task index, result): in ``pool``, or here one after another, block ``keys[i]`` from
    its basis in ``models``."""
    if pool is not None:
        yield from iter_blocks(tasks, options, pool)
        return
    for i, (h, sub) in enumerate(tasks):
        model = models.setdefault(keys[i], HighsBlock()) if options.solver == "highs" else None
        try:
            yield i, solve_block(h, sub, options, model=model)
        except InfeasibleError as exc:
            yield i, str(exc)


def _pricing_round(
    tasks: list[tuple[np.ndarray, FleetProblem]],
    active: list[int],
    options: DispatchOptions,
    price: np.ndarray,
    pool: ProcessPoolExecutor | WarmSolverPool | None,
    models: dict[int, HighsBlock],
) -> Iterator[tuple[int, BlockResult]]:
    """(block index, result) for the blocks in ``active`` priced at ``price``.  A result's
    ``objective`` is its true cost (the price term taken out), ``lp_objective`` the priced
    LP's optimum (for the Lagrangian bound).

    With a pool the blocks are solved in its workers in parallel: a ``WarmSolverPool`` starts
    each block from its basis of the previous solve (its own previous round), an executor
    solves cold.  Without one they are solved here one after another, each from its own basis
    of the previous round (only the costs changed, so HiGHS re-solves in a few iterations).
    """
    if pool is not None:
        kwh = tasks[0][1].slot_h / 1000.0
        priced = [(tasks[j][0], _priced(tasks[j][1], price)) for j in active]
        for i, r in iter_blocks(priced, options, pool):
            if isinstance(r, str):
                yield active[i], r
            else:
                yield active[i], replace(r, objective=r.objective - float(np.dot(price, _grid_sum(r))) * kwh)
        return
    for j in active:
        h, sub = tasks[j]
        model = models.setdefault(j, HighsBlock()) if options.solver == "highs" else None
        try:
            yield j, solve_block(h, sub, options, price, model=model)
        except InfeasibleError as exc:
            yield j, str(exc)


def solve_with_events(  # noqa: C901 -- being split (issue 24 item 5)
    p: FleetProblem,
    options: DispatchOptions,
    events: Sequence[FleetEvent],
    *,
    max_rounds: int = 40,
    gap_tol: float = 1e-3,
    rc_tol: float = 1e-6,
    smoothing: float = 0.85,
    max_columns: int = 20,
    pool: ProcessPoolExecutor | WarmSolverPool | None = None,
    baseline: FleetSolution | None = None,
    start_prices: Mapping[str, np.ndarray] | None = None,
    polish: bool = True,
) -> EventSolve:
    """Blocks coordinated by prices so that every event cap holds; see the module docstring.

    ``max_columns``: columns kept per block (each is a full block schedule, ~0.35 MB for 50
    houses x 96 slots); beyond it, unused columns with the highest reduced cost are dropped
    (never the baseline, never one the master uses, so the master's cost never rises).

    ``start_prices``: event id -> (T,) the event's price per slot of this horizon (currency per
    kWh, e.g. from the previous cycle's ``EventOutcome.price_per_kwh``; NaN where unknown).
    The first pricing round uses them instead of the master's (penalty) duals, which saves
    rounds when the events and forecasts changed little.

    ``polish``: finish with one resource-directive re-solve per block (see the module
    docstring); a block keeps it only where it is cheaper than the master's mix.

    ``baseline``: the event-free solve of ``p`` if the caller has it (else solved here, with
    ``pool``).  Blocks that fail in the baseline solve take no part (their houses are in
    ``baseline.failed`` and the caller plans them by its fallback); a block that fails in a
    pricing round just adds no column that round.
    """
    t0 = time.perf_counter()
    tasks = block_tasks(p)
    if baseline is None:
        baseline = FleetSolution()
        res = dict(iter_blocks(tasks, options, pool))
        for i, (h, _) in enumerate(tasks):
            baseline.add(h, res[i])
    t1 = time.perf_counter()
    by_houses = {b.houses.tobytes(): b for b in baseline.blocks}
    active = [j for j, (h, _) in enumerate(tasks) if h.tobytes() in by_houses]
    cols: dict[int, list[BlockSolution]] = {j: [by_houses[tasks[j][0].tobytes()]] for j in active}
    base_grid = fleet_grid_w(baseline.blocks, p.t)
    evs = [c for c in (e.clipped(p.t) for e in events) if c is not None]
    caps = [cap_from_baseline(e, base_grid) for e in evs]
    rows = [  # (slot, sign, cap W) per event row
        (e.start_slot + i, e.sign, float(cap_i)) for e, c in zip(evs, caps, strict=True) for i, cap_i in enumerate(c)
    ]
    kwh = p.slot_h / 1000.0
    pen_per_w = options.penalty_per_kwh * kwh
    models: dict[int, HighsBlock] = {}
    price_box = kwh * (
        float(np.max(np.abs(np.concatenate([p.import_price_per_kwh, p.export_price_per_kwh]))))
        + options.throughput_cost_per_kwh
    )
    history: list[tuple[float, float]] = []
    pricing_s = master_s = 0.0
    # the baseline is the pricing at mu = 0: its bound is the event-free optimum
    best_lb = float(sum(cols[j][0].lp_objective for j in active))
    mu_best = np.zeros(len(rows))
    rounds, converged, beta = 0, not rows or not active, smoothing
    mu_start = np.zeros(len(rows))
    if start_prices:
        r0 = 0
        for e in evs:
            given = start_prices.get(e.event_id) if e.event_id else None
            if given is not None:
                vals = np.asarray(given, dtype=float)[e.start_slot : e.end_slot] * kwh
                mu_start[r0 : r0 + vals.size] = np.clip(np.nan_to_num(vals, nan=0.0), 0.0, pen_per_w)
            r0 += e.end_slot - e.start_slot
    master: _Master | None = None
    while rows and active:
        tm = time.perf_counter()
        master = _master_of(cols, active, rows, pen_per_w)
        master_s += time.perf_counter() - tm
        if rounds == 0 and not (master.slack_w > 1e-6).any():
            # the event-free plan (optimal without the caps) already meets every cap
            best_lb, converged = master.cost, True
            history.append((master.cost, best_lb))
            break
        if master.cost - best_lb <= gap_tol * max(1.0, abs(master.cost)):
            converged = True
            history.append((master.cost, best_lb))
            break
        if rounds >= max_rounds:
            history.append((master.cost, best_lb))
            break
        _prune(cols, active, master, rows, max_columns - 1)  # room for this round's column
        target = master.mu
        if beta > 0.0 and (master.slack_w > 1e-6).any():
            # Box: while the master still needs its slack, the dual of those rows is the
            # penalty, a price that swings every block to the extreme.  Price at most at the
            # energy price range instead; a mis-price lifts the box (so infeasible caps converge).
            target = np.minimum(target, price_box)
        mu = mu_start if rounds == 0 and mu_start.any() else beta * mu_best + (1.0 - beta) * target
        price = _price(rows, mu, p.t, kwh)
        tp = time.perf_counter()
        lb = -float(np.dot(mu, [r[2] for r in rows]))
        lb_ok, improving = True, False
        for j, r in _pricing_round(tasks, active, options, price, pool, models):
            if isinstance(r, str):
                lb_ok = False
                continue
            cols[j].append(r)
            lb += r.lp_objective  # the block LP's optimum at this price (before mode fixing)
            k = active.index(j)
            g = _grid_sum(r)
            rc_master = r.objective + float(np.dot(master.mu, [s * g[t] for t, s, _ in rows])) - master.alpha[k]
            improving |= rc_master < -rc_tol * max(1.0, abs(r.objective))
        pricing_s += time.perf_counter() - tp
        rounds += 1
        if lb_ok and lb > best_lb:
            best_lb, mu_best = lb, mu
        history.append((master.cost, best_lb))
        if not improving and beta == 0.0:
            converged = True  # no column prices out at the master's duals: the master is optimal
            break
        beta = smoothing if improving else 0.0  # a mis-price: next round at the master's duals
    if master is not None and rounds > 0:
        tm = time.perf_counter()
        master = _master_of(cols, active, rows, pen_per_w)
        master_s += time.perf_counter() - tm
    sol = FleetSolution(prepare_s=baseline.prepare_s, failed=list(baseline.failed))
    mixed: list[BlockSolution] = []
    for j in active:
        cj = cols[j]
        if master is None or len(cj) == 1:
            mixed.append(cj[0])
        else:
            w = master.weights[active.index(j)]
            keep = w > 1e-9
            mixed.append(_mix([c for c, k in zip(cj, keep, strict=True) if k], w[keep] / w[keep].sum()))
    cost = master.cost if master is not None else baseline.objective
    tq = time.perf_counter()
    polished = 0
    if master is not None and rounds > 0 and polish:
        # Resource-directive finish: each block re-solved with its share of every cap (its
        # grid power in the windows in the mix) as a limit of its own.  The mix meets that
        # limit, so the block's optimum under it costs at most as much; the shares add up
        # to what the master allotted, so the caps still hold.  A real LP vertex, too (no
        # mixed charge/discharge, a consistent SoC line).  Kept per block only if cheaper.
        tasks_q = [(tasks[j][0], _allocated(tasks[j][1], b, evs)) for j, b in zip(active, mixed, strict=True)]
        for i, r in _solve_tasks(tasks_q, options, pool, models, active):
            if isinstance(r, str):
                continue
            sol.build_s += r.build_s
            sol.solve_s += r.solve_s
            if r.objective <= mixed[i].objective:
                cost += r.objective - mixed[i].objective
                mixed[i] = r
                polished += 1
    polish_s = time.perf_counter() - tq
    changed: dict[int, np.ndarray] = {}
    for j, b in zip(active, mixed, strict=True):
        cj = cols[j]
        sol.blocks.append(b)
        sol.build_s += sum(c.build_s for c in cj)
        sol.solve_s += sum(c.solve_s for c in cj)
        base = cj[0]
        changed[len(sol.blocks) - 1] = (
            np.abs((b.charge_w - b.discharge_w) - (base.charge_w - base.discharge_w)) > 1.0
        ) | (np.abs(_grid_sum_h(b) - _grid_sum_h(base)) > 1.0)
    grid = fleet_grid_w(sol.blocks, p.t)
    mu_final = master.mu if master is not None else np.zeros(len(rows))
    slack = master.slack_w if master is not None else np.zeros(len(rows))
    outcomes: list[EventOutcome] = []
    r0 = 0
    for e, cap in zip(evs, caps, strict=True):
        n = e.end_slot - e.start_slot
        win = slice(e.start_slot, e.end_slot)
        outcomes.append(
            EventOutcome(
                event=e,
                cap_w=cap,
                achieved_w=e.sign * grid[win],
                baseline_w=e.sign * base_grid[win],
                shortfall_w=slack[r0 : r0 + n].copy(),
                price_per_kwh=mu_final[r0 : r0 + n] / kwh,
            )
        )
        r0 += n
    if not rows or not active:
        best_lb = cost
    sol.wall_s = time.perf_counter() - t0
    return EventSolve(
        solution=sol,
        baseline=baseline,
        outcomes=outcomes,
        cost=cost,
        lower_bound=float(best_lb),
        rounds=rounds,
        converged=converged,
        changed=changed,
        grid_price_per_kwh=_price(rows, mu_final, p.t, kwh) if rows else np.zeros(p.t),
        history=history,
        timings={
            "baseline_s": t1 - t0, "pricing_s": pricing_s, "master_s": master_s, "polish_s": polish_s,
            "total_s": time.perf_counter() - t0,
        },
        polished_blocks=polished,
    )


def _grid_sum_h(b: BlockSolution) -> np.ndarray:
    return b.import_w - b.export_w + b.over_import_w - b.over_export_w


def monolithic_with_events(p: FleetProblem, options: DispatchOptions, events: Sequence[FleetEvent]) -> float:
    """Objective of one LP over the whole fleet with the event rows (for tests and the benchmark).

    ``reduce_w`` events are measured from the event-free block solve, as in ``solve_with_events``.
    """
    lp = build(p, options)
    evs = [c for c in (e.clipped(p.t) for e in events) if c is not None]
    if any(e.max_w is None for e in evs):
        from aggregator.dispatch.solve import solve_fleet

        base_grid = fleet_grid_w(solve_fleet(p, options).blocks, p.t)
    else:
        base_grid = np.zeros(p.t)
    nt, t = lp.n * lp.t, lp.t
    nv = lp.var_lb.size
    rows, cols, vals, caps = [], [], [], []
    r = 0
    for e in evs:
        win = np.arange(e.start_slot, e.end_slot)
        caps.append(cap_from_baseline(e, base_grid))
        for name, sgn in (("imp", 1.0), ("exp", -1.0), ("oi", 1.0), ("oe", -1.0)):
            g = GROUPS.index(name)
            idx = g * nt + np.arange(nt).reshape(lp.n, t)[:, win]
            rows.append(r + np.broadcast_to(np.arange(win.size), idx.shape).ravel())
            cols.append(idx.ravel())
            vals.append(np.full(idx.size, sgn * e.sign))
        r += win.size
    rows.append(np.arange(r))
    cols.append(nv + np.arange(r))
    vals.append(np.full(r, -1.0))  # sign * grid - slack <= cap
    extra = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r, nv + r))
    a = sp.vstack([sp.hstack([lp.matrix, sp.csr_matrix((lp.matrix.shape[0], r))]), extra]).tocsr()
    lp2 = replace(
        lp,
        var_lb=np.concatenate([lp.var_lb, np.zeros(r)]),
        var_ub=np.concatenate([lp.var_ub, np.full(r, np.inf)]),
        cost=np.concatenate([lp.cost, np.full(r, options.penalty_per_kwh * p.slot_h / 1000.0)]),
        row_lb=np.concatenate([lp.row_lb, np.full(r, -np.inf)]),
        row_ub=np.concatenate([lp.row_ub, np.concatenate(caps) if caps else np.zeros(0)]),
        matrix=a,
    )
    return _solve_lp(lp2, options.time_limit_s)[1]


# The single-event prototype's names, kept for callers of the first version.
def solve_with_event(
    p: FleetProblem, options: DispatchOptions, event: FleetEvent, rounds: int = 40
) -> tuple[FleetSolution, np.ndarray]:
    """One event; returns the mixed solution and the final grid price (T,) per kWh."""
    r = solve_with_events(p, options, [event], max_rounds=rounds)
    return r.solution, r.grid_price_per_kwh


def monolithic_with_event(p: FleetProblem, options: DispatchOptions, event: FleetEvent) -> float:
    return monolithic_with_events(p, options, [event])
