"""Vectorised LP for one block of houses (or the whole fleet): numpy -> CSR arrays.

Variables (each group is N x T, house-major, index ``g*N*T + h*T + t``), powers in W:
  charge c >= 0, discharge d >= 0 (magnitudes; battery power = c - d, charging > 0),
  stored energy e (Wh, end of slot), grid import imp >= 0, grid export in two parts:
  exp in [0, forecast PV surplus] and xb >= 0 beyond it (battery energy sold), within
  the export cap together (grid power = imp - exp - xb, import > 0), PV curtailment cur in [0, -pv] (W of
  production withheld), EV charging ev >= 0, over-cap import/export
  oi, oe >= 0 (relaxations of the per-house caps, penalised), and the night reserve
  rsv in [0, (margin - 1) x load] where forecast PV does not cover the load: load the
  forecast may have missed, served only from the battery (it drains the SoC and is
  worth the import price it would save, but is no grid flow and never executed), so
  a plan keeps energy for a night heavier than forecast instead of selling it.
Per feeder/transformer and slot: slack over the import limit and over the export
limit (penalised), and per feeder and slot the fairness level z (largest
curtailment share of PV size among the feeder's houses).

Rows: house balance (=), SoC dynamics (=), mode row c/Pc + d/Pd <= 1, EV energy
by deadline (>=), feeder and transformer net exchange (ranged), fairness
cur - rated * z <= 0.  Objective in currency.

A problem with several futures (``FleetProblem.scenario_load_w``; see
``aggregator.dispatch.futures``) is built as every house, feeder and transformer once
per future (``FleetProblem.expanded``: N x K houses, future-major), plus rows that tie
each future's charge and discharge to the first's in the non-anticipative slots.  With
equal weights the objective is K x the mean cost over the futures; the night reserve is
off (the heavier futures are the hedge).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from aggregator.dispatch.problem import DispatchOptions, FleetProblem

GROUPS = ("c", "d", "e", "imp", "exp", "cur", "ev", "oi", "oe", "rsv", "xb")


@dataclass(frozen=True)
class BlockLP:
    """LP in the one-call form model_builder takes: bounds, costs, row bounds, CSR matrix."""

    var_lb: np.ndarray
    var_ub: np.ndarray
    cost: np.ndarray
    row_lb: np.ndarray
    row_ub: np.ndarray
    matrix: sp.csr_matrix
    n: int
    t: int
    n_feeders: int
    n_transformers: int
    # Where the fairness rows are (they come last): the first one's row index, and per row
    # the (house, slot) it belongs to as house * t + slot.  Which rows exist depends on the
    # forecasts, so a warm start maps the previous basis onto them (highs_block).
    fair_row0: int = -1
    fair_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    start_s: float = 0.0  # first slot start, POSIX seconds (a warm start shifts the basis by whole slots)
    slot_s: int = 0
    # Futures of a scenario LP (FleetProblem.scenario_load_w): ``n`` and ``n_feeders``/``n_transformers``
    # count every house/feeder once per future, future-major; the plans follow the first future.
    scenarios: int = 1
    # Per house (of the first future): feeder index, battery capacity, EV power, PV size and
    # SoC; a new block's houses take a sibling block's basis from its most alike houses (highs_block)
    house_keys: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))

    def first_future(self, a: np.ndarray) -> np.ndarray:
        """The first future's part of a per-house (or per-feeder) array of this LP: its first 1/K rows."""
        return a[: a.shape[0] // self.scenarios]

    def group(self, x: np.ndarray, name: str) -> np.ndarray:
        """Slice group ``name`` of a solution vector as (N, T)."""
        g = GROUPS.index(name)
        nt = self.n * self.t
        return x[g * nt : (g + 1) * nt].reshape(self.n, self.t)

    @property
    def slack_offset(self) -> int:
        return len(GROUPS) * self.n * self.t

    def feeder_slacks(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(over import limit, over export limit), each (F, T) in W."""
        o, ft = self.slack_offset, self.n_feeders * self.t
        return x[o : o + ft].reshape(-1, self.t), x[o + ft : o + 2 * ft].reshape(-1, self.t)

    def transformer_slacks(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        o = self.slack_offset + 2 * self.n_feeders * self.t
        xt = self.n_transformers * self.t
        return x[o : o + xt].reshape(-1, self.t), x[o + xt : o + 2 * xt].reshape(-1, self.t)

    def fairness_level(self, x: np.ndarray) -> np.ndarray:
        o = self.slack_offset + 2 * (self.n_feeders + self.n_transformers) * self.t
        return x[o : o + self.n_feeders * self.t].reshape(-1, self.t)


@dataclass(frozen=True)
class _Layout:
    """Where each variable is: ``len(GROUPS)`` (N, T) groups, then per feeder and per
    transformer import and export slacks (T each), then the feeders' fairness levels."""

    n: int
    t: int
    nf: int
    nx: int

    @property
    def nt(self) -> int:
        return self.n * self.t

    def v(self, name: str) -> np.ndarray:
        """(N, T) variable indices of a group."""
        return GROUPS.index(name) * self.nt + np.arange(self.nt).reshape(self.n, self.t)

    @property
    def feeder_slacks(self) -> int:
        return len(GROUPS) * self.nt

    @property
    def transformer_slacks(self) -> int:
        return self.feeder_slacks + 2 * self.nf * self.t

    @property
    def fairness(self) -> int:
        return self.transformer_slacks + 2 * self.nx * self.t

    @property
    def n_var(self) -> int:
        return self.fairness + self.nf * self.t


@dataclass(frozen=True)
class _Houses:
    """The per-house numbers the bounds and rows share, as (N, 1) columns or (N, T)."""

    cap: np.ndarray  # battery capacity, Wh
    e0: np.ndarray  # stored energy at the start, Wh
    eta_c: np.ndarray
    eta_d: np.ndarray
    pc: np.ndarray  # largest charge power, W
    pd: np.ndarray  # largest discharge power, W
    pv_mag: np.ndarray  # (N, T) PV production as a magnitude, W
    ev_ub: np.ndarray  # (N, T) largest EV charging power, 0 after its deadline, W


def _houses(p: FleetProblem) -> _Houses:
    n, t = p.n, p.t
    if p.ev_max_w.size:
        ev_ub = np.where(np.arange(t)[None, :] < p.ev_deadline_slot[:, None], p.ev_max_w[:, None], 0.0)
        ev_ub = ev_ub * np.ones((n, t))
    else:
        ev_ub = np.zeros((n, t))
    return _Houses(
        cap=p.capacity_wh[:, None], e0=(p.soc_pct * p.capacity_wh)[:, None] / 100,
        eta_c=p.charge_efficiency[:, None], eta_d=p.discharge_efficiency[:, None],
        pc=p.max_charge_w[:, None], pd=p.max_discharge_w[:, None], pv_mag=-p.pv_power_w, ev_ub=ev_ub,
    )


class _Rows:
    """The constraint matrix as COO pieces and the row bounds, appended block of rows by block."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.lower: list[np.ndarray] = []
        self.upper: list[np.ndarray] = []
        self.count = 0  # rows so far: the first row of the next block

    def add(self, r: np.ndarray, c: np.ndarray, val: np.ndarray | float) -> None:
        self.rows.append(r.ravel())
        self.cols.append(c.ravel())
        self.vals.append(np.broadcast_to(val, r.shape).ravel().astype(float))

    def close(self, lower: np.ndarray, upper: np.ndarray) -> None:
        """The block of rows just added ends: its bounds."""
        self.lower.append(lower)
        self.upper.append(upper)
        self.count += lower.size

    def matrix(self, n_var: int) -> sp.csr_matrix:
        rr, cc, vv = np.concatenate(self.rows), np.concatenate(self.cols), np.concatenate(self.vals)
        return sp.csr_matrix((vv, (rr, cc)), shape=(self.count, n_var))


def build(p: FleetProblem, o: DispatchOptions, grid_price_per_kwh: np.ndarray | None = None) -> BlockLP:
    """Build the LP of ``p`` with numpy only (no Python loop over variables).

    ``grid_price_per_kwh`` (T,): an extra price on grid power (import > 0), used
    by fleet-event coordination (a negative value makes export dearer).
    """
    futures = p.scenarios
    tied = min(max(p.nonanticipative_slots, 0), p.t)
    n0 = p.n
    keys = np.column_stack([p.feeder_of, p.capacity_wh, p.ev_max_w if p.ev_max_w.size else np.zeros(n0),
                            p.pv_rated_w, p.soc_pct]).astype(float)
    p = p.expanded()  # a scenario LP: every house once per future (no-op without scenarios)
    lay = _Layout(p.n, p.t, len(p.feeder_ids), len(p.transformer_ids))
    h = _houses(p)
    lb, ub = _bounds(p, o, lay, h, futures)
    cost = _costs(p, o, lay, grid_price_per_kwh)
    rows = _Rows()
    _balance_rows(rows, p, lay)
    _soc_rows(rows, p, lay, h)
    # (No c/Pc + d/Pd <= 1 row: it does not stop simultaneous charge/discharge at
    # partial power and cost 30 % of solve time; block_solve.solve_block fixes modes instead.)
    _ev_rows(rows, p, lay, h)
    _exchange_rows(rows, lay, p.feeder_of, lay.nf, lay.feeder_slacks,
                   p.feeder_export_limit_w, p.feeder_import_limit_w)
    _exchange_rows(rows, lay, p.transformer_of[p.feeder_of], lay.nx, lay.transformer_slacks,
                   p.transformer_export_limit_w, p.transformer_import_limit_w)
    _tie_rows(rows, lay, n0, futures, tied)
    fair_row0 = rows.count
    fair_keys = _fairness_rows(rows, p, lay, h)
    return BlockLP(lb, ub, cost, np.concatenate(rows.lower), np.concatenate(rows.upper), rows.matrix(lay.n_var),
                   lay.n, lay.t, lay.nf, lay.nx, fair_row0=fair_row0, fair_keys=fair_keys,
                   start_s=p.start.timestamp(), slot_s=p.slot_s, scenarios=futures, house_keys=keys)


def _bounds(p: FleetProblem, o: DispatchOptions, lay: _Layout, h: _Houses,
            futures: int) -> tuple[np.ndarray, np.ndarray]:
    """Variable bounds (lower, upper)."""
    n, t, dt, v = lay.n, lay.t, p.slot_h, lay.v
    steps = np.arange(1, t + 1)[None, :]
    # SoC bounds: reserve..max.  A battery that starts below its reserve (the edge stops
    # discharging at the reserve, but a slot may end below it) may stay there: the reserve is a
    # floor for discharging, not a level to buy back to (forced up at full power, it bought energy
    # at any price, e.g. at a winter evening's peak, only to hold it).
    e_lo = np.broadcast_to(np.minimum(np.maximum(p.reserve_soc_pct, p.soc_min_pct)[:, None] * h.cap / 100, h.e0),
                           (n, t))
    e_hi = np.maximum(p.soc_max_pct[:, None] * h.cap / 100, h.e0 - h.pd * dt * steps / h.eta_d)
    inf = np.inf
    lb = np.zeros(lay.n_var)
    ub = np.full(lay.n_var, inf)
    for name, hi in (("c", h.pc), ("d", h.pd), ("imp", p.max_import_w), ("exp", p.max_export_w), ("cur", h.pv_mag),
                     ("ev", h.ev_ub)):
        ub[v(name).ravel()] = np.broadcast_to(hi, (n, t)).ravel()
    # Over-cap slacks only where a cap may be unmeetable, so presolve drops the rest:
    # import beyond the cap can be needed when load (+EV) exceeds it; export beyond
    # the cap only when the battery starts above its maximum and must discharge.
    ub[v("oi").ravel()] = np.where(p.load_w + h.ev_ub + h.pc > p.max_import_w, inf, 0.0).ravel()
    ub[v("oe").ravel()] = np.broadcast_to(
        np.where(h.e0 > p.soc_max_pct[:, None] * h.cap / 100 + 1e-6, inf, 0.0), (n, t)).ravel()
    # the night reserve (DispatchOptions.night_load_margin): only batteries can hold it
    # (not in a scenario LP: its heavier futures are the hedge, and weigh it better)
    night = (p.load_w > h.pv_mag) & (h.cap > 0)
    margin = 1.0 if futures > 1 else o.night_load_margin
    ub[v("rsv").ravel()] = np.where(night, max(margin - 1.0, 0.0) * p.load_w, 0.0).ravel()
    # export split: up to the forecast PV surplus (exp), and the rest (xb: battery energy sold),
    # together within the house's export cap
    surplus = np.maximum(h.pv_mag - p.load_w, 0.0)
    ub[v("exp").ravel()] = np.minimum(p.max_export_w, surplus).ravel()
    ub[v("xb").ravel()] = np.maximum(p.max_export_w - surplus, 0.0).ravel()
    lb[v("e").ravel()] = e_lo.ravel()
    ub[v("e").ravel()] = e_hi.ravel()
    ub[lay.fairness : lay.n_var] = 1.0  # shares are fractions of rated PV
    return lb, ub


def _costs(p: FleetProblem, o: DispatchOptions, lay: _Layout, grid_price_per_kwh: np.ndarray | None) -> np.ndarray:
    """The objective's coefficients, currency per variable unit."""
    n, t, v = lay.n, lay.t, lay.v
    kwh = p.slot_h / 1000.0  # W over one slot -> kWh
    cost = np.zeros(lay.n_var)
    cost[v("imp").ravel()] = np.broadcast_to(p.import_price_per_kwh * kwh, (n, t)).ravel()
    cost[v("exp").ravel()] = np.broadcast_to(-p.export_price_per_kwh * kwh, (n, t)).ravel()
    if grid_price_per_kwh is not None:
        cost[v("imp").ravel()] += np.broadcast_to(grid_price_per_kwh * kwh, (n, t)).ravel()
        cost[v("exp").ravel()] -= np.broadcast_to(grid_price_per_kwh * kwh, (n, t)).ravel()
    cost[v("c").ravel()] = o.throughput_cost_per_kwh * kwh
    cost[v("d").ravel()] = o.throughput_cost_per_kwh * kwh
    cost[v("cur").ravel()] = o.curtail_cost_per_kwh * kwh
    # Battery energy sold (xb) is not sold early for the holding cost's sake: the holding cost
    # rewards a discharge the earlier it comes, right for serving the house's load (used now is
    # used for sure) but not for a sale at a price no higher later: a sale can wait until the
    # night has shown what it needed, while a kWh sold that the night then wanted is bought back
    # at the import price.  The futures cannot see that (each reveals itself whole after the
    # first re-plan).  So a sale pays that reward back (h x hours left / eta_d per kWh), and at
    # most one hour's holding cost more the earlier it comes (h x hours left / horizon): among
    # equal prices, the latest sale.  Not more: a sale that makes room for tomorrow's PV must
    # still be made while the feeder can take it.
    left_h = (t - np.arange(t)) * p.slot_h  # hours from the slot to the horizon's end
    sell_late = o.holding_cost_per_kwh_h * (left_h[None, :] / p.discharge_efficiency[:, None]
                                            + left_h[None, :] / (t * p.slot_h)) * kwh
    cost[v("xb").ravel()] = (cost[v("exp")] + sell_late).ravel()
    cost[v("rsv").ravel()] = np.broadcast_to(-p.import_price_per_kwh * kwh, (n, t)).ravel()
    # over-cap import/export also trades at the price, plus the penalty
    cost[v("oi").ravel()] = cost[v("imp").ravel()] + o.penalty_per_kwh * kwh
    cost[v("oe").ravel()] = cost[v("exp").ravel()] + o.penalty_per_kwh * kwh
    if o.holding_cost_per_kwh_h > 0:  # stored energy costs a little per hour: charge late, discharge early
        cost[v("e").ravel()] += o.holding_cost_per_kwh_h * p.slot_h / 1000.0
    cost[v("e")[:, -1]] += -p.terminal_value_per_kwh / 1000.0
    cost[lay.feeder_slacks : lay.fairness] = o.penalty_per_kwh * kwh
    cost[lay.fairness : lay.n_var] = o.fairness_weight
    return cost


def _balance_rows(rows: _Rows, p: FleetProblem, lay: _Layout) -> None:
    """1. balance: imp - exp - xb + oi - oe - c + d - cur - ev = load + pv"""
    r = rows.count + np.arange(lay.nt).reshape(lay.n, lay.t)
    for name, s in (("imp", 1), ("exp", -1), ("xb", -1), ("oi", 1), ("oe", -1), ("c", -1), ("d", 1), ("cur", -1),
                    ("ev", -1)):
        rows.add(r, lay.v(name), s)
    rhs = (p.load_w + p.pv_power_w).ravel()
    rows.close(rhs, rhs)


def _soc_rows(rows: _Rows, p: FleetProblem, lay: _Layout, h: _Houses) -> None:
    """2. SoC: e_t - e_{t-1} - eta_c dt c_t + dt/eta_d d_t = (e0 at t=0, else 0)"""
    n, t, dt, v = lay.n, lay.t, p.slot_h, lay.v
    r = rows.count + np.arange(lay.nt).reshape(n, t)
    rows.add(r, v("e"), 1.0)
    rows.add(r[:, 1:], v("e")[:, :-1], -1.0)
    rows.add(r, v("c"), np.broadcast_to(-h.eta_c * dt, (n, t)))
    rows.add(r, v("d"), np.broadcast_to(dt / h.eta_d, (n, t)))
    rows.add(r, v("rsv"), np.broadcast_to(dt / h.eta_d, (n, t)))
    rhs = np.zeros((n, t))
    rhs[:, 0] = h.e0[:, 0]
    rows.close(rhs.ravel(), rhs.ravel())


def _ev_rows(rows: _Rows, p: FleetProblem, lay: _Layout, h: _Houses) -> None:
    """4. EV energy by its deadline: sum_t ev_t dt >= need"""
    if not p.ev_max_w.size:
        return
    n, t, dt = lay.n, lay.t, p.slot_h
    rows.add(rows.count + np.repeat(np.arange(n)[:, None], t, axis=1), lay.v("ev"), dt)
    need = np.minimum(p.ev_need_wh, h.ev_ub.sum(axis=1) * dt)  # never ask for more than fits
    rows.close(need, np.full(n, np.inf))


def _exchange_rows(rows: _Rows, lay: _Layout, group_of_house: np.ndarray, groups: int, slack0: int,
                   export_limit_w: np.ndarray, import_limit_w: np.ndarray) -> None:
    """5./6. feeder (transformer) net exchange:
    -Lexp <= sum_h (imp - exp - xb + oi - oe) - s_imp + s_exp <= Limp"""
    t, r0 = lay.t, rows.count
    gr = r0 + group_of_house[:, None] * t + np.arange(t)[None, :]
    for name, s in (("imp", 1), ("exp", -1), ("xb", -1), ("oi", 1), ("oe", -1)):
        rows.add(gr, lay.v(name), s)
    gidx = np.arange(groups * t)
    rows.add(r0 + gidx, slack0 + gidx, -1.0)
    rows.add(r0 + gidx, slack0 + groups * t + gidx, 1.0)
    rows.close(-export_limit_w.ravel(), import_limit_w.ravel())


def _tie_rows(rows: _Rows, lay: _Layout, n0: int, futures: int, tied: int) -> None:
    """6b. a scenario LP: what the batteries do in the first ``tied`` slots is one decision for
    every future (non-anticipativity: it is done before the next re-plan shows which future
    it is); later slots are free per future.  One row per (house, slot) so that the rows
    keep the per-slot layout a warm start shifts (free rows cost presolve nothing)."""
    t, v = lay.t, lay.v
    for j in range(1, futures):
        for name in ("c", "d"):
            tie = rows.count + np.arange(n0 * t).reshape(n0, t)
            rows.add(tie, v(name)[j * n0 : (j + 1) * n0], 1.0)
            rows.add(tie, v(name)[:n0], -1.0)
            free = np.broadcast_to(np.arange(t)[None, :] >= tied, (n0, t)).ravel()
            rows.close(np.where(free, -np.inf, 0.0), np.where(free, np.inf, 0.0))


def _fairness_rows(rows: _Rows, p: FleetProblem, lay: _Layout, h: _Houses) -> np.ndarray:
    """7. fairness: cur_h,t <= rated_h * z_f,t, so minimising z shares curtailment in
    proportion to PV size (water-filling) instead of leaving the split to the solver.
    Only where it can matter: PV is producing and the feeder has an export limit
    (the rows elsewhere would only slow the simplex down).  Returns each row's
    (house, slot) as house * T + slot."""
    t = lay.t
    # A feeder's export limit can bind only if its houses could together export
    # more than it (each at most min(cap, PV - load + full discharge)).
    most_export = np.minimum(p.max_export_w, np.maximum(h.pv_mag - p.load_w + h.pd, 0.0))
    f_most = np.zeros((lay.nf, t))
    np.add.at(f_most, p.feeder_of, most_export)
    lim_f = (f_most > p.feeder_export_limit_w)[p.feeder_of]  # (N, T)
    hh, tt = np.nonzero((h.pv_mag > 0) & lim_f & (p.pv_rated_w[:, None] > 0))
    if hh.size:
        k = rows.count + np.arange(hh.size)
        rows.add(k, lay.v("cur")[hh, tt], 1.0)
        rows.add(k, lay.fairness + p.feeder_of[hh] * t + tt, -p.pv_rated_w[hh])
        rows.close(np.full(hh.size, -np.inf), np.zeros(hh.size))
    return (hh * t + tt).astype(np.int64)
