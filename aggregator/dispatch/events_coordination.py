"""Column generation over blocks for fleet events: the rounds, their stopping rule and the finish.

The method, its stabilisation and its measured behaviour are in docs/fleet-events.md; the
names here follow it (master, pricing round, Lagrangian bound, smoothing, box, finish).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from aggregator.dispatch.block_solve import BlockSolution
from aggregator.dispatch.events_master import (
    EventRows,
    MasterSolution,
    mix_columns,
    prune_columns,
    solve_master,
)
from aggregator.dispatch.events_pricing import (
    Pool,
    Tasks,
    allocated_problem,
    pricing_round,
    solve_each,
)
from aggregator.dispatch.highs_block import HighsBlock
from aggregator.dispatch.problem import DispatchOptions


@dataclass(frozen=True)
class Settings:
    """How long to coordinate and how (see ``solve_with_events``)."""

    max_rounds: int = 40
    gap_tol: float = 1e-3
    rc_tol: float = 1e-6
    smoothing: float = 0.85
    max_columns: int = 20
    polish: bool = True


@dataclass
class Timers:
    pricing_s: float = 0.0
    master_s: float = 0.0
    polish_s: float = 0.0


@dataclass
class Finish:
    """Per coordinated block its plan, and what the finish cost and found."""

    plans: list[BlockSolution]
    cost: float
    polished_blocks: int = 0
    build_s: float = 0.0  # of the finish's re-solves, summed over blocks
    solve_s: float = 0.0


@dataclass
class Coordination:
    """One coordinated solve.  ``blocks``: task indices of the blocks taking part, each
    starting with one column (its event-free schedule) in ``columns``."""

    tasks: Tasks
    blocks: list[int]
    columns: dict[int, list[BlockSolution]]  # per block, its schedules so far (0: the event-free one)
    rows: EventRows
    options: DispatchOptions
    pool: Pool
    settings: Settings
    slots: int  # of the horizon
    kwh_per_w_slot: float
    penalty_per_w_slot: float
    dual_box: float  # largest event dual priced while the master needs its slack: the energy price range
    master: MasterSolution | None = None
    # the best Lagrangian lower bound so far and the event duals that gave it; the event-free
    # solve is the pricing at duals 0, so its LP optimum is the first bound
    best_bound: float = 0.0
    best_bound_duals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # weight of the best bound's duals in the next round's prices (Wentges smoothing);
    # 0 after a mis-price: the next round prices at the master's own duals
    smoothing_weight: float = 0.0
    rounds: int = 0
    converged: bool = False
    history: list[tuple[float, float]] = field(default_factory=list)  # (master cost, best bound) per round
    timers: Timers = field(default_factory=Timers)
    models: dict[int, HighsBlock] = field(default_factory=dict)  # each block's HiGHS basis (no pool)

    def __post_init__(self) -> None:
        self.best_bound = float(sum(self.columns[j][0].lp_objective for j in self.blocks))
        self.best_bound_duals = np.zeros(len(self.rows))
        self.smoothing_weight = self.settings.smoothing
        self.converged = not len(self.rows) or not self.blocks

    def run(self, start_duals: np.ndarray) -> None:
        """Pricing rounds until the stopping rule; then the master of all columns.
        ``start_duals``: event duals for the first round (0: the master's)."""
        if self.converged:
            return
        while True:
            master = self._solve_master()
            if self._stops(master):
                self.history.append((master.cost, self.best_bound))
                break
            self._price_round(master, self._round_duals(master, start_duals))
            if self.converged:
                break
        if self.rounds > 0:
            self._solve_master()

    def _solve_master(self) -> MasterSolution:
        t0 = time.perf_counter()
        self.master = solve_master([self.columns[j] for j in self.blocks], self.rows, self.penalty_per_w_slot)
        self.timers.master_s += time.perf_counter() - t0
        return self.master

    def _stops(self, master: MasterSolution) -> bool:
        """Stop before pricing: the caps already hold, the gap is small enough, or no rounds are left."""
        if self.rounds == 0 and not master.uses_slack:
            # the event-free plan (optimal without the caps) already meets every cap
            self.best_bound, self.converged = master.cost, True
        elif master.cost - self.best_bound <= self.settings.gap_tol * max(1.0, abs(master.cost)):
            self.converged = True
        return self.converged or self.rounds >= self.settings.max_rounds

    def _round_duals(self, master: MasterSolution, start_duals: np.ndarray) -> np.ndarray:
        """The event duals this round prices the blocks at (smoothed, boxed), or the start."""
        if self.rounds == 0 and start_duals.any():
            return start_duals
        target = master.event_duals
        if self.smoothing_weight > 0.0 and master.uses_slack:
            # Box: while the master still needs its slack, the dual of those rows is the
            # penalty, a price that swings every block to the extreme.  Price at most at the
            # energy price range instead; a mis-price lifts the box (so infeasible caps converge).
            target = np.minimum(target, self.dual_box)
        beta = self.smoothing_weight
        return beta * self.best_bound_duals + (1.0 - beta) * target

    def _price_round(self, master: MasterSolution, duals: np.ndarray) -> None:
        """Every block re-solved at ``duals``: new columns, a Lagrangian bound, and whether any
        column improves the master at its own duals."""
        for k, j in enumerate(self.blocks):  # room for this round's column
            self.columns[j] = prune_columns(self.columns[j], k, master, self.rows, self.settings.max_columns - 1)
        price = self.rows.price_per_kwh(duals, self.slots, self.kwh_per_w_slot)
        t0 = time.perf_counter()
        bound = -float(np.dot(duals, self.rows.cap_w))
        bound_valid, improving = True, False
        for j, r in pricing_round(self.tasks, self.blocks, self.options, price, self.pool, self.models):
            if isinstance(r, str):
                bound_valid = False  # a block without its optimum at this price: no bound this round
                continue
            self.columns[j].append(r)
            bound += r.lp_objective  # the block LP's optimum at this price (before mode fixing)
            rc = master.reduced_cost(self.blocks.index(j), r, self.rows)
            improving |= rc < -self.settings.rc_tol * max(1.0, abs(r.objective))
        self.timers.pricing_s += time.perf_counter() - t0
        self.rounds += 1
        if bound_valid and bound > self.best_bound:
            self.best_bound, self.best_bound_duals = bound, duals
        self.history.append((master.cost, self.best_bound))
        if not improving and self.smoothing_weight == 0.0:
            self.converged = True  # no column prices out at the master's duals: the master is optimal
        self.smoothing_weight = self.settings.smoothing if improving else 0.0

    def finish(self, event_free_cost: float) -> Finish:
        """Per block the master's mix of its columns, replaced by the resource-directive
        re-solve where that is cheaper (``Settings.polish``).  ``event_free_cost``: the cost
        when there was nothing to coordinate."""
        master = self.master
        if master is None:
            return Finish([self.columns[j][0] for j in self.blocks], event_free_cost)
        plans = [
            cols[0] if len(cols) == 1 else mix_columns(cols, master.weights[k])
            for k, cols in enumerate(self.columns[j] for j in self.blocks)
        ]
        out = Finish(plans, master.cost)
        if self.rounds > 0 and self.settings.polish:
            t0 = time.perf_counter()
            self._polish(out)
            self.timers.polish_s = time.perf_counter() - t0
        return out

    def _polish(self, out: Finish) -> None:
        """Each block re-solved with its share of every cap as a limit of its own: the mix meets
        it, so the re-solve costs at most as much, and the shares add up to the master's
        allocation, so the caps still hold.  Kept only where cheaper."""
        tasks = [(self.tasks[j][0], allocated_problem(self.tasks[j][1], b, self.rows))
                 for j, b in zip(self.blocks, out.plans, strict=True)]
        for i, r in solve_each(tasks, self.blocks, self.options, self.pool, self.models):
            if isinstance(r, str):
                continue
            out.build_s += r.build_s
            out.solve_s += r.solve_s
            if r.objective <= out.plans[i].objective:
                out.cost += r.objective - out.plans[i].objective
                out.plans[i] = r
                out.polished_blocks += 1
