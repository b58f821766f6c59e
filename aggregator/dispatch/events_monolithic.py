"""The reference for fleet-event coordination: one LP over the whole fleet with the event rows.

Tests and ``benchmarks/dispatch.py`` measure the coordinated plan's cost against it
(docs/fleet-events.md, "Measured"); it grows too fast with the fleet to plan with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from aggregator.dispatch.block_solve import solve_lp_glop
from aggregator.dispatch.events import FleetEvent, cap_from_baseline, fleet_grid_w
from aggregator.dispatch.lp_build import GROUPS, build
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.solve import solve_fleet


def monolithic_with_events(p: FleetProblem, options: DispatchOptions, events: Sequence[FleetEvent]) -> float:
    """Objective of one LP over the whole fleet with the event rows (for tests and the benchmark).

    ``reduce_w`` events are measured from the event-free block solve, as in ``solve_with_events``.
    """
    lp = build(p, options)
    evs = [c for c in (e.clipped(p.t) for e in events) if c is not None]
    if any(e.max_w is None for e in evs):
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
        for name, sgn in (("imp", 1.0), ("exp", -1.0), ("xb", -1.0), ("oi", 1.0), ("oe", -1.0)):
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
    return solve_lp_glop(lp2, options.time_limit_s)[1]
