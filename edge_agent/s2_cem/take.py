"""What the CEM takes from a PPBC, OMBC or PEBC Resource Manager (pure): each message of the
selected control type -> the RM's next snapshot, or why it is refused (INVALID_CONTENT).

s2-python has checked the schema; here what only the session can know: references (a status
of a mode, container or timer the description does not have), order (a status before its
description) and what the instruction loop needs to be true (a profile that fits its window
within a week, a mode the CEM may use, limits of an electric commodity).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta

from s2python.common import RevokeObject
from s2python.message import S2Message
from s2python.ombc import OMBCStatus, OMBCSystemDescription, OMBCTimerStatus
from s2python.pebc import PEBCPowerConstraints
from s2python.ppbc import PPBCPowerProfileDefinition, PPBCPowerProfileStatus

from edge_agent.s2_cem.ppbc import chosen_sequences, shape
from edge_agent.s2_cem.state import ActuatorState, RmSnapshot

MAX_PROFILE_WINDOW = timedelta(days=7)  # the plans look two days ahead; the fleet's wire takes a week
ELECTRIC_PREFIX = "ELECTRIC.POWER."

Taken = tuple[RmSnapshot, str | None]  # the next snapshot, or the snapshot unchanged and why not


def canonical(x: object) -> str:
    """An S2 id as the models' UUIDs print (s2-python keeps a few ids as strings, any case)."""
    x = getattr(x, "root", x)  # s2-python's ID model
    try:
        return str(uuid.UUID(str(x)))
    except ValueError:
        return str(x)


def take(snap: RmSnapshot, msg: S2Message, now: datetime) -> Taken:
    """A message of the selected PPBC, OMBC or PEBC control type; others are acknowledged."""
    if isinstance(msg, PPBCPowerProfileDefinition):
        return _profile(snap, msg)
    if isinstance(msg, PPBCPowerProfileStatus):
        return _profile_status(snap, msg, now)
    if isinstance(msg, OMBCSystemDescription):
        return _ombc_description(snap, msg)
    if isinstance(msg, OMBCStatus):
        return _ombc_status(snap, msg, now)
    if isinstance(msg, OMBCTimerStatus):
        desc = snap.ombc_description
        tid = canonical(msg.timer_id)
        if desc is None or all(str(t.id) != tid for t in desc.timers):
            return snap, f"timer_id {msg.timer_id} is no timer of the OMBC.SystemDescription"
        timers = tuple(t for t in snap.timers if t[0] != tid) + ((tid, msg.finished_at),)
        return replace(snap, timers=timers), None
    if isinstance(msg, PEBCPowerConstraints):
        return _power_constraints(snap, msg)
    return snap, None  # PEBC.EnergyConstraint, PPBC forecasts...: validated, acknowledged, not used yet


def _profile(snap: RmSnapshot, msg: PPBCPowerProfileDefinition) -> Taken:
    window = msg.end_time - msg.start_time
    if not timedelta(0) < window <= MAX_PROFILE_WINDOW:
        return snap, (f"end_time must be after start_time and within {MAX_PROFILE_WINDOW.days} days of it "
                      f"(got {window})")
    if chosen_sequences(msg) is None:
        return snap, "a PPBC.PowerSequenceContainer has no power sequence for normal conditions"
    run = shape(msg)
    length = timedelta(seconds=run.length_s)
    if length <= timedelta(0) or length > window:
        return snap, f"the profile of {length} does not fit between start_time and end_time ({window})"
    # a new profile replaces the old one: its statuses and its start belonged to the old
    return replace(snap, profile=msg, run=run, profile_status=(), run_started_at=None), None


