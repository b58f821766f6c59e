"""Tariffs as price series (pure): a fixed time-of-use tariff and a dynamic price series.

Shared by the aggregator's planners and the edge agent's local time-of-use mode,
which plan with the same prices.  Prices are currency per kWh; times UTC, except a day-ahead
series' publication, which is the wall clock of its market's zone (``vpp_common.localtime``).

* :class:`TouTariff`: periods by time of day, optionally only on some weekdays
  and in some months (a season), e.g. a weekday peak in winter;
* :class:`PriceSeries`: one price per row of a CSV file (e.g. day-ahead, 15 min
  or hourly), each holding until the next row.

Both answer ``prices(start, slot_s, n_slots) -> (import, export)`` arrays.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Protocol

import numpy as np

from vpp_common.localtime import as_zone, day_ahead_known_until, zone
from vpp_common.messages import PriceSlot

UTC = UTC
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class TouPeriod:
    """Prices from ``start`` (inclusive) to ``end`` (exclusive; 00:00 = midnight), wall-clock
    times of the tariff's zone (``TouTariff.timezone``, default UTC).

    ``weekdays`` (0 = Monday .. 6 = Sunday) and ``months`` (1..12, a season) restrict
    the period to those days; None = every day.  A period running past midnight
    belongs to the day it starts on.
    """

    start: time
    end: time
    import_price_per_kwh: float
    export_price_per_kwh: float
    weekdays: frozenset[int] | None = None
    months: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if self.weekdays is not None and (not self.weekdays or not self.weekdays <= set(range(7))):
            raise ValueError(f"weekdays must be a non-empty subset of 0..6 (Monday = 0), got {sorted(self.weekdays)}")
        if self.months is not None and (not self.months or not self.months <= set(range(1, 13))):
            raise ValueError(f"months must be a non-empty subset of 1..12, got {sorted(self.months)}")

    def _wraps(self) -> bool:
        return self.end == time(0) or self.end <= self.start

    def covers(self, t: time) -> bool:
        if self._wraps():  # runs past midnight
            return t >= self.start or t < self.end
        return self.start <= t < self.end

    def applies(self, when: datetime, tz: tzinfo = UTC) -> bool:
        """True if this period prices ``when`` (aware), read on the wall clock of ``tz``."""
        when = when.astimezone(tz)
        t = when.time().replace(tzinfo=None)
        if not self.covers(t):
            return False
        # after midnight, a wrapping period belongs to the previous day's weekday/month
        day = when - timedelta(days=1) if self._wraps() and t < self.end else when
        return ((self.weekdays is None or day.weekday() in self.weekdays)
                and (self.months is None or day.month in self.months))


class PriceSource(Protocol):
    """Anything that prices slots: a fixed tariff or a price series."""

    @property
    def currency(self) -> str: ...

    def prices(self, start: datetime, slot_s: int, n_slots: int) -> tuple[np.ndarray, np.ndarray]:
        """Import and export prices (currency/kWh) for ``n_slots`` slots from ``start``."""
        ...

    def price_slots(self, start: datetime, slot_s: int, n_slots: int) -> tuple[PriceSlot, ...]:
        """The same prices as the wire's price slots."""
        ...


@dataclass(frozen=True, slots=True)
class TouTariff:
    """Fixed periods; ``timezone``: the IANA zone whose wall clock, weekdays and months the
    periods are in (a 16:00-21:00 peak stays at 16:00 local across DST)."""

    periods: tuple[TouPeriod, ...]
    currency: str = "EUR"
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not self.periods:
            raise ValueError("a tariff needs at least one period")
        tz = zone(self.timezone)  # ValueError naming an unknown zone
        # every quarter hour of every weekday in every month must be priced exactly once
        # checked on the wall clock (aware arithmetic with a ZoneInfo is wall-clock arithmetic)
        if all(p.weekdays is None and p.months is None for p in self.periods):
            days = [datetime(2024, 1, 1, tzinfo=tz)]  # no day restrictions: one day stands for all
        else:
            # each weekday in each month (the second week: its previous day is in the same month),
            # and the 1st of each month over seven years (all weekdays): periods running past
            # midnight carry the previous day's weekday and month into the new day
            days = [datetime(2024, m, 8, tzinfo=tz) + timedelta(days=k) for m in range(1, 13) for k in range(7)]
            days += [datetime(y, m, 1, tzinfo=tz) for y in range(2024, 2031) for m in range(1, 13)]
        for day in days:
            for minute in range(0, 24 * 60, 15):
                at = day + timedelta(minutes=minute)
                n = sum(p.applies(at, tz) for p in self.periods)
                if n != 1:
                    what = f"{WEEKDAY_NAMES[at.weekday()]} in month {at.month}, " if len(days) > 1 else ""
                    raise ValueError(f"tariff periods cover {what}{at.time().isoformat('minutes')} "
                                     f"{self.timezone} {n} times (must be once)")

    def period_at(self, when: datetime) -> TouPeriod:
        tz = zone(self.timezone)
        for p in self.periods:
            if p.applies(when, tz):
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


