"""Fleet events (a cap on total fleet export in a window), coordinated across blocks by prices.

A fleet-wide row couples all feeders, so the blocks are no longer independent.
We keep them independent (linear cost) with Dantzig-Wolfe coordination:

1. solve every block with an extra price lambda_t on grid power in the window
   (first round: lambda = 0), and keep each block's schedule as a column
   (true cost, fleet-export contribution per window slot);
2. a tiny master LP picks, per block, a convex mix of its columns so that the
   summed export meets the cap (penalised slack keeps it feasible) at least cost;
3. the master's duals on the cap rows are the next lambda_t.

The final plan of each block is the master's mix of its columns: every column
is feasible for the block, the block's feasible set is convex, so the mix is
feasible and the cap holds exactly as the master says.  Mixed charge and
discharge in one slot are netted (battery power c - d is what the plan carries).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import scipy.sparse as sp
from ortools.linear_solver.python import model_builder as mb
from ortools.linear_solver.python import model_builder_helper as mbh

from aggregator.dispatch.lp_build import build
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.solve import BlockSolution, FleetSolution, InfeasibleError, _solve_lp, solve_block


@dataclass(frozen=True)
class FleetEvent:
    """Cap on the fleet's total net export (W, positive magnitude) in slots [start_slot, end_slot).

    "Reduce export by 2 MW from 12:00 to 14:00" is a cap of (baseline export - 2 MW)
    per slot, the baseline taken from the event-free plan.
    """

    start_slot: int
    end_slot: int
    max_export_w: float | np.ndarray


def _grid_sum(b: BlockSolution) -> np.ndarray:
    return (b.import_w - b.export_w + b.over_import_w - b.over_export_w).sum(axis=0)


def _mix(cols: list[BlockSolution], w: np.ndarray) -> BlockSolution:
    out = {}
    for f in fields(BlockSolution):
        vals = [getattr(c, f.name) for c in cols]
        if isinstance(vals[0], np.ndarray) and vals[0].dtype.kind == "f":
            out[f.name] = sum(wi * v for wi, v in zip(w, vals, strict=True))
        elif isinstance(vals[0], float):
            out[f.name] = float(sum(wi * v for wi, v in zip(w, vals, strict=True)))
        else:
            out[f.name] = vals[0]
    net = out["charge_w"] - out["discharge_w"]
    out["charge_w"], out["discharge_w"] = np.maximum(net, 0.0), np.maximum(-net, 0.0)
    return BlockSolution(**out)


def solve_with_event(p: FleetProblem, options: DispatchOptions, event: FleetEvent, rounds: int = 5) -> tuple[FleetSolution, np.ndarray]:
    """Blocks coordinated by prices; returns the mixed solution and the final price (T,) per kWh."""
    t_slice = slice(event.start_slot, event.end_slot)
    cap = np.broadcast_to(np.asarray(event.max_export_w, dtype=float), (event.end_slot - event.start_slot,))
    groups = p.blocks()
    subs = [p.subset(h) for h in groups]
    cols: list[list[BlockSolution]] = [[] for _ in groups]
    price = np.zeros(p.t)
    kwh = p.slot_h / 1000.0
    w_final: list[np.ndarray] = []
    price_cap = float(np.max(np.abs(np.concatenate([p.import_price_per_kwh, p.export_price_per_kwh]))))
    for _ in range(rounds):
        for j, (h, sub) in enumerate(zip(groups, subs, strict=True)):
            cols[j].append(solve_block(h, sub, options, price if price.any() else None))
        # master: min sum cost*w + pen*s ; sum_k w_jk = 1 ; -sum export... (fleet grid >= -cap - s)
        nc = [len(c) for c in cols]
        nvar = sum(nc) + cap.size
        cost = np.concatenate([[c.objective for c in cj] for cj in cols] + [np.full(cap.size, options.penalty_per_kwh * kwh)])
        conv = sp.csr_matrix((np.ones(sum(nc)), (np.repeat(np.arange(len(cols)), nc), np.arange(sum(nc)))), shape=(len(cols), nvar))
        g = np.concatenate([[_grid_sum(c)[t_slice] for c in cj] for cj in cols])  # (columns, window)
        ev = sp.hstack([sp.csr_matrix(g.T), sp.identity(cap.size)]).tocsr()  # fleet grid + s >= -cap
        a = sp.vstack([conv, ev]).tocsr()
        m = mb.Model()
        lo = np.concatenate([np.ones(len(cols)), -cap])
        hi = np.concatenate([np.ones(len(cols)), np.full(cap.size, np.inf)])
        m.helper.fill_model_from_sparse_data(np.zeros(nvar), np.full(nvar, np.inf), cost, lo, hi, a)  # type: ignore[arg-type]  # stub dtype
        s = mbh.ModelSolverHelper("glop")
        s.solve(m.helper)
        if s.status() != mbh.SolveStatus.OPTIMAL:
            raise InfeasibleError(f"master {s.status().name}")
        x, duals = np.asarray(s.variable_values()), np.asarray(s.dual_values())
        w_final = np.split(x[: sum(nc)], np.cumsum(nc)[:-1])
        # dual of "fleet grid >= -cap" is >= 0 (currency per W-slot)
        # Box step: while the master still needs its slack, its dual is the penalty,
        # a price that would swing every block to the extreme; cap it at the
        # energy price range so the next columns are informative.
        lam = np.minimum(duals[len(cols):] / kwh, price_cap)
        price = np.zeros(p.t)
        price[t_slice] = -lam  # Lagrangian term -dual * grid: export dearer
    sol = FleetSolution()
    for cj, w in zip(cols, w_final, strict=True):
        keep = w > 1e-9
        sol.blocks.append(_mix([c for c, k in zip(cj, keep, strict=True) if k], w[keep] / w[keep].sum()))
    return sol, price


def monolithic_with_event(p: FleetProblem, options: DispatchOptions, event: FleetEvent) -> float:
    """Objective of one LP over the whole fleet with the event row (for tests and the benchmark)."""
    lp = build(p, options)
    nt, t = lp.n * lp.t, lp.t
    win = np.arange(event.start_slot, event.end_slot)
    cap = np.broadcast_to(np.asarray(event.max_export_w, dtype=float), win.shape)
    nv = lp.var_lb.size
    rows, cols, vals = [], [], []
    for name, sgn in (("imp", 1.0), ("exp", -1.0), ("oi", 1.0), ("oe", -1.0)):
        g = ("c", "d", "e", "imp", "exp", "cur", "ev", "oi", "oe").index(name)
        idx = g * nt + np.arange(nt).reshape(lp.n, t)[:, win]
        rows.append(np.broadcast_to(np.arange(win.size), idx.shape).ravel())
        cols.append(idx.ravel())
        vals.append(np.full(idx.size, sgn))
    rows.append(np.arange(win.size))
    cols.append(nv + np.arange(win.size))
    vals.append(np.ones(win.size))
    extra = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(win.size, nv + win.size))
    a = sp.vstack([sp.hstack([lp.matrix, sp.csr_matrix((lp.matrix.shape[0], win.size))]), extra]).tocsr()
    lp2 = replace(
        lp,
        var_lb=np.concatenate([lp.var_lb, np.zeros(win.size)]),
        var_ub=np.concatenate([lp.var_ub, np.full(win.size, np.inf)]),
        cost=np.concatenate([lp.cost, np.full(win.size, options.penalty_per_kwh * p.slot_h / 1000.0)]),
        row_lb=np.concatenate([lp.row_lb, -cap]),
        row_ub=np.concatenate([lp.row_ub, np.full(win.size, np.inf)]),
        matrix=a,
    )
    return _solve_lp(lp2, options.time_limit_s)[1]
