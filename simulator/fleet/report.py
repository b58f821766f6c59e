"""The report of a run: terminal table, JSON file, PNG plots."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from simulator.fleet.model import Scenario
from simulator.fleet.runner import RunResult
from vpp_common.localtime import zone

JSON_KEYS = ("cost", "self_consumption_ratio", "self_sufficiency", "peak_feeder_load_w", "energy_over_limits_kwh",
             "export_cap_violations", "equivalent_cycles")
LABELS = {
    "no_battery": "no battery",
    "battery_idle": "battery idle",
    "self_consumption": "self-consumption",
    "tou": "local time-of-use",
    "fleet": "fleet-optimised",
    "perfect_foresight": "perfect foresight",
}


def _fmt(v: Any, pct: bool = False, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if pct:
        return f"{v * 100:.{digits}f} %"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def _peak(p: dict[str, Any]) -> str:
    """'93 % f2': the share of the limit and the feeder ('41.2 kW f2' where no feeder has a limit)."""
    if p["pct_of_limit"] is None:
        return f"{p['w'] / 1000:,.1f} kW {p['feeder']}"
    return f"{p['pct_of_limit']:.0f} % {p['feeder']}"


PEAK_NOTE = "peak import/export: a feeder's highest net power that way, as % of its limit then (kW if none), and the feeder"


def table(result: RunResult) -> str:
    sc, fig = result.scenario, result.figures
    cur = sc.currency
    cols = [
        ("strategy", lambda n, f: LABELS.get(n, n)),
        (f"cost {cur}", lambda n, f: _fmt(f["cost"], digits=2)),
        (f"saving {cur}", lambda n, f: _fmt(f.get("saving_vs_battery_idle"), digits=2)),
        ("of best", lambda n, f: _fmt(f.get("share_of_perfect_foresight_saving"), pct=True, digits=0)),
        ("self-cons.", lambda n, f: _fmt(f["self_consumption_ratio"], pct=True)),
        ("self-suff.", lambda n, f: _fmt(f["self_sufficiency"], pct=True)),
        ("peak import", lambda n, f: _peak(f["peak_import"])),
        ("peak export", lambda n, f: _peak(f["peak_export"])),
        ("over limits kWh", lambda n, f: _fmt(f["energy_over_limits_kwh"], digits=1)),
        ("cap viol.", lambda n, f: _fmt(f["export_cap_violations"])),
        ("cycles", lambda n, f: _fmt(f["equivalent_cycles"], digits=2)),
        ("curtailed kWh", lambda n, f: _fmt(f["pv_curtailed_kwh"], digits=1)),
    ]
    rows = [[c[0] for c in cols]] + [[str(c[1](n, f)) for c in cols] for n, f in fig.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths, strict=True))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _when(sc: Scenario, at: datetime) -> str:
    """An instant on the fleet's clock (its days are local days), with UTC beside it."""
    if sc.timezone == "UTC":
        return f"{at:%Y-%m-%d %H:%M} UTC"
    local = at.astimezone(zone(sc.timezone))
    return f"{local:%Y-%m-%d %H:%M} {sc.timezone} ({at:%Y-%m-%d %H:%M} UTC)"


def header(sc: Scenario, first_slot: int) -> str:
    days = (sc.t - first_slot) * sc.slot_s / 86400
    warm = first_slot * sc.slot_s / 86400
    kwp = sum(h.pv_kwp for h in sc.houses)
    kwh = sum(h.battery_kwh for h in sc.houses)
    start = sc.slot_start(first_slot)
    lines = [
        f"scenario {sc.name!r}: {sc.n} houses on {len(sc.feeder_ids)} feeders, {kwp:,.0f} kWp PV, "
        f"{kwh:,.0f} kWh batteries ({sum(h.has_battery for h in sc.houses)} houses)",
        f"  {days:g} days from {_when(sc, start)}"
        + (f" after {warm:g} days of warm-up (forecasters learn; not counted)" if first_slot else ""),
    ]
    for k, v in sc.sources.items():
        lines.append(f"  {k}: {v}")
    return "\n".join(lines)


