"""Checks of scenario input beyond its types: gaps in series and implausible magnitudes.

A file that parses can still be misread: a series with hours missing, prices per MWh
given as per kWh, a load in W given as kW.  Each check raises ``ScenarioError`` naming
the file, the line, the field, the value and why; the thresholds are the defaults of
``Plausibility`` (``[scenario.checks]`` in scenario.toml raises them), and what they are
and why is in docs/scenario-format.md ("Checks").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from simulator.fleet.errors import ScenarioError

GapFill = Literal["error", "hold", "interpolate", "zero"]
GAP_FACTOR = 2  # a step longer than this many typical steps is a gap


class Plausibility(BaseModel):
    """Largest (and smallest) values believed; docs/scenario-format.md says why each."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_load_w: float = Field(40_000, gt=0)  # 3 x 63 A connection (43.5 kW): 22 kW charger + heat pump + cooking
    max_load_vs_supply: float = Field(2.0, ge=1)  # load <= this x (import limit + battery kW + PV peak)
    max_pv_w_per_kwp: float = Field(1200, gt=0)  # STC is 1000 W/kWp; cold, clear edge-of-cloud minutes reach ~1.1
    max_pv_kwp: float = Field(100, gt=0)
    max_battery_kwh: float = Field(250, gt=0)  # home batteries 5-30 kWh; a farm's or a V2H car's up to ~200
    max_battery_kw: float = Field(100, gt=0)
    min_house_limit_w: float = Field(100, gt=0)  # below: a limit in kW given as W
    min_feeder_limit_w: float = Field(1000, gt=0)
    max_limit_w: float = Field(1e8, gt=0)  # 100 MW; larger is no limit: leave the cell empty
    max_price_per_kwh: float = Field(10, gt=0)  # day-ahead caps are 4-5 per kWh (4000 EUR/MWh, 5000 USD/MWh)
    min_price_per_kwh: float = Field(-1, lt=0)  # day-ahead floors are -0.5 per kWh (-500 EUR/MWh)


def _fail(path: str, line: int, field: str, value: float, why: str, key: str | None = None) -> ScenarioError:
    hint = f" (a real value? raise {key} in [scenario.checks] of scenario.toml)" if key else ""
    return ScenarioError(path, f"{value:g} {why}{hint}", line, field)


def _first(bad: np.ndarray) -> int | None:
    return int(np.argmax(bad)) if bad.any() else None


def check_house(path: str, line: int, row: Mapping[str, float | None], lim: Plausibility) -> None:
    """One row of houses.csv (limits: None = no limit)."""
    for field, top, key, unit in (("pv_kwp", lim.max_pv_kwp, "max_pv_kwp", "kWp"),
                                  ("battery_kwh", lim.max_battery_kwh, "max_battery_kwh", "kWh"),
                                  ("battery_kw", lim.max_battery_kw, "max_battery_kw", "kW")):
        v = row[field]
        if v is not None and v > top:
            raise _fail(path, line, field, v, f"{unit} is more than {top:g} {unit} for one house", key)
    for field in ("export_cap_w", "import_limit_w"):
        v = row[field]
        if v is not None and v < lim.min_house_limit_w:
            raise _fail(path, line, field, v, f"W is below {lim.min_house_limit_w:g} W: limits are in W, not kW "
                        "(an empty cell means no limit)", "min_house_limit_w" if v > 0 else None)
        if v is not None and v > lim.max_limit_w:
            raise _fail(path, line, field, v, f"W is more than {lim.max_limit_w:g} W (an empty cell means no limit)")


def check_house_series(path: str, cols: Mapping[str, np.ndarray], house: Mapping[str, float],
                       lim: Plausibility) -> None:
    """Load and PV of one house's series file, row by row (before any gap is filled)."""
    if "pv_production_w_per_kwp" in cols:
        pv_col, pv_top = "pv_production_w_per_kwp", lim.max_pv_w_per_kwp
        why = f"W/kWp is more than {lim.max_pv_w_per_kwp:g} W per kWp"
    else:
        pv_col, pv_top = "pv_production_w", lim.max_pv_w_per_kwp * house["pv_kwp"] + 100.0
        why = (f"W is more than {lim.max_pv_w_per_kwp:g} W per kWp of the house's {house['pv_kwp']:g} kWp "
               "(houses.csv) + 100 W")
    i = _first(cols[pv_col] > pv_top)
    if i is not None:
        raise _fail(path, i + 2, pv_col, float(cols[pv_col][i]), why, "max_pv_w_per_kwp")
    load = cols["load_w"]
    i = _first(load > lim.max_load_w)
    if i is not None:
        raise _fail(path, i + 2, "load_w", float(load[i]), f"W is more than {lim.max_load_w:g} W for one house "
                    "(kW given as W?)", "max_load_w")
    if np.isfinite(house["import_limit_w"]):
        supply = house["import_limit_w"] + 1000 * house["battery_kw"] + lim.max_pv_w_per_kwp * house["pv_kwp"]
        top = lim.max_load_vs_supply * supply
        i = _first(load > top)
        if i is not None:
            raise _fail(path, i + 2, "load_w", float(load[i]), f"W is more than {lim.max_load_vs_supply:g} x what "
                        f"the house can draw ({supply:g} W: import_limit_w + battery_kw + PV peak in houses.csv)",
                        "max_load_vs_supply")