class PriceSeries:
    """Import and export prices from a CSV file.

    Columns ``timestamp,import_price_per_kwh,export_price_per_kwh``; a row's prices hold
    from its timestamp (ISO 8601 with offset) until the next row; the file's last
    interval is as long as the one before it (or ``slot_s`` for one row).  Slots
    before the first row take its prices; slots after the last *known* price (the
    file's end, or what is published by ``known_until``) hold that price.
    """

    def __init__(self, times: list[datetime], import_prices: list[float], export_prices: list[float], *,
                 slot_s: int, publish_hour_utc: int | None = None, currency: str = "EUR",
                 published: time | None = None, market_timezone: str | tzinfo = UTC) -> None:
        """``published`` (wall clock of ``market_timezone``): the next local day's prices become
        known then (a day-ahead market); None = the whole series is known.  ``publish_hour_utc``
        is the older spelling of ``published`` = that hour in UTC."""
        if not times:
            raise ValueError("a price series needs at least one row")
        if any(b <= a for a, b in zip(times, times[1:])):
            raise ValueError("price timestamps must increase strictly")
        self.currency = currency
        self._t = np.array([t.timestamp() for t in times])
        self._imp = np.asarray(import_prices, dtype=float)
        self._exp = np.asarray(export_prices, dtype=float)
        if not (np.isfinite(self._imp).all() and np.isfinite(self._exp).all()):
            raise ValueError("prices must be finite numbers")
        last_step = float(self._t[-1] - self._t[-2]) if len(times) > 1 else float(slot_s)
        self.end = times[-1] + timedelta(seconds=last_step)
        if publish_hour_utc is not None:
            if published is not None:
                raise ValueError("give published (with market_timezone) or publish_hour_utc, not both")
            published, market_timezone = time(publish_hour_utc), UTC
        self.published = published
        self.market_timezone = as_zone(market_timezone)

    @classmethod
    def load(cls, path: Path, *, slot_s: int, publish_hour_utc: int | None = None, published: time | None = None,
             market_timezone: str | tzinfo = UTC) -> PriceSeries:
        times: list[datetime] = []
        imp: list[float] = []
        exp: list[float] = []
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            need = {"timestamp", "import_price_per_kwh", "export_price_per_kwh"}
            if reader.fieldnames is None or not need <= set(reader.fieldnames):
                raise ValueError(f"{path}: need columns {', '.join(sorted(need))}")
            for line, row in enumerate(reader, start=2):
                try:
                    t = datetime.fromisoformat(row["timestamp"].strip().replace("Z", "+00:00"))
                    if t.tzinfo is None:
                        raise ValueError("timestamp without an offset")
                    times.append(t)
                    imp.append(float(row["import_price_per_kwh"]))
                    exp.append(float(row["export_price_per_kwh"]))
                except (ValueError, AttributeError) as exc:
                    raise ValueError(f"{path} line {line}: {exc}") from None
        return cls(times, imp, exp, slot_s=slot_s, publish_hour_utc=publish_hour_utc, published=published,
                   market_timezone=market_timezone)

    def known_until(self, now: datetime) -> datetime:
        """End of the prices known at ``now``: the file's end, or the day-ahead publication's."""
        if self.published is None:
            return self.end
        return min(self.end, day_ahead_known_until(now, self.published, self.market_timezone))

    def prices(self, start: datetime, slot_s: int, n_slots: int,
               known_until: datetime | None = None) -> tuple[np.ndarray, np.ndarray]:
        at = start.timestamp() + slot_s * np.arange(n_slots)
        if known_until is not None:  # unknown prices: the last known one holds
            at = np.minimum(at, max(known_until.timestamp() - slot_s, self._t[0]))
        idx = np.clip(np.searchsorted(self._t, at, side="right") - 1, 0, len(self._t) - 1)
        return self._imp[idx].copy(), self._exp[idx].copy()

    def price_slots(self, start: datetime, slot_s: int, n_slots: int) -> tuple[PriceSlot, ...]:
        imp, exp = self.prices(start, slot_s, n_slots)
        return tuple(PriceSlot(start + timedelta(seconds=i * slot_s), slot_s, float(imp[i]), float(exp[i]))
                     for i in range(n_slots))
