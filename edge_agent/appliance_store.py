"""The appliances' rules and state (built from ``[[appliances]]``), and their state across a
restart of the agent (``state_dir/appliances_<house>.json``): a freezer's pauses of the last period (so a restart does not grant a new pause budget), a run's
request, window and start (so a held machine stays held for its window), a power station's day
(the energy it was let in).  On/off is not kept: the plug's reading says it.

The file is outside data: every value is checked as it is read (times ISO 8601 with a zone within
a week of now, numbers finite and in range, a phase the run knows); an appliance whose entry fails
is started afresh (logged), a file that is no JSON object is set aside as ``.corrupt``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from edge_agent.appliance_config import PausableConfig, RunConfig, StationConfig
from edge_agent.energy_manager.appliance_charge import ChargeRules, ChargeState
from edge_agent.energy_manager.appliance_pause import PauseRules, PauseState
from edge_agent.energy_manager.appliance_run import RunRules, RunTrack
from vpp_common.localtime import zone
from vpp_common.messages import ProfileStep

log = logging.getLogger(__name__)
MAX_AGE = timedelta(days=7)
MAX_PAUSES = 500
PHASES = ("idle", "requested", "running", "done")
State = PauseState | RunTrack | ChargeState


@dataclass
class Appliance:
    """One appliance: its rules and state by kind, and what the component knows of its plug."""

    plug: str
    kind: str  # pausable | run | battery
    pause: tuple[PauseRules, PauseState] | None = None
    run: tuple[RunRules, RunTrack] | None = None
    charge: tuple[ChargeRules, ChargeState] | None = None
    aim: str = ""  # a run's last decision's reason (its log line says changes only)
    switched_at: datetime | None = None  # the agent's last switch (older readings are not of it)
    seen: bool = False  # its plug was read once (the first reading restores a plug found off)
    state: str = "unknown"  # for the metric: on, paused, off, waiting, scheduled, running, done, charging, ...


def build(cfg: PausableConfig | RunConfig | StationConfig, tz_name: str, interval_s: float) -> Appliance:
    """One ``[[appliances]]`` entry's rules, and its state as nothing is known yet."""
    tz = zone(tz_name)
    if isinstance(cfg, PausableConfig):
        rules = PauseRules(cfg.max_pause_min * 60, cfg.period_min * 60, cfg.min_on_min * 60, cfg.min_off_min * 60,
                           cfg.power_w, cfg.pause_above_per_kwh)
        return Appliance(cfg.plug, "pausable", pause=(rules, PauseState()))
    if isinstance(cfg, RunConfig):
        profile = tuple(ProfileStep(s, w) for s, w in cfg.steps_s_w())
        return Appliance(cfg.plug, "run", run=(RunRules(profile, cfg.ready_by, tz, cfg.available_from,
                                                         cfg.armed_above_w, cfg.running_above_w, 2 * interval_s),
                                                RunTrack()))
    return Appliance(cfg.plug, "battery", charge=(ChargeRules(cfg.need_wh, cfg.charge_power_w, cfg.ready_by, tz,
                                                               cfg.full_below_w, cfg.min_switch_min * 60),
                                                   ChargeState()))




class Bad(ValueError):
    pass


def _t(v: datetime | None) -> str | None:
    return None if v is None else v.isoformat()


def dump(state: State) -> dict[str, Any]:
    """What is kept of one appliance's state (JSON types)."""
    if isinstance(state, PauseState):
        return {"kind": "pausable", "changed_at": _t(state.changed_at), "paused_at": _t(state.paused_at),
                "pauses": [[s.isoformat(), e.isoformat()] for s, e in state.pauses],
                "on_power_w": state.on_power_w}
    if isinstance(state, RunTrack):
        return {"kind": "run", "phase": state.phase, "earliest": _t(state.earliest), "latest_end": _t(state.latest_end),
                "started_at": _t(state.started_at), "planned": _t(state.planned), "seen_low": state.seen_low,
                "requested_day": state.requested_day.isoformat() if state.requested_day else None}
    return {"kind": "battery", "changed_at": _t(state.changed_at), "day_end": _t(state.day_end),
            "charged_wh": round(state.charged_wh, -1), "full": state.full}  # 10 Wh steps: few writes


def _time(d: dict[str, Any], key: str, now: datetime) -> datetime | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or len(v) > 40:
        raise Bad(f"{key}: not a time: {v!r}")
    try:
        t = datetime.fromisoformat(v)
    except ValueError:
        raise Bad(f"{key}: not a time: {v!r}") from None
    if t.tzinfo is None or abs(t - now) > MAX_AGE:
        raise Bad(f"{key}: {v} has no zone or is more than {MAX_AGE.days} days from now")
    return t


