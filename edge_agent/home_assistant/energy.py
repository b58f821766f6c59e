"""Energy counters for Home Assistant's Energy dashboard (kWh, ``total_increasing``).

Integrated from VALID readings only: a reading that is stale, missing or implausible ends the
current stretch, and two valid readings further apart than ``max_step_s`` are not joined (a gap
is skipped, never integrated at the last value).  Counters only ever grow; they are persisted
(JSON, atomic replace) and a value is published only once it is on disk, so an agent restart
can never show Home Assistant a decrease (which it reads as a meter reset).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from vpp_common.messages import Measurement, SiteTelemetry
from vpp_common.tariff import PriceSource

log = logging.getLogger(__name__)

# counter key -> (quantity of SiteTelemetry, sign: the part of the power that counts)
COUNTERS: dict[str, tuple[str, float]] = {
    "grid_import": ("grid_power_w", 1.0),  # grid import > 0
    "grid_export": ("grid_power_w", -1.0),
    "pv_production": ("pv_power_w", -1.0),  # production < 0
    "battery_in": ("battery_power_w", 1.0),  # charging > 0
    "battery_out": ("battery_power_w", -1.0),
}
FORMAT_VERSION = 1


def _valid(m: Measurement) -> float | None:
    return m.value if m.usable and m.value is not None and math.isfinite(m.value) else None


@dataclass
class EnergyCounters:
    """Pure integration: feed every snapshot's telemetry to :meth:`add`."""

    max_step_s: float
    kwh: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in COUNTERS})
    saved_today: float = 0.0  # money saved today by the battery (tariff currency)
    saved_day: date | None = None
    _last: dict[str, tuple[datetime, float]] = field(default_factory=dict)  # quantity -> (t, W)
    _last_base: tuple[datetime, float, float] | None = None  # (t, grid W, house without battery W)
    gaps_skipped: int = 0

    def add(self, t: SiteTelemetry, prices: PriceSource | None = None) -> None:
        for quantity in {q for q, _ in COUNTERS.values()}:
            w = _valid(getattr(t, quantity))
            prev = self._last.pop(quantity, None)
            if w is None:
                continue  # the stretch ends here: nothing integrated until two valid readings follow
            self._last[quantity] = (t.measured_at, w)
            if prev is None:
                continue
            dt = (t.measured_at - prev[0]).total_seconds()
            if not 0 < dt <= self.max_step_s:
                self.gaps_skipped += 1 if dt > self.max_step_s else 0
                continue
            for key, (q, sign) in COUNTERS.items():
                if q == quantity:  # trapezoid of the counted part (import part, export part, ...)
                    kwh = (max(sign * prev[1], 0.0) + max(sign * w, 0.0)) / 2 * dt / 3_600_000
                    self.kwh[key] += kwh
        if prices is not None:
            self._add_savings(t, prices)

    def _add_savings(self, t: SiteTelemetry, prices: PriceSource) -> None:
        """What the battery saved: the cost of the house without it (grid - battery) minus the
        cost of what the grid really saw, at the tariff's prices (UTC day)."""
        grid, bat = _valid(t.grid_power_w), _valid(t.battery_power_w)
        prev, self._last_base = self._last_base, None
        if grid is None or bat is None:
            return
        self._last_base = (t.measured_at, grid, grid - bat)
        day = t.measured_at.date()
        if self.saved_day != day:
            self.saved_day, self.saved_today = day, 0.0
        if prev is None:
            return
        dt = (t.measured_at - prev[0]).total_seconds()
        if not 0 < dt <= self.max_step_s:
            return
        imp, exp = prices.prices(prev[0], 900, 1)
        p_imp, p_exp = float(imp[0]), float(exp[0])

        def cost(w: float) -> float:  # per hour of w
            return (w * p_imp if w > 0 else w * p_exp) / 1000

        grid_w, base_w = (prev[1] + grid) / 2, (prev[2] + grid - bat) / 2
        saved = (cost(base_w) - cost(grid_w)) * dt / 3600
        if math.isfinite(saved):
            self.saved_today += saved

    def state(self) -> dict[str, object]:
        return {"version": FORMAT_VERSION, "kwh": dict(self.kwh), "saved_today": self.saved_today,
                "saved_day": self.saved_day.isoformat() if self.saved_day else None}


class CounterStore:
    """The counters' file: loaded once, written atomically (temp file, fsync, rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, max_step_s: float) -> EnergyCounters:
        counters = EnergyCounters(max_step_s)
        self.path.parent.mkdir(parents=True, exist_ok=True)  # an unwritable state_dir fails here, at start
        if not self.path.exists():
            return counters
        try:
            data = json.loads(self.path.read_text())
            kwh = {k: float(data["kwh"][k]) for k in COUNTERS}
            if not all(math.isfinite(v) and v >= 0 for v in kwh.values()):
                raise ValueError(f"not a meter reading: {kwh}")
            counters.kwh = kwh
            if data.get("saved_day"):
                counters.saved_day = date.fromisoformat(data["saved_day"])
                counters.saved_today = float(data.get("saved_today", 0.0))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = self.path.with_suffix(".corrupt")
            os.replace(self.path, aside)
            log.warning("energy counters in %s unreadable (%s): kept as %s, counting from 0 (Home Assistant "
                        "sees a meter reset)", self.path, exc, aside)
        return counters

    def save(self, counters: EnergyCounters) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(counters.state(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


SETTINGS = ("control_mode", "reserve_soc")  # set from Home Assistant and kept across restarts


def load_settings(path: Path) -> dict[str, str | float]:
    """The settings last made in Home Assistant (``{}`` for none, or for a file that is not one:
    set aside as ``.corrupt``).  Values are checked again where they are applied."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        out: dict[str, str | float] = {}
        if isinstance(data.get("control_mode"), str):
            out["control_mode"] = data["control_mode"][:32]
        v = data.get("reserve_soc")
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out["reserve_soc"] = float(v)
        return out
    except (OSError, ValueError, AttributeError) as exc:
        os.replace(path, path.with_suffix(".corrupt"))
        log.warning("Home Assistant settings in %s unreadable (%s): set aside, the config's hold", path, exc)
        return {}


def save_settings(path: Path, settings: dict[str, str | float]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(settings, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
