"""Appliances behind a simulated smart plug (simulator/shelly_device.py, tasmota_device.py): what
the plug measures follows the appliance, on the given clock (an accelerated or manual one in tests,
the wall clock for ``vpp-sim lan-device --appliance``).

* :class:`WashingMachine`: idle (``idle_w``); armed by a person (``arm``: programme set and
  started) it waits drawing ``armed_w``; when its power comes back while armed (the plug switched
  off and on: machines that resume after a power cut) it runs its profile, then is idle again.
  Power cut while running: the programme is lost and it is armed again (a test can see that).
* :class:`Freezer`: a thermostat (cuts in above ``setpoint + band``, out below ``setpoint - band``)
  and a cabinet that warms while the compressor is off; its draw is the compressor's.
* :class:`PowerStation`: a battery that charges at ``charge_w`` while powered until full (then a
  trickle), and gives ``use_w`` to what it powers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from vpp_common.clock import Clock, SystemClock


class _Timed:
    clock: Clock
    _t: datetime

    def _dt_s(self) -> float:
        """Seconds since the last advance (a clock set back counts as 0)."""
        now = self.clock.now()
        dt, self._t = max(0.0, (now - self._t).total_seconds()), max(now, self._t)
        return dt


@dataclass
class WashingMachine(_Timed):
    profile: tuple[tuple[float, float], ...] = ((1800.0, 2000.0), (5400.0, 66.7))  # (s, W): 1.1 kWh over 2 h
    idle_w: float = 0.5
    armed_w: float = 4.0
    clock: Clock = field(default_factory=SystemClock)
    state: str = "idle"  # idle, armed, running
    powered: bool = True
    started_at: datetime | None = None
    runs: list[tuple[datetime, datetime]] = field(default_factory=list)  # (start, end) of finished runs
    interrupted: int = 0

    def __post_init__(self) -> None:
        self._t = self.clock.now()

    def arm(self) -> None:
        if self.state == "idle":
            self.state = "armed"

    def switched(self, on: bool) -> None:
        self._advance()
        if on and not self.powered and self.state == "armed":
            self.state, self.started_at = "running", self.clock.now()
        if not on and self.state == "running":
            self.state, self.started_at = "armed", None
            self.interrupted += 1
        self.powered = on

    def _advance(self) -> None:
        self._dt_s()
        if self.state == "running" and self.started_at is not None:
            total = sum(s for s, _ in self.profile)
            if (self.clock.now() - self.started_at).total_seconds() >= total:
                end = self.started_at + timedelta(seconds=total)
                self.runs.append((self.started_at, end))
                self.state, self.started_at = "idle", None

    def power_w(self) -> float:
        self._advance()
        if not self.powered:
            return 0.0
        if self.state == "running" and self.started_at is not None:
            t = (self.clock.now() - self.started_at).total_seconds()
            for s, w in self.profile:
                if t < s:
                    return w
                t -= s
        return self.armed_w if self.state == "armed" else self.idle_w


@dataclass
class Freezer(_Timed):
    compressor_w: float = 90.0
    setpoint_c: float = -18.0
    band_c: float = 1.5
    warm_c_per_h: float = 1.5  # compressor off (or no power)
    cool_c_per_h: float = 6.0  # compressor on
    temp_c: float = -18.0
    clock: Clock = field(default_factory=SystemClock)
    powered: bool = True
    running: bool = False
    max_temp_c: float = -18.0
    off_since: datetime | None = None
    off_spans: list[tuple[datetime, datetime]] = field(default_factory=list)  # power cuts (start, end)

    def __post_init__(self) -> None:
        self._t = self.clock.now()

    def switched(self, on: bool) -> None:
        self._advance()
        now = self.clock.now()
        if not on and self.powered:
            self.off_since = now
        if on and not self.powered and self.off_since is not None:
            self.off_spans.append((self.off_since, now))
            self.off_since = None
        self.powered = on

    def _thermostat(self) -> None:
        if self.temp_c > self.setpoint_c + self.band_c:
            self.running = True
        elif self.temp_c < self.setpoint_c - self.band_c:
            self.running = False
        self.max_temp_c = max(self.max_temp_c, self.temp_c)

    def _advance(self) -> None:
        dt = self._dt_s()
        self._thermostat()
        while dt > 0:  # in steps, so the thermostat switches within the interval
            step = min(dt, 60.0)
            dt -= step
            cooling = self.powered and self.running
            self.temp_c += (-self.cool_c_per_h if cooling else self.warm_c_per_h) * step / 3600.0
            self._thermostat()

    def power_w(self) -> float:
        self._advance()
        return self.compressor_w if self.powered and self.running else 0.0


@dataclass
class PowerStation(_Timed):
    capacity_wh: float = 1000.0
    soc_pct: float = 20.0
    charge_w: float = 300.0
    trickle_w: float = 0.5
    use_w: float = 0.0
    clock: Clock = field(default_factory=SystemClock)
    powered: bool = True
    charged_wh: float = 0.0

    def __post_init__(self) -> None:
        self._t = self.clock.now()

    def switched(self, on: bool) -> None:
        self._advance()
        self.powered = on

    def _advance(self) -> None:
        dt_h = self._dt_s() / 3600.0
        charge = self.charge_w if self.powered and self.soc_pct < 100.0 else 0.0
        wh = min(charge * dt_h, self.capacity_wh * (100.0 - self.soc_pct) / 100.0)
        self.charged_wh += wh
        self.soc_pct = min(100.0, max(0.0, self.soc_pct + (wh - self.use_w * dt_h) / self.capacity_wh * 100.0))

    def power_w(self) -> float:
        self._advance()
        if not self.powered:
            return 0.0
        return self.charge_w if self.soc_pct < 100.0 else self.trickle_w


Appliance = WashingMachine | Freezer | PowerStation
APPLIANCES = {"washer": WashingMachine, "freezer": Freezer, "station": PowerStation}


def make_appliance(name: str, clock: Clock | None = None) -> Appliance:
    if name not in APPLIANCES:
        raise ValueError(f"unknown appliance {name!r}; known: {', '.join(APPLIANCES)}")
    return APPLIANCES[name](clock=clock or SystemClock())  # type: ignore[abstract]


__all__ = ["APPLIANCES", "Appliance", "Freezer", "PowerStation", "WashingMachine", "make_appliance"]
