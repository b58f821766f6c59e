"""When a decision goes to the device (pure): the deadband, the refresh before the device reverts,
and the rules of the PV limit.

A write costs a Modbus request and, on some devices, flash wear: a setpoint that moved less than
the deadband is not written, but one that keeps the house within a site limit always is, and
each value is written again before the device's revert timer hands the battery back to its own
mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# A write that keeps a house within a site limit goes out even when smaller than the deadband
# (1 W: below it, meter noise)
TIGHTEN_MIN_W = 1.0

Written = tuple[float, datetime]  # (W, when written)


@dataclass(frozen=True, slots=True)
class WritePolicy:
    deadband_w: float  # changes smaller than this are not written
    refresh_s: float  # a value this old is written again (half the device's revert time)

    @classmethod
    def for_revert(cls, deadband_w: float, revert_s: float) -> WritePolicy:
        return cls(deadband_w, revert_s / 2)

    def _refresh_due(self, written: Written, now: datetime) -> bool:
        return (now - written[1]).total_seconds() >= self.refresh_s

    def battery_due(self, value_w: float, last: Written | None, now: datetime,
                    clamped_by: tuple[str, ...] = ()) -> bool:
        """Whether to write a setpoint: a change beyond the deadband, a refresh before the device
        reverts, or any move that a site limit asked for (more charge for the export cap, more
        discharge for the import limit): the deadband must not hold a house above its limits."""
        if last is None:
            return True
        last_w = last[0]
        tightens = (("export_cap" in clamped_by and value_w > last_w + TIGHTEN_MIN_W)
                    or ("import_limit" in clamped_by and value_w < last_w - TIGHTEN_MIN_W))
        return self._refresh_due(last, now) or tightens or abs(value_w - last_w) >= self.deadband_w

    def pv_limit_due(self, limit_w: float | None, current: Written | None, now: datetime,
                     force: bool = False) -> bool:
        """Whether to write a PV limit (None: lift it): a change, a refresh before the device
        reverts, or ``force`` (the device lost it).  A lower limit is always written: the deadband
        saves writes, it must not let the house run above its export cap (on a shared feeder, a
        few W per house add up)."""
        if limit_w is None and current is None:
            return False
        if limit_w is None or current is None:
            return True
        changed = limit_w < current[0] - TIGHTEN_MIN_W or abs(limit_w - current[0]) >= self.deadband_w
        return changed or force or self._refresh_due(current, now)


def pv_limit_may_change(snapshot_poll: int, written_after_poll: int) -> bool:
    """A PV limit is changed only on a poll that began after it was last written (``snapshot_poll``:
    the poll that made the readings, 0 when not from the poll loop; ``written_after_poll``: polls
    started when it was written).  A poll that began before may not show the write's effect, or
    show half of it (meter and inverter are read at different instants), and a limit set from
    readings that do not add up overshoots and is corrected the other way (measured live: limits
    swinging 0 <-> 3 kW within seconds)."""
    return not 0 < snapshot_poll <= written_after_poll
