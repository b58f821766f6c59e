"""One Resource Manager's S2 session, as the CEM (no I/O: the server sends what it returns).

Order (docs/s2-cem.md): both sides send a Handshake (the CEM's at once, see ``opening``); the
CEM answers the RM's with a HandshakeResponse naming the protocol version; the RM sends
ResourceManagerDetails; the CEM selects a control type (FRBC if offered, else PPBC, OMBC,
PEBC; else NOT_CONTROLABLE / NO_SELECTION); then the RM's descriptions, statuses and
measurements, the CEM's instructions and the RM's status updates.  Every message gets a
ReceptionStatus (a ReceptionStatus itself gets none).  A message out of that order, or of
another control type than the selected one, is refused with INVALID_CONTENT and the session
goes on; a resource id another RM's live session holds is refused with PERMANENT_ERROR and
the session ends.  SessionRequest TERMINATE / RECONNECT end it (the RM reconnects for the
latter, and sends everything again: the session is the connection).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from s2python.common import (
    ControlType,
    EnergyManagementRole,
    Handshake,
    HandshakeResponse,
    InstructionStatusUpdate,
    PowerMeasurement,
    ReceptionStatus,
    ReceptionStatusValues,
    ResourceManagerDetails,
    RevokeObject,
    SelectControlType,
    SessionRequest,
    SessionRequestType,
)
from s2python.frbc import (
    FRBCActuatorStatus,
    FRBCStorageStatus,
    FRBCSystemDescription,
)
from s2python.message import S2Message, S2MessageWithID
from s2python.version import S2_VERSION

from edge_agent.s2_cem import take
from edge_agent.s2_cem.state import (
    MAX_INSTRUCTIONS_KEPT,
    ActuatorState,
    Coordinator,
    InstructionRecord,
    Reading,
    RmSnapshot,
)

log = logging.getLogger(__name__)

SUPPORTED_VERSIONS = (S2_VERSION,)  # what s2-python's models are: the CEM speaks no other
# the CEM's preference: storage first (it moves most energy), then shiftable profiles, modes, curtailment
PREFERENCE = (ControlType.FILL_RATE_BASED_CONTROL, ControlType.POWER_PROFILE_BASED_CONTROL,
              ControlType.OPERATION_MODE_BASED_CONTROL, ControlType.POWER_ENVELOPE_BASED_CONTROL,
              ControlType.NOT_CONTROLABLE)
PREFIX = {ControlType.FILL_RATE_BASED_CONTROL: "FRBC.", ControlType.POWER_PROFILE_BASED_CONTROL: "PPBC.",
          ControlType.OPERATION_MODE_BASED_CONTROL: "OMBC.", ControlType.POWER_ENVELOPE_BASED_CONTROL: "PEBC.",
          ControlType.DEMAND_DRIVEN_BASED_CONTROL: "DDBC."}
CEM_ONLY = {"HandshakeResponse", "SelectControlType", "FRBC.Instruction", "PPBC.ScheduleInstruction",
            "PPBC.StartInterruptionInstruction", "PPBC.EndInterruptionInstruction", "OMBC.Instruction",
            "PEBC.Instruction", "DDBC.Instruction"}
ELECTRIC = ("ELECTRIC.POWER.L1", "ELECTRIC.POWER.L2", "ELECTRIC.POWER.L3", "ELECTRIC.POWER.3_PHASE_SYMMETRIC")
FUTURE_SLACK = timedelta(seconds=60)  # clocks differ: a measurement this far ahead is still taken
OK = ReceptionStatusValues.OK
CONTENT = ReceptionStatusValues.INVALID_CONTENT


@dataclass
class Outcome:
    """What to send, and the reason to end the session (None: it goes on)."""

    send: list[S2Message] = field(default_factory=list)
    close: str | None = None
    refused: str | None = None  # a refusal's label (metrics), if the message was refused


def select_control_type(offered: list[ControlType]) -> ControlType:
    return next((c for c in PREFERENCE if c in offered), ControlType.NO_SELECTION)


def _status(subject: uuid.UUID, status: ReceptionStatusValues, label: str | None = None) -> ReceptionStatus:
    return ReceptionStatus(subject_message_id=subject, status=status, diagnostic_label=label)


class CemSession:
    def __init__(self, name: str, coordinator: Coordinator, now: datetime,
                 clock: Callable[[], datetime]) -> None:
        self.coordinator, self._clock = coordinator, clock
        self.snap = RmSnapshot(name=name, session=coordinator.next_session(name), connected=True,
                               phase="handshake", connected_at=now, last_message_at=now)
        self._sent: dict[str, str] = {}  # message id -> instruction id, for the RM's ReceptionStatus
        self.coordinator.publish(self.snap)

    @property
    def name(self) -> str:
        return self.snap.name

    def _set(self, snap: RmSnapshot) -> None:
        self.snap = snap
        self.coordinator.publish(snap)

    def opening(self) -> Handshake:
        """The CEM's own Handshake, sent as the connection opens."""
        return Handshake(message_id=uuid.uuid4(), role=EnergyManagementRole.CEM,
                         supported_protocol_versions=list(SUPPORTED_VERSIONS))

    def closed(self, reason: str) -> None:
        """The connection is gone: the snapshot stays, disconnected (stale, never zero); an
        instruction not yet finished is lost (the RM is in charge of its device)."""
        now = self._clock()
        snap = self.snap
        for rec in snap.instructions:
            if rec.open:
                snap = snap.with_instruction(replace(rec, status="LOST", status_at=now))
        self._set(replace(snap, connected=False, phase="closed", closed_reason=reason))
        self.coordinator.release(self.name, self.snap.session)

    # -- incoming --------------------------------------------------------------------
    def on_message(self, msg: S2Message) -> Outcome:
        now = self._clock()
        self._set(replace(self.snap, last_message_at=now, last_message_type=msg.message_type))
        if isinstance(msg, ReceptionStatus):
            self._on_reception_status(msg, now)
            return Outcome()
        if isinstance(msg, SessionRequest):
            return self._on_session_request(msg)
        if msg.message_type in CEM_ONLY:
            return self._refuse(msg, f"{msg.message_type} is sent by a CEM, not by a Resource Manager")
        if self.snap.phase == "handshake":
            if not isinstance(msg, Handshake):
                return self._refuse(msg, f"out of order: {msg.message_type} before the Handshake", "out_of_order")
            return self._on_handshake(msg)
        if self.snap.phase == "details":
            if not isinstance(msg, ResourceManagerDetails):
                return self._refuse(msg, f"out of order: {msg.message_type} before ResourceManagerDetails",
                                    "out_of_order")
            return self._on_details(msg)
        return self._active(msg, now)

    def _refuse(self, msg: S2MessageWithID, why: str, label: str = "invalid_content",
                status: ReceptionStatusValues = CONTENT, close: str | None = None) -> Outcome:
        return Outcome([_status(msg.message_id, status, why)], close=close, refused=label)

    def _on_session_request(self, msg: SessionRequest) -> Outcome:
        what = "terminate" if msg.request == SessionRequestType.TERMINATE else "reconnect"
        label = f": {msg.diagnostic_label}" if msg.diagnostic_label else ""
        return Outcome([_status(msg.message_id, OK)], close=f"the RM asked to {what}{label}")

    def _on_handshake(self, msg: Handshake) -> Outcome:
        if msg.role != EnergyManagementRole.RM:
            return self._refuse(msg, "a CEM cannot connect to a CEM: Handshake role must be RM",
                                close="peer is not a Resource Manager")
        offered = msg.supported_protocol_versions or []
        version = next((v for v in SUPPORTED_VERSIONS if v in offered), None)
        if version is None:
            why = f"no common S2 protocol version: RM offers {offered}, CEM speaks {list(SUPPORTED_VERSIONS)}"
            return self._refuse(msg, why, "version", close=why)
        self._set(replace(self.snap, phase="details", protocol_version=version))
        return Outcome([_status(msg.message_id, OK),
                        HandshakeResponse(message_id=uuid.uuid4(), selected_protocol_version=version)])

    def _on_details(self, msg: ResourceManagerDetails) -> Outcome:
        rid = str(msg.resource_id)
        problem = self.coordinator.claim(self.name, rid)
        if problem is not None:
            return Outcome([_status(msg.message_id, ReceptionStatusValues.PERMANENT_ERROR, problem),
                            SessionRequest(message_id=uuid.uuid4(), request=SessionRequestType.TERMINATE,
                                           diagnostic_label=problem)], close=problem, refused="resource_claimed")
        chosen = select_control_type(list(msg.available_control_types))
        device = " ".join(x for x in (msg.manufacturer, msg.model, msg.name) if x)
        self._set(replace(self.snap, phase="active", resource_id=rid, device=device, control_type=chosen.value))
        return Outcome([_status(msg.message_id, OK), SelectControlType(message_id=uuid.uuid4(), control_type=chosen)])

    def _active(self, msg: S2MessageWithID, now: datetime) -> Outcome:
        if isinstance(msg, Handshake | ResourceManagerDetails):
            return self._refuse(msg, f"out of order: {msg.message_type} once the session is set up (reconnect "
                                     "to start again)", "out_of_order")
        if isinstance(msg, PowerMeasurement):
            return self._on_power(msg, now)
        if isinstance(msg, InstructionStatusUpdate):
            return self._on_instruction_status(msg)
        if isinstance(msg, RevokeObject):
            return self._on_revoke(msg)
        selected = self.snap.control_type
        prefix = next((p for c, p in PREFIX.items() if c.value == selected), None)
        if prefix is None or not msg.message_type.startswith(prefix):
            if any(msg.message_type.startswith(p) for p in PREFIX.values()):
                return self._refuse(msg, f"{msg.message_type} does not belong to the selected control type "
                                         f"{selected}", "wrong_control_type")
            return Outcome([_status(msg.message_id, OK)])  # PowerForecast: taken, not used yet
        if isinstance(msg, FRBCSystemDescription):
            return self._on_system_description(msg)
        if isinstance(msg, FRBCStorageStatus):
            self._set(replace(self.snap, fill_level=Reading(msg.present_fill_level, now)))
        elif isinstance(msg, FRBCActuatorStatus):
            return self._on_actuator_status(msg, now)
        elif prefix != "FRBC.":
            snap, why = take.take(self.snap, msg, now)  # PPBC, OMBC, PEBC
            if why is not None:
                return self._refuse(msg, why)
            self._set(snap)
        return Outcome([_status(msg.message_id, OK)])  # the other messages of the type: kept for later increments

    def _on_power(self, msg: PowerMeasurement, now: datetime) -> Outcome:
        if msg.measurement_timestamp > now + FUTURE_SLACK:
            return self._refuse(msg, f"measurement_timestamp {msg.measurement_timestamp.isoformat()} is in the future")
        electric = [v.value for v in msg.values if v.commodity_quantity.value in ELECTRIC]
        if electric:  # a heat or gas measurement alone tells nothing of the grid
            self._set(replace(self.snap, power_w=Reading(sum(electric), msg.measurement_timestamp)))
        return Outcome([_status(msg.message_id, OK)])

    def _on_system_description(self, msg: FRBCSystemDescription) -> Outcome:
        # a new description replaces the old; the actuators' statuses referred to the old one
        self._set(replace(self.snap, system_description=msg, actuators=()))
        return Outcome([_status(msg.message_id, OK)])

    def _on_actuator_status(self, msg: FRBCActuatorStatus, now: datetime) -> Outcome:
        desc = self.snap.system_description
        if desc is None:
            return self._refuse(msg, "FRBC.ActuatorStatus before an FRBC.SystemDescription: actuator unknown",
                                "out_of_order")
        actuator = next((a for a in desc.actuators if a.id == msg.actuator_id), None)
        if actuator is None:
            return self._refuse(msg, f"actuator_id {msg.actuator_id} is not in the system description")
        if all(m.id != msg.active_operation_mode_id for m in actuator.operation_modes):
            return self._refuse(msg, f"active_operation_mode_id {msg.active_operation_mode_id} is not a mode of "
                                     f"actuator {msg.actuator_id}")
        if not 0.0 <= msg.operation_mode_factor <= 1.0:
            return self._refuse(msg, f"operation_mode_factor {msg.operation_mode_factor} is not within 0..1")
        self._set(self.snap.with_actuator(ActuatorState(str(msg.actuator_id), str(msg.active_operation_mode_id),
                                                        msg.operation_mode_factor, now)))
        return Outcome([_status(msg.message_id, OK)])

    def _on_instruction_status(self, msg: InstructionStatusUpdate) -> Outcome:
        rec = self.snap.instruction(str(msg.instruction_id))
        if rec is None:
            return self._refuse(msg, f"instruction_id {msg.instruction_id} is no instruction of this session",
                                "unknown_instruction")
        self._set(self.snap.with_instruction(replace(rec, status=msg.status_type.value, status_at=msg.timestamp)))
        return Outcome([_status(msg.message_id, OK)])

    def _on_revoke(self, msg: RevokeObject) -> Outcome:
        desc = self.snap.system_description
        if msg.object_type.value == "FRBC.SystemDescription" and desc is not None \
                and desc.message_id == msg.object_id:
            # the RM withdrew its description: no instruction until a new one
            self._set(replace(self.snap, system_description=None, actuators=()))
            return Outcome([_status(msg.message_id, OK)])
        snap = take.revoke(self.snap, msg)
        if snap is not None:  # the RM withdrew its profile, description or constraints: nothing asked on them
            self._set(snap)
            return Outcome([_status(msg.message_id, OK)])
        return self._refuse(msg, f"no {msg.object_type.value} {msg.object_id} to revoke in this session",
                            "unknown_object")

    def _on_reception_status(self, msg: ReceptionStatus, now: datetime) -> None:
        iid = self._sent.pop(str(msg.subject_message_id), None)
        if msg.status != OK:
            log.warning("S2 RM %r: %s for our message %s: %s", self.name, msg.status.value,
                        msg.subject_message_id, msg.diagnostic_label or "")
        rec = self.snap.instruction(iid) if iid is not None else None
        if rec is not None and rec.status == "SENT":
            self._set(self.snap.with_instruction(replace(rec, status=msg.status.value, status_at=now)))

    # -- outgoing --------------------------------------------------------------------
    def record(self, msg: S2MessageWithID, rec: InstructionRecord) -> None:
        """An instruction about to be sent: its status updates are tracked from now."""
        self._sent[str(msg.message_id)] = rec.instruction_id
        while len(self._sent) > MAX_INSTRUCTIONS_KEPT:  # an RM that never acknowledges: the oldest go
            del self._sent[next(iter(self._sent))]
        self._set(self.snap.with_instruction(rec))

    def revoke(self, instruction_id: str) -> RevokeObject | None:
        """A RevokeObject for an instruction of this session that has not finished, or None."""
        rec = self.snap.instruction(instruction_id)
        if rec is None or not rec.open:
            return None
        self._set(self.snap.with_instruction(replace(rec, status="REVOKED", status_at=self._clock())))
        return RevokeObject(message_id=uuid.uuid4(), object_type=rec.kind,  # type: ignore[arg-type]
                            object_id=uuid.UUID(instruction_id))
