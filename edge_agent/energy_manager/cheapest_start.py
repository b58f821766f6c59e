"""The cheapest allowed start of a fixed power profile (an S2 PPBC run: a washing machine's
programme), pure.

* Allowed: the run lies within its window, and no step of it pushes the grid past the site
  limits in force, or further past them: the house's expected power without the run (the
  highest of its forecast over the step, else the present reading, else 0 W) plus the step's
  highest power <= the import limit, and plus its lowest >= minus the export cap.
* Cheapest: the import price for what a step draws, the export price for what it feeds in
  (its energy in kWh times the price of each price slot it overlaps).  A start whose run the
  known prices do not cover is taken only if no covered start is allowed; without prices at
  all the earliest allowed start wins.  Ties: the earliest.
* Candidates: the window's ends, every price slot's start (a run that begins as prices fall)
  and end minus the run's length (one that ends as they rise), and a grid between them; at
  most ``MAX_CANDIDATES``, all evaluated at once (numpy): a week's window with a week of
  15-minute prices costs milliseconds on the agent's loop (docs/s2-cem.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from vpp_common.messages import PowerForecast, PriceSlot, SiteLimits

MAX_CANDIDATES = 300
MIN_GRID_S = 300.0


@dataclass(frozen=True, slots=True)
class Step:
    """A step of the run: length (s > 0), mean power (W, the energy), and its extremes (W, safety)."""

    duration_s: float
    power_w: float
    peak_w: float
    trough_w: float


@dataclass(frozen=True, slots=True)
class Start:
    at: datetime
    cost: float | None  # currency for the run; None if the known prices do not cover it
    reason: str


def coarse(steps: Sequence[tuple[float, float]], most: int) -> tuple[Step, ...]:
    """(duration s, power W) steps as at most ``most`` Steps: neighbours merged, energy kept,
    the extremes kept for the safety check."""
    out = [Step(d, p, p, p) for d, p in steps if d > 0]
    while len(out) > most:
        merged = []
        for i in range(0, len(out), 2):
            pair = out[i:i + 2]
            d = sum(s.duration_s for s in pair)
            merged.append(Step(d, sum(s.duration_s * s.power_w for s in pair) / d,
                               max(s.peak_w for s in pair), min(s.trough_w for s in pair)))
        out = merged
    return tuple(out)


class _Integrals:
    """The prices as running integrals over time (s from ``t0``): import and export price x
    seconds, and seconds without a price (gaps, NaN prices)."""

    def __init__(self, prices: Sequence[PriceSlot], t0: datetime) -> None:
        ok = sorted(((p.start - t0).total_seconds(), p.duration_s, p.import_price_per_kwh, p.export_price_per_kwh)
                    for p in prices if p.duration_s > 0 and math.isfinite(p.import_price_per_kwh)
                    and math.isfinite(p.export_price_per_kwh))
        self.any = bool(ok)
        table = np.asarray(ok, dtype=float).reshape(-1, 4)
        x = np.unique(np.concatenate((table[:, 0], table[:, 0] + table[:, 1]))) if ok else np.zeros(1)
        mids = (x[:-1] + x[1:]) / 2
        idx = np.searchsorted(table[:, 0], mids, side="right") - 1  # the slot that began last before
        hit = (idx >= 0) & (mids < table[np.maximum(idx, 0), 0] + table[np.maximum(idx, 0), 1]) if ok \
            else np.zeros(0, dtype=bool)
        row = table[np.maximum(idx, 0)] if ok else np.zeros((0, 4))
        imp, exp = np.where(hit, row[:, 2], 0.0), np.where(hit, row[:, 3], 0.0)
        dx = np.diff(x)
        self.x = x
        self.imp, self.exp, self.gap = (np.concatenate(([0.0], np.cumsum(v * dx))) for v in (imp, exp, ~hit))

    def at(self, cum: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.x, cum)


def _range_max(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """max(values[lo:hi]) element-wise (hi > lo), by a sparse table."""
    table = [values]
    while 2 ** len(table) <= len(values):
        prev, half = table[-1], 2 ** (len(table) - 1)
        table.append(np.maximum(prev[:-half], prev[half:]))
    k = np.floor(np.log2(np.maximum(hi - lo, 1))).astype(int)
    out = np.empty(lo.shape)
    for level in np.unique(k):
        sel = k == level
        t = table[level]
        out[sel] = np.maximum(t[lo[sel]], t[hi[sel] - 2 ** level])
    return out


def _base(forecast: PowerForecast | None, now_w: float | None, t0: datetime, a: np.ndarray,
          b: np.ndarray) -> np.ndarray:
    """The house's highest expected power over each [a, b) (s from t0), W."""
    fallback = now_w if now_w is not None and math.isfinite(now_w) else 0.0
    out = np.full(a.shape, fallback)
    if forecast is None or not forecast.values_w or forecast.slot_s <= 0:
        return out
    values = np.asarray(forecast.values_w, dtype=float)
    values = np.where(np.isfinite(values), values, fallback)
    off = (forecast.start - t0).total_seconds()
    lo = np.clip(np.floor((a - off) / forecast.slot_s), 0, len(values)).astype(int)
    hi = np.clip(np.ceil((b - off) / forecast.slot_s), 0, len(values)).astype(int)
    inside = hi > lo
    if inside.any():
        out[inside] = _range_max(values, lo[inside], hi[inside])
    return out


