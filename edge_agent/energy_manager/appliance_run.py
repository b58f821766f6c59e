"""A shiftable run's life behind its plug (a washing machine): requested, running, done; pure
functions of the plug's readings and the time.  When it starts is appliances.decide_run's.

* Requested: by arming (the plug on, the machine drawing standby power between ``armed_above_w``
  and ``running_above_w``: the programme set and waiting; seen only after it drew at most
  ``armed_above_w``, so a machine showing "end" does not ask again) or, with ``available_from``,
  once a day from that local time.  The plug is then switched off to hold the machine.
* Running: from the agent's switch on, or from the moment it draws ``running_above_w`` or more
  (someone started it): never switched off by the agent.
* Done: when it has run its programme's length and draws at most ``armed_above_w``, or drew that
  little for ``DONE_LOW_S`` (it finished early), or after twice its length and an hour (a machine
  whose plug never reads low), or when someone switched the plug off.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Literal

from edge_agent.energy_manager.appliances import duration, run_window
from edge_agent.energy_manager.load_switching import MAX_POWER_W, finite
from vpp_common.messages import ProfileStep, RunState, ShiftableRunFlexibility

Phase = Literal["idle", "requested", "running", "done"]
DONE_LOW_S = 600.0


@dataclass(frozen=True, slots=True)
class RunRules:
    profile: tuple[ProfileStep, ...]
    ready_by: time
    tz: tzinfo
    available_from: time | None = None
    armed_above_w: float = 2.0
    running_above_w: float = 50.0
    margin_s: float = 0.0  # a run's window must hold its programme and this (the decisions' interval x 2)


@dataclass(frozen=True, slots=True)
class RunTrack:
    phase: Phase = "idle"
    earliest: datetime | None = None
    latest_end: datetime | None = None
    started_at: datetime | None = None
    planned: datetime | None = None  # the start the last decision aimed at
    seen_low: bool = True  # drew at most armed_above_w since the last run: a new arming may be seen
    requested_day: date | None = None  # available_from: the local day of the last request
    low_since: datetime | None = None  # running: drawing at most armed_above_w since


def _request(rules: RunRules, track: RunTrack, now: datetime) -> RunTrack:
    earliest, latest = run_window(now, rules.ready_by, rules.tz, rules.profile, rules.margin_s)
    return replace(track, phase="requested", earliest=earliest, latest_end=latest, started_at=None, planned=None,
                   seen_low=False, requested_day=now.astimezone(rules.tz).date(), low_since=None)


def started(rules: RunRules, track: RunTrack, now: datetime) -> RunTrack:
    """Running from ``now`` (switched on by the agent, or seen drawing); the window made to hold it."""
    if track.phase == "requested" and track.earliest is not None and track.latest_end is not None:
        return replace(track, phase="running", started_at=now, planned=now, low_since=None,
                       latest_end=max(track.latest_end, now + duration(rules.profile)))
    _, latest = run_window(now, rules.ready_by, rules.tz, rules.profile, rules.margin_s)
    return replace(track, phase="running", earliest=now, latest_end=latest, started_at=now, planned=now,
                   low_since=None, seen_low=False)


def _scheduled_today(rules: RunRules, track: RunTrack, now: datetime) -> bool:
    if rules.available_from is None:
        return False
    local = now.astimezone(rules.tz)
    return local.time() >= rules.available_from and track.requested_day != local.date()


def observe_run(rules: RunRules, track: RunTrack, on: bool | None, power_w: float | None,
                now: datetime) -> tuple[RunTrack, str]:
    """The track after a read, and what changed ("" nothing; else a phrase for the log)."""
    power = finite(power_w, 0.0, MAX_POWER_W)
    if track.phase in ("idle", "done"):
        if on and power is not None and power >= rules.running_above_w:
            return started(rules, track, now), f"started by someone ({power:.0f} W)"
        if _scheduled_today(rules, track, now):
            return _request(rules, track, now), f"requested from {rules.available_from:%H:%M}"
        if not on or power is None or rules.available_from is not None:
            return track, ""
        if power <= rules.armed_above_w:
            return (track if track.seen_low else replace(track, seen_low=True)), ""
        if track.seen_low:
            return _request(rules, track, now), f"armed ({power:.1f} W standby)"
        return track, ""
    if track.phase == "requested":
        if on and power is not None and power >= rules.running_above_w:
            return started(rules, track, now), f"started by someone ({power:.0f} W)"
        return track, ""
    return _observe_running(rules, track, on, power, now)


def _observe_running(rules: RunRules, track: RunTrack, on: bool | None, power: float | None,
                     now: datetime) -> tuple[RunTrack, str]:
    assert track.started_at is not None
    if on is False:
        return replace(track, phase="done", low_since=None), "switched off by someone"
    ran = now - track.started_at
    length = duration(rules.profile)
    if ran >= 2 * length + timedelta(hours=1):
        return replace(track, phase="done", low_since=None), "done (by its length: the plug never read low)"
    if power is None:
        return track, ""
    if power > rules.armed_above_w:
        return (replace(track, low_since=None) if track.low_since is not None else track), ""
    low_since = track.low_since or now
    if ran >= length or (now - low_since).total_seconds() >= DONE_LOW_S:
        return replace(track, phase="done", low_since=None), f"done after {ran.total_seconds() / 60:.0f} min"
    return replace(track, low_since=low_since), ""


def run_flexibility(resource_id: str, rules: RunRules, track: RunTrack) -> ShiftableRunFlexibility | None:
    """The run as S2 PPBC: SCHEDULED at the start the agent aims at (or the plan's), RUNNING, DONE;
    None while no run is requested."""
    if track.phase == "idle" or track.earliest is None or track.latest_end is None:
        return None
    if track.phase == "requested":
        planned = track.planned.replace(second=0, microsecond=0) if track.planned is not None else None
        state = RunState.SCHEDULED if planned is not None else RunState.WAITING
        return ShiftableRunFlexibility(resource_id, rules.profile, track.earliest, track.latest_end, state, planned)
    state = RunState.RUNNING if track.phase == "running" else RunState.DONE
    return ShiftableRunFlexibility(resource_id, rules.profile, track.earliest, track.latest_end, state,
                                   track.started_at)


__all__ = ["DONE_LOW_S", "RunRules", "RunTrack", "observe_run", "run_flexibility", "started"]
