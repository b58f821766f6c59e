"""When a pausable appliance (a freezer) pauses and resumes: pure decisions of its state, the house's
pressure and the time.

It pauses when the import limit binds or the import price reaches its spike threshold; it is off at
most ``max_pause_s`` in any ``period_s`` (the pauses of the rolling period are summed, so two short
pauses cannot make a long one), and a pause starts only if the budget left covers its minimum off
time; once on it stays on ``min_on_s``, once paused off ``min_off_s``.  When the budget is spent it
resumes whatever the cause.  A pause someone else made (the plug switched off by a person) is
not the agent's: it is never ended by the agent; an unknown state leaves the appliance alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from edge_agent.energy_manager.appliances import House, would_pass_limit
from edge_agent.energy_manager.load_switching import MAX_POWER_W, finite
from vpp_common.messages import LoadMode, SwitchableLoadFlexibility

PauseReason = Literal["import_limit", "price_spike", "max_pause", "released"]


@dataclass(frozen=True, slots=True)
class PauseRules:
    max_pause_s: float
    period_s: float
    min_on_s: float
    min_off_s: float
    power_w: float  # expected when on (W), until measured
    spike_per_kwh: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_pause_s", "period_s", "min_on_s", "min_off_s", "power_w"):
            if finite(getattr(self, name), 0.0, 1e7) is None:
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if not 0 < self.max_pause_s <= self.period_s or self.min_off_s > self.max_pause_s:
            raise ValueError("need 0 < max_pause_s <= period_s and min_off_s <= max_pause_s")


@dataclass(frozen=True, slots=True)
class PauseState:
    """On/off as read back (None unknown), since when (None: before the agent knew), the open pause's
    start (None: not paused by the agent), the closed pauses (start, end) within the last period,
    the power last seen on (W)."""

    on: bool | None = None
    changed_at: datetime | None = None
    paused_at: datetime | None = None
    pauses: tuple[tuple[datetime, datetime], ...] = ()
    on_power_w: float | None = None


@dataclass(frozen=True, slots=True)
class PauseAction:
    on: bool
    reason: PauseReason


def paused_s(state: PauseState, now: datetime, period_s: float) -> float:
    """Seconds the agent kept it paused within the last ``period_s`` (the open pause counted to now)."""
    since = now - timedelta(seconds=period_s)
    spans = list(state.pauses) + ([(state.paused_at, now)] if state.paused_at is not None else [])
    return sum(max(0.0, (min(e, now) - max(s, since)).total_seconds()) for s, e in spans)


def observe_pause(state: PauseState, on: bool | None, power_w: float | None, now: datetime,
                  period_s: float) -> PauseState:
    """The state after a read: a change restarts its on/off time; seen on ends the agent's pause
    (whoever switched it on); unknown is unknown (its times and the agent's pause are kept)."""
    since = now - timedelta(seconds=period_s)
    pauses = tuple(p for p in state.pauses if p[1] > since)
    if on is None:  # unknown now (its last state is no longer known either): nothing is decided on it
        return replace(state, on=None, pauses=pauses)
    power = finite(power_w, 0.0, MAX_POWER_W)
    on_power = power if on and power is not None and power > 0 else state.on_power_w
    changed = state.changed_at if state.on in (None, on) else now
    paused_at = state.paused_at
    if on and paused_at is not None:
        pauses, paused_at = pauses + ((paused_at, now),), None
    return PauseState(on, changed, paused_at, pauses, on_power)


def after_switch(state: PauseState, action: PauseAction, now: datetime) -> PauseState:
    """The state once the plug read back the action's state."""
    if action.on:
        pauses = state.pauses + (((state.paused_at, now),) if state.paused_at is not None else ())
        return replace(state, on=True, changed_at=now, paused_at=None, pauses=pauses)
    return replace(state, on=False, changed_at=now, paused_at=now)


def _held_s(since: datetime | None, now: datetime) -> float:
    return float("inf") if since is None else max(0.0, (now - since).total_seconds())


def spike(rules: PauseRules, price_now: float | None) -> bool:
    price, threshold = finite(price_now, -1e4, 1e4), finite(rules.spike_per_kwh, -1e4, 1e4)
    return price is not None and threshold is not None and price >= threshold


def draw_w(rules: PauseRules, state: PauseState, power_w: float | None) -> float:
    """What it draws on (W): measured, else last seen on, else expected."""
    for w in (power_w, state.on_power_w):
        if (v := finite(w, 0.0, MAX_POWER_W)) is not None and v > 0:
            return v
    return rules.power_w


def decide_pause(rules: PauseRules, state: PauseState, house: House, price_now: float | None,
                 power_w: float | None) -> PauseAction | None:
    """Pause, resume or nothing (None).  ``house.grid_w`` counts the appliance as drawing now."""
    now = house.now
    if state.on is None:
        return None
    used = paused_s(state, now, rules.period_s)
    if state.on is False:
        if state.paused_at is None:
            return None  # someone else's pause
        if used >= rules.max_pause_s:
            return PauseAction(True, "max_pause")
        if _held_s(state.changed_at, now) < rules.min_off_s or spike(rules, price_now):
            return None
        if would_pass_limit(house, draw_w(rules, state, power_w)):
            return None  # it would take the import past the limit again
        return PauseAction(True, "released")
    if _held_s(state.changed_at, now) < rules.min_on_s or rules.max_pause_s - used < max(rules.min_off_s, 1.0):
        return None
    if spike(rules, price_now):
        return PauseAction(False, "price_spike")
    if would_pass_limit(house, 0.0):
        return PauseAction(False, "import_limit")
    return None


def pause_flexibility(resource_id: str, rules: PauseRules, state: PauseState) -> SwitchableLoadFlexibility:
    """S2 OMBC: "on" at its power and "off"; where it is (unknown stays unknown); the longer of its
    minimum on and off times; its maximum pause (per period: docs/appliances.md)."""
    mode = "" if state.on is None else ("on" if state.on else "off")
    power = state.on_power_w or rules.power_w
    return SwitchableLoadFlexibility(resource_id, (LoadMode("on", round(power, 1)), LoadMode("off", 0.0)), mode,
                                     state.changed_at if mode else None, max(rules.min_on_s, rules.min_off_s),
                                     rules.max_pause_s)


__all__ = ["PauseAction", "PauseRules", "PauseState", "after_switch", "decide_pause", "draw_w", "observe_pause",
           "pause_flexibility", "paused_s", "spike"]
