#!/usr/bin/env python3
"""Tuning variants of the evaluation set: a tuning scenario's data under another tariff, with or
without its feeder limits, to study on tuning data what a held-out scenario shows (issue 18: no
parameter is chosen on a held-out scenario).

    python -m benchmarks.tuning_variants de_dayahead_summer [--tariff flat] [--keep-limits]
                                           [--strategies fleet,self_consumption] [--workers 1]

The flat variant of ``de_dayahead_summer`` (no feeder limit) is where the fleet was found behind
``self_consumption`` as on the held-out ``de_flat_summer`` (docs/fleet-strategy.md, "Selling
battery energy late").  Prints each strategy's cost and, with ``battery_idle`` and
``perfect_foresight`` among the strategies, its share of the perfect-foresight saving.
"""

from __future__ import annotations

import argparse
import dataclasses

from simulator.fleet import evalset
from simulator.fleet.evalset.build import build
from simulator.fleet.runner import add_savings, run_fast

ALL = ("battery_idle", "self_consumption", "tou", "fleet", "perfect_foresight")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", choices=[s.name for s in evalset.SPECS if s.role == evalset.TUNING])
    ap.add_argument("--tariff", default="flat", choices=("flat", "time_of_use", "day_ahead"))
    ap.add_argument("--keep-limits", action="store_true", help="keep the scenario's feeder limits")
    ap.add_argument("--strategies", default=",".join(ALL))
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    spec = evalset.spec(a.scenario)
    if not a.keep_limits:
        spec = dataclasses.replace(spec, feeder_export_fraction=None, feeder_import_w_per_house=None, binds=())
    spec = dataclasses.replace(spec, name=f"{spec.name}_{a.tariff}", tariff=a.tariff)
    sc, meta = build(spec)
    res = run_fast(sc, tuple(a.strategies.split(",")), warmup_slots=meta.warmup_slots, workers=a.workers,
                   show_progress=False)
    add_savings(res.figures)
    for name, f in res.figures.items():
        share = f.get("share_of_perfect_foresight_saving")
        print(f"{name:18s} cost {f['cost']:9.2f}  over limits {f['energy_over_limits_kwh']:6.1f} kWh"
              + (f"  share {share:.1%}" if share is not None else ""))


if __name__ == "__main__":
    main()
