"""Whether a micro-inverter holds the active-power limit it was sent (pure).

Micro-inverters take a limit with a delay (OpenDTU reports ``Pending`` while the command goes to the
inverter over radio; docs/lan-devices.md): a read-back that still differs within ``apply_s`` of the
command is *pending*, not failed; after it, or when the device itself reports a failure, it is
*failed* and the Resource Manager sends it again (a few times, then it says so).  A device whose
setting reads back at once while its output follows later (APsystems EZ1) is pending for ``settle_s``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

LimitState = Literal["none", "applied", "pending", "failed"]


class LimitTracker:
    def __init__(self, apply_s: float, tolerance_w: float, settle_s: float = 0.0) -> None:
        self.apply_s, self.tolerance_w, self.settle_s = apply_s, tolerance_w, settle_s
        self.asked_w: float | None = None
        self.asked_at: datetime | None = None

    def ask(self, value_w: float | None, now: datetime) -> None:
        """``value_w`` sent (None: the limit was lifted; nothing to hold)."""
        self.asked_w, self.asked_at = value_w, now

    def observe(self, readback_w: float | None, device_state: float | None, now: datetime) -> LimitState:
        """``device_state``: the device's own status where it has one (1 applied, 0 pending, -1 failed)."""
        if self.asked_w is None or self.asked_at is None:
            return "none"
        if device_state == -1.0:
            return "failed"
        age_s = (now - self.asked_at).total_seconds()
        if readback_w is not None and abs(readback_w - self.asked_w) <= self.tolerance_w and device_state != 0.0:
            return "applied" if age_s >= self.settle_s else "pending"  # the setting holds; the output follows
        return "pending" if age_s <= self.apply_s else "failed"


__all__ = ["LimitState", "LimitTracker"]
