"""Shiftable runs (S2 PPBC: a washing machine's programme) placed before the fleet LP (pure numpy).

Each house's WAITING or SCHEDULED run (re-placeable until it starts) gets the start, within
``[earliest_start, latest_end - length]`` and not before now, that costs it least: per slot,
the energy its profile draws is worth the export price as far as the house's forecast PV
surplus (load + PV < 0) covers it, the import price for the rest.  A start that would push
the house over its import limit, or its feeder over the feeder's import limit (with the
forecasts of the feeder's houses and the runs placed before it), loses to one that does not;
among equals the cheapest wins, ties to the earliest.  A RUNNING run's remaining profile is
fixed load; a DONE run, or one whose window has passed, is nothing.  The placed and running
runs' power is added to the house's load for the LP (``aggregator.fleet.cycle``), so its
battery plan and the feeders' limits see them; the plan names the chosen starts.

Starts are the first allowed instant and every slot boundary after it.  Only starts whose run
ends within the horizon (the known prices) are weighed; a run that cannot end within it but
must start within it is weighed with its energy after the horizon at the horizon's mean import
price; a run that may start after the horizon's end is left to a later cycle (``later``).
The price is the house's marginal one without its battery: the LP then plans the battery
around the run (docs/fleet-strategy.md, "Shiftable runs").  Times are UTC: no clock change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np

from aggregator.dispatch.problem import FleetProblem
from vpp_common.messages import ProfileStep, RunStart, RunState, ShiftableRunFlexibility

_COST_DIGITS = 9  # currency: sums of the same energies in another order differ by ~1e-16
_OVER_DIGITS = 6  # Wh over a limit


@dataclass(frozen=True, slots=True)
class HouseRuns:
    """One house's runs as placed: their power per slot and the chosen starts."""

    load_w: np.ndarray  # (T,) the placed and running runs' mean power per slot, W
    starts: tuple[RunStart, ...] = ()
    running: int = 0
    passed: tuple[str, ...] = ()  # resource ids whose window has passed
    later: int = 0  # runs that may start after the horizon: a later cycle places them


@dataclass(frozen=True, slots=True)
class RunPlacement:
    """The fleet's runs as placed for one cycle, in the problem's house order."""

    load_w: np.ndarray  # (N, T) W
    houses: dict[str, HouseRuns] = field(default_factory=dict)  # only houses with runs

    @property
    def placed(self) -> int:
        return sum(len(h.starts) for h in self.houses.values())

    @property
    def running(self) -> int:
        return sum(h.running for h in self.houses.values())

    def starts(self, house_id: str) -> tuple[RunStart, ...]:
        h = self.houses.get(house_id)
        return h.starts if h is not None else ()


@dataclass(frozen=True, slots=True)
class RunHorizon:
    """The slots a placement sees: from ``start``, ``t`` of ``slot_s``, prices per kWh (T,)."""

    start: datetime
    slot_s: int
    t: int
    now: datetime
    import_price: np.ndarray  # (T,) per kWh
    export_price: np.ndarray

    @property
    def end_s(self) -> float:
        return float(self.t * self.slot_s)


def energy_on_slots(profile: Sequence[ProfileStep], start_s: np.ndarray, slot_s: int, t: int) -> np.ndarray:
    """(C, T) energy in Wh the profile draws in each of ``t`` slots of ``slot_s``, started
    ``start_s`` (C,) seconds after the first slot's start (negative: it began before)."""
    knots = np.concatenate([[0.0], np.cumsum([p.duration_s for p in profile])])
    energy = np.concatenate([[0.0], np.cumsum([p.duration_s * p.power_w / 3600.0 for p in profile])])
    edges = np.arange(t + 1, dtype=float) * slot_s
    cum = np.interp(edges[None, :] - np.asarray(start_s, dtype=float)[:, None], knots, energy)
    return np.diff(cum, axis=1)


def _candidates(run: ShiftableRunFlexibility, h: RunHorizon) -> tuple[datetime, np.ndarray] | str:
    """(first allowed start, the starts to weigh in s from the horizon's start), or "passed" or
    "later"."""
    length = run.duration_s
    first = max(run.earliest_start, h.now)
    last = run.latest_end - timedelta(seconds=length)
    if last < first:
        return "passed"
    first_s, last_s = (first - h.start).total_seconds(), (last - h.start).total_seconds()
    if first_s >= h.end_s:
        return "later"
    hi = min(last_s, h.end_s - length)  # the run ends within the horizon
    if hi < first_s:
        if last_s >= h.end_s:
            return "later"  # it may wait for the next day's prices
        hi = last_s  # it must start within the horizon and cannot end within it
    k = np.arange(math.floor(first_s / h.slot_s) + 1, math.floor(hi / h.slot_s) + 1, dtype=float) * h.slot_s
    return first, np.concatenate([[first_s], k[(k > first_s) & (k <= hi)]])


