"""The restricted master LP of fleet-event coordination and what it works on (docs/fleet-events.md).

A *column* is one block schedule (a ``BlockSolution``); the master mixes, per block, all its
columns so far so that every event row holds at least cost.  Event rows are kept as arrays
(``EventRows``), one row per event and window slot.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import scipy.sparse as sp
from ortools.linear_solver.python import model_builder as mb
from ortools.linear_solver.python import model_builder_helper as mbh

from aggregator.dispatch.block_solve import BlockSolution, InfeasibleError

ROW_SCALE = 1e-3  # event rows in kW: keeps the master's coefficients near the costs' scale
UNUSED_WEIGHT = 1e-9  # a column's master weight at or below this: the column is not in the mix


def grid_w(b: BlockSolution) -> np.ndarray:
    """(N, T) net grid power of each house of ``b`` in W (import > 0), relaxations included."""
    return b.import_w - b.export_w + b.over_import_w - b.over_export_w


def block_grid_w(b: BlockSolution) -> np.ndarray:
    """(T,) net grid power of the whole block in W (import > 0)."""
    return grid_w(b).sum(axis=0)


@dataclass(frozen=True)
class EventRows:
    """One row per event and window slot: ``sign * fleet grid power[slot] <= cap_w``."""

    slot: np.ndarray  # (R,) int, horizon slot of the row
    sign: np.ndarray  # (R,) +1 for import caps, -1 for export caps
    cap_w: np.ndarray  # (R,) the cap, a magnitude in W

    def __len__(self) -> int:
        return int(self.slot.size)

    def price_per_kwh(self, duals: np.ndarray, t: int, kwh_per_w_slot: float) -> np.ndarray:
        """(T,) extra price on grid power (import > 0), currency per kWh, for row duals
        ``duals`` (currency per W-slot): export dearer under an export cap, import under an import cap."""
        price = np.zeros(t)
        np.add.at(price, self.slot, self.sign * duals / kwh_per_w_slot)
        return price

    def priced_value(self, duals: np.ndarray, column: BlockSolution) -> float:
        """The event rows' duals times the column's use of them (its reduced cost's price term)."""
        return float(np.dot(duals, self.sign * block_grid_w(column)[self.slot]))


@dataclass(frozen=True)
class MasterSolution:
    """Optimum of the restricted master LP."""

    cost: float  # the mix's cost incl. the penalised slack (currency)
    weights: list[np.ndarray]  # per block, the weight of each of its columns (they sum to 1)
    convexity_duals: np.ndarray  # (B,) dual of each block's "weights sum to 1" row (currency)
    event_duals: np.ndarray  # (R,) dual of each event row, >= 0, currency per W-slot
    slack_w: np.ndarray  # (R,) how far the mix exceeds each cap (penalised), W

    @property
    def uses_slack(self) -> bool:
        return bool((self.slack_w > 1e-6).any())

    def reduced_cost(self, block: int, column: BlockSolution, rows: EventRows) -> float:
        """The column's cost at the master's duals minus its block's convexity dual: negative
        means the column would lower the master's cost."""
        return column.objective + rows.priced_value(self.event_duals, column) - self.convexity_duals[block]


def solve_master(columns: list[list[BlockSolution]], rows: EventRows, penalty_per_w_slot: float) -> MasterSolution:
    """min sum c w + penalty s; per block sum_k w_k = 1; per event row
    sign * sum g w - s <= cap.  ``columns``: per block, its columns."""
    costs = [[c.objective for c in block] for block in columns]
    grids = [block_grid_w(c) for block in columns for c in block]
    nb, nr = len(costs), len(rows)
    nc = [len(c) for c in costs]
    ncol = sum(nc)
    nvar = ncol + nr
    cost = np.concatenate(
        [np.concatenate([np.asarray(c, dtype=float) for c in costs]), np.full(nr, penalty_per_w_slot / ROW_SCALE)]
    )
    conv = sp.csr_matrix((np.ones(ncol), (np.repeat(np.arange(nb), nc), np.arange(ncol))), shape=(nb, nvar))
    g = np.stack(grids)  # (columns, T)
    ev = sp.hstack([sp.csr_matrix((g[:, rows.slot] * rows.sign).T * ROW_SCALE), -sp.identity(nr)]).tocsr()
    a = sp.vstack([conv, ev]).tocsr()
    lo = np.concatenate([np.ones(nb), np.full(nr, -np.inf)])
    hi = np.concatenate([np.ones(nb), rows.cap_w * ROW_SCALE])
    m = mb.Model()
    m.helper.fill_model_from_sparse_data(np.zeros(nvar), np.full(nvar, np.inf), cost, lo, hi, a)  # type: ignore[arg-type]  # stub dtype
    s = mbh.ModelSolverHelper("glop")
    s.solve(m.helper)
    if s.status() != mbh.SolveStatus.OPTIMAL:
        raise InfeasibleError(f"event master {s.status().name}")
    x, y = np.asarray(s.variable_values()), np.asarray(s.dual_values())
    # GLOP: reduced cost = c - A^T y, so a binding "<= cap" row has y <= 0; its dual is -y >= 0
    return MasterSolution(
        cost=float(s.objective_value()),
        weights=list(np.split(np.maximum(x[:ncol], 0.0), np.cumsum(nc)[:-1])),
        convexity_duals=y[:nb].copy(),
        event_duals=np.maximum(-y[nb:], 0.0) * ROW_SCALE,
        slack_w=np.maximum(x[ncol:], 0.0) / ROW_SCALE,
    )


def prune_columns(columns: list[BlockSolution], block: int, master: MasterSolution, rows: EventRows,
                  keep: int) -> list[BlockSolution]:
    """At most ``keep`` of a block's columns: unused ones (weight 0 in ``master``) dropped,
    highest reduced cost first; the baseline (column 0) and every used column stay."""
    if len(columns) <= keep:
        return columns
    w = master.weights[block]
    rc = [master.reduced_cost(block, c, rows) for c in columns]
    unused = (i for i in range(1, len(columns)) if w[i] <= UNUSED_WEIGHT)
    drop = set(sorted(unused, key=lambda i: -rc[i])[: len(columns) - keep])
    return [c for i, c in enumerate(columns) if i not in drop]


def mix_columns(columns: list[BlockSolution], weights: np.ndarray) -> BlockSolution:
    """The master's mix of a block's columns (feasible: the block's feasible set is convex).
    Charge and discharge in one slot are netted: a plan never does both."""
    keep = weights > UNUSED_WEIGHT
    cols = [c for c, k in zip(columns, keep, strict=True) if k]
    w = weights[keep] / weights[keep].sum()
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
