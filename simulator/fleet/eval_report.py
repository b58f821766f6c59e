"""``vpp-sim eval``: every scenario of the evaluation set under every strategy, one table.

Per scenario: each strategy's share of the perfect-foresight saving, the fleet's energy over
feeder limits against the least possible (perfect foresight's), the fleet's cost against the
best local strategy, and, where a limit binds, what honouring the limits cost (fleet with
minus fleet without them, beside perfect foresight's same figure).  The acceptance rules of
issue 18 are checked per scenario; the summary gives the median and worst fleet share.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from simulator.fleet import evalset
from simulator.fleet.evalset.build import EvalMeta
from simulator.fleet.model import Scenario
from simulator.fleet.runner import add_savings, run_fast

STRATEGIES = ("battery_idle", "self_consumption", "tou", "fleet", "perfect_foresight")
LOCAL = ("tou", "self_consumption")
UNLIMITED = ("fleet", "perfect_foresight")  # run again with the feeder limits lifted where a limit binds
OVER_LIMIT_SLACK_KWH = 0.5  # per feeder and week, over the least possible
MEDIAN_SHARE, WORST_SHARE = 0.90, 0.85
COST_EPS = 0.005  # rounding of the reported costs


@dataclass
class Outcome:
    meta: EvalMeta
    scenario: Scenario
    figures: dict[str, dict[str, Any]]  # strategy -> kpis; "<strategy>@unlimited" for the lifted runs

    @property
    def counted_weeks(self) -> float:
        return (self.scenario.t - self.meta.warmup_slots) * self.scenario.slot_s / (7 * 86400)

    def share(self, strategy: str) -> float | None:
        return self.figures.get(strategy, {}).get("share_of_perfect_foresight_saving")

    def over(self, strategy: str) -> float:
        return float(self.figures[strategy]["energy_over_limits_kwh"])

    def over_allowance(self) -> float:
        return self.over("perfect_foresight") + OVER_LIMIT_SLACK_KWH * len(self.scenario.feeder_ids) * self.counted_weeks

    def best_local(self) -> tuple[str, float]:
        name = min(LOCAL, key=lambda s: self.figures[s]["cost"])
        return name, float(self.figures[name]["cost"])

    def fleet_vs_local(self) -> float:
        return float(self.figures["fleet"]["cost"]) - self.best_local()[1]

    def honour_cost(self, strategy: str) -> float | None:
        lifted = self.figures.get(f"{strategy}@unlimited")
        return None if lifted is None else round(float(self.figures[strategy]["cost"]) - float(lifted["cost"]), 2)

    def rules(self) -> dict[str, bool | None]:
        """Acceptance per scenario; None where a rule does not apply."""
        return {
            "over_limit": self.over("fleet") <= self.over_allowance() + 1e-9,
            "not_behind_local": (self.fleet_vs_local() <= COST_EPS) if not self.meta.binds else None,
        }


def lift_limits(sc: Scenario) -> Scenario:
    return replace(sc, name=f"{sc.name} (limits lifted)",
                   feeder_import_limit_w=np.full_like(sc.feeder_import_limit_w, np.inf),
                   feeder_export_limit_w=np.full_like(sc.feeder_export_limit_w, np.inf))


def _scenario(name: str, days: float | None, houses: int | None) -> tuple[Scenario, EvalMeta]:
    sc, meta = evalset.build(name)
    if houses is not None:
        sc = sc.select([h.house_id for h in sc.houses[:houses]])
    if days is not None:
        sc = sc.head(meta.warmup_slots + int(round(days * 86400 / sc.slot_s)))
    return sc, meta


def _job(name: str, lifted: bool, days: float | None, houses: int | None, workers: int) -> dict[str, dict[str, Any]]:
    """One run of a scenario: every strategy with its limits, or those of ``UNLIMITED`` without."""
    sc, meta = _scenario(name, days, houses)
    strategies, note = (UNLIMITED, " (limits lifted)") if lifted else (STRATEGIES, "")
    t0 = time.perf_counter()
    res = run_fast(lift_limits(sc) if lifted else sc, strategies, warmup_slots=meta.warmup_slots, workers=workers,
                   show_progress=False)
    times = ", ".join(f"{s} {res.figures[s]['run']['wall_s']:.1f} s" for s in strategies)
    print(f"  {name}{note}: {times}; {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    figs = res.figures
    return {f"{k}@unlimited": v for k, v in figs.items()} if lifted else figs


def run_set(names: list[str], *, workers: int | None = None, days: float | None = None,
            houses: int | None = None) -> list[Outcome]:
    """Every scenario of ``names`` (optionally cut to ``days`` counted and the first ``houses``).

    The runs (per scenario: with its limits, and without them where a limit binds) are
    independent jobs: with ``workers`` > 1 they run in that many processes, each run in-process
    (the 2-core machine is used best by whole runs side by side, not by solver processes)."""
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    with _stdout_to_stderr():
        figs = _run_jobs(names, workers, days, houses)
    out = []
    for n in names:
        sc, meta = _scenario(n, days, houses)
        add_savings(figs[n])
        out.append(Outcome(meta, sc, figs[n]))
    return out


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """The solver's banner (written by the C library to file descriptor 1, also by the processes
    started meanwhile) goes to stderr: stdout holds the table alone."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _run_jobs(names: list[str], workers: int, days: float | None,
              houses: int | None) -> dict[str, dict[str, dict[str, Any]]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(n, False) for n in names] + [(n, True) for n in names if evalset.spec(n).binds]
    figs: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in names}
    if workers <= 1 or len(jobs) == 1:
        for n, lifted in jobs:
            figs[n].update(_job(n, lifted, days, houses, 1 if len(jobs) > 1 else workers))
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
            futs = {(n, lifted): ex.submit(_job, n, lifted, days, houses, 1) for n, lifted in jobs}
            for (n, _), f in futs.items():
                figs[n].update(f.result())
    return figs


