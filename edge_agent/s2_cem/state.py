"""What the CEM knows of each Resource Manager: an immutable snapshot per RM, published by a
coordinator (as Home Assistant's update coordinators publish theirs) to whoever listens.

A snapshot is replaced, never changed.  An RM that disconnects keeps its last snapshot, marked
``connected=False``: its values are stale, never zero (docs/architecture.md: stale is not
zero); so is one that has said nothing for ``stale_after_s``.  The coordinator also holds the
resource ids claimed by live sessions: a second RM that claims one is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from s2python.frbc import FRBCSystemDescription
from s2python.ombc import OMBCSystemDescription
from s2python.pebc import PEBCPowerConstraints
from s2python.ppbc import PPBCPowerProfileDefinition

from edge_agent.energy_manager.cheapest_start import Step
from vpp_common.messages import ProfileStep

log = logging.getLogger(__name__)

MAX_INSTRUCTIONS_KEPT = 20  # per RM, newest last: enough for `s2 list` and the status updates


@dataclass(frozen=True, slots=True)
class Reading:
    value: float
    at: datetime


@dataclass(frozen=True, slots=True)
class ActuatorState:
    actuator_id: str
    operation_mode_id: str
    factor: float
    at: datetime


@dataclass(frozen=True, slots=True)
class RunShape:
    """A PPBC profile's run, worked out once when the profile arrives (a profile may have
    thousands of elements): its length, its first step's power, its steps for choosing a start
    (few, extremes kept) and for the fleet (at most 96 of at most a day, energy kept)."""

    length_s: float
    first_w: float
    decision: tuple[Step, ...]
    wire: tuple[ProfileStep, ...]


@dataclass(frozen=True, slots=True)
class InstructionRecord:
    instruction_id: str
    message_id: str
    actuator_id: str  # FRBC: the actuator; PPBC: the sequence container; OMBC, PEBC: ""
    operation_mode_id: str  # FRBC, OMBC: the mode; PPBC: the power sequence; PEBC: the power constraints
    factor: float
    power_w: float  # the power the CEM meant (W, consumption > 0); PEBC: the envelope's lower limit
    sent_at: datetime
    status: str = "SENT"  # SENT, then the RM's ReceptionStatus / InstructionStatusUpdate values; LOST
    status_at: datetime | None = None
    kind: str = "FRBC.Instruction"  # the S2 message type (RevokeObject names it)
    execution_time: datetime | None = None  # PPBC: the start asked for (None: now)
    upper_w: float | None = None  # PEBC: the envelope's upper limit (W)
    profile_id: str = ""  # PPBC: the power profile the schedule belongs to
    reason: str = ""  # why the CEM asked (plan setpoint, site limit, released, ...)
    restore_w: float | None = None  # OMBC: the power it ran at before the CEM paused it for a site limit

    @property
    def open(self) -> bool:
        """Not finished: the RM may still act on it."""
        return self.status in OPEN_STATUSES


OPEN_STATUSES = ("SENT", "OK", "NEW", "ACCEPTED", "STARTED")


@dataclass(frozen=True, slots=True)
class RmSnapshot:
    name: str  # the configured RM the token belongs to
    session: int  # counts the RM's sessions (a reconnect is a new session)
    connected: bool
    phase: str  # handshake | details | active | closed
    connected_at: datetime
    last_message_at: datetime
    last_message_type: str = ""
    protocol_version: str | None = None
    resource_id: str | None = None
    device: str = ""  # manufacturer / model / name, as the RM says
    control_type: str | None = None
    system_description: FRBCSystemDescription | None = None  # never changed: replaced
    fill_level: Reading | None = None
    actuators: tuple[ActuatorState, ...] = ()
    power_w: Reading | None = None  # the RM's measured power (W, consumption > 0), all phases
    instructions: tuple[InstructionRecord, ...] = ()
    closed_reason: str = ""
    # OMBC: the description, the active mode (actuator_id ""), the timers' ends by timer id
    ombc_description: OMBCSystemDescription | None = None
    mode: ActuatorState | None = None
    timers: tuple[tuple[str, datetime], ...] = ()
    # PPBC: the profile, its containers' statuses (container id, status), when it began executing
    profile: PPBCPowerProfileDefinition | None = None
    run: RunShape | None = None  # the profile's run (ppbc.shape), set with the profile
    profile_status: tuple[tuple[str, str], ...] = ()
    run_started_at: datetime | None = None
    # PEBC: the power constraints in force
    power_constraints: PEBCPowerConstraints | None = None

    def stale(self, now: datetime, stale_after_s: float) -> bool:
        """Its values cannot be used: gone, or silent too long."""
        return not self.connected or (now - self.last_message_at).total_seconds() > stale_after_s

    def state(self, now: datetime, stale_after_s: float) -> str:
        if not self.connected:
            return "disconnected"
        if self.stale(now, stale_after_s):
            return "stale"
        return self.phase

    def actuator(self, actuator_id: str) -> ActuatorState | None:
        return next((a for a in self.actuators if a.actuator_id == actuator_id), None)

    def instruction(self, instruction_id: str) -> InstructionRecord | None:
        return next((i for i in self.instructions if i.instruction_id == instruction_id), None)

    def with_actuator(self, state: ActuatorState) -> RmSnapshot:
        others = tuple(a for a in self.actuators if a.actuator_id != state.actuator_id)
        return replace(self, actuators=(*others, state))

    def with_instruction(self, record: InstructionRecord) -> RmSnapshot:
        """``record`` in place of its older self (the order stays: newest sent last), or added."""
        if self.instruction(record.instruction_id) is not None:
            return replace(self, instructions=tuple(record if i.instruction_id == record.instruction_id else i
                                                    for i in self.instructions))
        return replace(self, instructions=(*self.instructions, record)[-MAX_INSTRUCTIONS_KEPT:])


Listener = Callable[[RmSnapshot], None]


class Coordinator:
    """The snapshots of every RM by name, and the resource ids live sessions hold."""

    def __init__(self) -> None:
        self.snapshots: dict[str, RmSnapshot] = {}
        self.listeners: list[Listener] = []
        self._claims: dict[str, str] = {}  # resource id -> RM name (live sessions only)
        self._sessions: dict[str, int] = {}

    def next_session(self, name: str) -> int:
        self._sessions[name] = self._sessions.get(name, 0) + 1
        return self._sessions[name]

    def publish(self, snap: RmSnapshot) -> None:
        """Replace the RM's snapshot (only a snapshot of its current session) and tell listeners."""
        if self._sessions.get(snap.name) != snap.session:
            return  # an older session still closing: the newer one owns the name
        self.snapshots[snap.name] = snap
        for listener in self.listeners:
            try:
                listener(snap)
            except Exception:  # a listener's bug must not end an RM's session
                log.exception("S2 snapshot listener failed")

    def claim(self, name: str, resource_id: str) -> str | None:
        """Take ``resource_id`` for RM ``name``; why not if another RM's live session holds it."""
        holder = self._claims.get(resource_id)
        if holder is not None and holder != name:
            return (f"resource_id {resource_id} is held by RM {holder!r} in a live session: "
                    "two Resource Managers cannot speak for one resource")
        for rid, who in list(self._claims.items()):
            if who == name and rid != resource_id:
                del self._claims[rid]
        self._claims[resource_id] = name
        return None

    def release(self, name: str, session: int) -> None:
        """The session of ``name`` ended: its claims go (unless a newer session holds them)."""
        if self._sessions.get(name) == session:
            for rid in [r for r, who in self._claims.items() if who == name]:
                del self._claims[rid]

    def held(self) -> frozenset[str]:
        """The resource ids live sessions hold (the plan may name them)."""
        return frozenset(self._claims)

    def usable(self, now: datetime, stale_after_s: float) -> list[RmSnapshot]:
        """The snapshots whose values may be used now."""
        return [s for s in self.snapshots.values() if not s.stale(now, stale_after_s)]