def _number(d: dict[str, Any], key: str, hi: float) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not 0 <= v <= hi:
        raise Bad(f"{key}: not a number in [0, {hi:g}]: {v!r}")
    return float(v)


def _pause(d: dict[str, Any], now: datetime) -> PauseState:
    raw = d.get("pauses") or []
    if not isinstance(raw, list) or len(raw) > MAX_PAUSES:
        raise Bad("pauses: not a list of at most 500 [start, end]")
    pauses = []
    for i, p in enumerate(raw):
        if not isinstance(p, list) or len(p) != 2:
            raise Bad(f"pauses[{i}]: not [start, end]")
        s, e = _time({"s": p[0]}, "s", now), _time({"e": p[1]}, "e", now)
        if s is None or e is None or e < s:
            raise Bad(f"pauses[{i}]: not a span")
        pauses.append((s, e))
    return PauseState(None, _time(d, "changed_at", now), _time(d, "paused_at", now), tuple(pauses),
                      _number(d, "on_power_w", 1e6))


def _run(d: dict[str, Any], now: datetime) -> RunTrack:
    phase = d.get("phase")
    if phase not in PHASES:
        raise Bad(f"phase: not one of {', '.join(PHASES)}: {phase!r}")
    day = d.get("requested_day")
    try:
        requested_day = date.fromisoformat(day) if isinstance(day, str) and len(day) == 10 else None
    except ValueError:
        raise Bad(f"requested_day: not a date: {day!r}") from None
    earliest, latest = _time(d, "earliest", now), _time(d, "latest_end", now)
    if phase != "idle" and (earliest is None or latest is None or latest < earliest):
        raise Bad("a requested run needs its window (earliest <= latest_end)")
    if phase in ("running", "done") and _time(d, "started_at", now) is None:
        raise Bad("a run that started needs started_at")
    return RunTrack(phase, earliest, latest, _time(d, "started_at", now), _time(d, "planned", now),
                    d.get("seen_low") is not False, requested_day)


def _charge(d: dict[str, Any], now: datetime) -> ChargeState:
    return ChargeState(None, _time(d, "changed_at", now), _time(d, "day_end", now),
                       _number(d, "charged_wh", 1e6) or 0.0, d.get("full") is True)


READERS: dict[str, Callable[[dict[str, Any], datetime], State]] = {"pausable": _pause, "run": _run,
                                                                    "battery": _charge}


def restore(data: dict[str, Any], plug: str, kind: str, now: datetime) -> State | None:
    """One appliance's kept state, checked; None if there is none or it fails (logged)."""
    d = data.get(plug)
    if d is None:
        return None
    try:
        if not isinstance(d, dict) or d.get("kind") != kind:
            raise Bad(f"not the state of a {kind} appliance")
        return READERS[kind](d, now)
    except Bad as exc:
        log.warning("appliances: the kept state of %s is refused (%s): it starts afresh", plug, exc)
        return None


def restore_all(appliances: list[Appliance], data: dict[str, Any], now: datetime) -> None:
    """The state kept before a restart, each entry checked; an appliance restored knows its plug
    (no restore switch at start: an off plug is its own pause or hold, or someone else's)."""
    for a in appliances:
        st = restore(data, a.plug, a.kind, now)
        if isinstance(st, PauseState) and a.pause is not None:
            a.pause = (a.pause[0], st)
        elif isinstance(st, RunTrack) and a.run is not None:
            a.run = (a.run[0], st)
        elif isinstance(st, ChargeState) and a.charge is not None:
            a.charge = (a.charge[0], st)
        a.seen = st is not None
        if st is not None:
            log.info("appliances: %s (%s) continues from before the restart", a.plug, a.kind)


def load(path: Path) -> dict[str, Any]:
    """The file's appliances ({} for none; a file that is no JSON object is set aside as .corrupt)."""
    if not path.exists():
        return {}
    try:
        if path.stat().st_size > 1_000_000:
            raise ValueError("larger than 1 MB")
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (OSError, ValueError) as exc:
        try:
            os.replace(path, path.with_suffix(".corrupt"))
        except OSError:
            pass
        log.warning("appliances: state in %s unreadable (%s): set aside, they start afresh", path, exc)
        return {}


def save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


__all__ = ["Appliance", "build", "dump", "load", "restore", "restore_all", "save"]
