"""Climate files of the evaluation set: hourly PV per kWp and air temperature (no pvlib here).

``data/eval/<climate>.csv.gz`` hold one typical (non-leap) year, one row per hour of the
site's local *standard* time, hour-beginning (built by ``scripts/build_eval_data.py`` from
pvlib's TMY files; sources in ``data/README.md``).  The values are read once per process,
checked (finite, in range), and sampled at any slot grid: each hourly value stands for the
hour's middle and is interpolated linearly between middles, so 15-minute slots see no steps.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "eval"
HOURS = 8760
# climate -> (UTC offset of local standard time in hours, latitude, longitude): the TMY station
SITES = {
    "miami_fl": (-5, 25.8, -80.27),
    "greensboro_nc": (-5, 36.1, -79.95),
    "sand_point_ak": (-9, 55.32, -160.52),
}
PV_MAX_W_PER_KWP = 1100.0  # AC output above this per kWp cannot be a rooftop array's
TEMP_RANGE_C = (-60.0, 60.0)


@functools.cache
def climate(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(pv W per kWp, air temperature C), each (8760,), read-only; ValueError naming the file and line."""
    if name not in SITES:
        raise ValueError(f"unknown climate {name!r}; known: {', '.join(SITES)}")
    path = DATA_DIR / f"{name}.csv.gz"
    df = pd.read_csv(path, comment="#")
    if list(df.columns) != ["hour", "pv_w_per_kwp", "temp_air_c"] or len(df) != HOURS:
        raise ValueError(f"{path}: expected columns hour,pv_w_per_kwp,temp_air_c and {HOURS} rows")
    pv = df["pv_w_per_kwp"].to_numpy(dtype=float)
    temp = df["temp_air_c"].to_numpy(dtype=float)
    for col, v, lo, hi in (("pv_w_per_kwp", pv, 0.0, PV_MAX_W_PER_KWP), ("temp_air_c", temp, *TEMP_RANGE_C)):
        bad = ~np.isfinite(v) | (v < lo) | (v > hi)
        if bad.any():
            i = int(np.argmax(bad))
            # line numbers: 1 comment, 1 header
            raise ValueError(f"{path}, line {i + 3}, field {col!r}: {v[i]!r} is not within {lo:g}..{hi:g}")
    pv.setflags(write=False)
    temp.setflags(write=False)
    return pv, temp


def standard_hours(name: str, start_utc: datetime, slot_s: int, n: int) -> np.ndarray:
    """(n,) fractional hour of the typical year (local standard time) at each slot's middle.
    29 February is read as 28 February."""
    offset_h = SITES[name][0]
    local0 = (start_utc + timedelta(hours=offset_h)).replace(tzinfo=None)
    out = np.empty(n)
    for i in range(n):
        t = local0 + timedelta(seconds=slot_s * (i + 0.5))
        d = date(2019, t.month, min(t.day, 28) if t.month == 2 else t.day)
        out[i] = (d - date(2019, 1, 1)).days * 24 + t.hour + t.minute / 60 + t.second / 3600
    return out


def sample(values: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Hourly values (standing for each hour's middle) at fractional hours of the year."""
    return np.interp(hours - 0.5, np.arange(HOURS, dtype=float), values, period=HOURS)


def weather(name: str, start_utc: datetime, slot_s: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(pv W per kWp, air temperature C) for ``n`` slots from ``start_utc``."""
    pv, temp = climate(name)
    h = standard_hours(name, start_utc, slot_s, n)
    return np.maximum(sample(pv, h), 0.0), sample(temp, h)
