"""When to switch the house's switchable loads off and back on: pure decisions of the state and the time.

A switchable load (a plug, a heat pump's SG-ready input) goes off when the grid import passes the
house's import limit (only as many loads as cover the excess, in the configured order) or when the
import price reaches a spike; it comes back on when neither holds any more and its expected power
fits under the limit with a margin (one load per decision: the next one sees the new reading).
Each load keeps its minimum on and off times; after its maximum off duration it comes back on
whatever the cause (a freezer or a heat pump must not stay off for hours).  Only loads the policy
switched off are switched on again: a load someone else switched off stays off.  A load whose
state is unknown (stale read-back) is left alone.  Every input is hostile: a NaN, an infinity or a
negative duration counts as unknown (no switching on its account), never as 0.

The caller keeps each load's :class:`LoadState` (``observe`` after every read, ``switched`` after a
switch read back) and applies the :class:`Action` s of ``decide``; docs/home-assistant-devices.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from vpp_common.messages import LoadMode, SwitchableLoadFlexibility

Reason = Literal["import_limit", "price_spike", "released", "max_off"]
MAX_POWER_W = 1e6  # a load's or the house's power beyond this is no reading


def finite(x: float | None, lo: float = -math.inf, hi: float = math.inf) -> float | None:
    """``x`` if it is a real number within [lo, hi], else None (unknown)."""
    if x is None or isinstance(x, bool) or not isinstance(x, int | float):
        return None
    x = float(x)
    return x if math.isfinite(x) and lo <= x <= hi else None


@dataclass(frozen=True, slots=True)
class LoadRules:
    """Per load: the shortest time it stays on and off once switched, the longest the policy
    keeps it off (s), and the power it draws when on (W; for the release, 0 = unknown)."""

    min_on_s: float = 300.0
    min_off_s: float = 300.0
    max_off_s: float = 3600.0
    expected_power_w: float = 0.0

    def __post_init__(self) -> None:
        for name in ("min_on_s", "min_off_s", "max_off_s", "expected_power_w"):
            if finite(getattr(self, name), 0.0, 1e9) is None:
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if self.max_off_s < self.min_off_s:
            raise ValueError(f"max_off_s ({self.max_off_s}) must be >= min_off_s ({self.min_off_s})")


@dataclass(frozen=True, slots=True)
class LoadState:
    """What the policy knows of one load: on/off as read back (None: unknown), since when (None:
    since before the agent knew it), when the policy switched it off (None: not shed by it) and the
    power it drew when last seen on (W)."""

    on: bool | None = None
    changed_at: datetime | None = None
    shed_at: datetime | None = None
    on_power_w: float | None = None


@dataclass(frozen=True, slots=True)
class SwitchedLoad:
    resource_id: str
    rules: LoadRules
    state: LoadState
    power_w: float | None = None  # measured now (W, consumption > 0), None if unknown


@dataclass(frozen=True, slots=True)
class Pressure:
    """The house now: grid power (W, import > 0; None unknown), its import limit (W), the import
    price and the spike threshold (currency/kWh; None: no price or no spike rule), and the margin
    under the limit a load must fit into to come back on (W)."""

    grid_w: float | None
    max_import_w: float | None
    price_per_kwh: float | None = None
    price_spike_per_kwh: float | None = None
    release_margin_w: float = 200.0


@dataclass(frozen=True, slots=True)
class Action:
    resource_id: str
    on: bool
    reason: Reason


def observe(state: LoadState, on: bool | None, power_w: float | None, now: datetime) -> LoadState:
    """The state after a read: a change seen (by anyone) restarts the load's on/off time; a load
    seen on is no longer shed; unknown keeps what was known (a stale read-back is no change)."""
    if on is None:
        return state
    power = finite(power_w, 0.0, MAX_POWER_W)
    on_power = power if on and power is not None and power > 0 else state.on_power_w
    if state.on is None or state.on != on:
        changed = now if state.on is not None else state.changed_at
        return LoadState(on, changed, state.shed_at if not on else None, on_power)
    return replace(state, shed_at=None if on else state.shed_at, on_power_w=on_power)


def switched(state: LoadState, action: Action, now: datetime) -> LoadState:
    """The state after the load read back the action's state."""
    return LoadState(action.on, now, None if action.on else now, state.on_power_w)


