"""Public entry point of the fleet optimiser: problem in, per-house plans out.

Never raises for infeasibility: limits that cannot all be met are relaxed with
penalties and reported; a block whose solve fails or hits its time limit gets
the previous plan shifted in time, or a self-consumption plan if there is none.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from aggregator.dispatch.block_solve import BlockResult, BlockSolution, solve_block
from aggregator.dispatch.events import EventSolve, FleetEvent, solve_with_events
from aggregator.dispatch.isolate import bad_plan_rows, bisect_block, suspect_houses
from aggregator.dispatch.plans import (
    LazyPlans,
    PackedPlans,
    Relaxation,
    pack_plans,
    relaxations,
    self_consumption_plan,
    shift_plan,
)
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.solve import FleetSolution, block_tasks, iter_blocks
from aggregator.dispatch.solver_pool import WarmSolverPool
from vpp_common.messages import DispatchPlan


@dataclass(frozen=True)
class EventReport:
    """How the plan meets one fleet event.  Powers in W per slot of the event's window (within
    the horizon), as positive magnitudes of fleet export (export events) or import (import events)."""

    event_id: str
    direction: str  # "export" or "import"
    slot_starts: tuple[datetime, ...]  # UTC start of each window slot
    cap_w: tuple[float, ...]  # the cap the plan had to meet
    achieved_w: tuple[float, ...]  # the plan's fleet export (import)
    baseline_w: tuple[float, ...]  # the same without events
    shortfall_w: tuple[float, ...]  # above the cap where it could not be met (penalised), else 0
    price_per_kwh: tuple[float, ...]  # event price (coordination dual), currency per kWh, >= 0
    gap: float  # upper bound of the plan's distance to the optimum with all events (currency)
    gap_rel: float  # gap / max(1, |cost|)
    rounds: int  # pricing rounds of the coordinated solve (shared by all events of a solve)
    converged: bool  # the gap reached its tolerance (else the round limit stopped it)

    @property
    def binding(self) -> bool:
        return any(b > c + 1.0 for b, c in zip(self.baseline_w, self.cap_w, strict=True))


@dataclass(frozen=True)
class DispatchResult:
    """Plans for every house; ``status`` is "optimal", "partial" (some fallbacks) or "fallback"."""

    plans: Mapping[str, DispatchPlan]  # fleet order; made from packed arrays on first lookup (LazyPlans)
    cost: float  # currency over the horizon, solved blocks only; includes penalties, minus terminal value
    relaxations: list[Relaxation]
    status: str
    fallback_houses: tuple[str, ...] = ()  # houses on a shifted previous plan or self-consumption
    timings: dict[str, float] = field(default_factory=dict)  # prepare_s, build_s, solve_s, plans_s, total_s
    events: tuple[EventReport, ...] = ()  # fleet events active in the horizon
    # houses taken out of this cycle (no plan at all): (house id, why), see ``isolate``
    excluded_houses: tuple[tuple[str, str], ...] = ()


def optimise(
    problem: FleetProblem,
    options: DispatchOptions | None = None,
    previous: dict[str, DispatchPlan] | None = None,
    *,
    version: int = 1,
    now: datetime | None = None,
    pool: ProcessPoolExecutor | WarmSolverPool | None = None,
    events: Sequence[FleetEvent] = (),
    event_prices: Mapping[str, np.ndarray] | None = None,
) -> DispatchResult:
    """Plan the fleet.  ``previous``: last cycle's plans, used when a block has no solution.

    ``pool``: a ``WarmSolverPool`` (re-solves each block from its previous basis), an
    executor the caller owns (cold solves), or None (see ``DispatchOptions.workers``).

    ``events``: fleet events (slots of this problem's horizon).  With any in the horizon
    the blocks are coordinated by prices (``events.solve_with_events``): the event-free
    solve and the pricing rounds run in ``pool`` (without one: in this process, each block
    warm from its previous round).  Plans of houses whose schedule the
    events changed say so in their slots' reasons.  ``event_prices``: event id -> (T,) a
    price guess per slot of this horizon (currency per kWh; e.g. the last cycle's
    ``EventReport.price_per_kwh``, see ``event_prices_for``): fewer coordination rounds.
    """
    options = options or DispatchOptions()
    now = now or datetime.now(UTC)
    t0 = time.perf_counter()
    problem.validate()
    # a house whose numbers no LP should see leaves the cycle before the solve (isolate)
    problem, excluded = _without_suspects(problem)
    if problem.n == 0:
        return DispatchResult(plans={}, cost=0.0, relaxations=[], status="optimal", excluded_houses=excluded)
    active = [c for c in (e.clipped(problem.t) for e in events) if c is not None]
    if active:
        result = _optimise_with_events(problem, options, previous, active, version=version, now=now, pool=pool,
                                       t0=t0, event_prices=event_prices)
        return _without_bad_plans(replace(result, excluded_houses=excluded + result.excluded_houses))
    return _without_bad_plans(_optimise_blocks(problem, options, previous, excluded, version=version, now=now,
                                               pool=pool, t0=t0))


def _optimise_blocks(
    problem: FleetProblem,
    options: DispatchOptions,
    previous: dict[str, DispatchPlan] | None,
    excluded: tuple[tuple[str, str], ...],
    *,
    version: int,
    now: datetime,
    pool: ProcessPoolExecutor | WarmSolverPool | None,
    t0: float,
) -> DispatchResult:
    """The plans without fleet events: every block on its own; a failed block without the
    houses that break it, or on fallback plans."""
    tasks = block_tasks(problem)
    sol = FleetSolution(prepare_s=time.perf_counter() - t0)
    results, by_block, plans_s = _solve_and_pack(problem, tasks, options, pool, now=now, version=version)
    for i, (h, _) in enumerate(tasks):  # block order, whatever order they finished in
        r = results[i]
        if isinstance(r, str):  # failed: plan the block without the houses that break it, if few do
            rescued, out = _rescue_block(problem, h, options, r)
            if rescued is not None:
                excluded += out
                by_block[i] = pack_plans(problem, rescued, created_at=now, version=version)
                r = rescued
        sol.add(h if isinstance(r, str) else r.houses, r)
    t1 = time.perf_counter()
    sol.wall_s = t1 - t0
    built, fallback = _fallbacks(problem, sol, previous, now, version)
    plans = LazyPlans([by_block[i] for i in sorted(by_block)], built, problem.house_ids)  # fleet order
    status = "optimal" if not sol.failed else ("fallback" if not sol.blocks else "partial")
    t2 = time.perf_counter()
    return DispatchResult(
        plans=plans,
        cost=sol.objective,
        relaxations=relaxations(problem, sol.blocks),
        status=status,
        fallback_houses=tuple(fallback),
        # solve_wall_s includes the plans built while blocks were solving
        timings=_timings(sol, sol, len(tasks), t0, t1, t2, plans_s + (t2 - t1)),
        excluded_houses=excluded,
    )


def _solve_and_pack(
    problem: FleetProblem,
    tasks: list[tuple[np.ndarray, FleetProblem]],
    options: DispatchOptions,
    pool: ProcessPoolExecutor | WarmSolverPool | None,
    *,
    now: datetime,
    version: int,
) -> tuple[dict[int, BlockResult], dict[int, PackedPlans], float]:
    """Every block's result, the packed plans of those solved, and the seconds spent packing.

    Plans of a solved block are built while the workers solve the others: on a warm
    re-plan building plans takes longer than solving.  The plans are millions of small
    objects without reference cycles; the cyclic garbage collector would scan the
    growing heap again and again while they are made (more than half of the time,
    measured), so it pauses until they are built."""
    results: dict[int, BlockResult] = {}
    by_block: dict[int, PackedPlans] = {}
    plans_s = 0.0
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for i, r in iter_blocks(tasks, options, pool):
            results[i] = r
            if not isinstance(r, str):
                tp = time.perf_counter()
                by_block[i] = pack_plans(problem, r, created_at=now, version=version)
                plans_s += time.perf_counter() - tp
    finally:
        if gc_was_on:
            gc.enable()
    return results, by_block, plans_s


def _without_suspects(problem: FleetProblem) -> tuple[FleetProblem, tuple[tuple[str, str], ...]]:
    """The problem without the houses whose numbers are out of bounds, and those houses (id, why)."""
    bad = suspect_houses(problem)
    if not bad:
        return problem, ()
    keep = np.array([i for i in range(problem.n) if i not in bad], dtype=int)
    out = tuple((problem.house_ids[i], f"{field} not finite or out of bounds") for i, field in sorted(bad.items()))
    return problem.subset(keep), out


def _rescue_block(problem: FleetProblem, houses: np.ndarray, options: DispatchOptions,
                  why: str) -> tuple[BlockSolution | None, tuple[tuple[str, str], ...]]:
    """A failed block solved without the few houses that break it (``isolate.bisect_block``), in
    this process, cold; (None, ()) if the failure is not a few houses' (e.g. a time limit)."""
    def solves(part: np.ndarray) -> bool:
        try:
            solve_block(part, problem.subset(part), options)
            return True
        except Exception:
            return False

    if len(houses) < 2 or "time limit" in why.lower():
        return None, ()
    culprits = bisect_block(np.asarray(houses, dtype=int), solves)
    if culprits is None:
        return None, ()
    rest = np.setdiff1d(houses, culprits)
    try:
        solution = solve_block(rest, problem.subset(rest), options)
    except Exception:
        return None, ()
    return solution, tuple((problem.house_ids[i], f"its block's LP failed with it ({why})") for i in culprits.tolist())


def _without_bad_plans(result: DispatchResult) -> DispatchResult:
    """The result without any plan that carries a non-finite number (the agent would refuse it);
    those houses are excluded, named."""
    plans = result.plans
    if not isinstance(plans, LazyPlans):
        return result
    bad = plans.bad_houses(bad_plan_rows)
    if not bad:
        return result
    return replace(result, plans=plans.without(bad),
                   excluded_houses=result.excluded_houses + tuple((h, "its plan was not finite") for h in bad),
                   fallback_houses=tuple(h for h in result.fallback_houses if h not in bad))


def _timings(base: FleetSolution, sol: FleetSolution, blocks: int, t0: float, t1: float, t2: float,
             plans_s: float) -> dict[str, float]:
    """The timings every result reports: ``base`` is the first (event-free) solve, ``sol`` the final one."""
    return {
        "prepare_s": base.prepare_s,
        "build_s": sol.build_s,
        "solve_s": sol.solve_s,
        "solve_wall_s": t1 - t0,
        "plans_s": plans_s,
        "total_s": t2 - t0,
        "warm_blocks": float(base.warm_blocks),
        "seeded_blocks": float(base.seeded_blocks),
        "blocks": float(blocks),
    }


def _fallbacks(
    problem: FleetProblem, sol: FleetSolution, previous: dict[str, DispatchPlan] | None, now: datetime, version: int
) -> tuple[dict[str, DispatchPlan], list[str]]:
    built: dict[str, DispatchPlan] = {}
    fallback: list[str] = []
    for houses, why in sol.failed:
        for h in houses:
            hid = problem.house_ids[h]
            old = (previous or {}).get(hid)
            shifted = shift_plan(old, now, version) if old is not None else None
            built[hid] = shifted or self_consumption_plan(problem, int(h), created_at=now, version=version, why=why)
            fallback.append(hid)
    return built, fallback


def _event_reasons(problem: FleetProblem, es: EventSolve) -> dict[int, list[str]]:
    """Per house whose schedule the events changed: per slot, which event and why ("" elsewhere)."""
    def hhmm(slot: int) -> str:
        return (problem.start + timedelta(seconds=slot * problem.slot_s)).strftime("%H:%M")

    in_window: list[str] = [""] * problem.t
    for oc in es.outcomes:
        e = oc.event
        name = f"fleet {e.direction} event{' ' + e.event_id if e.event_id else ''}"
        for i, s in enumerate(range(e.start_slot, e.end_slot)):
            if oc.achieved_w[i] < oc.cap_w[i] - 1.0:
                continue  # the cap does not bind in this slot: a change here is "moved", below
            txt = (
                f"{name} binds: fleet {e.direction} capped at {oc.cap_w[i] / 1000:.1f} kW"
                f" (event price {oc.price_per_kwh[i]:.3f}/kWh)"
            )
            in_window[s] = f"{in_window[s]}; {txt}" if in_window[s] else txt
    names = ", ".join(
        f"{oc.event.direction} event{' ' + oc.event.event_id if oc.event.event_id else ''}"
        f" {hhmm(oc.event.start_slot)}-{hhmm(oc.event.end_slot)}"
        for oc in es.outcomes
    )
    outside = f"moved to meet fleet {names}"
    out: dict[int, list[str]] = {}
    for k, b in enumerate(es.solution.blocks):
        ch = es.changed.get(k)
        if ch is None:
            continue
        for i in np.flatnonzero(ch.any(axis=1)).tolist():
            row = ch[i]
            out[int(b.houses[i])] = [
                (in_window[s] or outside) if row[s] else "" for s in range(problem.t)
            ]
    return out


def _optimise_with_events(
    problem: FleetProblem,
    options: DispatchOptions,
    previous: dict[str, DispatchPlan] | None,
    events: list[FleetEvent],
    *,
    version: int,
    now: datetime,
    pool: ProcessPoolExecutor | WarmSolverPool | None,
    t0: float,
    event_prices: Mapping[str, np.ndarray] | None = None,
) -> DispatchResult:
    tasks = block_tasks(problem)
    base = FleetSolution(prepare_s=time.perf_counter() - t0)
    results: dict[int, BlockResult] = dict(iter_blocks(tasks, options, pool))
    for i, (h, _) in enumerate(tasks):
        base.add(h, results[i])
    base.wall_s = time.perf_counter() - t0
    es = solve_with_events(problem, options, events, pool=pool, baseline=base, start_prices=event_prices)
    sol = es.solution
    t1 = time.perf_counter()
    extra = _event_reasons(problem, es)
    packs = [pack_plans(problem, b, created_at=now, version=version, extra_reasons=extra) for b in sol.blocks]
    fb, fallback = _fallbacks(problem, sol, previous, now, version)
    plans = LazyPlans(packs, fb, problem.house_ids)
    status = "optimal" if not sol.failed else ("fallback" if not sol.blocks else "partial")
    rel = relaxations(problem, sol.blocks)
    reports: list[EventReport] = []
    for oc in es.outcomes:
        e = oc.event
        starts = tuple(problem.start + timedelta(seconds=s * problem.slot_s) for s in range(e.start_slot, e.end_slot))
        for st, short in zip(starts, oc.shortfall_w.tolist(), strict=True):
            if short > 1.0:
                rel.append(Relaxation(f"fleet_{e.direction}_event", e.event_id, st, short))
        reports.append(
            EventReport(
                event_id=e.event_id,
                direction=e.direction,
                slot_starts=starts,
                cap_w=tuple(oc.cap_w.tolist()),
                achieved_w=tuple(oc.achieved_w.tolist()),
                baseline_w=tuple(oc.baseline_w.tolist()),
                shortfall_w=tuple(oc.shortfall_w.tolist()),
                price_per_kwh=tuple(oc.price_per_kwh.tolist()),
                gap=es.gap,
                gap_rel=es.gap_rel,
                rounds=es.rounds,
                converged=es.converged,
            )
        )
    t2 = time.perf_counter()
    return DispatchResult(
        plans=plans,
        cost=es.cost if sol.blocks else 0.0,
        relaxations=rel,
        status=status,
        fallback_houses=tuple(fallback),
        timings={
            **_timings(base, sol, len(tasks), t0, t1, t2, t2 - t1),
            "event_baseline_s": base.wall_s,  # the event-free solve (also the plan without events)
            "event_pricing_s": es.timings["pricing_s"],
            "event_master_s": es.timings["master_s"],
            "event_polish_s": es.timings["polish_s"],
            "event_coordination_s": es.timings["total_s"],
            "event_rounds": float(es.rounds),
            "event_gap_rel": es.gap_rel,
        },
        events=tuple(reports),
    )


def event_prices_for(problem: FleetProblem, reports: Sequence[EventReport]) -> dict[str, np.ndarray]:
    """Event id -> (T,) the reports' event prices on ``problem``'s slots (NaN where none): the
    previous cycle's prices as the next cycle's start (``optimise(event_prices=...)``)."""
    out: dict[str, np.ndarray] = {}
    for rep in reports:
        if not rep.event_id:
            continue
        arr = np.full(problem.t, np.nan)
        for st, price in zip(rep.slot_starts, rep.price_per_kwh, strict=True):
            k = (st - problem.start).total_seconds() / problem.slot_s
            if float(k).is_integer() and 0 <= k < problem.t:
                arr[int(k)] = price
        out[rep.event_id] = arr
    return out
