"""Plausibility of a house's readings, judged against the house itself (pure functions).

A reading is implausible when the house could not produce it: more power than
its fuse lets through, a battery faster than its nameplate, PV beyond what its
inverter can convert, a SoC outside 0..100 %, or grid, PV and battery that
leave a negative household load.  A nameplate is implausible when no home has
it (a 10 MW battery inverter is a bad register, not a house): it is refused,
never passed on.

The margins are generous on purpose: a false IMPLAUSIBLE idles the battery,
so only what physics rules out is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vpp_common.messages import Measurement, Validity

# No home device or connection is rated above these: a larger rating is a bad register
HOME_MAX_POWER_W = 100_000.0
HOME_MAX_CAPACITY_WH = 200_000.0
# A fuse carries up to ~1.6x its rating for a while (IEC 60269 gG conventional fusing current), and the
# configured limit may sit below the fuse itself: 2x the configured import limit is beyond any real house
FUSE_MARGIN = 2.0
# Devices run a little above their rating (and meters read a few % off)
RATING_MARGIN = 1.2
# PV arrays are oversized against their inverter (DC/AC up to ~1.5): PV power is bounded at 2x the rating
PV_DC_MARGIN = 2.0
# An absolute slack on every power bound: standby draws and meter offsets on small ratings
SLACK_W = 100.0
# The load from the balance (grid - PV - battery) may read below 0 by this much: the meter and the
# inverter are read at different instants
BALANCE_TOLERANCE_W = 300.0
BALANCE_TOLERANCE_FRACTION = 0.2
SOC_RANGE = (0.0, 100.0)


@dataclass(frozen=True, slots=True)
class Refused:
    """One refused outside value, for ``edge_agent.refusals.Refusals.refuse``."""

    source: str
    reason: str  # a short stable label (a metric label value)
    detail: str  # for people: the value, the limit


@dataclass(frozen=True, slots=True)
class HouseBounds:
    """What the house can physically do; None = not known (then only the home-wide bound applies)."""

    max_import_w: float | None = None  # the connection limit (site.max_import_w)
    battery_max_w: float | None = None  # the battery's larger charge/discharge rating
    pv_rating_w: float | None = None  # the PV inverter's rating
    has_pv: bool = True

    def grid_range(self) -> tuple[float, float]:
        """Import up to 2x the connection limit; export up to that or what the house can generate
        (PV at its bound plus the battery at its rating), whichever is less."""
        fuse = FUSE_MARGIN * self.max_import_w + SLACK_W if self.max_import_w else HOME_MAX_POWER_W
        export = fuse
        if self.battery_max_w and (self.pv_rating_w or not self.has_pv):
            generation = PV_DC_MARGIN * (self.pv_rating_w or 0.0) + self.battery_max_w
            export = min(export, RATING_MARGIN * generation + SLACK_W)
        return -export, fuse

    def battery_range(self) -> tuple[float, float]:
        m = RATING_MARGIN * self.battery_max_w + SLACK_W if self.battery_max_w else HOME_MAX_POWER_W
        return -m, m

    def pv_range(self) -> tuple[float, float]:
        """Production is negative; a PV inverter consumes nothing worth measuring (1 W of noise)."""
        m = PV_DC_MARGIN * self.pv_rating_w + SLACK_W if self.pv_rating_w else HOME_MAX_POWER_W
        return -m, 1.0

    def ev_range(self) -> tuple[float, float]:
        """An EV charger sits behind the connection: bounded by the fuse like the grid."""
        return self.grid_range()


def out_of_range(quantity: str, value: float, lo: float, hi: float, unit: str = "W") -> Refused | None:
    """A refusal if ``value`` is not finite or outside [lo, hi]."""
    if math.isfinite(value) and lo <= value <= hi:
        return None
    return Refused("device", f"{quantity}_implausible",
                   f"{quantity} reads {value:g} {unit}, outside the house's plausible {lo:g}..{hi:g} {unit}")


def implausible_reading(m: Measurement, name: str, value: float | None, bounds: tuple[float, float],
                        unit: str = "W") -> Refused | None:
    """The refusal to report for a measurement that a Resource Manager marked IMPLAUSIBLE against
    ``bounds`` (None if it is not, or nothing was read)."""
    if m.validity is not Validity.IMPLAUSIBLE or value is None:
        return None
    return out_of_range(name, value, *bounds, unit=unit)


def load_from_balance(grid_w: float, pv_w: float, battery_w: float) -> tuple[float, Refused | None]:
    """The household load (grid = load + PV + battery) and a refusal if it is negative beyond the
    tolerance: then at least one of the three readings is wrong (which one cannot be told)."""
    load = grid_w - pv_w - battery_w
    tolerance = max(BALANCE_TOLERANCE_W, BALANCE_TOLERANCE_FRACTION * max(abs(grid_w), abs(pv_w), abs(battery_w)))
    if load >= -tolerance:
        return load, None
    return load, Refused("device", "energy_balance",
                         f"grid {grid_w:g} W, PV {pv_w:g} W and battery {battery_w:g} W leave a load of "
                         f"{load:g} W (below -{tolerance:g} W): the readings do not add up")


# Readings that do not add up on this many polls in a row are not a meter and an inverter read a
# moment apart (one poll) but a wrong reading: then none of them is used
UNBALANCED_POLLS = 3


class BalanceWatch:
    """Counts polls in a row whose readings do not add up (``load_from_balance`` refused)."""

    def __init__(self, polls: int = UNBALANCED_POLLS) -> None:
        self._polls = polls
        self.in_a_row = 0

    def update(self, unbalanced: bool) -> bool:
        """Record one poll; True once the readings have not added up for ``polls`` polls in a row."""
        self.in_a_row = self.in_a_row + 1 if unbalanced else 0
        return self.in_a_row >= self._polls


def rating(what: str, value: float | None, limit: float = HOME_MAX_POWER_W, unit: str = "W"
           ) -> tuple[float | None, Refused | None]:
    """A nameplate value as used: None if not implemented (or 0), refused (None) if not finite,
    negative or beyond any home (``limit``)."""
    if value is None or value == 0:
        return None, None
    if math.isfinite(value) and 0 < value <= limit:
        return value, None
    return None, Refused("device", "nameplate_implausible",
                         f"{what} reads {value:g} {unit}: not a home device (plausible up to {limit:g} {unit}); "
                         "not used, not passed on")


__all__ = ["HOME_MAX_CAPACITY_WH", "HOME_MAX_POWER_W", "SOC_RANGE", "UNBALANCED_POLLS", "BalanceWatch", "HouseBounds",
           "Refused", "implausible_reading", "load_from_balance", "out_of_range", "rating"]
