"""The cheapest allowed start of a fixed power profile (an S2 PPBC run: a washing machine's
programme), pure.

* Allowed: the run lies within its window, and no step of it pushes the grid past the site
  limits in force, or further past them: with the house's expected power without the run
  (its forecast per slot, else the present reading, else nothing known: 0 W) plus the step's
  highest power <= the import limit, and plus its lowest >= minus the export cap.
* Cheapest: the import price for what a step draws, the export price for what it feeds in
  (its energy in kWh times the price of each price slot it overlaps).  A start whose run the
  known prices do not cover is taken only if no covered start is allowed; without prices at
  all the earliest allowed start wins.  Ties: the earliest.
* Candidates: the window's ends, every price slot's start (a run that begins as prices fall)
  and end minus the run's length (one that ends as they rise), and a grid between them
  (at most ``MAX_CANDIDATES`` starts: a decision costs milliseconds on the agent's loop).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from vpp_common.messages import PowerForecast, PriceSlot, SiteLimits

MAX_CANDIDATES = 400
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


class _Prices:
    def __init__(self, prices: Sequence[PriceSlot]) -> None:
        ok = sorted((p for p in prices if math.isfinite(p.import_price_per_kwh)
                     and math.isfinite(p.export_price_per_kwh) and p.duration_s > 0), key=lambda p: p.start)
        self.slots = ok
        self.starts = [p.start for p in ok]

    def cost(self, a: datetime, b: datetime, power_w: float) -> float | None:
        """Currency for ``power_w`` over [a, b); None if a part of it has no price."""
        i = max(0, bisect.bisect_right(self.starts, a) - 1)
        covered, total = a, 0.0
        while covered < b and i < len(self.slots):
            s = self.slots[i]
            end = s.start + timedelta(seconds=s.duration_s)
            i += 1
            if end <= covered:
                continue
            if s.start > covered:
                return None  # a gap in the prices
            hi = min(b, end)
            price = s.import_price_per_kwh if power_w >= 0 else s.export_price_per_kwh
            total += power_w / 1000 * (hi - covered).total_seconds() / 3600 * price
            covered = hi
        return total if covered >= b else None


def _base_w(forecast: PowerForecast | None, now_w: float | None, a: datetime, b: datetime) -> float:
    """The house's highest expected power without the run over [a, b) (W)."""
    if forecast is not None and forecast.values_w and forecast.slot_s > 0:
        first = math.floor((a - forecast.start).total_seconds() / forecast.slot_s)
        last = math.ceil((b - forecast.start).total_seconds() / forecast.slot_s)
        values = [v for v in forecast.values_w[max(0, first):max(0, last)] if math.isfinite(v)]
        if values and first >= 0:
            return max(values)
    return now_w if now_w is not None and math.isfinite(now_w) else 0.0


def allowed(steps: Sequence[Step], start: datetime, limits: SiteLimits, forecast: PowerForecast | None,
            now_w: float | None) -> bool:
    at = start
    for s in steps:
        end = at + timedelta(seconds=s.duration_s)
        base = _base_w(forecast, now_w, at, end)
        if base + s.peak_w > max(limits.max_import_w, base) or base + s.trough_w < min(-limits.max_export_w, base):
            return False
        at = end
    return True


def candidates(earliest: datetime, latest: datetime, length: timedelta, prices: Sequence[PriceSlot]) -> list[datetime]:
    found = {earliest, latest}
    for p in prices:
        end = p.start + timedelta(seconds=p.duration_s)
        found.update(t for t in (p.start, end - length) if earliest <= t <= latest)
    span = (latest - earliest).total_seconds()
    step = max(MIN_GRID_S, span / max(1, MAX_CANDIDATES - len(found)))
    found.update(earliest + timedelta(seconds=k * step) for k in range(int(span // step) + 1))
    return sorted(found)[:MAX_CANDIDATES * 2]


def cheapest_start(steps: Sequence[Step], earliest: datetime, latest: datetime, prices: Sequence[PriceSlot],
                   limits: SiteLimits, forecast: PowerForecast | None = None,
                   now_w: float | None = None) -> Start | None:
    """The start in [earliest, latest] that costs least among the allowed ones; None if none is."""
    if latest < earliest or not steps:
        return None
    table = _Prices(prices)
    length = timedelta(seconds=sum(s.duration_s for s in steps))
    best: tuple[tuple[int, float, datetime], Start] | None = None
    for t in candidates(earliest, latest, length, table.slots):
        if not allowed(steps, t, limits, forecast, now_w):
            continue
        cost = _run_cost(table, steps, t)
        key = (0 if cost is not None else 1, cost or 0.0, t)
        if best is None or key < best[0]:
            best = (key, Start(t, cost, ""))
    if best is None:
        return None
    start = best[1]
    why = ("the cheapest allowed start" if start.cost is not None
           else "no prices cover the window: the earliest allowed start")
    return Start(start.at, start.cost, why)


def _run_cost(table: _Prices, steps: Sequence[Step], start: datetime) -> float | None:
    total, at = 0.0, start
    for s in steps:
        end = at + timedelta(seconds=s.duration_s)
        c = table.cost(at, end, s.power_w)
        if c is None:
            return None
        total, at = total + c, end
    return total
