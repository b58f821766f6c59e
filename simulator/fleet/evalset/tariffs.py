"""Tariffs of the evaluation set, expanded to the Scenario's per-slot price arrays (currency/kWh).

Three kinds (sources and figures in ``docs/evaluation.md`` and ``data/README.md``):

* ``time_of_use``: a fixed weekday evening peak 16:00-21:00 local time, off-peak otherwise;
  the period structure of Californian residential TOU tariffs (e.g. SDG&E's 4-9 pm on-peak),
  price levels chosen by the project;
* ``day_ahead``: the shipped DE-LU day-ahead series on the default scenario's dynamic tariff
  (``default_scenario.import_price``), export at the EEG feed-in tariff;
* ``flat``: a German flat retail price with the EEG feed-in tariff.

``TariffMeta`` is what FORMAT18's ``[tariff]`` table will carry (kind, publication time and
market zone for day-ahead); the builders attach it to each scenario.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from simulator.fleet.default_scenario import (
    FEED_IN_TARIFF_PER_KWH,
    day_ahead_eur_per_mwh,
    import_price,
)


@dataclass(frozen=True)
class TariffMeta:
    kind: str  # "time_of_use" | "day_ahead" | "flat"
    currency: str
    published: time | None = None  # day-ahead: local time in market_timezone when the next day is public
    market_timezone: str | None = None
    source: str = ""


# --- time of use (USD/kWh) ----------------------------------------------------------------
TOU_PEAK = (16, 21)  # local hours [from, to), Monday-Friday
TOU_PEAK_PER_KWH = 0.42
TOU_OFF_PEAK_PER_KWH = 0.18
TOU_EXPORT_PER_KWH = 0.06  # net-billing export credit of the order of avoided cost
# --- flat (EUR/kWh) -------------------------------------------------------------------------
FLAT_IMPORT_PER_KWH = 0.40  # about the average German household price 2024/25 (BDEW), gross


def local_times(start_utc: datetime, slot_s: int, n: int, tz: str) -> list[datetime]:
    zone = ZoneInfo(tz)
    return [(start_utc + timedelta(seconds=slot_s * i)).astimezone(zone) for i in range(n)]


def time_of_use(start_utc: datetime, slot_s: int, n: int, tz: str) -> tuple[np.ndarray, np.ndarray, TariffMeta]:
    """Peak 16:00-21:00 local on weekdays, off-peak otherwise (the slot's start decides)."""
    peak = np.array([t.weekday() < 5 and TOU_PEAK[0] <= t.hour < TOU_PEAK[1] for t in local_times(start_utc, slot_s, n, tz)])
    imp = np.where(peak, TOU_PEAK_PER_KWH, TOU_OFF_PEAK_PER_KWH)
    meta = TariffMeta("time_of_use", "USD", source=(
        f"time of use: {TOU_PEAK_PER_KWH} USD/kWh Mon-Fri {TOU_PEAK[0]}:00-{TOU_PEAK[1]}:00 local, "
        f"{TOU_OFF_PEAK_PER_KWH} otherwise, export {TOU_EXPORT_PER_KWH}; periods as SDG&E's residential 4-9 pm "
        "on-peak (sdge.com/total-electric-rates), weekdays only; levels a project choice"))
    return imp, np.full(n, TOU_EXPORT_PER_KWH), meta


def flat(n: int) -> tuple[np.ndarray, np.ndarray, TariffMeta]:
    meta = TariffMeta("flat", "EUR", source=(
        f"flat: {FLAT_IMPORT_PER_KWH} EUR/kWh (about the German average household price 2024/25, BDEW "
        f"Strompreisanalyse), export EEG feed-in {FEED_IN_TARIFF_PER_KWH * 100:.2f} ct/kWh (Bundesnetzagentur)"))
    return np.full(n, FLAT_IMPORT_PER_KWH), np.full(n, FEED_IN_TARIFF_PER_KWH), meta


def day_ahead(start_utc: datetime, slot_s: int, n: int) -> tuple[np.ndarray, np.ndarray, TariffMeta]:
    """The shipped DE-LU day-ahead series at its own instants (UTC), on the default dynamic tariff."""
    first, hourly = day_ahead_eur_per_mwh()
    h0 = (start_utc - first).total_seconds() / 3600.0
    hours = h0 + np.arange(n) * slot_s / 3600.0
    if hours[0] < 0 or hours[-1] >= hourly.size:
        raise ValueError(f"day-ahead prices cover {first:%Y-%m-%d} + {hourly.size // 24} days; "
                         f"asked for {start_utc:%Y-%m-%d %H:%M} UTC + {n * slot_s / 86400:g} days")
    da = hourly[hours.astype(int)]
    meta = TariffMeta("day_ahead", "EUR", published=time(13, 0), market_timezone="Europe/Berlin", source=(
        "day-ahead DE-LU 2020 (ENTSO-E via OPSD, ODbL-1.0) on the default dynamic tariff, export EEG feed-in"))
    return import_price(da), np.full(n, FEED_IN_TARIFF_PER_KWH), meta
