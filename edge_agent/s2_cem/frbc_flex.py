"""An FRBC Resource Manager's storage as the fleet sees it (pure): a ``StorageFlexibility`` under
the RM's resource id, so that the aggregator plans it with the house's own battery.

S2 gives a fill level in the RM's own unit (%, degrees of a buffer, ...) over its
``fill_level_range`` and, per operation mode element, how fast the fill level moves
(``fill_rate``, units per second) at the ends of its power range.  Their ratio is the electric
energy one unit of fill level takes (J per unit), so the capacity is in the electric Wh that
fill the storage from the range's start to its end; charging is then lossless by definition
(``charge_efficiency`` 1) and discharging gives back what its own ratio says (at most 1).
A storage whose ratio cannot be found (no element with power and fill rate of one sign, a
heat buffer described without fill rates) is not reported: the fleet would plan it on a guess.
Leakage and usage forecasts (a heat buffer empties as the house uses heat) are not modelled.
"""

from __future__ import annotations

import math

from s2python.frbc import FRBCOperationModeElement, FRBCSystemDescription

from edge_agent.s2_cem.instructions import ELECTRIC_PREFIX
from edge_agent.s2_cem.state import RmSnapshot
from vpp_common.messages import StorageFlexibility

MAX_CAPACITY_WH = 1e6  # the fleet's wire refuses a whole update with more (aggregator/service/bounds.py)
MAX_POWER_W = 1e6


def _power(e: FRBCOperationModeElement) -> tuple[float, float]:
    ranges = [r for r in e.power_ranges if r.commodity_quantity.value.startswith(ELECTRIC_PREFIX)]
    return sum(r.start_of_range for r in ranges), sum(r.end_of_range for r in ranges)


def _wh_per_unit(elements: list[FRBCOperationModeElement], charging: bool) -> float | None:
    """Electric Wh per unit of fill level in one direction: the largest |power| / |fill rate|
    seen at an end of a power range where both move that way (the RM's own figures)."""
    best: float | None = None
    for e in elements:
        for p, r in zip(_power(e), (e.fill_rate.start_of_range, e.fill_rate.end_of_range), strict=True):
            if (p > 0 and r > 0) if charging else (p < 0 and r < 0):
                ratio = p / r / 3600
                if math.isfinite(ratio) and ratio > 0:
                    best = ratio if best is None else max(best, ratio)
    return best


def as_storage(snap: RmSnapshot) -> StorageFlexibility | None:
    """The RM's storage for the fleet, or None (not FRBC, nothing known yet, no energy ratio,
    a number the fleet refuses)."""
    desc: FRBCSystemDescription | None = snap.system_description
    if desc is None or snap.fill_level is None or snap.resource_id is None or not desc.actuators:
        return None
    lo, hi = desc.storage.fill_level_range.start_of_range, desc.storage.fill_level_range.end_of_range
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        return None
    elements = [e for m in desc.actuators[0].operation_modes if not m.abnormal_condition_only for e in m.elements]
    powers = [p for e in elements for p in _power(e)]
    charge, discharge = max(max(powers, default=0.0), 0.0), max(-min(powers, default=0.0), 0.0)
    wh_in = _wh_per_unit(elements, charging=True)
    if wh_in is None:
        return None  # it cannot be charged, or how much a unit takes is not said
    wh_out = _wh_per_unit(elements, charging=False)
    capacity = (hi - lo) * wh_in
    soc = min(max((snap.fill_level.value - lo) / (hi - lo) * 100, 0.0), 100.0)
    numbers = (capacity, charge, discharge, soc)
    if not all(math.isfinite(v) for v in numbers) or not 0 < capacity <= MAX_CAPACITY_WH \
            or charge > MAX_POWER_W or discharge > MAX_POWER_W:
        return None
    return StorageFlexibility(
        resource_id=snap.resource_id, soc_pct=soc, soc_min_pct=0.0, soc_max_pct=100.0, reserve_soc_pct=0.0,
        capacity_wh=capacity, max_charge_power_w=charge, max_discharge_power_w=discharge if wh_out else 0.0,
        charge_efficiency=1.0,
        discharge_efficiency=min(1.0, wh_out / wh_in) if wh_out else 1.0)
