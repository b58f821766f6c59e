"""What appliance flexibility adds: each strategy with the runs started when armed against the same
strategy with the runs placed (``vpp-sim run`` on a scenario whose houses have shiftable runs)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from simulator.fleet.appliance_runs import runs_when_armed
from simulator.fleet.model import Scenario
from simulator.fleet.report import LABELS
from simulator.fleet.runner import RunResult, run_fast

LOCAL = ("self_consumption", "tou")


class DeadlineMissed(AssertionError):
    """A run not finished by its ready_by: a bug (the edge starts a run at the last moment)."""


def run_with_and_without(sc: Scenario, strategies: tuple[str, ...], **kw: Any) -> tuple[RunResult, RunResult]:
    """(runs started when armed, runs placed): the strategies on the scenario twice."""
    armed = run_fast(runs_when_armed(sc), strategies, **kw)
    placed = run_fast(sc, strategies, **kw)
    return armed, placed


def comparison(armed: RunResult, placed: RunResult) -> dict[str, Any]:
    """Per strategy: cost and energy over limits with the runs started when armed and placed, the
    difference, what happened to the runs; the best local strategy named.  Raises DeadlineMissed."""
    out: dict[str, Any] = {}
    for name, f in placed.figures.items():
        a = armed.figures[name]
        runs = f.get("appliance_runs") or {}
        if runs.get("deadlines_missed", 0):
            raise DeadlineMissed(f"{name}: {runs['deadlines_missed']} run(s) not finished by their ready_by")
        out[name] = {
            "cost_when_armed": a["cost"], "cost_placed": f["cost"], "saving": round(a["cost"] - f["cost"], 2),
            "over_limits_kwh_when_armed": a["energy_over_limits_kwh"],
            "over_limits_kwh_placed": f["energy_over_limits_kwh"],
            "runs": runs.get("runs", 0), "moved": runs.get("moved", 0), "mean_shift_h": runs.get("mean_shift_h", 0.0),
            "deadlines_missed": runs.get("deadlines_missed", 0),
            "placed_by": ("aggregator placement" if name in ("fleet", "perfect_foresight")
                          else "edge scheduler" if name in LOCAL else "started when armed"),
        }
    local = [n for n in LOCAL if n in out]
    best = min(local, key=lambda n: out[n]["cost_placed"]) if local else None
    return {"strategies": out, "best_local": best}


def table(cmp: dict[str, Any], currency: str) -> str:
    rows = [["strategy", "runs by", f"cost armed {currency}", f"placed {currency}", f"saving {currency}",
             "over lim. armed kWh", "placed kWh", "runs", "moved", "mean shift h", "missed"]]
    for name, c in cmp["strategies"].items():
        rows.append([LABELS.get(name, name), c["placed_by"], f"{c['cost_when_armed']:,.2f}", f"{c['cost_placed']:,.2f}",
                     f"{c['saving']:,.2f}", f"{c['over_limits_kwh_when_armed']:,.1f}",
                     f"{c['over_limits_kwh_placed']:,.1f}", str(c["runs"]), str(c["moved"]),
                     f"{c['mean_shift_h']:.2f}", str(c["deadlines_missed"])])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(x.ljust(w) if i < 2 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths, strict=True))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_comparison(cmp: dict[str, Any], sc: Scenario, out: TextIO = sys.stdout) -> None:
    n_houses = len({r.house_id for r in sc.appliance_runs})
    print(f"\nappliance flexibility: {len(sc.appliance_runs)} shiftable runs in {n_houses} houses "
          f"(whole scenario; 'runs' counts those after the warm-up); each strategy with every run started when "
          f"armed against the same strategy with the runs placed", file=out)
    print(table(cmp, sc.currency), file=out)
    s = cmp["strategies"]
    if "fleet" in s and cmp["best_local"] is not None:
        b = cmp["best_local"]
        print(f"fleet: placing runs saves {s['fleet']['saving']:,.2f} {sc.currency}; the best local strategy "
              f"({LABELS[b]}) {s[b]['saving']:,.2f} {sc.currency}; no deadline missed.", file=out)


__all__ = ["DeadlineMissed", "comparison", "print_comparison", "run_with_and_without", "table"]