def _evaluate(steps: Sequence[Step], starts: np.ndarray, t0: datetime, prices: _Integrals, limits: SiteLimits,
              forecast: PowerForecast | None, now_w: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per start (s from t0): allowed, covered by prices, cost."""
    offsets = np.concatenate(([0.0], np.cumsum([s.duration_s for s in steps])))
    t = starts[:, None] + offsets[None, :]
    a, b = t[:, :-1], t[:, 1:]
    base = _base(forecast, now_w, t0, a.ravel(), b.ravel()).reshape(a.shape)
    peak = np.asarray([s.peak_w for s in steps])[None, :]
    trough = np.asarray([s.trough_w for s in steps])[None, :]
    ok = ((base + peak <= np.maximum(limits.max_import_w, base))
          & (base + trough >= np.minimum(-limits.max_export_w, base))).all(axis=1)
    power = np.asarray([s.power_w for s in steps])[None, :]
    price_s = np.where(power >= 0, prices.at(prices.imp, b) - prices.at(prices.imp, a),
                       prices.at(prices.exp, b) - prices.at(prices.exp, a))
    cost = (power / 1000 / 3600 * price_s).sum(axis=1)
    covered = prices.any & (t[:, 0] >= prices.x[0]) & (t[:, -1] <= prices.x[-1]) & (
        prices.at(prices.gap, t[:, -1]) - prices.at(prices.gap, t[:, 0]) < 1e-6)
    return ok, covered, cost


def allowed(steps: Sequence[Step], start: datetime, limits: SiteLimits, forecast: PowerForecast | None,
            now_w: float | None) -> bool:
    ok, _, _ = _evaluate(steps, np.zeros(1), start, _Integrals((), start), limits, forecast, now_w)
    return bool(ok[0])


def candidates(earliest: datetime, latest: datetime, length: timedelta, prices: Sequence[PriceSlot]) -> np.ndarray:
    """Starts to try, s from ``earliest``."""
    span = (latest - earliest).total_seconds()
    found = {0.0, span}
    for p in prices:
        s = (p.start - earliest).total_seconds()
        found.update(t for t in (s, s + p.duration_s - length.total_seconds()) if 0 <= t <= span)
    step = max(MIN_GRID_S, span / max(1, MAX_CANDIDATES - len(found)))
    found.update(k * step for k in range(int(span // step) + 1))
    ordered = np.asarray(sorted(found))
    if len(ordered) > MAX_CANDIDATES:  # a week of 15-minute prices: evenly thinned, the ends kept
        ordered = ordered[np.unique(np.round(np.linspace(0, len(ordered) - 1, MAX_CANDIDATES)).astype(int))]
    return ordered


def cheapest_start(steps: Sequence[Step], earliest: datetime, latest: datetime, prices: Sequence[PriceSlot],
                   limits: SiteLimits, forecast: PowerForecast | None = None,
                   now_w: float | None = None) -> Start | None:
    """The start in [earliest, latest] that costs least among the allowed ones; None if none is."""
    if latest < earliest or not steps:
        return None
    length = timedelta(seconds=sum(s.duration_s for s in steps))
    starts = candidates(earliest, latest, length, prices)
    ok, covered, cost = _evaluate(steps, starts, earliest, _Integrals(prices, earliest), limits, forecast, now_w)
    if not ok.any():
        return None
    priced = ok & covered
    if priced.any():
        best = int(np.flatnonzero(priced)[np.argmin(np.round(cost[priced], 9))])  # ties: the earliest
        return Start(earliest + timedelta(seconds=float(starts[best])), float(cost[best]), "the cheapest allowed start")
    first = int(np.flatnonzero(ok)[0])
    return Start(earliest + timedelta(seconds=float(starts[first])), None,
                 "no prices cover the window: the earliest allowed start")