# --- report -----------------------------------------------------------------------------------------

def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}"


def _ok(v: bool | None) -> str:
    return "n/a" if v is None else ("pass" if v else "FAIL")


def _row(o: Outcome) -> list[str]:
    m, r = o.meta, o.rules()
    hf, hp = o.honour_cost("fleet"), o.honour_cost("perfect_foresight")
    return [
        m.name, m.role, m.climate, m.season, m.tariff.kind, "+".join(m.binds) or "none",
        _pct(o.share("self_consumption")), _pct(o.share("tou")), _pct(o.share("fleet")),
        f"{o.over('fleet'):.1f}/{o.over('perfect_foresight'):.1f}",
        f"{o.fleet_vs_local():+.2f} {o.scenario.currency}",
        "-" if hf is None or hp is None else f"{hf:.2f}/{hp:.2f}",
        _ok(r["over_limit"]), _ok(r["not_behind_local"]),
    ]


HEAD = ["scenario", "role", "climate", "season", "tariff", "binds", "self-c %", "tou %", "fleet %",
        "over kWh fleet/least", "fleet-best local", "limits cost fleet/pf", "over rule", "local rule"]


def table(outcomes: list[Outcome]) -> str:
    rows = [HEAD] + [_row(o) for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(x.ljust(w) if i < 6 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths, strict=True))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.extend(summary_lines(outcomes))
    return "\n".join(lines)


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    shares = {o.meta.name: o.share("fleet") for o in outcomes}
    known = {k: v for k, v in shares.items() if v is not None}
    worst = min(known, key=lambda k: known[k]) if known else None
    med = statistics.median(known.values()) if known else None
    rules = [o.rules() for o in outcomes]
    return {
        "fleet_share_median": med, "fleet_share_worst": known.get(worst) if worst else None, "worst_scenario": worst,
        "median_ok": med is not None and med >= MEDIAN_SHARE,
        "worst_ok": worst is not None and known[worst] >= WORST_SHARE,
        "over_limit_pass": sum(bool(r["over_limit"]) for r in rules), "scenarios": len(outcomes),
        "not_behind_local_pass": sum(r["not_behind_local"] is True for r in rules),
        "not_behind_local_applies": sum(r["not_behind_local"] is not None for r in rules),
    }


def summary_lines(outcomes: list[Outcome]) -> list[str]:
    s = summary(outcomes)
    med = "-" if s["fleet_share_median"] is None else f"{s['fleet_share_median'] * 100:.1f} %"
    worst = "-" if s["fleet_share_worst"] is None else f"{s['fleet_share_worst'] * 100:.1f} % ({s['worst_scenario']})"
    return [
        f"fleet share of the perfect-foresight saving: median {med} (>= {MEDIAN_SHARE:.0%}: "
        f"{_ok(s['median_ok'])}), worst {worst} (>= {WORST_SHARE:.0%}: {_ok(s['worst_ok'])})",
        f"over-limit rule (fleet <= least possible + {OVER_LIMIT_SLACK_KWH} kWh per feeder-week): "
        f"{s['over_limit_pass']}/{s['scenarios']} pass; not behind the best local strategy where no limit binds: "
        f"{s['not_behind_local_pass']}/{s['not_behind_local_applies']} pass",
        "columns: shares in % of perfect foresight's saving over battery_idle; over kWh = energy over feeder limits "
        "(fleet / perfect foresight = least possible); fleet-best local = fleet cost minus min(tou, self_consumption); "
        "limits cost = cost with limits minus cost with them lifted",
    ]


def json_records(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """One object per scenario and strategy (lifted runs: strategy ``fleet`` etc., ``limits`` = "lifted")."""
    keys = ("cost", "saving_vs_battery_idle", "share_of_perfect_foresight_saving", "energy_over_limits_kwh",
            "slots_over_limits", "peak_feeder_load_pct_of_limit", "export_cap_violations", "self_consumption_ratio",
            "self_sufficiency", "equivalent_cycles", "pv_curtailed_kwh", "grid_import_kwh", "grid_export_kwh")
    out = []
    for o in outcomes:
        m = o.meta
        for key, f in o.figures.items():
            strategy, _, lifted = key.partition("@")
            rec: dict[str, Any] = {
                "scenario": m.name, "role": m.role, "climate": m.climate, "season": m.season, "timezone": m.timezone,
                "tariff": m.tariff.kind, "currency": o.scenario.currency, "binds": list(m.binds),
                "houses": o.scenario.n, "feeders": len(o.scenario.feeder_ids), "counted_weeks": round(o.counted_weeks, 3),
                "strategy": strategy, "limits": "lifted" if lifted else "as given",
                **{k: f.get(k) for k in keys}, "wall_s": f.get("run", {}).get("wall_s"),
            }
            if key == "fleet":
                rec.update({"least_energy_over_limits_kwh": o.over("perfect_foresight"),
                            "over_limit_allowance_kwh": round(o.over_allowance(), 3),
                            "best_local": o.best_local()[0], "fleet_minus_best_local": round(o.fleet_vs_local(), 2),
                            "honour_limits_cost": o.honour_cost("fleet"),
                            "honour_limits_cost_perfect_foresight": o.honour_cost("perfect_foresight"),
                            "rules": o.rules()})
            out.append(rec)
    return out
