"""The ``[tariff]`` table of a scenario: which prices, in which unit, known when.

Kinds (``docs/scenario-format.md``):

* ``day_ahead``: prices.csv; the next local day's prices become public at ``published``
  (wall clock of ``market_timezone``);
* ``series``: prices.csv, all known in advance;
* ``time_of_use``: periods in the scenario's local time, known in advance, no prices.csv;
* ``flat``: one import and one export (feed-in) price, no prices.csv.

Every price number (here and in prices.csv) is in ``unit``: ``<CUR>/kWh``, ``<CUR>/MWh`` or
``ct/kWh`` (cents of the scenario's currency).  They are converted to currency/kWh where
read, by a power of ten applied to the decimal text (``Decimal.scaleb``), so the same
prices written in any unit give bit-identical arrays and the same decisions: the fleet's
penalties and wear costs are fixed currency/kWh amounts, meaningful only against prices
in that unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from math import gcd
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simulator.fleet.model import PriceKnowledge
from vpp_common.localtime import zone, zone_clock

# A sanity bound for hostile numbers (1e300), not a plausibility judgement: no tariff in any
# currency reaches 10 000 per kWh (day-ahead caps are 4-5 EUR/kWh)
PRICE_LIMIT_PER_KWH = 1e4
DAYS = {"all": frozenset(range(7)), "mon-fri": frozenset(range(5)), "sat-sun": frozenset({5, 6})}
_CLOCK = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


class TariffError(ValueError):
    """A bad ``[tariff]`` value; ``field`` names it (e.g. ``tariff.period[1].to``)."""

    def __init__(self, fld: str, message: str) -> None:
        super().__init__(message)
        self.field = fld


def unit_exponent(unit: str, currency: str) -> int:
    """Power of ten that turns a number in ``unit`` into ``currency``/kWh."""
    if unit == "ct/kWh":
        return -2
    m = re.fullmatch(r"([A-Za-z]{3})/(kWh|MWh)", unit)
    if m is None:
        raise TariffError("tariff.unit", f"unknown unit {unit!r}: use \"{currency}/kWh\", \"{currency}/MWh\" or "
                                         "\"ct/kWh\" (cents of the scenario's currency)")
    if m.group(1) != currency:
        raise TariffError("tariff.unit", f"unit {unit!r} is not in the scenario's currency {currency!r} "
                                         f"([scenario] currency)")
    return -3 if m.group(2) == "MWh" else 0


def to_per_kwh(v: Decimal | int, exp10: int, fld: str) -> float:
    """A price in the tariff's unit -> currency/kWh (exact in decimal, then rounded once)."""
    d = Decimal(v)
    if not d.is_finite():
        raise TariffError(fld, f"must be a finite number, got {v}")
    out = float(d.scaleb(exp10))
    if abs(out) > PRICE_LIMIT_PER_KWH:
        raise TariffError(fld, f"{v} is {out:g} per kWh: beyond {PRICE_LIMIT_PER_KWH:g} (wrong unit?)")
    return out


def clock_minutes(v: str | time, fld: str, *, end: bool = False) -> int:
    """ "HH:MM" (or a TOML time 16:00:00) -> minutes after midnight; "24:00" only as a period's end."""
    if isinstance(v, time) and v.second == 0 and v.microsecond == 0:
        v = v.strftime("%H:%M")
    m = _CLOCK.fullmatch(v.strip()) if isinstance(v, str) else None
    minutes = int(m.group(1)) * 60 + int(m.group(2)) if m else -1
    if m is None or minutes > 24 * 60 or (minutes == 24 * 60 and not end):
        raise TariffError(fld, f"not a time of day \"HH:MM\" (00:00..{'24:00' if end else '23:59'}): {v!r}")
    return minutes


