"""Vectorised LP for one block of houses (or the whole fleet): numpy -> CSR arrays.

Variables (each group is N x T, house-major, index ``g*N*T + h*T + t``), powers in W:
  charge c >= 0, discharge d >= 0 (magnitudes; battery power = c - d, charging > 0),
  stored energy e (Wh, end of slot), grid import imp >= 0, grid export exp >= 0
  (grid power = imp - exp, import > 0), PV curtailment cur in [0, -pv] (W of
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

GROUPS = ("c", "d", "e", "imp", "exp", "cur", "ev", "oi", "oe", "rsv")


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


def _coo(rows: list[np.ndarray], cols: list[np.ndarray], vals: list[np.ndarray]):
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def build(p: FleetProblem, o: DispatchOptions, grid_price_per_kwh: np.ndarray | None = None) -> BlockLP:
    """Build the LP of ``p`` with numpy only (no Python loop over variables).

    ``grid_price_per_kwh`` (T,): an extra price on grid power (import > 0), used
    by fleet-event coordination (a negative value makes export dearer).
    """
    futures = p.scenarios
    tied = min(max(p.nonanticipative_slots, 0), p.t)
    n0 = p.n
    p = p.expanded()  # a scenario LP: every house once per future (no-op without scenarios)
    n, t, dt = p.n, p.t, p.slot_h
    nt = n * t
    nf, nx = len(p.feeder_ids), len(p.transformer_ids)
    ng = len(GROUPS)
    n_var = ng * nt + 2 * nf * t + 2 * nx * t + nf * t
    idx = np.arange(nt).reshape(n, t)

    def v(name: str) -> np.ndarray:  # (N, T) variable indices of a group
        return GROUPS.index(name) * nt + idx

    cap = p.capacity_wh[:, None]
    e0 = (p.soc_pct * p.capacity_wh)[:, None] / 100
    eta_c, eta_d = p.charge_efficiency[:, None], p.discharge_efficiency[:, None]
    pc, pd = p.max_charge_w[:, None], p.max_discharge_w[:, None]
    steps = np.arange(1, t + 1)[None, :]
    # SoC bounds: reserve..max, widened where the battery cannot get there from e0
    # in time (a start below reserve must not make the LP infeasible).
    e_lo = np.minimum(np.maximum(p.reserve_soc_pct, p.soc_min_pct)[:, None] * cap / 100, e0 + eta_c * pc * dt * steps)
    e_hi = np.maximum(p.soc_max_pct[:, None] * cap / 100, e0 - pd * dt * steps / eta_d)
    pv_mag = -p.pv_power_w
    if p.ev_max_w.size:
        ev_ub = np.where(np.arange(t)[None, :] < p.ev_deadline_slot[:, None], p.ev_max_w[:, None], 0.0)
        ev_ub = ev_ub * np.ones((n, t))
    else:
        ev_ub = np.zeros((n, t))
    inf = np.inf
    lb = np.zeros(n_var)
    ub = np.full(n_var, inf)
    for name, hi in (("c", pc), ("d", pd), ("imp", p.max_import_w), ("exp", p.max_export_w), ("cur", pv_mag), ("ev", ev_ub)):
        ub[v(name).ravel()] = np.broadcast_to(hi, (n, t)).ravel()
    # Over-cap slacks only where a cap may be unmeetable, so presolve drops the rest:
    # import beyond the cap can be needed when load (+EV) exceeds it; export beyond
    # the cap only when the battery starts above its maximum and must discharge.
    ub[v("oi").ravel()] = np.where(p.load_w + ev_ub + pc > p.max_import_w, inf, 0.0).ravel()
    ub[v("oe").ravel()] = np.broadcast_to(np.where(e0 > p.soc_max_pct[:, None] * cap / 100 + 1e-6, inf, 0.0), (n, t)).ravel()
    # the night reserve (DispatchOptions.night_load_margin): only batteries can hold it
    # (not in a scenario LP: its heavier futures are the hedge, and weigh it better)
    night = (p.load_w > pv_mag) & (cap > 0)
    margin = 1.0 if futures > 1 else o.night_load_margin
    ub[v("rsv").ravel()] = np.where(night, max(margin - 1.0, 0.0) * p.load_w, 0.0).ravel()
    lb[v("e").ravel()] = e_lo.ravel()
    ub[v("e").ravel()] = e_hi.ravel()
    fz = ng * nt + 2 * (nf + nx) * t  # first fairness variable
    ub[fz : fz + nf * t] = 1.0  # shares are fractions of rated PV

    kwh = dt / 1000.0  # W over one slot -> kWh
    cost = np.zeros(n_var)
    cost[v("imp").ravel()] = np.broadcast_to(p.import_price_per_kwh * kwh, (n, t)).ravel()
    cost[v("exp").ravel()] = np.broadcast_to(-p.export_price_per_kwh * kwh, (n, t)).ravel()
    if grid_price_per_kwh is not None:
        cost[v("imp").ravel()] += np.broadcast_to(grid_price_per_kwh * kwh, (n, t)).ravel()
        cost[v("exp").ravel()] -= np.broadcast_to(grid_price_per_kwh * kwh, (n, t)).ravel()
    cost[v("c").ravel()] = o.throughput_cost_per_kwh * kwh
    cost[v("d").ravel()] = o.throughput_cost_per_kwh * kwh
    cost[v("cur").ravel()] = o.curtail_cost_per_kwh * kwh
    cost[v("rsv").ravel()] = np.broadcast_to(-p.import_price_per_kwh * kwh, (n, t)).ravel()
    # over-cap import/export also trades at the price, plus the penalty
    cost[v("oi").ravel()] = cost[v("imp").ravel()] + o.penalty_per_kwh * kwh
    cost[v("oe").ravel()] = cost[v("exp").ravel()] + o.penalty_per_kwh * kwh
    if o.holding_cost_per_kwh_h > 0:  # stored energy costs a little per hour: charge late, discharge early
        cost[v("e").ravel()] += o.holding_cost_per_kwh_h * p.slot_h / 1000.0
    cost[v("e")[:, -1]] += -p.terminal_value_per_kwh / 1000.0
    cost[ng * nt : fz] = o.penalty_per_kwh * kwh
    cost[fz : fz + nf * t] = o.fairness_weight

    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    rlb: list[np.ndarray] = []
    rub: list[np.ndarray] = []
    r0 = 0

    def add(r: np.ndarray, c: np.ndarray, val) -> None:
        rows.append(r.ravel())
        cols.append(c.ravel())
        vals.append(np.broadcast_to(val, r.shape).ravel().astype(float))

    # 1. balance: imp - exp + oi - oe - c + d - cur - ev = load + pv
    r = r0 + idx
    for name, s in (("imp", 1), ("exp", -1), ("oi", 1), ("oe", -1), ("c", -1), ("d", 1), ("cur", -1), ("ev", -1)):
        add(r, v(name), s)
    rhs = (p.load_w + p.pv_power_w).ravel()
    rlb.append(rhs)
    rub.append(rhs)
    r0 += nt
    # 2. SoC: e_t - e_{t-1} - eta_c dt c_t + dt/eta_d d_t = (e0 at t=0, else 0)
    r = r0 + idx
    add(r, v("e"), 1.0)
    add(r[:, 1:], v("e")[:, :-1], -1.0)
    add(r, v("c"), np.broadcast_to(-eta_c * dt, (n, t)))
    add(r, v("d"), np.broadcast_to(dt / eta_d, (n, t)))
    add(r, v("rsv"), np.broadcast_to(dt / eta_d, (n, t)))
    rhs = np.zeros((n, t))
    rhs[:, 0] = e0[:, 0]
    rlb.append(rhs.ravel())
    rub.append(rhs.ravel())
    r0 += nt
    # (No c/Pc + d/Pd <= 1 row: it does not stop simultaneous charge/discharge at
    # partial power and cost 30 % of solve time; solve.solve_block fixes modes instead.)
    # 4. EV energy by its deadline: sum_t ev_t dt >= need
    if p.ev_max_w.size:
        add(r0 + np.repeat(np.arange(n)[:, None], t, axis=1), v("ev"), dt)
        need = np.minimum(p.ev_need_wh, ev_ub.sum(axis=1) * dt)  # never ask for more than fits
        rlb.append(need)
        rub.append(np.full(n, inf))
        r0 += n
    # 5. feeder net exchange: -Lexp <= sum_h (imp - exp + oi - oe) - s_imp + s_exp <= Limp
    fr = r0 + p.feeder_of[:, None] * t + np.arange(t)[None, :]
    for name, s in (("imp", 1), ("exp", -1), ("oi", 1), ("oe", -1)):
        add(fr, v(name), s)
    fidx = np.arange(nf * t)
    add(r0 + fidx, ng * nt + fidx, -1.0)
    add(r0 + fidx, ng * nt + nf * t + fidx, 1.0)
    rlb.append(-p.feeder_export_limit_w.ravel())
    rub.append(p.feeder_import_limit_w.ravel())
    r0 += nf * t
    # 6. transformer net exchange, same shape
    xo = ng * nt + 2 * nf * t
    xr = r0 + p.transformer_of[p.feeder_of][:, None] * t + np.arange(t)[None, :]
    for name, s in (("imp", 1), ("exp", -1), ("oi", 1), ("oe", -1)):
        add(xr, v(name), s)
    xidx = np.arange(nx * t)
    add(r0 + xidx, xo + xidx, -1.0)
    add(r0 + xidx, xo + nx * t + xidx, 1.0)
    rlb.append(-p.transformer_export_limit_w.ravel())
    rub.append(p.transformer_import_limit_w.ravel())
    r0 += nx * t
    # 6b. a scenario LP: what the batteries do in the first ``tied`` slots is one decision for
    # every future (non-anticipativity: it is done before the next re-plan shows which future
    # it is); later slots are free per future.  One row per (house, slot) so that the rows
    # keep the per-slot layout a warm start shifts (free rows cost presolve nothing).
    for j in range(1, futures):
        for name in ("c", "d"):
            tie = r0 + np.arange(n0 * t).reshape(n0, t)
            add(tie, v(name)[j * n0 : (j + 1) * n0], 1.0)
            add(tie, v(name)[:n0], -1.0)
            free = np.broadcast_to(np.arange(t)[None, :] >= tied, (n0, t)).ravel()
            rlb.append(np.where(free, -inf, 0.0))
            rub.append(np.where(free, inf, 0.0))
            r0 += n0 * t
    # 7. fairness: cur_h,t <= rated_h * z_f,t, so minimising z shares curtailment in
    # proportion to PV size (water-filling) instead of leaving the split to the solver.
    # Only where it can matter: PV is producing and the feeder has an export limit
    # (the rows elsewhere would only slow the simplex down).
    # A feeder's export limit can bind only if its houses could together export
    # more than it (each at most min(cap, PV - load + full discharge)).
    most_export = np.minimum(p.max_export_w, np.maximum(pv_mag - p.load_w + pd, 0.0))
    f_most = np.zeros((nf, t))
    np.add.at(f_most, p.feeder_of, most_export)
    lim_f = (f_most > p.feeder_export_limit_w)[p.feeder_of]  # (N, T)
    hh, tt = np.nonzero((pv_mag > 0) & lim_f & (p.pv_rated_w[:, None] > 0))
    fair_row0 = r0
    if hh.size:
        k = r0 + np.arange(hh.size)
        add(k, v("cur")[hh, tt], 1.0)
        add(k, fz + p.feeder_of[hh] * t + tt, -p.pv_rated_w[hh])
        rlb.append(np.full(hh.size, -inf))
        rub.append(np.zeros(hh.size))
        r0 += hh.size

    rr, cc, vv = _coo(rows, cols, vals)
    mat = sp.csr_matrix((vv, (rr, cc)), shape=(r0, n_var))
    return BlockLP(lb, ub, cost, np.concatenate(rlb), np.concatenate(rub), mat, n, t, nf, nx,
                   fair_row0=fair_row0, fair_keys=(hh * t + tt).astype(np.int64),
                   start_s=p.start.timestamp(), slot_s=p.slot_s, scenarios=futures)