def choose_start(run: ShiftableRunFlexibility, h: RunHorizon, net_w: np.ndarray,
                 room_w: np.ndarray) -> tuple[datetime, np.ndarray] | str:
    """The run's start and its power per slot (T,), or "passed"/"later" (see ``_candidates``).

    ``net_w``: the house's forecast load + PV with the runs placed before (W, PV < 0);
    ``room_w``: how much more the house may import in each slot (its limit, its feeder's; inf:
    none; negative: already over).
    """
    cands = _candidates(run, h)
    if isinstance(cands, str):
        return cands
    first, start_s = cands
    slot_h = h.slot_s / 3600.0
    e = energy_on_slots(run.profile, start_s, h.slot_s, h.t)  # (C, T) Wh
    surplus_wh = np.maximum(-net_w, 0.0) * slot_h
    cover = np.clip(e, 0.0, surplus_wh)
    outside = run.energy_wh - e.sum(axis=1)  # after the horizon (only when it cannot end within it)
    cost = ((cover * h.export_price).sum(axis=1) + ((e - cover) * h.import_price).sum(axis=1)
            + outside * float(np.mean(h.import_price))) / 1000.0
    p = e / slot_h
    with np.errstate(invalid="ignore"):  # inf room - finite power is inf; never NaN here
        over = (np.maximum(p - room_w, 0.0) - np.maximum(-room_w, 0.0)).sum(axis=1) * slot_h
    best = int(np.lexsort((start_s, np.round(cost, _COST_DIGITS), np.round(over, _OVER_DIGITS)))[0])
    start = first if best == 0 else h.start + timedelta(seconds=float(start_s[best]))
    return start, p[best]


def _house_runs(runs: Sequence[ShiftableRunFlexibility], h: RunHorizon, net_w: np.ndarray,
                room_w: np.ndarray) -> HouseRuns:
    """One house's runs, the running ones first (they are fixed), then by deadline."""
    load = np.zeros(h.t)
    starts: list[RunStart] = []
    running, later = 0, 0
    passed: list[str] = []
    seen: set[str] = set()
    order = sorted(runs, key=lambda r: (r.state is not RunState.RUNNING, r.latest_end, r.earliest_start,
                                        r.resource_id))
    for run in order:
        if run.resource_id in seen or run.state is RunState.DONE:
            continue  # one run per resource (the plan names one start per resource)
        seen.add(run.resource_id)
        if run.state is RunState.RUNNING:
            assert run.start is not None  # checked where it entered (service.load_convert)
            p = energy_on_slots(run.profile, np.array([(run.start - h.start).total_seconds()]), h.slot_s,
                                h.t)[0] / (h.slot_s / 3600.0)
            running += 1
        else:
            chosen = choose_start(run, h, net_w + load, room_w - load)
            if chosen == "passed":
                passed.append(run.resource_id)
                continue
            if chosen == "later":
                later += 1
                continue
            assert not isinstance(chosen, str)
            start, p = chosen
            starts.append(RunStart(run.resource_id, start))
        load = load + p
    return HouseRuns(load, tuple(starts), running, tuple(passed), later)


def place_runs(problem: FleetProblem, runs: Sequence[Sequence[ShiftableRunFlexibility]], load_w: np.ndarray,
               pv_w: np.ndarray, now: datetime) -> RunPlacement:
    """Every house's runs (``runs[i]`` of ``problem.house_ids[i]``) placed on the problem's
    horizon: ``load_w``, ``pv_w`` (N, T) the houses' forecasts (PV <= 0; the forecasts
    themselves, not a future around them); ``now`` (no start before it).  Houses in id order:
    a feeder's headroom goes to the runs placed first."""
    n, t = problem.n, problem.t
    h = RunHorizon(problem.start, problem.slot_s, t, max(now, problem.start),
                   np.asarray(problem.import_price_per_kwh, dtype=float),
                   np.asarray(problem.export_price_per_kwh, dtype=float))
    net = np.asarray(load_w, dtype=float) + np.asarray(pv_w, dtype=float)
    feeder_net = np.zeros((len(problem.feeder_ids), t))
    np.add.at(feeder_net, problem.feeder_of, net)
    out = np.zeros((n, t))
    houses: dict[str, HouseRuns] = {}
    for i in sorted((i for i in range(n) if runs[i]), key=lambda i: problem.house_ids[i]):
        f = problem.feeder_of[i]
        room = np.minimum(problem.max_import_w[i] - net[i], problem.feeder_import_limit_w[f] - feeder_net[f])
        placed = _house_runs(runs[i], h, net[i], room)
        houses[problem.house_ids[i]] = placed
        out[i] = placed.load_w
        feeder_net[f] += placed.load_w
    return RunPlacement(out, houses)


def with_run_load(problem: FleetProblem, run_load_w: np.ndarray) -> FleetProblem:
    """The problem with the runs' power in every future's household load (a run is the same in
    each: it is not scaled with the load forecast's error)."""
    scen = problem.scenario_load_w
    return replace(problem, load_w=np.maximum(problem.load_w + run_load_w, 0.0),
                   scenario_load_w=np.maximum(scen + run_load_w[None], 0.0) if scen.size else scen)


__all__ = ["HouseRuns", "RunHorizon", "RunPlacement", "choose_start", "energy_on_slots", "place_runs", "with_run_load"]
