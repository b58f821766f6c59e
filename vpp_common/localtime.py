"""Wall-clock time of an IANA time zone (pure): day logic in local time, DST included.

Inside the programs time is UTC (docs/architecture.md).  What people and markets
mean by a day is local: a similar day's same hour, a tariff's 16:00-21:00 peak, a
day-ahead market's publication at 13:00 and its delivery day.  This module turns
instants into wall-clock time and back, scalar (``datetime``) and for arrays of
POSIX seconds (the forecaster looks up hundreds of slots per forecast); numpy is imported by
the array methods only (an edge agent without a site forecast or tariff runs without it).
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    import numpy as np


@functools.lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (e.g. "Europe/Berlin"); ValueError naming it if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r} (give an IANA name such as \"Europe/Berlin\" or "
                         f"\"America/New_York\")") from None


def as_zone(tz: str | tzinfo) -> tzinfo:
    return zone(tz) if isinstance(tz, str) else tz


def local_day_start(now: datetime, tz: str | tzinfo, days: int = 0) -> datetime:
    """UTC instant at which the local day ``days`` after the one holding ``now`` begins.

    A midnight that falls into a DST gap (some zones jump 00:00 -> 01:00) maps to the
    instant of the jump (zoneinfo's fold=0 reading of a missing wall time)."""
    z = as_zone(tz)
    local = now.astimezone(z)
    return datetime.combine(local.date() + timedelta(days=days), time(0), tzinfo=z).astimezone(UTC)


def day_ahead_known_until(now: datetime, published: time, tz: str | tzinfo) -> datetime:
    """End of the prices public at ``now`` on a day-ahead market that publishes the next
    local day's prices at ``published`` (wall clock of the market's zone ``tz``): the end of
    today, or of tomorrow once ``published`` has passed (local days: 23 or 25 h at DST)."""
    local = now.astimezone(as_zone(tz))
    return local_day_start(now, tz, 2 if local.time().replace(tzinfo=None) >= published else 1)


@functools.lru_cache(maxsize=64)
def zone_clock(name: str) -> ZoneClock:
    """One shared :class:`ZoneClock` per zone name (its transition table is built once)."""
    return ZoneClock(name)


class ZoneClock:
    """UTC offsets of one zone for arrays of instants.  The offset changes at a few
    transitions a year; they are found once per year (hourly samples, each change bisected
    to the second), then an offset is one ``searchsorted``."""

    def __init__(self, tz: str | tzinfo) -> None:
        self.tz = as_zone(tz)
        # (first year, last year, instants (POSIX s) from which ..., ... this offset (s) holds): one
        # attribute, replaced whole, so a reader never sees half an extension
        self._table: tuple[int, int, list[float], list[float]] | None = None

    def _offset_at(self, s: float) -> float:
        off = datetime.fromtimestamp(s, UTC).astimezone(self.tz).utcoffset()
        return off.total_seconds() if off is not None else 0.0

    def _year_table(self, year: int) -> tuple[list[float], list[float]]:
        t0 = datetime(year, 1, 1, tzinfo=UTC).timestamp()
        n = int((datetime(year + 1, 1, 1, tzinfo=UTC).timestamp() - t0) // 3600)
        ts, offs = [t0], [self._offset_at(t0)]
        prev = offs[0]
        for k in range(1, n + 1):
            cur = self._offset_at(t0 + k * 3600.0)
            if cur != prev:  # a transition within the hour: bisect to the second
                lo, hi = t0 + (k - 1) * 3600.0, t0 + k * 3600.0
                while hi - lo > 1.0:
                    mid = (lo + hi) // 2
                    if self._offset_at(mid) == prev:
                        lo = mid
                    else:
                        hi = mid
                ts.append(hi)
                offs.append(cur)
                prev = cur
        return ts, offs

    def _cover(self, lo_s: float, hi_s: float) -> tuple[list[float], list[float]]:
        y0 = datetime.fromtimestamp(lo_s, UTC).year
        y1 = datetime.fromtimestamp(hi_s, UTC).year
        table = self._table
        if table is not None and table[0] <= y0 and y1 <= table[1]:
            return table[2], table[3]
        if table is not None:
            y0, y1 = min(y0, table[0]), max(y1, table[1])
        ts: list[float] = []
        offs: list[float] = []
        for y in range(y0, y1 + 1):
            a, b = self._year_table(y)
            ts += a
            offs += b
        self._table = (y0, y1, ts, offs)
        return ts, offs

    def offsets_s(self, utc_s: np.ndarray) -> np.ndarray:
        """UTC offset (s, east > 0) in force at each instant (POSIX s)."""
        import numpy as np

        utc_s = np.asarray(utc_s, dtype=float)
        if not utc_s.size:
            return np.zeros(0)
        t, off = (np.array(a) for a in self._cover(float(np.nanmin(utc_s)), float(np.nanmax(utc_s))))
        idx = np.clip(np.searchsorted(t, utc_s, side="right") - 1, 0, len(t) - 1)
        return off[idx]

    def offset_s(self, utc_s: float) -> float:
        """:meth:`offsets_s` of one instant, without numpy (the same table, the same value; NaN
        for NaN, whose local time is NaN either way)."""
        if utc_s != utc_s:
            return utc_s
        t, off = self._cover(utc_s, utc_s)
        return off[min(max(bisect_right(t, utc_s) - 1, 0), len(t) - 1)]

    def to_utc(self, local_s: float) -> float:
        """:meth:`to_utc_s` of one wall-clock time, without numpy (the same steps, the same value)."""
        u = local_s - self.offset_s(local_s)
        for _ in range(3):
            nxt = local_s - self.offset_s(u)
            if nxt == u:
                break
            u = nxt
        return u if u + self.offset_s(u) == local_s else float("nan")

    def constant_offset(self, lo_s: float, hi_s: float) -> bool:
        """True if the offset does not change from ``lo_s`` to ``hi_s`` (POSIX s): then a
        local day is 86 400 s there and UTC arithmetic is local arithmetic."""
        t, off = self._cover(lo_s, hi_s)
        i0, i1 = (max(0, bisect_right(t, x) - 1) for x in (lo_s, hi_s))
        return all(o == off[i0] for o in off[i0:i1 + 1])

    def local_s(self, utc_s: np.ndarray) -> np.ndarray:
        """Wall-clock time as seconds since 1970-01-01 00:00 local."""
        import numpy as np

        utc_s = np.asarray(utc_s, dtype=float)
        return utc_s + self.offsets_s(utc_s)

    def to_utc_s(self, local_s: np.ndarray) -> np.ndarray:
        """The instant of each wall-clock time (s since 1970-01-01 00:00 local); NaN where it
        does not exist (the hour skipped when the clocks go forward).  A wall time that occurs
        twice (the hour repeated in autumn) gives one of its instants."""
        import numpy as np

        local_s = np.asarray(local_s, dtype=float)
        u = local_s - self.offsets_s(local_s)
        for _ in range(3):
            nxt = local_s - self.offsets_s(u)
            if np.array_equal(nxt, u):
                break
            u = nxt
        return np.where(u + self.offsets_s(u) == local_s, u, np.nan)
