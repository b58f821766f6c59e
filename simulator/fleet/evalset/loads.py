"""Household loads of the evaluation set: SimBench household shapes on the fleet's local clock,
weather-driven cooling and heat pumps (degree-hour model), and uncontrolled EV charging.

All are modelling choices documented in ``docs/evaluation.md``; every figure is deterministic
for its seed.  The EV and the heat pump are part of the house's load: the simulator has no EV
or heat-pump device, so in this version neither is flexible (no strategy can defer them).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from simulator.fleet.default_scenario import SLOT_S, _profiles

PROFILE_YEAR_START = pd.Timestamp("2016-01-01", tz="UTC")
PROFILE_ZONE = "Europe/Berlin"  # the SimBench households follow the German clock (data/README.md)

# Degree-hour model (docs/evaluation.md): electric power = coefficient x degrees beyond a
# balance point of a smoothed air temperature (the house's thermal mass lags the weather).
THERMAL_LAG_H = 3.0
COOLING_BALANCE_C = 21.0  # internal and solar gains keep a house cooling above ~21 C outside
HEATING_BALANCE_C = 15.0  # and heating below ~15 C (the usual heating-degree base)


def _profile_day(d: date) -> date:
    """The 2016 day with the same weekday nearest the same day of the year."""
    d16 = date(2016, d.month, d.day)
    k = (d.weekday() - d16.weekday()) % 7
    return d16 + timedelta(days=k - 7 if k > 3 else k)


def base_load(local_start: pd.Timestamp, n_slots: int, profile: np.ndarray, annual_kwh: np.ndarray,
              week_shift: np.ndarray) -> np.ndarray:
    """(N, n_slots) SimBench household load in W, on the fleet's local clock: the household of
    each row lives the German 2016 day with the same weekday, at the same wall-clock time.
    ``local_start``: tz-aware local midnight; ``profile``: (N,) index of the SimBench shape;
    ``week_shift``: (N,) whole weeks, so that houses sharing a shape do not move in lockstep."""
    _, shapes, _, _ = _profiles()
    wall = (local_start + pd.to_timedelta(np.arange(n_slots) * SLOT_S, unit="s")).tz_localize(None)
    day16 = pd.Timestamp(_profile_day(local_start.date()))
    wall16 = day16 + (wall - wall.normalize()[0])
    utc16 = wall16.tz_localize(PROFILE_ZONE, ambiguous=False, nonexistent="shift_forward").tz_convert("UTC")
    idx = np.asarray((utc16 - PROFILE_YEAR_START) // pd.Timedelta(seconds=SLOT_S), dtype=int)
    year = shapes.shape[1]
    idx = (idx[None, :] + 7 * 96 * week_shift[:, None]) % year
    shape_kwh = shapes.sum(axis=1) * SLOT_S / 3600.0
    scale_w = annual_kwh * 1000.0 / shape_kwh[profile]
    return shapes[profile[:, None], idx] * scale_w[:, None]


def lagged(temp_c: np.ndarray, slot_s: int = SLOT_S, lag_h: float = THERMAL_LAG_H) -> np.ndarray:
    """First-order lag of the air temperature (time constant ``lag_h``), started at its first value."""
    a = 1.0 - np.exp(-slot_s / 3600.0 / lag_h)
    out = np.empty_like(temp_c)
    x = float(temp_c[0])
    for i, v in enumerate(temp_c):
        x += a * (float(v) - x)
        out[i] = x
    return out


def cooling_w(temp_c: np.ndarray, kw_per_k: np.ndarray) -> np.ndarray:
    """(N, T) air-conditioning W: ``kw_per_k`` (N,) electric kW per K above the balance point."""
    deg = np.maximum(lagged(temp_c) - COOLING_BALANCE_C, 0.0)
    return kw_per_k[:, None] * 1000.0 * deg[None, :]


def heat_pump_w(temp_c: np.ndarray, heat_loss_kw_per_k: np.ndarray) -> np.ndarray:
    """(N, T) heat-pump W: heat demand (``heat_loss_kw_per_k`` (N,) thermal kW per K below the
    balance point) over an air-source COP that falls with the outdoor temperature."""
    deg = np.maximum(HEATING_BALANCE_C - lagged(temp_c), 0.0)
    cop = np.clip(3.0 + 0.06 * (temp_c - 7.0), 1.8, 4.5)
    return heat_loss_kw_per_k[:, None] * 1000.0 * (deg / cop)[None, :]


def ev_w(local_start: datetime, n_slots: int, n_ev: int, rng: np.random.Generator, charger_w: float,
         slot_s: int = SLOT_S) -> np.ndarray:
    """(n_ev, T) uncontrolled EV charging W: on each day a car comes home with probability 0.7 on
    weekdays and 0.4 at weekends, at a normal time around 18:30 local (sd 1 h, 16:00-22:00),
    and charges 5-14 kWh at ``charger_w`` at once (a session may run past midnight)."""
    out = np.zeros((n_ev, n_slots))
    days = n_slots * slot_s // 86400 + 1
    per_h = 3600 // slot_s
    for d in range(days):
        wd = (local_start + timedelta(days=d)).weekday()
        p = 0.7 if wd < 5 else 0.4
        home = rng.random(n_ev) < p
        arrive_h = np.clip(rng.normal(18.5, 1.0, n_ev), 16.0, 22.0)
        kwh = rng.uniform(5.0, 14.0, n_ev)
        for i in np.flatnonzero(home):
            s0 = d * 86400 // slot_s + int(arrive_h[i] * per_h)
            need_wh = kwh[i] * 1000.0
            s = s0
            while need_wh > 0 and s < n_slots:
                p_w = min(charger_w, need_wh / (slot_s / 3600.0))
                out[i, s] += p_w
                need_wh -= p_w * slot_s / 3600.0
                s += 1
    return out