def _held_s(since: datetime | None, now: datetime) -> float:
    """Seconds since ``since``; since before the agent knew: as long as can be.  A clock that went
    back counts as 0 s (the load holds its state rather than flapping)."""
    return math.inf if since is None else max(0.0, (now - since).total_seconds())


def spike(p: Pressure) -> bool:
    price, threshold = finite(p.price_per_kwh, -1e4, 1e4), finite(p.price_spike_per_kwh, -1e4, 1e4)
    return price is not None and threshold is not None and price >= threshold


def import_excess_w(p: Pressure) -> float | None:
    """Import beyond the limit (W, > 0) or None: under it, or unknown."""
    grid, limit = finite(p.grid_w, -MAX_POWER_W, MAX_POWER_W), finite(p.max_import_w, -MAX_POWER_W, MAX_POWER_W)
    if grid is None or limit is None or grid <= limit:
        return None
    return grid - limit


def _draw_w(load: SwitchedLoad) -> float:
    """What switching the load off saves / switching it on adds (W): measured, else last seen on, else
    its configured expected power."""
    for w in (load.power_w, load.state.on_power_w):
        if (v := finite(w, 0.0, MAX_POWER_W)) is not None and v > 0:
            return v
    return load.rules.expected_power_w


def decide(loads: Sequence[SwitchedLoad], p: Pressure, now: datetime) -> tuple[Action, ...]:
    """The switches to make now (``loads`` in priority order: the first is shed first, released last)."""
    actions: list[Action] = []
    shed = [ld for ld in loads if ld.state.on is False and ld.state.shed_at is not None]
    for ld in shed:  # the longest off wins over any cause
        if _held_s(ld.state.shed_at, now) >= ld.rules.max_off_s:
            actions.append(Action(ld.resource_id, True, "max_off"))
    forced = {a.resource_id for a in actions}
    can_go = [ld for ld in loads if ld.state.on is True and _held_s(ld.state.changed_at, now) >= ld.rules.min_on_s]
    if spike(p):
        return tuple(actions) + tuple(Action(ld.resource_id, False, "price_spike") for ld in can_go)
    excess = import_excess_w(p)
    if excess is not None:
        for ld in can_go:
            if excess <= 0:
                break
            actions.append(Action(ld.resource_id, False, "import_limit"))
            excess -= _draw_w(ld)
        return tuple(actions)
    grid, limit = finite(p.grid_w, -MAX_POWER_W, MAX_POWER_W), finite(p.max_import_w, -MAX_POWER_W, MAX_POWER_W)
    margin = finite(p.release_margin_w, 0.0, MAX_POWER_W)
    if grid is None or limit is None or margin is None:
        return tuple(actions)  # no reading: only the maximum off time brings a load back
    headroom = limit - margin - grid - sum(_draw_w(ld) for ld in loads if ld.resource_id in forced)
    for ld in reversed(shed):
        if ld.resource_id in forced or _held_s(ld.state.changed_at, now) < ld.rules.min_off_s:
            continue
        if _draw_w(ld) <= headroom:  # one at a time, the last shed first; the next decision sees its power
            actions.append(Action(ld.resource_id, True, "released"))
            break
    return tuple(actions)


__all__ = ["Action", "as_flexibility", "LoadRules", "LoadState", "Pressure", "SwitchedLoad", "decide", "finite", "import_excess_w",
           "observe", "spike", "switched"]


def as_flexibility(resource_id: str, rules: LoadRules, state: LoadState) -> SwitchableLoadFlexibility:
    """The load as the aggregator sees it (S2 OMBC): "on" at its expected (or last seen) power and
    "off"; where it is (unknown stays unknown); the longer of its minimum on and off times (the
    aggregator must not count on faster switching) and its maximum off time as the longest pause."""
    power = rules.expected_power_w or state.on_power_w or 0.0
    mode = "" if state.on is None else ("on" if state.on else "off")
    return SwitchableLoadFlexibility(
        resource_id, (LoadMode("on", power), LoadMode("off", 0.0)), mode,
        state.changed_at if mode else None, max(rules.min_on_s, rules.min_off_s), rules.max_off_s)