class _Period(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = ""
    start: str | time = Field(alias="from")
    to: str | time
    days: Literal["all", "mon-fri", "sat-sun"] = "all"
    months: list[int] | None = Field(None, min_length=1)
    import_price: Decimal
    export_price: Decimal | None = None


class TariffTable(BaseModel):
    """``[tariff]`` as written (prices still in its unit)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["day_ahead", "time_of_use", "flat", "series"] = "day_ahead"
    unit: str | None = None
    published: str | time | None = None
    market_timezone: str | None = None
    import_price: Decimal | None = None
    export_price: Decimal | None = None
    period: list[_Period] = []


@dataclass(frozen=True)
class Period:
    name: str
    start_min: int
    end_min: int  # exclusive; 1440 = midnight
    weekdays: frozenset[int]
    months: frozenset[int]
    import_per_kwh: float
    export_per_kwh: float


@dataclass(frozen=True)
class Tariff:
    """``[tariff]`` checked, prices in currency/kWh."""

    kind: str
    exp10: int  # prices.csv numbers x 10**exp10 = currency/kWh
    knowledge: PriceKnowledge
    import_per_kwh: float = 0.0  # flat and off-peak
    export_per_kwh: float = 0.0
    periods: tuple[Period, ...] = ()

    @property
    def needs_prices_file(self) -> bool:
        return self.kind in ("day_ahead", "series")


def _only(t: TariffTable, kinds: tuple[str, ...], names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(t, name) not in (None, []) and t.kind not in kinds:
            raise TariffError(f"tariff.{name}", f"applies to kind {' or '.join(kinds)} only, not {t.kind!r}")


def _periods(t: TariffTable, exp10: int, export_default: float) -> tuple[Period, ...]:
    out: list[Period] = []
    for i, p in enumerate(t.period):
        at = f"tariff.period[{i}]"
        a = clock_minutes(p.start, f"{at}.from")
        b = clock_minutes(p.to, f"{at}.to", end=True)
        if b <= a:
            raise TariffError(f"{at}.to", f"{p.start}-{p.to} wraps midnight or is empty: a period runs from "
                                          "\"from\" to a later \"to\" (\"24:00\" = midnight); give two periods")
        bad = [m for m in (p.months or []) if not 1 <= m <= 12]
        if bad or len(set(p.months or [])) != len(p.months or []):
            raise TariffError(f"{at}.months", f"months are distinct numbers 1..12, got {p.months}")
        exp = export_default if p.export_price is None else to_per_kwh(p.export_price, exp10, f"{at}.export_price")
        out.append(Period(p.name or f"period {i}", a, b, DAYS[p.days], frozenset(p.months or range(1, 13)),
                          to_per_kwh(p.import_price, exp10, f"{at}.import_price"), exp))
        for j, q in enumerate(out[:-1]):
            new = out[-1]
            if new.weekdays & q.weekdays and new.months & q.months and new.start_min < q.end_min \
                    and q.start_min < new.end_min:
                raise TariffError(at, f"{p.start}-{p.to} overlaps tariff.period[{j}] ({q.name!r}) on the same days")
    return tuple(out)


def parse_tariff(raw: dict[str, object] | None, currency: str, timezone: str) -> Tariff:
    """``[tariff]`` (absent: day-ahead prices.csv in ``<currency>/kWh``, published 13:00 in the
    scenario's zone).  Raises pydantic's ValidationError or TariffError."""
    t = TariffTable.model_validate(raw or {})
    exp10 = unit_exponent(t.unit if t.unit is not None else f"{currency}/kWh", currency)
    _only(t, ("day_ahead",), ("published", "market_timezone"))
    _only(t, ("time_of_use", "flat"), ("import_price", "export_price"))
    _only(t, ("time_of_use",), ("period",))
    if t.kind == "day_ahead":
        m = clock_minutes(t.published if t.published is not None else "13:00", "tariff.published")
        tz = t.market_timezone if t.market_timezone is not None else timezone
        try:
            zone(tz)
        except ValueError as exc:
            raise TariffError("tariff.market_timezone", str(exc)) from None
        return Tariff(t.kind, exp10, PriceKnowledge("day_ahead", time(m // 60, m % 60), tz))
    known = PriceKnowledge("in_advance", time(0), timezone)
    if t.kind == "series":
        return Tariff(t.kind, exp10, known)
    for name in ("import_price", "export_price"):
        if getattr(t, name) is None:
            raise TariffError(f"tariff.{name}", f"kind {t.kind!r} needs {name} (in {t.unit or currency + '/kWh'})")
    assert t.import_price is not None and t.export_price is not None
    imp = to_per_kwh(t.import_price, exp10, "tariff.import_price")
    exp = to_per_kwh(t.export_price, exp10, "tariff.export_price")
    if t.kind == "time_of_use" and not t.period:
        raise TariffError("tariff.period", "kind 'time_of_use' needs at least one [[tariff.period]]")
    return Tariff(t.kind, exp10, known, imp, exp, _periods(t, exp10, exp))


def tariff_prices(tf: Tariff, start: datetime, slot_s: int, n: int, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """(import, export) per slot in currency/kWh of a flat or time-of-use tariff: each slot's
    mean over its minutes (a period boundary inside a slot, e.g. at 16:00 local in a zone
    30 min off UTC, prices the slot by the share of each price)."""
    if not tf.periods:
        return np.full(n, tf.import_per_kwh), np.full(n, tf.export_per_kwh)
    step = gcd(slot_s, 60)
    k = slot_s // step
    at = start.timestamp() + np.arange(n * k, dtype=float) * step
    local = zone_clock(timezone).local_s(at)
    minute = (local % 86400) // 60
    day = np.floor_divide(local, 86400).astype(np.int64)
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    month = day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12 + 1
    imp = np.full(at.size, tf.import_per_kwh)
    exp = np.full(at.size, tf.export_per_kwh)
    for p in tf.periods:
        on = ((minute >= p.start_min) & (minute < p.end_min) & np.isin(weekday, list(p.weekdays))
              & np.isin(month, list(p.months)))
        imp[on], exp[on] = p.import_per_kwh, p.export_per_kwh

    def per_slot(a: np.ndarray) -> np.ndarray:
        a = a.reshape(n, k)
        same = (a == a[:, :1]).all(axis=1)  # one price over the slot: exactly it, not a mean's rounding
        return np.where(same, a[:, 0], a.mean(axis=1))

    return per_slot(imp), per_slot(exp)
