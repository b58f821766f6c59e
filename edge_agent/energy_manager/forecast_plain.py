"""The forecaster of a house without a site, in pure Python: the agent runs without numpy.

The same forecast as ``forecast.HistoryForecaster`` without a site (similar-day load blended
with the last hour's level, similar-day PV), float for float: every value is computed with
the same operations in the same order (``history.pairwise_sum`` for numpy's sums;
``tests/unit/test_forecast_plain.py`` compares both on random histories, bit for bit).  A
house with a site needs the clear-sky model (pvlib, pandas, numpy) and gets the numpy one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from edge_agent.energy_manager.history import (
    LOAD_RECENT_H,
    LOAD_RECENT_WEIGHT,
    SlotHistory,
    fading,
    pairwise_sum,
)
from vpp_common.timeslots import align_down

NAN = float("nan")


@dataclass(frozen=True, slots=True)
class PlainForecast:
    start: datetime  # start of the first slot (aligned), UTC
    slot_s: int
    load_w: tuple[float, ...]  # per slot, >= 0
    pv_w: tuple[float, ...]  # per slot, production magnitude >= 0
    pv_clear_sky_w: None = None  # no site: no clear-sky model


def _at_least_zero(v: float) -> float:
    """numpy's ``maximum(v, 0.0)``: v itself when it is not below 0 (-0.0 stays) or is NaN."""
    return v if v >= 0.0 or v != v else 0.0


class PlainForecaster(SlotHistory):
    site = None

    def _table(self) -> tuple[list[float], list[float], list[float]]:
        """The kept slots with data, in time order: starts (POSIX s), mean load, mean PV."""
        keys = sorted(k for k, v in self._slots.items() if v.n)
        slots = [self._slots[k] for k in keys]
        return ([k.timestamp() for k in keys], [v.load_sum / v.n for v in slots],
                [v.pv_sum / v.n for v in slots])

    def _similar_day(self, at: list[float]) -> tuple[list[float], list[float]]:
        """Mean of the same slot on earlier days; NaN where there is none.  ``at``: slot starts, POSIX s."""
        from bisect import bisect_left

        at_s, load_w, pv_w = self._table()
        if not at_s or not at:
            return [NAN] * len(at), [NAN] * len(at)
        back = [d * 86400.0 for d in range(1, self.days + 1)]
        zone = self._zone
        local = zone is not None and not zone.constant_offset(at[0] - back[-1] - 86400.0, at[-1] + 86400.0)
        last = len(at_s) - 1
        load: list[float] = []
        pv: list[float] = []
        for t in at:
            if zone is not None and local:  # the same wall-clock time on each earlier local day
                t_local = t + zone.offset_s(t)
                want = [zone.to_utc(t_local - b) for b in back]
            else:
                want = [t - b for b in back]
            pos = [min(bisect_left(at_s, w), last) for w in want]
            seen = [at_s[p] == w for p, w in zip(pos, want, strict=True)]
            n = sum(seen)
            load.append(pairwise_sum([load_w[p] if s else 0.0 for p, s in zip(pos, seen, strict=True)]) / n
                        if n > 0 else NAN)
            pv.append(pairwise_sum([pv_w[p] if s else 0.0 for p, s in zip(pos, seen, strict=True)]) / n
                      if n > 0 else NAN)
        return load, pv

    def forecast(self, now: datetime, horizon_slots: int = 96) -> PlainForecast:
        start = align_down(now, self.slot_s)
        t0 = start.timestamp()
        at = [t0 + float(k) * self.slot_s for k in range(horizon_slots)]
        sim_load, sim_pv = self._similar_day(at)
        # the last hour's level matters for the next hours only, then the day's shape takes over
        w_recent = fading(horizon_slots, self.slot_s, LOAD_RECENT_WEIGHT, LOAD_RECENT_H)
        recent = self.recent_loads(start)
        level = pairwise_sum(recent) / len(recent) if recent else self.last_load()
        load = [level if s != s else w * level + (1 - w) * s for w, s in zip(w_recent, sim_load, strict=True)]
        pv = [0.0 if s != s else s for s in sim_pv]
        return PlainForecast(start, self.slot_s, tuple(_at_least_zero(v) for v in load),
                             tuple(_at_least_zero(v) for v in pv))
