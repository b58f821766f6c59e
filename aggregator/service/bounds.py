"""Bounds of every number a house or an operator sends (pure checks, no I/O).

A house's NaN, inf or 1e300 once reached the fleet LP: the block holding it failed and every
house in it got shifted old plans (issue 20).  These checks run where the numbers enter
(``convert``, ``admin_servicer``) and raise :class:`InvalidMessage` naming the field, so
that a bad message is refused before it is stored.  The bounds are generous (no home
comes near them) and only exclude what no device can mean.
"""

from __future__ import annotations

import math
import re

MAX_POWER_W = 1e6  # 1 MW: far beyond any house connection, far below what upsets an LP
MAX_CAPACITY_WH = 1e6  # 1 MWh of storage in one house
MAX_FORECAST_SLOTS = 10_000  # ~ a week of minutes; the LP reads at most a few days
MAX_FORECAST_SLOT_S = 86_400


class InvalidMessage(ValueError):
    """A message that violates the contract (answered INVALID_ARGUMENT).

    ``field``: the offending field's path ("hello.limits.max_import_w"), "" if none applies."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field

    @property
    def reason(self) -> str:
        """A bounded metric label: the field path without list indices, or "contract"."""
        return re.sub(r"\[[^]]*\]", "[]", self.field) if self.field else "contract"


def finite(value: float, field: str, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """``value`` if finite and within [lo, hi] (``(lo, hi]`` with ``lo_open``), else InvalidMessage."""
    ok = math.isfinite(value) and (lo < value if lo_open else lo <= value) and value <= hi
    if not ok:
        low = "(" if lo_open else "["
        raise InvalidMessage(f"{field} must be a finite number in {low}{lo:g}, {hi:g}] (got {value!r})", field)
    return value


def power(value: float, field: str, *, signed: bool = True) -> float:
    """A power in W: finite, |W| <= MAX_POWER_W (>= 0 unless ``signed``)."""
    return finite(value, field, -MAX_POWER_W if signed else 0.0, MAX_POWER_W)


def pct(value: float, field: str) -> float:
    return finite(value, field, 0.0, 100.0)


def efficiency(value: float, field: str) -> float:
    """An efficiency in (0, 1]; 0 on the wire means "not set" (1.0), as the contract says."""
    return finite(value, field, 0.0, 1.0, lo_open=True) if value != 0.0 else 1.0
