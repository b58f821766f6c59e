"""Shiftable runs in the fast mode: when each starts, and its power as household load.

* ``armed``: every run starts when it is armed (the appliance simply switched on): no flexibility.
  The baselines (``no_battery``, ``battery_idle``) always run so; ``runs_when_armed`` makes the
  scenario where every strategy does (the runs' power added to the load, no runs left).
* ``edge``: the edge agent's own scheduler decides, slot by slot (``edge_agent.energy_manager.
  appliances.decide_run``, the code the agent runs: the plan's start where a plan names one, else the
  cheapest window of the known prices, PV surplus forecast by the house's forecaster counted at the
  feed-in price; at the last moment whatever the prices).  The fleet's plans name the starts the
  aggregator placed (``PlanSource.run_start``); the local strategies' name none.

A run never stops once started; one not finished by its ``ready_by`` is a missed deadline (a bug:
the scheduler starts a run at the last moment whatever else), counted in ``summary``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import numpy as np

from aggregator.dispatch.runs import energy_on_slots
from edge_agent.energy_manager.appliances import House, Outlook, decide_run
from simulator.fleet.model import ApplianceRun, Scenario
from vpp_common.messages import RunState, ShiftableRunFlexibility

Mode = Literal["armed", "edge"]


class _Forecast(Protocol):
    load_w: np.ndarray
    pv_w: np.ndarray


def run_power_w(sc: Scenario, run: ApplianceRun, start: datetime) -> np.ndarray:
    """(T,) the run's mean power per slot of the scenario, started at ``start``."""
    return energy_on_slots(run.profile, np.array([(start - sc.start).total_seconds()]), sc.slot_s, sc.t)[0] / sc.slot_h


def runs_when_armed(sc: Scenario) -> Scenario:
    """The scenario with every run started when armed, as plain household load (no runs left)."""
    load = sc.load_w.copy()
    row = {h.house_id: i for i, h in enumerate(sc.houses)}
    for r in sc.appliance_runs:
        load[row[r.house_id]] += run_power_w(sc, r, r.armed)
    return replace(sc, load_w=load, appliance_runs=())


@dataclass
class RunLog:
    """What happened to the runs of one strategy's run (``summary`` for the report)."""

    starts: dict[tuple[int, str], datetime]
    runs: list[tuple[int, ApplianceRun]]
    end: datetime

    def summary(self, first: datetime | None = None) -> dict[str, Any]:
        """Runs armed from ``first`` on (the counted period; default all): how many, how many moved
        from their arming time and by how long on average; deadlines missed by any run."""
        late, missed, shift_h = 0, 0, []
        counted = 0
        for i, r in self.runs:
            st = self.starts.get((i, r.run_id))
            if st is None:
                missed += r.ready_by <= self.end  # a run whose deadline lies beyond the scenario may wait
            else:
                late += st + timedelta(seconds=r.duration_s) > r.ready_by
            if first is not None and r.armed < first:
                continue
            counted += 1
            if st is not None:
                shift_h.append((st - r.armed).total_seconds() / 3600)
        return {"runs": counted, "moved": sum(1 for x in shift_h if x > 0),
                "mean_shift_h": round(float(np.mean(shift_h)), 2) if shift_h else 0.0,
                "deadlines_missed": late + missed}


