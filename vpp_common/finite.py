"""Checks for numbers that come from outside (the wire, a device, a file): NaN passes every
comparison (``max(-100, min(100, nan))`` is 100), so finiteness is checked first, explicitly."""

from __future__ import annotations

import math


class NotFinite(ValueError):
    """A value that must be a finite number (and within its range) is not."""


def finite(value: float, what: str, lo: float | None = None, hi: float | None = None) -> float:
    """``value`` as a float if it is finite and within [lo, hi]; else :class:`NotFinite` naming ``what``."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise NotFinite(f"{what}: not a number ({value!r})") from exc
    if not math.isfinite(v):
        raise NotFinite(f"{what}: not finite ({v})")
    if lo is not None and v < lo:
        raise NotFinite(f"{what}: {v:g} is below {lo:g}")
    if hi is not None and v > hi:
        raise NotFinite(f"{what}: {v:g} is above {hi:g}")
    return v


def clamp(value: float, lo: float, hi: float) -> float:
    """``value`` within [lo, hi], NaN-proof: a non-finite input raises instead of returning a
    bound (as ``min``/``max`` would)."""
    if not (math.isfinite(value) and math.isfinite(lo) and math.isfinite(hi)):
        raise NotFinite(f"clamp({value}, {lo}, {hi}): not finite")
    if lo > hi:
        raise NotFinite(f"clamp: lower bound {lo:g} above upper bound {hi:g}")
    return lo if value < lo else hi if value > hi else value
