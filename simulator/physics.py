"""Deterministic physics of one house: PV, a home battery behind a hybrid inverter, load, grid meter.

Sign convention (docs/architecture.md): power is positive when the device *consumes* at
its point of connection.

* ``pv_power_w`` <= 0 (production is negative),
* ``battery_power_w`` > 0 while charging, < 0 while discharging (AC side),
* ``load_power_w`` >= 0,
* ``grid_power_w`` > 0 importing, < 0 exporting,
* balance: ``grid_power_w = load_power_w + battery_power_w + pv_power_w + other_power_w``, where
  ``other_power_w`` (0 unless :attr:`HousePhysics.other_w` is set) is what devices outside this
  model draw (> 0: smart plugs) or give (< 0: micro-inverters) at the same connection point
  (simulator/mix_house.py); the battery's self-consumption covers them too (it regulates on the meter).

The one exception is ``inverter_ac_power_w``, which is *production
positive* (``-(pv + battery)``) because that is what an inverter reports.

Everything here is a pure function of the configuration, the commands and
the times passed in: no clock, no I/O, no randomness.  Powers are held
constant between two calls of :meth:`HousePhysics.step` (zero-order hold);
the state of charge integrates the held battery power with the charge or
discharge efficiency and stops exactly at its limits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from vpp_common.clock import utc

Profile = Callable[[datetime], float]
"""A profile returns a power magnitude in W (>= 0) for an aware UTC time."""


@dataclass(frozen=True)
class SlotSeries:
    """A power magnitude (W >= 0) per slot of ``slot_s`` seconds from ``start``, held over each slot.

    Before ``start`` the first value holds, after the last slot the last value.
    The slot boundaries are the series' *breakpoints*: :class:`HousePhysics`
    integrates piecewise across them, so energy per slot is exact whenever the
    physics is stepped.
    """

    start: datetime
    slot_s: float
    values_w: tuple[float, ...]

    def __init__(self, start: datetime, slot_s: float, values_w: Sequence[float]) -> None:
        values = tuple(float(v) for v in values_w)
        if not values:
            raise ValueError("SlotSeries needs at least one value")
        if slot_s <= 0:
            raise ValueError(f"SlotSeries.slot_s must be > 0, got {slot_s}")
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ValueError("SlotSeries values must be finite and >= 0")
        object.__setattr__(self, "start", utc(start))
        object.__setattr__(self, "slot_s", float(slot_s))
        object.__setattr__(self, "values_w", values)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.slot_s * len(self.values_w))

    def index(self, now: datetime) -> int:
        """Slot index of ``now`` (may lie outside 0..len-1)."""
        return math.floor((utc(now) - self.start).total_seconds() / self.slot_s)

    def at(self, now: datetime) -> float:
        i = min(max(self.index(now), 0), len(self.values_w) - 1)
        return self.values_w[i]

    def next_breakpoint(self, after: datetime) -> datetime | None:
        """The first slot boundary (start .. end, inclusive) strictly after ``after``; None past the end."""
        k = max(0, self.index(after) + 1)
        if k > len(self.values_w):
            return None
        t = self.start + timedelta(seconds=self.slot_s * k)
        if t <= after:  # ``after`` lies exactly on a boundary (floating point): the next one
            k += 1
            if k > len(self.values_w):
                return None
            t = self.start + timedelta(seconds=self.slot_s * k)
        return t

    @property
    def max_w(self) -> float:
        return max(self.values_w)


@dataclass(frozen=True)
class PhysicsConfig:
    """Parameters of one simulated house.

    Units are in the names; efficiencies are fractions (0, 1].  The PV day
    is a clear-sky-like bell (sin^2) between ``sunrise_utc_h`` and
    ``sunset_utc_h`` peaking at ``pv_kwp * 1000 * pv_performance_ratio`` W.
    The household load is ``load_base_w`` plus Gaussian morning and evening
    peaks.  ``pv_profile``/``load_profile`` replace these shapes (they return
    magnitudes >= 0: production W for PV, consumption W for load).
    ``pv_series``/``load_series`` (per-slot values, held over each slot) take
    precedence over both; PV from a series is the production *before*
    curtailment (``pv_kwp`` and the performance ratio do not scale it).
    """

    pv_kwp: float = 8.0
    pv_performance_ratio: float = 0.85
    sunrise_utc_h: float = 6.0
    sunset_utc_h: float = 20.0
    battery_capacity_wh: float = 10_000.0
    battery_max_charge_w: float = 5_000.0
    battery_max_discharge_w: float = 5_000.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    initial_soc_pct: float = 50.0
    min_soc_pct: float = 5.0
    max_soc_pct: float = 100.0
    load_base_w: float = 300.0
    load_morning_peak_w: float = 600.0
    load_morning_peak_utc_h: float = 7.0
    load_evening_peak_w: float = 1_200.0
    load_evening_peak_utc_h: float = 19.0
    pv_profile: Profile | None = None
    load_profile: Profile | None = None
    pv_series: SlotSeries | None = None
    load_series: SlotSeries | None = None

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, why: str) -> None:
            if not ok:
                raise ValueError(f"PhysicsConfig.{name}: {why} (got {getattr(self, name)!r})")

        need(self.pv_kwp >= 0, "pv_kwp", "must be >= 0")
        need(0 < self.pv_performance_ratio <= 1, "pv_performance_ratio", "must be in (0, 1]")
        need(0 <= self.sunrise_utc_h < self.sunset_utc_h <= 24, "sunrise_utc_h", "need 0 <= sunrise < sunset <= 24")
        need(self.battery_capacity_wh > 0, "battery_capacity_wh", "must be > 0")
        need(self.battery_max_charge_w >= 0, "battery_max_charge_w", "must be >= 0")
        need(self.battery_max_discharge_w >= 0, "battery_max_discharge_w", "must be >= 0")
        need(0 < self.charge_efficiency <= 1, "charge_efficiency", "must be in (0, 1]")
        need(0 < self.discharge_efficiency <= 1, "discharge_efficiency", "must be in (0, 1]")
        need(0 <= self.min_soc_pct < self.max_soc_pct <= 100, "min_soc_pct", "need 0 <= min < max <= 100")
        need(self.min_soc_pct <= self.initial_soc_pct <= self.max_soc_pct, "initial_soc_pct",
             "must lie within [min_soc_pct, max_soc_pct]")
        need(self.load_base_w >= 0, "load_base_w", "must be >= 0")
        need(self.load_morning_peak_w >= 0, "load_morning_peak_w", "must be >= 0")
        need(self.load_evening_peak_w >= 0, "load_evening_peak_w", "must be >= 0")

    @property
    def pv_peak_w(self) -> float:
        """Highest PV production of the built-in profile (or of the series), W (magnitude)."""
        if self.pv_series is not None:
            return self.pv_series.max_w
        return self.pv_kwp * 1000.0 * self.pv_performance_ratio

    @property
    def load_max_w(self) -> float:
        """Upper bound of the built-in load profile (or of the series), W."""
        if self.load_series is not None:
            return self.load_series.max_w
        return self.load_base_w + self.load_morning_peak_w + self.load_evening_peak_w

    def next_breakpoint(self, after: datetime) -> datetime | None:
        """The next instant after ``after`` at which a series steps (None: no more steps)."""
        points = [b for s in (self.pv_series, self.load_series) if s is not None
                  and (b := s.next_breakpoint(after)) is not None]
        return min(points) if points else None


def _hour_of_day(now: datetime) -> float:
    t = utc(now)
    return t.hour + t.minute / 60.0 + (t.second + t.microsecond / 1e6) / 3600.0


def pv_production_w(config: PhysicsConfig, now: datetime) -> float:
    """PV production at ``now`` as a magnitude in W (>= 0)."""
    if config.pv_series is not None:
        return config.pv_series.at(now)
    if config.pv_profile is not None:
        return max(0.0, float(config.pv_profile(now)))
    h = _hour_of_day(now)
    if h <= config.sunrise_utc_h or h >= config.sunset_utc_h:
        return 0.0
    x = (h - config.sunrise_utc_h) / (config.sunset_utc_h - config.sunrise_utc_h)
    return config.pv_peak_w * math.sin(math.pi * x) ** 2


def household_load_w(config: PhysicsConfig, now: datetime) -> float:
    """Household consumption at ``now`` in W (>= 0)."""
    if config.load_series is not None:
        return config.load_series.at(now)
    if config.load_profile is not None:
        return max(0.0, float(config.load_profile(now)))
    h = _hour_of_day(now)

    def bump(centre_h: float, width_h: float) -> float:
        d = abs(h - centre_h)
        d = min(d, 24.0 - d)  # the day wraps at midnight
        return math.exp(-0.5 * (d / width_h) ** 2)

    return (config.load_base_w
            + config.load_morning_peak_w * bump(config.load_morning_peak_utc_h, 1.0)
            + config.load_evening_peak_w * bump(config.load_evening_peak_utc_h, 1.5))


@dataclass(frozen=True)
class BatteryCommand:
    """What the battery is told: a power window and grid-charging permission.

    ``lower_w <= battery_power_w <= upper_w`` (W, charging positive).  Inside
    the window the battery does self-consumption; a window above 0 forces
    charging, one below 0 forces discharging.  If ``lower_w > upper_w`` the
    upper bound wins (a limit is honoured before a forced power).
    ``grid_charging_allowed=False`` caps charging at the PV surplus.
    ``reserve_pct`` raises the discharge floor above the configured
    ``min_soc_pct`` (SunSpec MinRsvPct).
    """

    lower_w: float = -math.inf
    upper_w: float = math.inf
    grid_charging_allowed: bool = True
    reserve_pct: float = 0.0

    def __post_init__(self) -> None:
        if math.isnan(self.lower_w) or math.isnan(self.upper_w):
            raise ValueError("BatteryCommand window bounds must not be NaN")
        if not 0.0 <= self.reserve_pct <= 100.0:
            raise ValueError(f"BatteryCommand.reserve_pct must be in [0, 100], got {self.reserve_pct}")


SELF_CONSUMPTION = BatteryCommand()
"""Unconstrained window: pure self-consumption within nameplate limits."""


def window_from_storage_controls(*, storctl_mod: int, in_w_rte_pct: float | None,
                                 out_w_rte_pct: float | None, w_cha_max_w: float,
                                 max_discharge_w: float) -> tuple[float, float]:
    """Battery power window (lower_w, upper_w), charging positive, from SunSpec model 124.

    Interpretation of evcc / Fronius GEN24 (both rates are % of WChaMax,
    although the model text says OutWRte is % of WDisChaMax):

    * ``StorCtl_Mod`` bit0 (charge limit): ``upper = InWRte% x WChaMax``;
      a negative InWRte forces discharging.
    * bit1 (discharge limit): ``lower = -OutWRte% x WChaMax``; a negative
      OutWRte forces charging (from the grid only if ChaGriSet = 1, which the
      caller turns into ``BatteryCommand.grid_charging_allowed``).
    * unset bits: ``upper = WChaMax`` (the charge setpoint, nameplate by
      default) and ``lower = -max_discharge_w`` (nameplate).

    A fixed target P is therefore StorCtl_Mod=3, InWRte = P/WChaMax x 100,
    OutWRte = -P/WChaMax x 100.  A rate that is not implemented (None)
    leaves its bound at the nameplate value.
    """
    upper = w_cha_max_w
    lower = -max_discharge_w
    if storctl_mod & 0b01 and in_w_rte_pct is not None:
        upper = in_w_rte_pct / 100.0 * w_cha_max_w
    if storctl_mod & 0b10 and out_w_rte_pct is not None:
        lower = -out_w_rte_pct / 100.0 * w_cha_max_w
    return lower, upper


@dataclass(frozen=True)
class PhysicsSnapshot:
    """State of the house at ``at``.  Powers in W, consumption positive (see module doc).

    Energy counters are Wh since the physics started, all >= 0.
    """

    at: datetime
    pv_power_w: float
    """PV power, <= 0 (production negative)."""
    battery_power_w: float
    """Battery power on the AC side, > 0 charging."""
    soc_pct: float
    load_power_w: float
    """Household consumption, >= 0."""
    grid_power_w: float
    """Grid meter, > 0 import; always load + battery + pv + other."""
    inverter_ac_power_w: float
    """Hybrid inverter AC power, *production positive* = -(pv + battery)."""
    window_lower_w: float
    window_upper_w: float
    pv_energy_wh: float
    """PV energy produced (magnitude)."""
    battery_charged_wh: float
    battery_discharged_wh: float
    load_energy_wh: float
    grid_imported_wh: float
    grid_exported_wh: float
    inverter_produced_wh: float
    """AC energy delivered by the inverter (production-positive part only)."""
    other_power_w: float = 0.0
    """Devices outside this model at the same connection point (HousePhysics.other_w), W signed."""


@dataclass
class _Counters:
    pv_energy_wh: float = 0.0
    battery_charged_wh: float = 0.0
    battery_discharged_wh: float = 0.0
    load_energy_wh: float = 0.0
    grid_imported_wh: float = 0.0
    grid_exported_wh: float = 0.0
    inverter_produced_wh: float = 0.0


BreakpointObserver = Callable[["PhysicsSnapshot"], None]


class HousePhysics:
    """One house, advanced by :meth:`step` with monotonically increasing times.

    With series inputs the integration is split at the series' breakpoints
    (slot boundaries), where the powers are re-evaluated; ``observer``, if
    set, is called with the snapshot at each breakpoint reached (counters and
    SoC exactly at the boundary), e.g. to record per-slot energies.
    """

    def __init__(self, config: PhysicsConfig, start: datetime,
                 command: BatteryCommand = SELF_CONSUMPTION) -> None:
        self._config = config
        self._command = command
        self._t = utc(start)
        self._soc_pct = config.initial_soc_pct
        self._counters = _Counters()
        self._pv_w = 0.0
        self._load_w = 0.0
        self._battery_w = 0.0
        self._pv_limit_w: float | None = None
        self._other_w = 0.0
        self.observer: BreakpointObserver | None = None
        # signed W of the house's other devices at a time (plugs > 0, micro-inverters < 0); held between steps
        self.other_w: Callable[[datetime], float] | None = None
        self._snapshot = self._evaluate()

    @property
    def config(self) -> PhysicsConfig:
        return self._config

    @property
    def command(self) -> BatteryCommand:
        return self._command

    @property
    def snapshot(self) -> PhysicsSnapshot:
        """State at the last step (no time passes by reading it)."""
        return self._snapshot

    @property
    def soc_floor_pct(self) -> float:
        """SoC below which the battery does not discharge: max(min_soc_pct, reserve_pct)."""
        return max(self._config.min_soc_pct, self._command.reserve_pct)

    def step(self, now: datetime) -> PhysicsSnapshot:
        """Integrate from the last step to ``now`` and evaluate the powers at ``now``.

        The powers of the last step are held over the interval.  Raises
        ValueError if ``now`` lies before the last step.
        """
        now = utc(now)
        dt_s = (now - self._t).total_seconds()
        if dt_s < 0:
            raise ValueError(f"time went backwards: {now.isoformat()} < {self._t.isoformat()}")
        # the inputs step at breakpoints: integrate piece by piece, re-evaluating at each
        while (bp := self._config.next_breakpoint(self._t)) is not None and bp <= now:
            self._integrate((bp - self._t).total_seconds())
            self._t = bp
            self._snapshot = self._evaluate()
            if self.observer is not None:
                self.observer(self._snapshot)
        dt_s = (now - self._t).total_seconds()
        if dt_s > 0:
            self._integrate(dt_s)
        self._t = now
        self._snapshot = self._evaluate()
        return self._snapshot

    def set_command(self, command: BatteryCommand, now: datetime) -> PhysicsSnapshot:
        """Step to ``now`` under the old command, then apply ``command`` from ``now`` on."""
        self.step(now)
        self._command = command
        self._snapshot = self._evaluate()
        return self._snapshot

    @property
    def pv_limit_w(self) -> float | None:
        """Curtailment: PV production is capped at this magnitude, W (None = no limit)."""
        return self._pv_limit_w

    def set_pv_limit(self, limit_w: float | None, now: datetime) -> PhysicsSnapshot:
        """Step to ``now`` with the old limit, then cap PV production at ``limit_w`` W (>= 0; None = none)."""
        if limit_w is not None and (math.isnan(limit_w) or limit_w < 0):
            raise ValueError(f"pv limit must be >= 0 W or None, got {limit_w}")
        self.step(now)
        self._pv_limit_w = limit_w
        self._snapshot = self._evaluate()
        return self._snapshot

    # -- internals -----------------------------------------------------------

    def _integrate(self, dt_s: float) -> None:
        cfg = self._config
        c = self._counters
        p = self._battery_w
        cap = cfg.battery_capacity_wh
        active = 1.0  # fraction of the interval the battery really ran at p
        if p > 0:
            e_cells = p * dt_s / 3600.0 * cfg.charge_efficiency
            headroom = max(0.0, (cfg.max_soc_pct - self._soc_pct) / 100.0 * cap)
            if e_cells >= headroom:
                active = headroom / e_cells
                self._soc_pct = max(self._soc_pct, cfg.max_soc_pct)
            else:
                self._soc_pct += e_cells / cap * 100.0
        elif p < 0:
            e_cells = -p * dt_s / 3600.0 / cfg.discharge_efficiency
            room = max(0.0, (self._soc_pct - self.soc_floor_pct) / 100.0 * cap)
            if e_cells >= room:
                active = room / e_cells
                self._soc_pct = min(self._soc_pct, self.soc_floor_pct)
            else:
                self._soc_pct -= e_cells / cap * 100.0
        t_on = dt_s * active / 3600.0  # hours at battery power p
        t_off = dt_s * (1.0 - active) / 3600.0  # hours with the battery stopped at a limit
        e_batt = p * t_on
        if e_batt > 0:
            c.battery_charged_wh += e_batt
        else:
            c.battery_discharged_wh -= e_batt
        c.pv_energy_wh += -self._pv_w * (t_on + t_off)
        c.load_energy_wh += self._load_w * (t_on + t_off)
        for hours, batt in ((t_on, p), (t_off, 0.0)):
            grid = self._load_w + batt + self._pv_w + self._other_w
            if grid > 0:
                c.grid_imported_wh += grid * hours
            else:
                c.grid_exported_wh -= grid * hours
            ac = -(self._pv_w + batt)
            if ac > 0:
                c.inverter_produced_wh += ac * hours

    def _battery_target(self, pv_w: float, load_w: float) -> float:
        """``load_w``: everything but the battery and this model's PV (the other devices included)."""
        cfg = self._config
        cmd = self._command
        # Self-consumption: absorb the surplus, cover the deficit (grid ~ 0).
        p = -(load_w + pv_w)
        p = min(cmd.upper_w, max(cmd.lower_w, p))
        p = max(-cfg.battery_max_discharge_w, min(cfg.battery_max_charge_w, p))
        if p > 0 and not cmd.grid_charging_allowed:
            p = min(p, max(0.0, -(pv_w + load_w)))
        if p > 0 and self._soc_pct >= cfg.max_soc_pct:
            p = 0.0
        if p < 0 and self._soc_pct <= self.soc_floor_pct:
            p = 0.0
        return p + 0.0  # no -0.0

    def _evaluate(self) -> PhysicsSnapshot:
        cfg = self._config
        production = pv_production_w(cfg, self._t)
        if self._pv_limit_w is not None:
            production = min(production, self._pv_limit_w)  # the inverter curtails its MPP trackers
        self._pv_w = -production + 0.0
        self._load_w = household_load_w(cfg, self._t)
        other = float(self.other_w(self._t)) if self.other_w is not None else 0.0
        self._other_w = other if math.isfinite(other) else 0.0  # a test's hook: never NaN into the counters
        self._battery_w = self._battery_target(self._pv_w, self._load_w + self._other_w)
        lower = max(self._command.lower_w, -cfg.battery_max_discharge_w)
        upper = min(self._command.upper_w, cfg.battery_max_charge_w)
        c = self._counters
        return PhysicsSnapshot(
            at=self._t,
            pv_power_w=self._pv_w,
            battery_power_w=self._battery_w,
            soc_pct=self._soc_pct,
            load_power_w=self._load_w,
            grid_power_w=self._load_w + self._battery_w + self._pv_w + self._other_w,
            inverter_ac_power_w=-(self._pv_w + self._battery_w) + 0.0,
            window_lower_w=lower,
            window_upper_w=upper,
            pv_energy_wh=c.pv_energy_wh,
            battery_charged_wh=c.battery_charged_wh,
            battery_discharged_wh=c.battery_discharged_wh,
            load_energy_wh=c.load_energy_wh,
            grid_imported_wh=c.grid_imported_wh,
            grid_exported_wh=c.grid_exported_wh,
            inverter_produced_wh=c.inverter_produced_wh,
            other_power_w=self._other_w,
        )


__all__ = [
    "SELF_CONSUMPTION",
    "BatteryCommand",
    "BreakpointObserver",
    "HousePhysics",
    "PhysicsConfig",
    "PhysicsSnapshot",
    "SlotSeries",
    "household_load_w",
    "pv_production_w",
    "window_from_storage_controls",
]
