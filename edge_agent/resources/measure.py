"""Readings into measurements, the same for every Resource Manager.

A value within the house's bounds is VALID; beyond them IMPLAUSIBLE and
refused (reported on the next snapshot); a failed or not-implemented read
gives the last valid value as STALE for ``stale_after_s``, then MISSING:
never 0.
"""

from __future__ import annotations

from datetime import datetime

from edge_agent.resources.plausibility import Refused, implausible_reading
from vpp_common.messages import Measurement, Validity


class Measurer:
    def __init__(self, stale_after_s: float) -> None:
        self._stale_after_s = stale_after_s
        self._last: dict[str, Measurement] = {}
        self.refused: list[Refused] = []
        """Refused since the last :meth:`take_refused` (readings, and whatever the RM adds)."""

    def checked(self, name: str, value: float | None, now: datetime, bounds: tuple[float, float],
                unit: str = "W") -> Measurement:
        m = self._measure(name, value, now, *bounds)
        if (refused := implausible_reading(m, name, value, bounds, unit)) is not None:
            self.refused.append(refused)
        return m

    def _measure(self, name: str, value: float | None, now: datetime, lo: float, hi: float) -> Measurement:
        if value is None:
            last = self._last.get(name)
            if last is not None and last.measured_at is not None and \
                    (now - last.measured_at).total_seconds() <= self._stale_after_s:
                return Measurement(last.value, Validity.STALE, last.measured_at)
            return Measurement.missing()
        if not lo <= value <= hi:
            return Measurement(value, Validity.IMPLAUSIBLE, now)
        m = Measurement(value, Validity.VALID, now)
        self._last[name] = m
        return m

    def take_refused(self) -> tuple[Refused, ...]:
        """What was refused since the last call (for a snapshot)."""
        out, self.refused = tuple(self.refused), []
        return out


__all__ = ["Measurer"]
