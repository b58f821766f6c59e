"""Frozen-data detection: device registers that stop updating while the house carries on.

A gateway or inverter whose measurement registers freeze keeps answering
with the last values: every read succeeds, every value is in range, and a
controller acting on them steers a house that is no longer there (seen: a
grid reading of -1600 W for 3 minutes while the house exported 6.6 kW).

Constant *powers* prove nothing: a battery idle at 0 W, PV at night and a
steady base load are legitimately constant, and a noise-free meter may
repeat a value.  What must move is what *integrates*: an energy counter
advances at the power flowing (``|P| / 3600`` Wh per second), a state of
charge at the battery power over the capacity, a device timestamp or
heartbeat at one per second.  A :class:`Progress` is one such quantity with
the *least* rate it must advance at now; :class:`FreezeDetector` flags it
once the advance it owes exceeds a few steps of its resolution.

No false alarm from registers a device never updates: a quantity counts
only after it has been seen to change once (a constant "timestamp" of a
device that does not implement it is ignored).  Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from edge_agent.drivers.sunspec_points import GroupValues, ModelValues
from edge_agent.drivers.sunspec_roles import (
    BATTERY_SOC,
    COUNTERS,
    HEARTBEATS,
    MPPT_COUNTER,
    MPPT_MODEL,
    MPPT_MODULE,
    Counter,
)
from vpp_common.messages import Measurement, Validity

# The least share of the measured power a counter must show: devices update counters in steps and
# lag their power readings; half of it still catches a frozen counter within seconds at kW.
POWER_SHARE = 0.5
# SoC is not integrated near its ends (a full battery may trickle, an empty one shows 0 % for long).
SOC_EDGE_PCT = 2.0
# Charge and discharge losses: a SoC moves by at least this share of the battery power.
SOC_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class Progress:
    """A reading that must advance: ``value`` (None: not read), the least rate it must advance at
    now (units per second, >= 0) and its resolution (the smallest step the device shows)."""

    name: str
    value: float | None
    min_rate_per_s: float
    resolution: float


@dataclass
class _Track:
    value: float
    at: datetime
    changed_at: datetime
    owed: float = 0.0  # advance expected since the last change
    rate: float = 0.0
    live: bool = False  # seen to change at least once


@dataclass(frozen=True, slots=True)
class FreezeVerdict:
    frozen: tuple[str, ...]
    """Names of the quantities that did not advance as they must."""
    detail: str = ""

    def __bool__(self) -> bool:
        return bool(self.frozen)


class FreezeDetector:
    """Flags quantities that owe ``steps`` resolution steps of advance or more and have not changed
    for at least ``min_s`` seconds.  A quantity clears as soon as it changes again."""

    def __init__(self, steps: float = 2.0, min_s: float = 2.0) -> None:
        # A true advance of more than one step always changes a quantised reading; two steps owed at
        # the least rate (already a fraction of the measured power) leaves a margin for counters
        # that devices update in bursts.
        if steps <= 0 or min_s < 0:
            raise ValueError("steps must be > 0 and min_s >= 0")
        self.steps = steps
        self.min_s = min_s
        self._tracks: dict[str, _Track] = {}

    def update(self, now: datetime, readings: Iterable[Progress]) -> FreezeVerdict:
        frozen: list[str] = []
        details: list[str] = []
        for r in readings:
            if r.value is None:
                self._tracks.pop(r.name, None)  # not read this time: nothing known
                continue
            t = self._tracks.get(r.name)
            rate = max(0.0, r.min_rate_per_s)
            if t is None:
                self._tracks[r.name] = _Track(r.value, now, now, rate=rate)
                continue
            dt = max(0.0, (now - t.at).total_seconds())
            if r.value != t.value:
                t.value, t.changed_at, t.owed, t.live = r.value, now, 0.0, True
            else:
                # the rate held since the last reading, and the one now: the smaller (zero-order hold)
                t.owed += min(t.rate, rate) * dt
            t.at, t.rate = now, rate
            still_s = (now - t.changed_at).total_seconds()
            if t.live and t.owed >= self.steps * max(r.resolution, 1e-9) and still_s >= self.min_s:
                frozen.append(r.name)
                details.append(f"{r.name} = {r.value:g} for {still_s:.0f} s (owes {t.owed:.3g})")
        return FreezeVerdict(tuple(frozen), "; ".join(details))

    def reset(self) -> None:
        self._tracks.clear()


def mark_stale(m: Measurement) -> Measurement:
    """A valid reading that cannot be trusted any more (frozen registers): its value, marked stale."""
    return Measurement(m.value, Validity.STALE, m.measured_at) if m.validity is Validity.VALID else m


def _n(values: GroupValues | None, name: str) -> float | None:
    v = values.get(name) if values is not None else None
    return float(v) if isinstance(v, (int, float)) else None


def _resolution(values: ModelValues | None, sf_name: str) -> float:
    sf = values.get(sf_name) if values is not None else None
    return 10.0 ** int(sf) if isinstance(sf, int) and -10 <= sf <= 10 else 1.0


def _sum(*values: float | None) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def sunspec_progress(prefix: str, models: Mapping[int, ModelValues], battery_w: float | None,
                     capacity_wh: float) -> list[Progress]:
    """What must advance in one SunSpec device's models as read this poll (names start with ``prefix``;
    edge_agent.drivers.sunspec_roles): energy counters at the power flowing, MPPT energy and
    timestamp, heartbeats at 1/s, and the SoC at the battery power ``battery_w`` (W) over
    ``capacity_wh``."""
    out: list[Progress] = []
    for model_id, m in models.items():
        counter, w = COUNTERS.get(model_id), _n(m, "W")
        if counter is not None and w is not None:
            out.append(_counter(f"{prefix}{model_id}", counter, m, (m,), w))
        elif model_id == MPPT_MODEL:
            out += _mppt(f"{prefix}{model_id}", m)
        elif model_id in HEARTBEATS:
            out.append(Progress(f"{prefix}{model_id}.{HEARTBEATS[model_id].name}", _n(m, HEARTBEATS[model_id].name),
                                1.0, 1.0))
    soc = next(((p, v) for choice in BATTERY_SOC.choices for p in choice
                if (v := _n(models.get(p.model), p.name)) is not None), None)
    if soc is not None:
        p, value = soc
        out.append(soc_progress(f"{prefix}{p.model}.{p.name}", value, battery_w, capacity_wh,
                                _resolution(models[p.model], p.sf)))
    return out


def _counter(name: str, counter: Counter, model: ModelValues, parts: Sequence[GroupValues],
             power_w: float) -> Progress:
    """``counter`` summed over ``parts`` (the model, or its modules), at ``power_w``."""
    value = _sum(*(_n(part, p) for part in parts for p in counter.points))
    rate_w = max(power_w, 0.0) if counter.production_only else abs(power_w)
    return Progress(f"{name}.{counter.name}", value, rate_w * POWER_SHARE / 3600, _resolution(model, counter.sf))


def _mppt(name: str, m: ModelValues) -> list[Progress]:
    modules = m.groups.get(MPPT_MODULE, ())
    if not modules:
        return []
    dcw = _sum(*(_n(mod, MPPT_COUNTER.power) for mod in modules))
    out = [_counter(name, MPPT_COUNTER, m, modules, dcw)] if dcw is not None else []
    return out + [Progress(f"{name}.Tms", _n(modules[0], "Tms"), 1.0, 1.0)]


def soc_progress(name: str, soc_pct: float | None, battery_w: float | None, capacity_wh: float,
                 resolution_pct: float) -> Progress:
    """A SoC (any device) that must move with the battery power (vendor maps have no energy counters)."""
    rate = 0.0
    if soc_pct is not None and battery_w is not None and capacity_wh > 1.0 \
            and SOC_EDGE_PCT < soc_pct < 100.0 - SOC_EDGE_PCT:
        rate = abs(battery_w) * SOC_SHARE / capacity_wh * 100.0 / 3600
    return Progress(name, soc_pct, rate, resolution_pct)


__all__ = ["FreezeDetector", "FreezeVerdict", "Progress", "mark_stale", "soc_progress", "sunspec_progress"]
