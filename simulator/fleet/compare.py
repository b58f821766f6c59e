"""`vpp-sim run --mode live`: the fleet strategy as real processes, next to fast mode on the same scenario."""

from __future__ import annotations

import asyncio
import io
import json
import math
import sys
from pathlib import Path
from typing import Any, TextIO

from simulator.fleet.engine import simulate
from simulator.fleet.kpis import kpis
from simulator.fleet.live import LiveStats, run_live
from simulator.fleet.model import Scenario
from simulator.fleet.strategies import StrategyOptions

TOL_REL = 0.05  # live and fast agree within 5 % ...
FLOORS = {"cost": 0.5, "energy_over_limits_kwh": 1.0}  # ... or within these absolute amounts (EUR, kWh)
SHOWN = ("cost", "energy_over_limits_kwh", "self_consumption_ratio", "self_sufficiency", "peak_feeder_load_w",
         "export_cap_violations", "equivalent_cycles", "pv_curtailed_kwh", "grid_import_kwh", "grid_export_kwh")


def agreement(fast: dict[str, Any], live: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per checked figure: both values, the difference, and whether it is within tolerance."""
    out = {}
    for k, floor in FLOORS.items():
        a, b = float(fast[k]), float(live[k])
        diff = abs(a - b)
        rel = diff / max(abs(a), 1e-9)
        out[k] = {"fast": a, "live": b, "difference": round(diff, 3), "relative": round(rel, 4) if a else None,
                  "within": diff <= max(TOL_REL * abs(a), floor)}
    return out


def run_live_comparison(sc: Scenario, warm_slots: int, *, speed: float, options: StrategyOptions,
                        json_path: Path | None, show_progress: bool, out: TextIO = sys.stdout) -> int:
    """Run live, then fast, print both and the agreement; 0 when they agree, 1 when not."""
    if warm_slots:
        # a live warm-up would take hours of wall time: both modes start with empty history
        sc = sc.window(warm_slots, sc.t)
    live_opts = None
    if options.replan_s != 3600:
        from simulator.fleet.live import LiveOptions

        live_opts = LiveOptions(replan_s=options.replan_s)
    stats = LiveStats()
    print(f"live mode: {sc.n} houses, {sc.t * sc.slot_s / 3600:g} h from {sc.start:%Y-%m-%d %H:%M} UTC at "
          f"{speed:g}x (about {sc.t * sc.slot_s / speed / 60:.1f} min)", file=sys.stderr)
    live = asyncio.run(run_live(sc, speed=speed, out=sys.stderr if show_progress else io.StringIO(),
                                options=live_opts, stats=stats))
    fast = simulate(sc, "fleet", options)
    fk = kpis(sc, fast.grid_w, fast.battery_w, fast.soc_pct, fast.pv_used_w)
    lk = kpis(sc, live.grid_w, live.battery_w, live.soc_pct, live.pv_used_w)
    agree = agreement(fk, lk)
    width = max(len(k) for k in SHOWN)
    print(f"\n{'fleet strategy':<{width}}  {'fast':>12}  {'live':>12}", file=out)
    for k in SHOWN:
        a, b = fk[k], lk[k]
        def fmt(v):
            return ("-" if v is None else (f"{v:,.4f}" if isinstance(v, float) and abs(v) < 2 else f"{v:,}"))
        mark = "" if k not in agree else ("  ok" if agree[k]["within"] else "  DIFFERS")
        print(f"{k:<{width}}  {fmt(a):>12}  {fmt(b):>12}{mark}", file=out)
    ok = all(v["within"] for v in agree.values())
    print(f"\nlive vs fast: {'agree' if ok else 'DISAGREE'} (cost and energy over limits within "
          f"{TOL_REL:.0%} or {FLOORS['cost']:g} {sc.currency} / {FLOORS['energy_over_limits_kwh']:g} kWh); "
          f"wall {stats.wall_s:.0f} s, {stats.processes} processes, plans sent {stats.plans_sent}", file=out)
    if json_path is not None:
        doc = {"fleet": lk, "fleet_fast": fk, "agreement": agree,
               "live": {"wall_s": round(stats.wall_s, 1), "processes": stats.processes, "speed": speed,
                        "cpu_s": stats.cpu_s, "rss_mb": stats.rss_mb}}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(doc, indent=2, allow_nan=False, default=lambda o: None
                                        if isinstance(o, float) and math.isnan(o) else str(o)) + "\n")
        print(f"figures written to {json_path}", file=out)
    return 0 if ok else 1