def check_prices(path: str, cols: Mapping[str, np.ndarray], lim: Plausibility, *, to_per_kwh: float = 1.0,
                 unit: str = "per kWh") -> None:
    """Prices as given in ``unit``; ``to_per_kwh`` converts them to currency per kWh, where the
    thresholds apply (a declared price unit: the numbers are checked against what they mean)."""
    for col, given in cols.items():
        v = given * to_per_kwh
        shown = unit if to_per_kwh == 1.0 else f"{unit} ="
        for bad, side, bound, key in ((v > lim.max_price_per_kwh, "more than", lim.max_price_per_kwh,
                                       "max_price_per_kwh"),
                                      (v < lim.min_price_per_kwh, "below", lim.min_price_per_kwh, "min_price_per_kwh")):
            i = _first(bad)
            if i is not None:
                conv = "" if to_per_kwh == 1.0 else f" {v[i]:g} per kWh"
                raise _fail(path, i + 2, col, float(given[i]), f"{shown}{conv} is {side} {bound:g} per kWh (a price "
                            "in another unit than the one declared?)", key)


def check_feeder_limits(path: str, col: str, v: np.ndarray, lim: Plausibility) -> None:
    """A feeder limit column (inf = no limit; <= 0 is refused before)."""
    i = _first(v < lim.min_feeder_limit_w)
    if i is not None:
        raise _fail(path, i + 2, col, float(v[i]), f"W is below {lim.min_feeder_limit_w:g} W for a feeder: limits "
                    "are in W, not kW (an empty cell means no limit)", "min_feeder_limit_w")
    i = _first(np.isfinite(v) & (v > lim.max_limit_w))
    if i is not None:
        raise _fail(path, i + 2, col, float(v[i]), f"W is more than {lim.max_limit_w:g} W (an empty cell means "
                    "no limit)")


def typical_step_ns(t_ns: np.ndarray) -> int:
    """The median step of a series' timestamps (one hour for a file of one row)."""
    return int(np.median(np.diff(t_ns))) if len(t_ns) > 1 else 3600 * 10**9


def duration(ns: int | float) -> str:
    s = ns / 1e9
    if s >= 3600 and s % 900 == 0:
        return f"{s / 3600:g} h"
    if s >= 60 and s % 60 == 0:
        return f"{s / 60:g} min"
    return f"{s:g} s"


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def fill_gaps(path: str, t_ns: np.ndarray, cols: dict[str, np.ndarray], step_ns: int, policy: GapFill,
              max_gap_h: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Apply the gap policy: a step longer than ``GAP_FACTOR`` typical steps is a gap.

    "error" refuses the first; the others refuse a gap longer than ``max_gap_h`` and fill the
    rest: "hold" keeps the value before the gap (a step series does by itself), "zero" puts
    0 after one typical step, "interpolate" puts rows at the typical step on the line from the
    value before the gap to the one after."""
    d = np.diff(t_ns)
    gaps = np.flatnonzero(d > GAP_FACTOR * step_ns)
    if gaps.size == 0:
        return t_ns, cols
    missing = d - step_ns  # the row before holds for one typical step
    too_long = gaps if policy == "error" else gaps[missing[gaps] > max_gap_h * 3600e9]
    if too_long.size:
        i = int(too_long[0])
        what = (f"{duration(int(missing[i]))} missing before this row (from {_iso(int(t_ns[i] + step_ns))} on; "
                f"the file's step is {duration(step_ns)})")
        if policy == "error":
            raise ScenarioError(path, f"gap: {what}; fill it, or choose a gap_fill policy in scenario.toml "
                                "(docs/scenario-format.md)", i + 3, "timestamp")
        raise ScenarioError(path, f"gap: {what}, more than max_gap_h = {max_gap_h:g} h of scenario.toml",
                            i + 3, "timestamp")
    if policy == "hold":
        return t_ns, cols
    at: list[int] = []
    new_t: list[np.ndarray] = []
    new_v: dict[str, list[np.ndarray]] = {c: [] for c in cols}
    for g in gaps:
        i = int(g)
        k = np.arange(1, 2 if policy == "zero" else -(-int(d[i]) // step_ns))
        ts = t_ns[i] + k * step_ns
        at.append(i + 1)
        new_t.append(ts)
        for c, v in cols.items():
            fill = np.zeros(len(k)) if policy == "zero" else v[i] + (v[i + 1] - v[i]) * (ts - t_ns[i]) / d[i]
            new_v[c].append(fill)
    pos = np.repeat(at, [len(x) for x in new_t])
    t_out = np.insert(t_ns, pos, np.concatenate(new_t))
    return t_out, {c: np.insert(v, pos, np.concatenate(new_v[c])) for c, v in cols.items()}
