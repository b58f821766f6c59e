"""What placing shiftable runs is worth on vpp-sim's default scenario (docs/fleet-strategy.md,
"Shiftable runs"): every house runs a washing machine once a day (1.1 kWh over 2 h: 30 min at
2 kW, 90 min at 67 W) that may run between 07:00 and 17:00 Berlin time.  Its cost at the
house's marginal price without a battery (PV surplus at the export price, the rest at the
import price, on the real load and PV) when it starts at 07:00 (as loaded, no aggregator)
against the start ``aggregator.dispatch.runs`` chooses at 07:00 on a forecast: the real day
(perfect), or the same slots of the day before (persistence).

    PYTHONPATH=.:proto .venv/bin/python benchmarks/run_placement.py
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from aggregator.dispatch.runs import RunHorizon, choose_start, energy_on_slots
from simulator.fleet.default_scenario import default_scenario
from vpp_common.messages import ProfileStep, RunState, ShiftableRunFlexibility

PROFILE = (ProfileStep(1800.0, 2000.0), ProfileStep(5400.0, 66.7))
FIRST_DAY, DAYS = 2, 7  # the default week, after its two days of warm-up
OPEN_H, CLOSE_H = 5, 15  # 07:00-17:00 CEST in UTC
END_H = 22  # the Berlin day ends at 22:00 UTC: the prices known in the morning


def _cost(e_wh: np.ndarray, net_w: np.ndarray, slot_h: float, pi: np.ndarray, pe: np.ndarray) -> float:
    cover = np.clip(e_wh, 0.0, np.maximum(-net_w, 0.0) * slot_h)
    return float(((cover * pe).sum() + ((e_wh - cover) * pi).sum()) / 1000.0)


def main() -> None:
    sc = default_scenario()
    per_day = 86_400 // sc.slot_s
    slot_h = sc.slot_s / 3600.0
    totals = {"earliest": 0.0, "perfect": 0.0, "persistence": 0.0}
    runs = 0
    for d in range(FIRST_DAY, FIRST_DAY + DAYS):
        s0 = d * per_day + OPEN_H * 3600 // sc.slot_s
        s1 = d * per_day + END_H * 3600 // sc.slot_s
        start = sc.slot_start(s0)
        pi, pe = sc.import_price_per_kwh[s0:s1], sc.export_price_per_kwh[s0:s1]
        h = RunHorizon(start, sc.slot_s, s1 - s0, start, pi, pe)
        run = ShiftableRunFlexibility("washer", PROFILE, start, start + timedelta(hours=CLOSE_H - OPEN_H),
                                      RunState.WAITING)
        for i in range(sc.n):
            real = sc.load_w[i, s0:s1] - sc.pv_w[i, s0:s1]
            yesterday = sc.load_w[i, s0 - per_day:s1 - per_day] - sc.pv_w[i, s0 - per_day:s1 - per_day]
            room = np.full(s1 - s0, np.inf)
            for name, start_s in (("earliest", 0.0),
                                  ("perfect", _chosen(run, h, real, room)),
                                  ("persistence", _chosen(run, h, yesterday, room))):
                e = energy_on_slots(PROFILE, np.array([start_s]), sc.slot_s, s1 - s0)[0]
                totals[name] += _cost(e, real, slot_h, pi, pe)
            runs += 1
    print(f"{runs} runs of 1.1 kWh ({sc.n} houses x {DAYS} days), mean cost per run:")
    for name, total in totals.items():
        print(f"  {name:12s} {100 * total / runs:6.2f} ct  (fleet {total:7.2f} {sc.currency})")


def _chosen(run: ShiftableRunFlexibility, h: RunHorizon, net_w: np.ndarray, room_w: np.ndarray) -> float:
    chosen = choose_start(run, h, net_w, room_w)
    assert not isinstance(chosen, str)
    return (chosen[0] - h.start).total_seconds()


if __name__ == "__main__":
    main()