def _profile_status(snap: RmSnapshot, msg: PPBCPowerProfileStatus, now: datetime) -> Taken:
    profile = snap.profile
    if profile is None:
        return snap, "PPBC.PowerProfileStatus before a PPBC.PowerProfileDefinition: profile unknown"
    containers = {str(c.id) for c in profile.power_sequences_containers}
    statuses = dict(snap.profile_status)
    for c in msg.sequence_container_status:
        if c.power_profile_id != profile.id or str(c.sequence_container_id) not in containers:
            return snap, (f"sequence container {c.sequence_container_id} of profile {c.power_profile_id} is not in "
                          f"the present PPBC.PowerProfileDefinition {profile.id}")
        statuses[str(c.sequence_container_id)] = c.status.value
    started = snap.run_started_at
    if started is None and any(s in ("EXECUTING", "INTERRUPTED", "FINISHED") for s in statuses.values()):
        started = now
    return replace(snap, profile_status=tuple(statuses.items()), run_started_at=started), None


def _ombc_description(snap: RmSnapshot, msg: OMBCSystemDescription) -> Taken:
    modes = {str(m.id) for m in msg.operation_modes}
    if len(modes) != len(msg.operation_modes):
        return snap, "two OMBC.OperationModes share an id"
    if all(m.abnormal_condition_only for m in msg.operation_modes):
        return snap, "no OMBC.OperationMode for normal conditions"
    timers = {str(t.id) for t in msg.timers}
    for t in msg.transitions:
        if str(t.from_) not in modes or str(t.to) not in modes:
            return snap, f"transition {t.id} refers to an operation mode that is not described"
        if not {str(x) for x in (*t.start_timers, *t.blocking_timers)} <= timers:
            return snap, f"transition {t.id} refers to a timer that is not described"
    return replace(snap, ombc_description=msg, mode=None, timers=()), None


def _ombc_status(snap: RmSnapshot, msg: OMBCStatus, now: datetime) -> Taken:
    desc = snap.ombc_description
    if desc is None:
        return snap, "OMBC.Status before an OMBC.SystemDescription: operation mode unknown"
    active = canonical(msg.active_operation_mode_id)
    if all(str(m.id) != active for m in desc.operation_modes):
        return snap, f"active_operation_mode_id {msg.active_operation_mode_id} is not a described mode"
    if not 0.0 <= msg.operation_mode_factor <= 1.0:
        return snap, f"operation_mode_factor {msg.operation_mode_factor} is not within 0..1"
    since = msg.transition_timestamp if msg.transition_timestamp is not None and msg.transition_timestamp <= now \
        else None
    if since is None and snap.mode is not None and snap.mode.operation_mode_id == active:
        since = snap.mode.at  # the same mode: it has been active since we first heard of it
    state = ActuatorState("", active, msg.operation_mode_factor, since or now)
    return replace(snap, mode=state), None


def _power_constraints(snap: RmSnapshot, msg: PEBCPowerConstraints) -> Taken:
    if msg.valid_until is not None and msg.valid_until <= msg.valid_from:
        return snap, "valid_until must be after valid_from"
    electric = [r for r in msg.allowed_limit_ranges
                if r.commodity_quantity.value.startswith(ELECTRIC_PREFIX) and not r.abnormal_condition_only]
    kinds = {r.limit_type.value for r in electric}
    if kinds != {"UPPER_LIMIT", "LOWER_LIMIT"}:
        return snap, "allowed_limit_ranges need an UPPER_LIMIT and a LOWER_LIMIT range of an electric power"
    return replace(snap, power_constraints=msg), None


def revoke(snap: RmSnapshot, msg: RevokeObject) -> RmSnapshot | None:
    """The RM withdraws one of its objects: the snapshot without it, or None if there is none such."""
    kind, oid = msg.object_type.value, msg.object_id
    if kind == "PPBC.PowerProfileDefinition" and snap.profile is not None and oid in (snap.profile.id,
                                                                                       snap.profile.message_id):
        return replace(snap, profile=None, run=None, profile_status=(), run_started_at=None)
    if kind == "OMBC.SystemDescription" and snap.ombc_description is not None \
            and oid == snap.ombc_description.message_id:
        return replace(snap, ombc_description=None, mode=None, timers=())
    if kind == "PEBC.PowerConstraints" and snap.power_constraints is not None \
            and oid in (snap.power_constraints.id, snap.power_constraints.message_id):
        return replace(snap, power_constraints=None)
    return None
