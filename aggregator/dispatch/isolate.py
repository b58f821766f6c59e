"""Keep one house's bad data from costing its block (or the fleet) its plans (pure, numpy).

The service refuses out-of-bounds numbers where they enter (``aggregator.service.bounds``);
this is the second line, in the core: a NaN, an inf or an absurd magnitude that still
reached a problem once made the LP of the whole block fail, and every house in it got
shifted old plans (issue 20).  Here:

* :func:`suspect_houses` scans the problem's arrays per house before the solve; those houses
  are taken out of the cycle (named, not planned);
* :func:`bisect_block` finds, for a block that failed anyway, the houses without which it
  solves (splitting in halves: each part that fails alone is split further), so the
  rest of the block is planned;
* :func:`bad_plan_rows` finds houses whose packed plan carries a non-finite number (the
  agent would refuse it; ``(-inf, nan)`` envelopes were seen).

A house taken out of a block changes its feeder's problem (its load is no longer counted);
that is the price of planning the others at all.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from aggregator.dispatch.plans import PackedPlans
from aggregator.dispatch.problem import FleetProblem

MAX_W = 1e7  # beyond any house (the service allows 1 MW); only what no LP should see
MAX_WH = 1e7

# field -> (low, high, +inf allowed): per house, (N,) or (N, T)
_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "load_w": (0.0, MAX_W, False),
    "pv_power_w": (-MAX_W, 0.0, False),
    "pv_rated_w": (-MAX_W, MAX_W, False),
    "capacity_wh": (0.0, MAX_WH, False),  # 0: a house without a battery (simulations)
    "soc_pct": (0.0, 100.0, False),
    "soc_min_pct": (0.0, 100.0, False),
    "soc_max_pct": (0.0, 100.0, False),
    "reserve_soc_pct": (0.0, 100.0, False),
    "max_charge_w": (0.0, MAX_W, False),
    "max_discharge_w": (0.0, MAX_W, False),
    "charge_efficiency": (1e-9, 1.0, False),
    "discharge_efficiency": (1e-9, 1.0, False),
    "max_import_w": (0.0, MAX_W, True),  # inf = no limit
    "max_export_w": (0.0, MAX_W, True),
}


def _bad(a: np.ndarray, lo: float, hi: float, inf_ok: bool) -> np.ndarray:
    """(N,) True where any value of the house's row is NaN, -inf, or out of [lo, hi] (+inf if allowed)."""
    a = a.reshape(a.shape[0], -1)
    ok = (a >= lo) & ((a <= hi) | (inf_ok & np.isposinf(a)))  # NaN compares False
    return np.asarray(~ok.all(axis=1))


def suspect_houses(p: FleetProblem) -> dict[int, str]:
    """House index -> the first field of the problem out of bounds for it (NaN, inf, absurd)."""
    out: dict[int, str] = {}
    for name, (lo, hi, inf_ok) in _BOUNDS.items():
        for i in np.flatnonzero(_bad(np.asarray(getattr(p, name), dtype=float), lo, hi, inf_ok)).tolist():
            out.setdefault(int(i), name)
    for name, (lo, hi) in (("scenario_load_w", (0.0, MAX_W)), ("scenario_pv_power_w", (-MAX_W, 0.0))):
        a = np.asarray(getattr(p, name), dtype=float)
        if a.size:
            for i in np.flatnonzero(_bad(np.moveaxis(a, 1, 0), lo, hi, False)).tolist():
                out.setdefault(int(i), name)
    return out


def bisect_block(houses: np.ndarray, solves: Callable[[np.ndarray], bool], max_out: int = 8) -> np.ndarray | None:
    """The houses of a failed block without which it solves, found by halving: a part that
    solves on its own is innocent; a failing part is split further, down to single houses.
    ``solves(part)``: True if the block's LP over ``part`` (sorted indices) has a solution.
    None if more than ``max_out`` houses (or every house) would have to go: then the failure
    is not one house's data, and the block keeps its fallback."""
    culprits: list[int] = []

    def search(part: np.ndarray) -> None:
        if len(culprits) > max_out or solves(part):
            return
        if len(part) == 1:
            culprits.append(int(part[0]))
            return
        mid = len(part) // 2
        search(part[:mid])
        search(part[mid:])

    mid = len(houses) // 2
    if len(houses) == 1:
        return np.asarray(houses, dtype=int)
    search(houses[:mid])
    search(houses[mid:])
    if not culprits or len(culprits) > max_out or len(culprits) >= len(houses):
        return None
    return np.asarray(sorted(culprits), dtype=int)


def bad_plan_rows(pk: PackedPlans) -> list[int]:
    """Rows of a pack whose plan the agent must refuse: a battery target or envelope not
    finite, a grid envelope with NaN or an infinite bound on the wrong side, or inverted."""
    batt_ok = np.isfinite(pk.target_w) & np.isfinite(pk.env_lo_w) & np.isfinite(pk.env_hi_w) \
        & (pk.env_lo_w <= pk.env_hi_w)
    grid_ok = (pk.grid_lo_w < np.inf) & (pk.grid_hi_w > -np.inf) & (pk.grid_lo_w <= pk.grid_hi_w)  # NaN: False
    return np.flatnonzero(~(batt_ok & grid_ok).all(axis=1)).tolist()


def excluded_reason(why: str) -> str:
    """A bounded metric label for why a house was left out (see optimise)."""
    if "out of bounds" in why:
        return "input_out_of_bounds"
    if "LP failed" in why:
        return "block_failed_with_it"
    return "plan_not_finite"
