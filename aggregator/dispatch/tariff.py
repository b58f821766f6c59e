"""Time-of-use tariffs as price series (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

import numpy as np

from vpp_common.messages import PriceSlot


@dataclass(frozen=True, slots=True)
class TouPeriod:
    """Prices from ``start`` (inclusive) to ``end`` (exclusive; 00:00 = midnight), UTC."""

    start: time
    end: time
    import_price_per_kwh: float
    export_price_per_kwh: float

    def covers(self, t: time) -> bool:
        if self.end == time(0) or self.end <= self.start:  # runs past midnight
            return t >= self.start or t < self.end
        return self.start <= t < self.end


@dataclass(frozen=True, slots=True)
class TouTariff:
    periods: tuple[TouPeriod, ...]
    currency: str = "EUR"

    def __post_init__(self) -> None:
        if not self.periods:
            raise ValueError("a tariff needs at least one period")
        # every minute of the day must be priced exactly once
        for minute in range(0, 24 * 60, 15):
            t = time(minute // 60, minute % 60)
            n = sum(p.covers(t) for p in self.periods)
            if n != 1:
                raise ValueError(f"tariff periods cover {t.isoformat('minutes')} UTC {n} times (must be once)")

    def period_at(self, when: datetime) -> TouPeriod:
        t = when.time().replace(tzinfo=None)
        for p in self.periods:
            if p.covers(t):
                return p
        raise AssertionError("unreachable: coverage checked at construction")

    def prices(self, start: datetime, slot_s: int, n_slots: int) -> tuple[np.ndarray, np.ndarray]:
        """Import and export prices (currency/kWh) for ``n_slots`` slots from ``start``."""
        imp = np.empty(n_slots)
        exp = np.empty(n_slots)
        for i in range(n_slots):
            p = self.period_at(start + timedelta(seconds=i * slot_s))
            imp[i], exp[i] = p.import_price_per_kwh, p.export_price_per_kwh
        return imp, exp

    def price_slots(self, start: datetime, slot_s: int, n_slots: int) -> tuple[PriceSlot, ...]:
        imp, exp = self.prices(start, slot_s, n_slots)
        return tuple(PriceSlot(start + timedelta(seconds=i * slot_s), slot_s, float(imp[i]), float(exp[i]))
                     for i in range(n_slots))


DEFAULT_TARIFF = TouTariff((
    TouPeriod(time(0), time(6), 0.20, 0.07),
    TouPeriod(time(6), time(17), 0.30, 0.07),
    TouPeriod(time(17), time(21), 0.45, 0.07),
    TouPeriod(time(21), time(0), 0.30, 0.07),
))