class RunDriver:
    """The runs of one strategy's simulation: started per ``mode``; ``load_w`` their power so far."""

    def __init__(self, sc: Scenario, mode: Mode, known_until: Callable[[datetime], int], refresh_slots: int = 4):
        self.sc, self.mode, self.known_until = sc, mode, known_until
        row = {h.house_id: i for i, h in enumerate(sc.houses)}
        self.runs = sorted(((row[r.house_id], r) for r in sc.appliance_runs), key=lambda x: (x[1].armed, x[0]))
        self.load_w = np.zeros((sc.n, sc.t))
        self.starts: dict[tuple[int, str], datetime] = {}
        self.refresh_slots = max(1, refresh_slots)  # the outlook's forecast is refreshed this often
        self._outlooks: dict[int, tuple[int, Outlook]] = {}

    def shiftable(self, s: int) -> list[tuple[ShiftableRunFlexibility, ...]]:
        """Each house's runs as its agent reports them at slot ``s`` (S2 PPBC): armed and waiting, or
        running; done ones are no longer reported."""
        now = self.sc.slot_start(s)
        out: list[list[ShiftableRunFlexibility]] = [[] for _ in self.sc.houses]
        for i, r in self.runs:
            if r.armed > now:
                break
            st = self.starts.get((i, r.run_id))
            if st is not None and st + timedelta(seconds=r.duration_s) <= now:
                continue
            state = RunState.WAITING if st is None else RunState.RUNNING
            out[i].append(ShiftableRunFlexibility(r.run_id, r.profile, r.armed, r.ready_by, state, st))
        return [tuple(x) for x in out]

    def step(self, s: int, base_load_w: np.ndarray, pv_w: np.ndarray,
             plan_start: Callable[[int, str], datetime | None],
             forecast: Callable[[int, datetime, int], _Forecast] | None) -> np.ndarray:
        """Start the runs due at slot ``s``; (N,) the runs' power in it.  ``base_load_w``, ``pv_w``:
        the slot's household load without runs started now and PV (what the meter shows)."""
        now = self.sc.slot_start(s)
        for i, r in self.runs:
            if r.armed > now:
                break
            if (i, r.run_id) in self.starts:
                continue
            if self.mode == "armed" or self._decide(s, i, r, float(base_load_w[i] + self.load_w[i, s] - pv_w[i]),
                                                    plan_start(i, r.run_id), forecast):
                self.starts[(i, r.run_id)] = now
                self.load_w[i] += run_power_w(self.sc, r, now)
        return self.load_w[:, s]

    def _decide(self, s: int, i: int, r: ApplianceRun, grid_w: float, plan: datetime | None,
                forecast: Callable[[int, datetime, int], _Forecast] | None) -> bool:
        house = House(self.sc.slot_start(s), grid_w, self.sc.houses[i].import_limit_w, self._outlook(s, i, grid_w, forecast))
        return decide_run(r.profile, r.armed, r.ready_by, house, plan, float(self.sc.slot_s)).start

    def _outlook(self, s: int, i: int, grid_w: float, forecast: Callable[[int, datetime, int], _Forecast] | None
                 ) -> Outlook:
        """The house's outlook from slot ``s``: the prices known now, its forecast PV surplus (the
        forecast refreshed every ``refresh_slots``), the surplus measured now."""
        sc = self.sc
        held = self._outlooks.get(i)
        if held is None or held[0] > s or s - held[0] >= min(self.refresh_slots, len(held[1].import_price)):
            now = sc.slot_start(s)
            n = max(1, self.known_until(now) - s)
            surplus: Sequence[float] = ()
            if forecast is not None:
                fc = forecast(i, now, n)
                surplus = np.maximum(np.asarray(fc.pv_w) - np.asarray(fc.load_w), 0.0).tolist()
            held = (s, Outlook(now, sc.slot_s, tuple(sc.import_price_per_kwh[s:s + n].tolist()),
                               tuple(sc.export_price_per_kwh[s:s + n].tolist()), tuple(surplus)))
            self._outlooks[i] = held
        s0, o = held
        k = s - s0  # the same outlook, from this slot on
        return Outlook(sc.slot_start(s), sc.slot_s, o.import_price[k:], o.export_price[k:], o.surplus_w[k:],
                       max(0.0, -grid_w))

    def log(self) -> RunLog:
        return RunLog(dict(self.starts), list(self.runs), self.sc.end)


__all__ = ["RunDriver", "RunLog", "run_power_w", "runs_when_armed"]
