"""The safety envelope for a device the agent does not drive itself (an S2 Resource Manager's):
the power range it may take so that the grid stays within the site limits in force (pure).

Powers in W, consumption positive.  The house without the device draws ``grid_w - device_w``;
the device may add anything that keeps the grid within [-max_export_w, max_import_w].  The
same rule as the battery's clamp (decide.py), for a device whose other limits (nameplate,
fill level) its own description carries.  Any input that is not a usable number gives no
window: nothing is sent on it.
"""

from __future__ import annotations

import math

from edge_agent.energy_manager.decide import limits_problem
from vpp_common.messages import SiteLimits


def device_window(grid_w: float | None, device_w: float | None, limits: SiteLimits) -> tuple[float, float] | None:
    """(least, most) W the device may take now, or None without usable inputs."""
    if grid_w is None or device_w is None or not (math.isfinite(grid_w) and math.isfinite(device_w)):
        return None
    if limits_problem(limits) is not None:
        return None
    base_w = grid_w - device_w
    return -limits.max_export_w - base_w, limits.max_import_w - base_w


def clamp_into(value_w: float, lo_w: float, hi_w: float) -> float:
    """``value_w`` moved into [lo_w, hi_w] (an empty range: its middle, the least violation of both)."""
    if lo_w > hi_w:
        return (lo_w + hi_w) / 2
    return min(hi_w, max(lo_w, value_w))


def violation(value_w: float, window: tuple[float, float] | None) -> float:
    """How far (W) ``value_w`` lies outside ``window`` (0 inside it or without one)."""
    if window is None:
        return 0.0
    lo, hi = window
    return max(0.0, lo - value_w, value_w - hi)