def print_report(result: RunResult, out: TextIO) -> None:
    print(header(result.scenario, result.first_slot), file=out)
    print(file=out)
    print(table(result), file=out)
    print(PEAK_NOTE, file=out)
    fig = result.figures
    if "fleet" in fig and "perfect_foresight" in fig and "share_of_perfect_foresight_saving" in fig["fleet"]:
        print(f"\nfleet-optimised gets {fig['fleet']['share_of_perfect_foresight_saving']:.1%} of the perfect-"
              f"foresight saving (both against an idle battery), from forecasts only.", file=out)


def to_json(result: RunResult) -> dict[str, Any]:
    """Top-level keys by strategy; each with the required figures first, then the rest."""
    out: dict[str, Any] = {}
    for name, f in result.figures.items():
        out[name] = {k: f[k] for k in JSON_KEYS} | {k: v for k, v in f.items() if k not in JSON_KEYS}
    return out


def write_json(result: RunResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(result), indent=2, allow_nan=False) + "\n")


def write_plots(result: RunResult, folder: Path) -> list[Path]:
    """fleet_power.png (per feeder, net power vs limits), soc.png (SoC spread), cost.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    sc, s0 = result.scenario, result.first_slot
    times = [sc.slot_start(i) for i in range(s0, sc.t)]
    fidx = sc.feeder_index()
    written = []
    show = [s for s in ("self_consumption", "tou", "fleet", "perfect_foresight") if s in result.traces]
    nf = len(sc.feeder_ids)
    fig, axes = plt.subplots(nf, 1, figsize=(12, 2.8 * nf), sharex=True, squeeze=False)
    for k, fid in enumerate(sc.feeder_ids):
        ax = axes[k][0]
        for name in show:
            g = result.traces[name].grid_w[fidx == k, s0:].sum(axis=0) / 1000
            ax.plot(times, g, lw=1.0, label=LABELS[name])
        imp, exp = sc.feeder_import_limit_w[k, s0:], sc.feeder_export_limit_w[k, s0:]
        if np.isfinite(imp).any():
            ax.plot(times, imp / 1000, "k--", lw=1, label="import limit")
        if np.isfinite(exp).any():
            ax.plot(times, -exp / 1000, "r--", lw=1, label="export limit")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_ylabel(f"{fid} kW\n(import > 0)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="upper right", ncol=3, fontsize=8)
    axes[-1][0].xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=zone(sc.timezone)))
    fig.suptitle(f"{sc.name}: net feeder power vs limits (time: {sc.timezone})")
    fig.autofmt_xdate()
    fig.tight_layout()
    written.append(folder / "fleet_power.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    has = np.array([h.has_battery for h in sc.houses])
    fig, axes = plt.subplots(len(show), 1, figsize=(12, 2.4 * max(1, len(show))), sharex=True, squeeze=False)
    for k, name in enumerate(show):
        soc = result.traces[name].soc_pct[has, s0:]
        ax = axes[k][0]
        if soc.size:
            p10, p50, p90 = np.percentile(soc, [10, 50, 90], axis=0)
            ax.fill_between(times, p10, p90, alpha=0.3, label="10-90 %")
            ax.plot(times, p50, lw=1.2, label="median")
        ax.set_ylim(0, 100)
        ax.set_ylabel(f"SoC %\n{LABELS[name]}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="upper right", fontsize=8)
    axes[-1][0].xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=zone(sc.timezone)))
    fig.suptitle("battery state of charge across the fleet")
    fig.autofmt_xdate()
    fig.tight_layout()
    written.append(folder / "soc.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    names = list(result.figures)
    costs = [result.figures[n]["cost"] for n in names]
    fig, ax = plt.subplots(figsize=(9, 4))
    bars = ax.bar([LABELS.get(n, n) for n in names], costs, color=["#999", "#bbb", "#6a9", "#69c", "#c63", "#333"][: len(names)])
    for b, c in zip(bars, costs, strict=True):
        ax.annotate(f"{c:,.0f}", (b.get_x() + b.get_width() / 2, c), ha="center", va="bottom", fontsize=8)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel(f"energy cost ({sc.currency})")
    ax.set_title("fleet energy cost by strategy (lower is better)")
    plt.setp(ax.get_xticklabels(), rotation=15)
    fig.tight_layout()
    written.append(folder / "cost.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written
