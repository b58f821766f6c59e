"""Fleet events: caps on the fleet's total net export or import in a window, met by
coordinating the blocks (feeders/transformers) by prices rather than solving one LP.

What an event is, the method (Dantzig-Wolfe column generation with a Lagrangian bound),
its stopping rule, the finish and the measurements: docs/fleet-events.md.  The rounds are
``events_coordination``, the master LP ``events_master``, the block solves ``events_pricing``.
Sign convention: grid power > 0 is import.  Caps are positive magnitudes in W.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from aggregator.dispatch.block_solve import BlockSolution
from aggregator.dispatch.events_coordination import Coordination, Finish, Settings
from aggregator.dispatch.events_master import EventRows, block_grid_w, grid_w
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.solve import FleetSolution, block_tasks, iter_blocks
from aggregator.dispatch.solver_pool import WarmSolverPool

DIRECTIONS = ("export", "import")


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
        out += block_grid_w(b)
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


def solve_with_events(
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
    """The blocks of ``p`` coordinated by prices so that every event cap holds (docs/fleet-events.md:
    stopping rule, smoothing, ``max_columns`` kept per block, ``polish`` = the finish).

    ``baseline``: the event-free solve of ``p`` if the caller has it (else solved here, in
    ``pool``); blocks that failed in it take no part.  ``start_prices``: event id -> (T,) a
    price per slot (currency per kWh, NaN where unknown) for the first pricing round.
    """
    t0 = time.perf_counter()
    tasks = block_tasks(p)
    baseline = baseline if baseline is not None else _event_free(tasks, options, pool)
    baseline_s = time.perf_counter() - t0
    by_houses = {b.houses.tobytes(): b for b in baseline.blocks}
    blocks = [j for j, (h, _) in enumerate(tasks) if h.tobytes() in by_houses]
    base_grid = fleet_grid_w(baseline.blocks, p.t)
    evs = [c for c in (e.clipped(p.t) for e in events) if c is not None]
    caps = [cap_from_baseline(e, base_grid) for e in evs]
    rows = _event_rows(evs, caps)
    kwh = p.slot_h / 1000.0
    coordination = Coordination(
        tasks=tasks, blocks=blocks, columns={j: [by_houses[tasks[j][0].tobytes()]] for j in blocks}, rows=rows,
        options=options, pool=pool, settings=Settings(max_rounds, gap_tol, rc_tol, smoothing, max_columns, polish),
        slots=p.t, kwh_per_w_slot=kwh, penalty_per_w_slot=options.penalty_per_kwh * kwh,
        dual_box=kwh * (float(np.max(np.abs(np.concatenate([p.import_price_per_kwh, p.export_price_per_kwh]))))
                        + options.throughput_cost_per_kwh),
    )
    coordination.run(_start_duals(evs, start_prices, kwh, options.penalty_per_kwh * kwh, len(rows)))
    finish = coordination.finish(baseline.objective)
    sol, changed = _solution(baseline, coordination, finish)
    master = coordination.master
    event_duals = master.event_duals if master is not None else np.zeros(len(rows))
    slack_w = master.slack_w if master is not None else np.zeros(len(rows))
    sol.wall_s = time.perf_counter() - t0
    timers = coordination.timers
    return EventSolve(
        solution=sol,
        baseline=baseline,
        outcomes=_outcomes(evs, caps, fleet_grid_w(sol.blocks, p.t), base_grid, slack_w, event_duals / kwh),
        cost=finish.cost,
        lower_bound=float(coordination.best_bound if len(rows) and blocks else finish.cost),
        rounds=coordination.rounds,
        converged=coordination.converged,
        changed=changed,
        grid_price_per_kwh=rows.price_per_kwh(event_duals, p.t, kwh) if len(rows) else np.zeros(p.t),
        history=coordination.history,
        timings={"baseline_s": baseline_s, "pricing_s": timers.pricing_s, "master_s": timers.master_s,
                 "polish_s": timers.polish_s, "total_s": time.perf_counter() - t0},
        polished_blocks=finish.polished_blocks,
    )


def _event_free(tasks: list[tuple[np.ndarray, FleetProblem]], options: DispatchOptions,
                pool: ProcessPoolExecutor | WarmSolverPool | None) -> FleetSolution:
    out = FleetSolution()
    res = dict(iter_blocks(tasks, options, pool))
    for i, (h, _) in enumerate(tasks):
        out.add(h, res[i])
    return out


def _event_rows(events: list[FleetEvent], caps: list[np.ndarray]) -> EventRows:
    """The rows of ``events`` (already clipped), event by event, slot by slot."""
    rows = [(e.start_slot + i, e.sign, float(cap_i)) for e, c in zip(events, caps, strict=True) for i, cap_i in enumerate(c)]
    return EventRows(slot=np.array([r[0] for r in rows], dtype=int), sign=np.array([r[1] for r in rows]),
                     cap_w=np.array([r[2] for r in rows]))


def _start_duals(events: list[FleetEvent], start_prices: Mapping[str, np.ndarray] | None, kwh: float,
                 penalty_per_w_slot: float, n_rows: int) -> np.ndarray:
    """The event duals of ``start_prices`` (event id -> price per horizon slot, per kWh), 0 where none."""
    out = np.zeros(n_rows)
    row = 0
    for e in events:
        given = start_prices.get(e.event_id) if start_prices and e.event_id else None
        if given is not None:
            vals = np.asarray(given, dtype=float)[e.start_slot : e.end_slot] * kwh
            out[row : row + vals.size] = np.clip(np.nan_to_num(vals, nan=0.0), 0.0, penalty_per_w_slot)
        row += e.end_slot - e.start_slot
    return out


def _solution(baseline: FleetSolution, coordination: Coordination,
              finish: Finish) -> tuple[FleetSolution, dict[int, np.ndarray]]:
    """The coordinated plans as a solution, and per block where they differ from the baseline's."""
    sol = FleetSolution(prepare_s=baseline.prepare_s, failed=list(baseline.failed),
                        build_s=finish.build_s, solve_s=finish.solve_s)
    changed: dict[int, np.ndarray] = {}
    for j, b in zip(coordination.blocks, finish.plans, strict=True):
        cols = coordination.columns[j]
        sol.blocks.append(b)
        sol.build_s += sum(c.build_s for c in cols)
        sol.solve_s += sum(c.solve_s for c in cols)
        base = cols[0]
        changed[len(sol.blocks) - 1] = (
            np.abs((b.charge_w - b.discharge_w) - (base.charge_w - base.discharge_w)) > 1.0
        ) | (np.abs(grid_w(b) - grid_w(base)) > 1.0)
    return sol, changed


def _outcomes(events: list[FleetEvent], caps: list[np.ndarray], grid: np.ndarray, base_grid: np.ndarray,
              slack_w: np.ndarray, price_per_kwh: np.ndarray) -> list[EventOutcome]:
    """Per event, its window's part of the plan's and the baseline's fleet grid power and of
    the master's slack and prices (rows are event by event, slot by slot)."""
    out: list[EventOutcome] = []
    row = 0
    for e, cap in zip(events, caps, strict=True):
        n = e.end_slot - e.start_slot
        win = slice(e.start_slot, e.end_slot)
        out.append(EventOutcome(event=e, cap_w=cap, achieved_w=e.sign * grid[win], baseline_w=e.sign * base_grid[win],
                                shortfall_w=slack_w[row : row + n].copy(), price_per_kwh=price_per_kwh[row : row + n]))
        row += n
    return out
