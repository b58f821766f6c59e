"""A house's flexible loads (S2 OMBC and PPBC) from the wire, every number checked where it
enters (aggregator/service/bounds.py): a NaN power, an unknown state or a run that cannot fit
its window refuses the whole FlexibilityUpdate, naming the field."""

from __future__ import annotations

from datetime import datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from aggregator.service import bounds
from aggregator.service.bounds import InvalidMessage
from vpp.enums import RUN_STATE
from vpp.v1 import flexibility_pb2 as fx
from vpp_common.clock import UTC
from vpp_common.messages import (
    LoadMode,
    ProfileStep,
    RunState,
    ShiftableRunFlexibility,
    SwitchableLoadFlexibility,
)

MAX_MODES = 16
MAX_PROFILE_STEPS = 96
MAX_MODE_S = 86_400.0  # a transition timer beyond a day is no timer
MAX_PAUSE_S = 7 * 86_400.0
MAX_STEP_S = 86_400.0
MAX_WINDOW = timedelta(days=7)  # a run's window; the plans look two days ahead


def _time(ts: Timestamp, field: str, *, required: bool) -> datetime | None:
    if ts.seconds == 0 and ts.nanos == 0:
        if required:
            raise InvalidMessage(f"{field} is not set", field)
        return None
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidMessage(f"{field} is not a time (seconds {ts.seconds}): {exc}", field) from exc


def _seconds(d: Duration, field: str, hi: float, *, lo_open: bool = False) -> float:
    return bounds.finite(d.seconds + d.nanos / 1e9, field, 0.0, hi, lo_open=lo_open)


def switchable_from_proto(i: int, resource_id: str, d: fx.OmbcDescription) -> SwitchableLoadFlexibility:
    f = f"flexibility.resources[{i}].ombc"
    if not 1 <= len(d.operation_modes) <= MAX_MODES:
        raise InvalidMessage(f"{f}.operation_modes: 1 to {MAX_MODES} modes, got {len(d.operation_modes)}",
                             f"{f}.operation_modes")
    modes: list[LoadMode] = []
    for j, m in enumerate(d.operation_modes):
        if not m.id or any(m.id == x.mode_id for x in modes):
            raise InvalidMessage(f"{f}.operation_modes[{j}].id {m.id!r} is empty or repeated",
                                 f"{f}.operation_modes[{j}].id")
        modes.append(LoadMode(m.id, bounds.power(m.power_w, f"{f}.operation_modes[{j}].power_w")))
    if d.active_mode_id and all(d.active_mode_id != m.mode_id for m in modes):
        raise InvalidMessage(f"{f}.active_mode_id {d.active_mode_id!r} is none of its modes", f"{f}.active_mode_id")
    return SwitchableLoadFlexibility(
        resource_id=resource_id, modes=tuple(modes), active_mode_id=d.active_mode_id,
        active_since=_time(d.active_since, f"{f}.active_since", required=False),
        min_mode_s=_seconds(d.min_mode_duration, f"{f}.min_mode_duration", MAX_MODE_S),
        max_reduced_s=_seconds(d.max_reduced_duration, f"{f}.max_reduced_duration", MAX_PAUSE_S))


def shiftable_from_proto(i: int, resource_id: str, d: fx.PpbcDescription) -> ShiftableRunFlexibility:
    f = f"flexibility.resources[{i}].ppbc"
    if not 1 <= len(d.elements) <= MAX_PROFILE_STEPS:
        raise InvalidMessage(f"{f}.elements: 1 to {MAX_PROFILE_STEPS} steps, got {len(d.elements)}", f"{f}.elements")
    profile = tuple(ProfileStep(_seconds(e.duration, f"{f}.elements[{j}].duration", MAX_STEP_S, lo_open=True),
                                bounds.power(e.power_w, f"{f}.elements[{j}].power_w"))
                    for j, e in enumerate(d.elements))
    if d.state not in RUN_STATE.from_wire:
        raise InvalidMessage(f"{f}.state is unspecified or unknown ({d.state})", f"{f}.state")
    state = RUN_STATE.from_wire[d.state]
    earliest = _time(d.earliest_start, f"{f}.earliest_start", required=True)
    latest = _time(d.latest_end, f"{f}.latest_end", required=True)
    start = _time(d.start, f"{f}.start", required=state is not RunState.WAITING)
    assert earliest is not None and latest is not None
    length = timedelta(seconds=sum(p.duration_s for p in profile))
    if not timedelta(0) <= latest - earliest <= MAX_WINDOW or latest - earliest < length:
        raise InvalidMessage(f"{f}: the run of {length} does not fit between earliest_start {earliest:%Y-%m-%d %H:%M} "
                             f"and latest_end {latest:%Y-%m-%d %H:%M} (at most {MAX_WINDOW.days} days)", f"{f}.latest_end")
    return ShiftableRunFlexibility(resource_id, profile, earliest, latest, state, start)




__all__ = ["shiftable_from_proto", "switchable_from_proto"]
