"""The house's history of 15-min slots and what both forecasters share (no I/O, no numpy).

``forecast.HistoryForecaster`` (numpy, with the clear-sky PV model for a site; the simulator's
houses) and ``forecast_plain.PlainForecaster`` (pure Python, a house without a site: its
agent then runs without numpy, docs/performance.md) keep the history here and compute the same
floats in the same order: sums in numpy's pairwise order (:func:`pairwise_sum`), the fading
weights with ``math.exp`` in both (numpy's own exp differs in the last bit on some CPUs).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Protocol

from vpp_common.localtime import ZoneClock, zone_clock
from vpp_common.timeslots import align_down

if TYPE_CHECKING:
    import numpy as np

SLOTS_PER_DAY_MAX = 1440
# The agent's forecasts (sent with its flexibility, and its own tou plan): 15-min slots, 24 h
FORECAST_SLOT_S = 900
FORECAST_HORIZON_SLOTS = 96
# Load: the last hour's mean level, blended into the similar-day mean with this weight now,
# fading with this e-folding time (h).  A household's 15-min load is spiky: one slot says
# little (its anomaly against the similar day, persisted, forecast the next 2 h with a mean
# absolute error of 203 W on vpp-sim's default fleet, mean load 370 W), an hour's level
# more (183 W; weights 0.6-1.0 and 2-6 h all give 181-184 W).  In the fleet strategy's share
# of the perfect-foresight saving: +1.1 to +2.0 points on each of five weeks tried.
LOAD_RECENT_WEIGHT = 0.6
LOAD_RECENT_H = 3.0
# How long the sky of the last hour persists (e-folding, h): a clear morning mostly
# stays clear through the afternoon, a load level does not (load: 3 h, from 60 %)
PV_PERSISTENCE_H = 6.0
_PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE


@dataclass(frozen=True, slots=True)
class Site:
    latitude: float
    longitude: float
    pv_peak_w: float  # production at 1000 W/m2 (≈ kWp x 1000 x performance ratio)


class ForecastValues(Protocol):
    """What a forecast gives its users: per-slot magnitudes (W) from ``start``."""

    @property
    def start(self) -> datetime: ...
    @property
    def slot_s(self) -> int: ...
    @property
    def load_w(self) -> Sequence[float] | np.ndarray: ...
    @property
    def pv_w(self) -> Sequence[float] | np.ndarray: ...
    @property
    def pv_clear_sky_w(self) -> Sequence[float] | np.ndarray | None: ...


class Forecaster(Protocol):
    """Either forecaster, as the agent uses it."""

    def add(self, at: datetime, load_w: float, pv_w: float, pv_limited: bool = False) -> None: ...
    def forecast(self, now: datetime, horizon_slots: int = 96) -> ForecastValues: ...


def pairwise_sum(values: Sequence[float]) -> float:
    """The sum as numpy's ``add.reduce`` of a contiguous float64 row makes it (pairwise: fewer
    than 8 values in order from 0.0, else 8 running sums per block of 128, then halves), so
    that the pure-Python forecaster gives the numpy one's floats."""
    n = len(values)
    if n < 8:
        total = 0.0
        for v in values:
            total += v
        return total
    if n <= _PAIRWISE_BLOCK:
        r = [float(v) for v in values[:8]]
        whole = n - n % 8
        for i in range(8, whole, 8):
            for j in range(8):
                r[j] += values[i + j]
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for i in range(whole, n):
            total += values[i]
        return total
    half = n // 2
    half -= half % 8
    return pairwise_sum(values[:half]) + pairwise_sum(values[half:])


def fading(horizon_slots: int, slot_s: int, scale: float, e_folding_h: float) -> list[float]:
    """``scale * exp(-hours / e_folding_h)`` per slot from now (math.exp in both forecasters)."""
    return [scale * math.exp(-(k * slot_s / 3600.0) / e_folding_h) for k in range(horizon_slots)]


@dataclass
class _Slot:
    load_sum: float = 0.0
    pv_sum: float = 0.0
    n: int = 0
    pv_limited: bool = False  # production was held at a limit in this slot: its PV is a lower bound


class SlotHistory:
    """The mean load and PV per slot over the last ``days``, and the last observation."""

    def __init__(self, slot_s: int = 900, days: int = 7, timezone: str | tzinfo | None = None) -> None:
        """``timezone``: the house's IANA zone (its days for the similar-day load); None = UTC."""
        if not 60 <= slot_s <= 3600 or 86400 % slot_s:
            raise ValueError(f"slot_s must divide a day and lie in 60..3600, got {slot_s}")
        self.slot_s = slot_s
        self.days = days
        self._slots: dict[datetime, _Slot] = {}
        self._order: deque[datetime] = deque()
        self._last: tuple[float, float] | None = None
        self._zone = (None if timezone is None or str(timezone) == "UTC"
                      else zone_clock(timezone) if isinstance(timezone, str) else ZoneClock(timezone))

    @property
    def slots_per_day(self) -> int:
        return 86400 // self.slot_s

    def add(self, at: datetime, load_w: float, pv_w: float, pv_limited: bool = False) -> None:
        """One observation (magnitudes, W).  Old slots beyond ``days`` are dropped.
        ``pv_limited``: the inverter produced at a limit set on it (curtailed), so ``pv_w``
        is less than the sun gave."""
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
        slot.pv_limited |= pv_limited
        self._last = (max(0.0, load_w), max(0.0, pv_w))
        self._changed()

    def _changed(self) -> None:
        """A new observation: what was derived from the history is out of date."""

    def mean(self, key: datetime) -> tuple[float, float] | None:
        s = self._slots.get(key)
        return None if s is None or s.n == 0 else (s.load_sum / s.n, s.pv_sum / s.n)

    def recent_loads(self, start: datetime) -> list[float]:
        """The mean load of each slot of the last hour before ``start`` that has data, newest first."""
        back = range(1, max(1, 3600 // self.slot_s) + 1)
        return [m[0] for k in back if (m := self.mean(start - timedelta(seconds=k * self.slot_s))) is not None]

    def last_load(self) -> float:
        return self._last[0] if self._last is not None else 0.0


@dataclass
class ForecastErrors:
    """Mean absolute error of issued forecasts against what then happened."""

    issued: dict[datetime, tuple[float, float]] = field(default_factory=dict)  # slot -> (load, pv) forecast
    window: int = 96
    abs_errors_load: deque[float] = field(default_factory=lambda: deque(maxlen=96))
    abs_errors_pv: deque[float] = field(default_factory=lambda: deque(maxlen=96))

    def record(self, forecast: ForecastValues, slots: int = 4) -> None:
        """Remember the next ``slots`` forecast values (the ones that matter most)."""
        for i in range(min(slots, len(forecast.load_w))):
            t = forecast.start + timedelta(seconds=i * forecast.slot_s)
            self.issued.setdefault(t, (float(forecast.load_w[i]), float(forecast.pv_w[i])))

    def settle(self, history: SlotHistory, now: datetime) -> None:
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
