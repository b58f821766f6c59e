"""PV and load forecasts for the next 24 h from the house's own history (no I/O).

* Load: a blend of *recent level* (the mean of the last hour's slots, fading
  over the first hours) and *similar day* (the mean of the same slot on the last
  ``days`` days).  With no history yet: the last value, flat.  The same slot is
  the same *local* time of day in the house's ``timezone``: people cook at 18:00
  on their clock, also across a change to or from summer time (a wall time
  that does not exist that day is skipped).
* PV: a clear-sky profile for the site (pvlib, Ineichen with the shipped Linke
  turbidity) times the panels' clear-day response per time of day (produced W
  per clear-sky W/m2 on the clearest recent day: captures orientation and
  shading) times a clearness: the last hour's, fading over the first hours into
  the recent days' mean.  A slot in which the inverter was held at a production
  limit (export cap, feeder envelope) shows what was allowed, not what the sun
  gave: it counts as at least a clear slot (learning its production as the sky
  would forecast the curtailment back in).  Before any history the response is
  ``pv_peak_w / 1000 W/m2`` and the clearness 1.  The clear-sky PV (``pv_clear_sky_w``) is
  never below that prior's: only a clear day shows the response, and recent days may all
  have been cloudy.  Without a location the PV
  forecast is similar-day, like the load.  The clear-day response is kept per
  slot of the UTC day: the sun keeps no summer time.

Powers in W, as magnitudes (load >= 0, production >= 0) so that the two read
alike; callers apply the sign convention.  ``ForecastErrors`` keeps the mean
absolute error of the forecasts once the slots they forecast have happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

import numpy as np

from edge_agent.energy_manager.history import (
    FORECAST_HORIZON_SLOTS,
    FORECAST_SLOT_S,
    LOAD_RECENT_H,
    LOAD_RECENT_WEIGHT,
    PV_PERSISTENCE_H,
    SLOTS_PER_DAY_MAX,
    ForecastErrors,
    Site,
    SlotHistory,
    fading,
)
from vpp_common.timeslots import align_down

__all__ = ["FORECAST_HORIZON_SLOTS", "FORECAST_SLOT_S", "SLOTS_PER_DAY_MAX", "Forecast", "ForecastErrors",
           "HistoryForecaster", "Site"]


@dataclass(frozen=True, slots=True)
class Forecast:
    start: datetime  # start of the first slot (aligned), UTC
    slot_s: int
    load_w: np.ndarray  # per slot, >= 0
    pv_w: np.ndarray  # per slot, production magnitude >= 0
    # per slot, what the panels give under a clear sky (magnitude >= pv_w); None without a site
    pv_clear_sky_w: np.ndarray | None = None


@dataclass(frozen=True)
class _History:
    keys: list[datetime]  # slot starts with data, in time order
    at_s: np.ndarray  # the same as POSIX seconds
    load_w: np.ndarray  # mean per slot
    pv_w: np.ndarray
    limited: np.ndarray  # bool: production held at a limit in the slot


class HistoryForecaster(SlotHistory):
    def __init__(self, slot_s: int = 900, days: int = 7, site: Site | None = None,
                 clear_sky: Callable[[list[datetime]], np.ndarray] | None = None,
                 timezone: str | tzinfo | None = None) -> None:
        """``clear_sky``: GHI (W/m2) at the middle of each slot start given; default pvlib at ``site``
        (the fleet simulator passes a precomputed table of the same values: pvlib per call is slow).
        ``timezone``: the house's IANA zone (its days for the similar-day load); None = UTC."""
        super().__init__(slot_s, days, timezone)
        self.site = site
        self._clear_sky = clear_sky
        self.pv_clearness_quantile: float | None = None  # None: mean clearness of recent days
        self._table: _History | None = None  # the history as arrays, made on first use after a change

    def _changed(self) -> None:
        self._table = None

    def _history(self) -> _History:
        """The kept slots as arrays, in time order (a forecast looks up hundreds of slots: one
        array lookup instead of a dict lookup each)."""
        if self._table is None:
            keys = sorted(k for k, v in self._slots.items() if v.n)
            slots = [self._slots[k] for k in keys]
            self._table = _History(
                keys=keys,
                at_s=np.array([k.timestamp() for k in keys], dtype=float),
                load_w=np.array([v.load_sum / v.n for v in slots], dtype=float),
                pv_w=np.array([v.pv_sum / v.n for v in slots], dtype=float),
                limited=np.array([v.pv_limited for v in slots], dtype=bool),
            )
        return self._table

    def _slot_of_day(self, at_s: np.ndarray) -> np.ndarray:
        """Index of each slot start (POSIX s) within its UTC day: the clear-day response is kept per slot of the day."""
        return ((at_s % 86400) // self.slot_s).astype(int)

    def _similar_day(self, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean of the same slot on earlier days; NaN where there is none.  ``at``: slot starts, POSIX s."""
        h = self._history()
        if not h.keys or not len(at):
            return np.full(len(at), np.nan), np.full(len(at), np.nan)
        back = np.arange(1, self.days + 1)[None, :] * 86400.0
        if self._zone is None or self._zone.constant_offset(at[0] - back[0, -1] - 86400.0, at[-1] + 86400.0):
            want = at[:, None] - back  # (slots, days); no change of the clocks: local days are 86 400 s
        else:  # the same wall-clock time on each earlier local day (NaN where it did not exist)
            want = self._zone.to_utc_s(self._zone.local_s(at)[:, None] - back)
        pos = np.clip(np.searchsorted(h.at_s, want), 0, len(h.keys) - 1)
        seen = h.at_s[pos] == want
        n = seen.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            load = np.where(n > 0, np.where(seen, h.load_w[pos], 0.0).sum(axis=1) / n, np.nan)
            pv = np.where(n > 0, np.where(seen, h.pv_w[pos], 0.0).sum(axis=1) / n, np.nan)
        return load, pv

    def clear_sky_w_m2(self, starts: list[datetime]) -> np.ndarray:
        """Clear-sky GHI at the middle of each slot (W/m2); needs a site."""
        assert self.site is not None
        if self._clear_sky is not None:
            return self._clear_sky(starts)
        import pandas as pd
        from pvlib.location import Location

        mid = pd.DatetimeIndex([t + timedelta(seconds=self.slot_s / 2) for t in starts])
        ghi = Location(self.site.latitude, self.site.longitude).get_clearsky(mid, model="ineichen")["ghi"]
        return np.nan_to_num(ghi.to_numpy(dtype=float), nan=0.0)

    def _pv_model(self, now: datetime) -> tuple[np.ndarray, float, float | None]:
        """What the history says about this PV system: per slot of the day, produced W per
        clear-sky W/m2 on its clearest recent day (orientation, shading: the clear-day
        response), the mean clearness of recent days, and the clearness of the last hour
        (None at night or without data).  Clearness = produced / clear-day response."""
        assert self.site is not None
        default = self.site.pv_peak_w / 1000.0
        per_day = self.slots_per_day
        k_clear = np.full(per_day, default)
        now_slot = align_down(now, self.slot_s)
        h = self._history()
        before = h.at_s < now_slot.timestamp()
        if before.sum() < per_day // 4:
            return k_clear, 1.0, None
        keys = [k for k, b in zip(h.keys, before.tolist(), strict=True) if b]
        cs = self.clear_sky_w_m2(keys)
        produced = h.pv_w[before]
        at_s = h.at_s[before]
        tod = self._slot_of_day(at_s)
        day = cs > 50.0  # dawn and dusk ratios are noise
        ratio = np.where(day, produced / np.maximum(cs, 1.0), np.nan)
        # a curtailed slot's production is a lower bound.  For the clear-day response (a
        # maximum) it counts only where nothing better is known, and then no lower than the
        # nameplate prior; as a clearness it would forecast the curtailment back in: PV is held
        # at a limit when the sun is out, so such a slot counts as at least a clear one
        limited = h.limited[before]
        seen = np.full(per_day, np.nan)
        floor = np.full(per_day, np.nan)
        np.fmax.at(seen, tod[day & ~limited], ratio[day & ~limited])  # max per time of day, NaN-aware
        np.fmax.at(floor, tod[day & limited], ratio[day & limited])
        k_clear = np.where(np.isnan(seen), np.fmax(floor, default), np.fmax(seen, floor))
        k_clear = np.clip(k_clear, 0.0, 2 * default)
        expected = cs * k_clear[tod]
        produced = np.where(limited, np.maximum(produced, expected), produced)
        if expected[day].sum() < 1.0:
            return k_clear, 1.0, None
        if self.pv_clearness_quantile is None:
            mean_clearness = float(produced[day].sum() / expected[day].sum())
        else:  # a high quantile of the days' clearness: plan for the sunny days
            dates = np.array([k.date().toordinal() for k in keys])
            day_clearness = [produced[day & (dates == d)].sum() / max(expected[day & (dates == d)].sum(), 1.0)
                             for d in np.unique(dates[day])]
            mean_clearness = float(np.quantile(day_clearness, self.pv_clearness_quantile))
        recent = (at_s >= (now_slot - timedelta(hours=1)).timestamp()) & day
        now_clearness = (float(produced[recent].sum() / expected[recent].sum())
                         if recent.sum() >= 2 and expected[recent].sum() > 1.0 else None)
        return k_clear, mean_clearness, now_clearness

    def forecast(self, now: datetime, horizon_slots: int = 96) -> Forecast:
        start = align_down(now, self.slot_s)
        starts = [start + timedelta(seconds=i * self.slot_s) for i in range(horizon_slots)]
        at = start.timestamp() + np.arange(horizon_slots, dtype=float) * self.slot_s
        sim_load, sim_pv = self._similar_day(at)
        # the last hour's level matters for the next hours only, then the day's shape takes over
        w_recent = np.array(fading(horizon_slots, self.slot_s, LOAD_RECENT_WEIGHT, LOAD_RECENT_H))
        recent = self.recent_loads(start)
        level = float(np.mean(recent)) if recent else self.last_load()
        load = np.where(np.isnan(sim_load), level, w_recent * level + (1 - w_recent) * sim_load)
        if self.site is not None:
            # clear-day response of these panels x clearness: the last hour's sky persists
            # for a few hours, then recent days' mean clearness takes over
            k_clear, mean_c, now_c = self._pv_model(now)
            w_sky = np.array(fading(horizon_slots, self.slot_s, 1.0, PV_PERSISTENCE_H))
            clearness = mean_c if now_c is None else w_sky * now_c + (1 - w_sky) * mean_c
            tod = self._slot_of_day(at)
            cs = self.clear_sky_w_m2(starts)
            pv = cs * k_clear[tod] * np.minimum(clearness, 1.5)
            # The clear-sky PV: the learnt response is a clear day's only if one was seen (the
            # most over a few days); after cloudy days it is as dull as they were, and the
            # clear-sky future (aggregator.dispatch.futures) then made no room for a sunny noon
            # under a feeder's export limit.  So never below the nameplate prior.  The forecast
            # keeps the learnt response: raising it there too made plans worse where no limit
            # binds (docs/fleet-strategy.md, "The clear-sky future after cloudy days").
            prior = self.site.pv_peak_w / 1000.0
            prior = prior if np.isfinite(prior) and prior > 0 else 0.0  # a configured value: no NaN/inf out
            clear = np.maximum(np.maximum(cs * np.fmax(k_clear[tod], prior), pv), 0.0)
        else:
            pv = np.where(np.isnan(sim_pv), 0.0, sim_pv)
            clear = None
        return Forecast(start, self.slot_s, np.maximum(load, 0.0), np.maximum(pv, 0.0), clear)
