"""The site limits in force (pure): the configured ones, tightened (never loosened) by the
aggregator's grid signal until it runs out; and whether a grid reading is past them."""

from __future__ import annotations

from datetime import datetime

from edge_agent.energy_manager.decide import tighten_limits
from vpp_common.messages import GridSignal, SiteLimits


def signal_limits_active(signal: GridSignal | None, now: datetime) -> bool:
    s = signal
    return not (s is None or s.limits is None or (s.limits_valid_until is not None and now >= s.limits_valid_until))


def feeder_envelope_active(signal: GridSignal | None, now: datetime) -> bool:
    """The aggregator's live feeder share holds: it replaces the plan's grid envelopes."""
    return signal_limits_active(signal, now) and bool(signal and signal.limits_are_feeder_envelope)


def effective_limits(configured: SiteLimits, signal: GridSignal | None, now: datetime) -> SiteLimits:
    """Configured limits, tightened (never loosened) by the aggregator's temporary ones."""
    if signal is None or signal.limits is None or not signal_limits_active(signal, now):
        return configured
    return tighten_limits(configured, signal.limits)  # never NaN; import below 0 only within the export


def export_past_cap(grid_w: float | None, max_export_w: float, margin_w: float) -> bool:
    """The grid reading exports more than the cap plus ``margin_w``."""
    return grid_w is not None and grid_w < -max_export_w - margin_w


def past_limits(grid_w: float | None, limits: SiteLimits, margin_w: float) -> bool:
    """The grid reading is past the export cap or the import limit by more than ``margin_w``."""
    return export_past_cap(grid_w, limits.max_export_w, margin_w) or (
        grid_w is not None and grid_w > limits.max_import_w + margin_w)
