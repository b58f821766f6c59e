"""PV and load forecasts for the next 24 h from the house's own history (no I/O).

* Load: a blend of *persistence* (the last slot's mean, fading over the first
  hours) and *similar day* (the mean of the same slot on the last ``days``
  days).  With no history yet: the last value, flat.
* PV: a clear-sky profile for the site (pvlib, Ineichen with the shipped Linke
  turbidity) scaled by what the panels really produced against clear sky on
  recent days (captures orientation, shading and typical cloud); before any
  history the scale is ``pv_peak_w / 1000 W/m2``.  Without a location the PV
  forecast is similar-day, like the load.

Powers in W, as magnitudes (load >= 0, production >= 0) so that the two read
alike; callers apply the sign convention.  ``ForecastErrors`` keeps the mean
absolute error of the forecasts once the slots they forecast have happened.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from vpp_common.timeslots import align_down

SLOTS_PER_DAY_MAX = 1440


@dataclass(frozen=True, slots=True)
class Forecast:
    start: datetime  # start of the first slot (aligned), UTC
    slot_s: int
    load_w: np.ndarray  # per slot, >= 0
    pv_w: np.ndarray  # per slot, production magnitude >= 0


@dataclass(frozen=True, slots=True)
class Site:
    latitude: float
    longitude: float
    pv_peak_w: float  # production at 1000 W/m2 (≈ kWp x 1000 x performance ratio)


@dataclass
class _Slot:
    load_sum: float = 0.0
    pv_sum: float = 0.0
    n: int = 0


class HistoryForecaster:
    def __init__(self, slot_s: int = 900, days: int = 7, site: Site | None = None) -> None:
        if not 60 <= slot_s <= 3600 or 86400 % slot_s:
            raise ValueError(f"slot_s must divide a day and lie in 60..3600, got {slot_s}")
        self.slot_s = slot_s
        self.days = days
        self.site = site
        self._slots: dict[datetime, _Slot] = {}
        self._order: deque[datetime] = deque()
        self._last: tuple[float, float] | None = None

    @property
    def slots_per_day(self) -> int:
        return 86400 // self.slot_s

    def add(self, at: datetime, load_w: float, pv_w: float) -> None:
        """One observation (magnitudes, W).  Old slots beyond ``days`` are dropped."""
        key = align_down(at, self.slot_s)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
            self._order.append(key)
            while len(self._order) > (self.days + 1) * self.slots_per_day:
                del self._slots[self._order.popleft()]
        slot.load_sum += max(0.0, load_w)
        slot.pv_sum += max(0.0, pv_w)
        slot.n += 1
        self._last = (max(0.0, load_w), max(0.0, pv_w))

    def mean(self, key: datetime) -> tuple[float, float] | None:
        s = self._slots.get(key)
        return None if s is None or s.n == 0 else (s.load_sum / s.n, s.pv_sum / s.n)

    def _similar_day(self, starts: list[datetime]) -> tuple[np.ndarray, np.ndarray]:
        """Mean of the same slot on earlier days; NaN where there is none."""
        load = np.full(len(starts), np.nan)
        pv = np.full(len(starts), np.nan)
        for i, t in enumerate(starts):
            seen = [m for d in range(1, self.days + 1)
                    if (m := self.mean(t - timedelta(days=d))) is not None]
            if seen:
                load[i] = sum(m[0] for m in seen) / len(seen)
                pv[i] = sum(m[1] for m in seen) / len(seen)
        return load, pv

    def clear_sky_w_m2(self, starts: list[datetime]) -> np.ndarray:
        """Clear-sky GHI at the middle of each slot (W/m2); needs a site."""
        assert self.site is not None
        import pandas as pd
        from pvlib.location import Location

        mid = pd.DatetimeIndex([t + timedelta(seconds=self.slot_s / 2) for t in starts])
        ghi = Location(self.site.latitude, self.site.longitude).get_clearsky(mid, model="ineichen")["ghi"]
        return np.nan_to_num(ghi.to_numpy(dtype=float), nan=0.0)

    def _pv_scale(self, now: datetime) -> float:
        """Produced W per clear-sky W/m2 over recent days (falls back to the nameplate)."""
        assert self.site is not None
        default = self.site.pv_peak_w / 1000.0
        keys = [k for k in self._order if k < align_down(now, self.slot_s)]
        if len(keys) < self.slots_per_day // 4:
            return default
        cs = self.clear_sky_w_m2(keys)
        produced = np.array([self.mean(k)[1] for k in keys])  # type: ignore[index]
        mask = cs > 100.0  # daylight only: dawn ratios are noise
        if mask.sum() < 4:
            return default
        return float(min(2 * default, produced[mask].sum() / cs[mask].sum()))

    def forecast(self, now: datetime, horizon_slots: int = 96) -> Forecast:
        start = align_down(now, self.slot_s)
        starts = [start + timedelta(seconds=i * self.slot_s) for i in range(horizon_slots)]
        sim_load, sim_pv = self._similar_day(starts)
        last_load, last_pv = self._last if self._last is not None else (0.0, 0.0)
        # persistence matters for the next hours only, then the day's shape takes over
        hours = np.arange(horizon_slots) * self.slot_s / 3600.0
        w_persist = np.exp(-hours / 2.0)
        load = np.where(np.isnan(sim_load), last_load, w_persist * last_load + (1 - w_persist) * sim_load)
        if self.site is not None:
            pv = self.clear_sky_w_m2(starts) * self._pv_scale(now)
        else:
            pv = np.where(np.isnan(sim_pv), 0.0, sim_pv)
        return Forecast(start, self.slot_s, np.maximum(load, 0.0), np.maximum(pv, 0.0))


@dataclass
class ForecastErrors:
    """Mean absolute error of issued forecasts against what then happened."""

    issued: dict[datetime, tuple[float, float]] = field(default_factory=dict)  # slot -> (load, pv) forecast
    window: int = 96
    abs_errors_load: deque[float] = field(default_factory=lambda: deque(maxlen=96))
    abs_errors_pv: deque[float] = field(default_factory=lambda: deque(maxlen=96))

    def record(self, forecast: Forecast, slots: int = 4) -> None:
        """Remember the next ``slots`` forecast values (the ones that matter most)."""
        for i in range(min(slots, len(forecast.load_w))):
            t = forecast.start + timedelta(seconds=i * forecast.slot_s)
            self.issued.setdefault(t, (float(forecast.load_w[i]), float(forecast.pv_w[i])))

    def settle(self, history: HistoryForecaster, now: datetime) -> None:
        """Score forecasts of slots that have ended."""
        done = [t for t in self.issued if t + timedelta(seconds=history.slot_s) <= now]
        for t in done:
            f_load, f_pv = self.issued.pop(t)
            actual = history.mean(t)
            if actual is not None:
                self.abs_errors_load.append(abs(actual[0] - f_load))
                self.abs_errors_pv.append(abs(actual[1] - f_pv))

    @property
    def mae_w(self) -> tuple[float | None, float | None]:
        def m(d: deque[float]) -> float | None:
            return sum(d) / len(d) if d else None
        return m(self.abs_errors_load), m(self.abs_errors_pv)
