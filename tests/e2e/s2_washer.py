"""An independent S2 PPBC Resource Manager: a washing machine whose programme may start any time
in a window, written from the S2 messages only (s2-python's models; nothing of this project).
Used by s2_rm.py (``--control ppbc``) in its own process, and by the integration tests.

It offers PPBC only, describes its programme as a PPBC.PowerProfileDefinition of two sequence
containers (wash: heat at 2 kW then wash at 300 W; spin: 500 W), due within ``window_h`` hours,
and reports every container NOT_SCHEDULED.  A PPBC.ScheduleInstruction is checked against
the profile (INVALID_CONTENT otherwise), answered ACCEPTED and PowerProfileStatus SCHEDULED;
at its execution time the container runs (STARTED, EXECUTING, its power measured), then
SUCCEEDED and FINISHED.  A RevokeObject of a schedule un-schedules it.  ``abandon``: it
leaves right after ACCEPTED, as a device that drops off mid-instruction.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from s2python.common import (
    Commodity,
    CommodityQuantity,
    ControlType,
    Duration,
    InstructionStatus,
    InstructionStatusUpdate,
    PowerForecastValue,
    PowerMeasurement,
    PowerValue,
    ReceptionStatus,
    ReceptionStatusValues,
    ResourceManagerDetails,
    RevokeObject,
    Role,
    RoleType,
)
from s2python.generated.gen_s2 import PPBCPowerSequenceStatus
from s2python.ppbc import (
    PPBCPowerProfileDefinition,
    PPBCPowerProfileStatus,
    PPBCPowerSequence,
    PPBCPowerSequenceContainer,
    PPBCPowerSequenceContainerStatus,
    PPBCPowerSequenceElement,
    PPBCScheduleInstruction,
)
from s2python.s2_parser import S2Parser

POWER = CommodityQuantity.ELECTRIC_POWER_3_PHASE_SYMMETRIC
NS = uuid.UUID("7d0b3c1e-5a43-4f0e-9a1b-6c2d8e4f1a20")
PROFILE = uuid.uuid5(NS, "programme")
WASH, SPIN = uuid.uuid5(NS, "wash"), uuid.uuid5(NS, "spin")
WASH_SEQ, SPIN_SEQ = uuid.uuid5(NS, "wash-40"), uuid.uuid5(NS, "spin-1200")
STEP_W = (2000.0, 300.0, 500.0)  # heat, wash, spin


def say(**event: Any) -> None:
    print(json.dumps(event, default=str), flush=True)


def element(seconds: float, watts: float) -> PPBCPowerSequenceElement:
    return PPBCPowerSequenceElement(duration=Duration.from_timedelta(timedelta(seconds=seconds)),
                                    power_values=[PowerForecastValue(value_expected=watts, commodity_quantity=POWER)])


def profile(steps_s: tuple[float, ...], window_h: float, now: datetime) -> PPBCPowerProfileDefinition:
    heat, wash, spin = steps_s
    return PPBCPowerProfileDefinition(
        message_id=uuid.uuid4(), id=PROFILE, start_time=now, end_time=now + timedelta(hours=window_h),
        power_sequences_containers=[
            PPBCPowerSequenceContainer(id=WASH, power_sequences=[PPBCPowerSequence(
                id=WASH_SEQ, elements=[element(heat, STEP_W[0]), element(wash, STEP_W[1])], is_interruptible=False,
                max_pause_before=Duration(0), abnormal_condition_only=False)]),
            PPBCPowerSequenceContainer(id=SPIN, power_sequences=[PPBCPowerSequence(
                id=SPIN_SEQ, elements=[element(spin, STEP_W[2])], is_interruptible=False,
                max_pause_before=Duration.from_timedelta(timedelta(minutes=10)), abnormal_condition_only=False)])])


def details(resource_id: uuid.UUID) -> ResourceManagerDetails:
    return ResourceManagerDetails(
        message_id=uuid.uuid4(), resource_id=resource_id, name="test washer", manufacturer="Stranger",
        model="W7", roles=[Role(role=RoleType.ENERGY_CONSUMER, commodity=Commodity.ELECTRICITY)],
        instruction_processing_delay=Duration(500), available_control_types=[ControlType.POWER_PROFILE_BASED_CONTROL],
        provides_forecast=False, provides_power_measurement_types=[POWER])


class Washer:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, abandon: bool, steps_s: tuple[float, ...],
                 window_h: float) -> None:
        self.ws, self.abandon, self.steps_s, self.window_h = ws, abandon, steps_s, window_h
        self.sent: dict[str, str] = {}  # message id -> type, until its ReceptionStatus
        self.status = {WASH: PPBCPowerSequenceStatus.NOT_SCHEDULED, SPIN: PPBCPowerSequenceStatus.NOT_SCHEDULED}
        self.runs: dict[uuid.UUID, tuple[PPBCScheduleInstruction, asyncio.Task[None]]] = {}
        self.power_w = 0.0

    async def send(self, msg: Any) -> None:
        text = msg.to_json()
        S2Parser.parse_as_any_message(text)  # what goes on the wire is valid S2
        if not isinstance(msg, ReceptionStatus):
            self.sent[str(msg.message_id)] = msg.message_type
        await self.ws.send_str(text)

    async def report(self, container: uuid.UUID, status: PPBCPowerSequenceStatus) -> None:
        self.status[container] = status
        seq = WASH_SEQ if container == WASH else SPIN_SEQ
        await self.send(PPBCPowerProfileStatus(message_id=uuid.uuid4(), sequence_container_status=[
            PPBCPowerSequenceContainerStatus(power_profile_id=PROFILE, sequence_container_id=container,
                                             selected_sequence_id=None if status.value == "NOT_SCHEDULED" else seq,
                                             progress=None, status=status)]))

    async def instruction_status(self, msg: PPBCScheduleInstruction, status: InstructionStatus) -> None:
        await self.send(InstructionStatusUpdate(message_id=uuid.uuid4(), instruction_id=msg.id, status_type=status,
                                                timestamp=datetime.now(UTC)))
        say(event="status", instruction_id=str(msg.id), container=str(msg.sequence_container_id), status=status.value)

    async def measure(self, watts: float) -> None:
        self.power_w = watts
        await self.send(PowerMeasurement(message_id=uuid.uuid4(), measurement_timestamp=datetime.now(UTC),
                                         values=[PowerValue(commodity_quantity=POWER, value=watts)]))

    async def run(self, msg: PPBCScheduleInstruction) -> None:
        """The container at its execution time: its steps, then done."""
        await asyncio.sleep(max(0.0, (msg.execution_time - datetime.now(UTC)).total_seconds()))
        await self.instruction_status(msg, InstructionStatus.STARTED)
        await self.report(msg.sequence_container_id, PPBCPowerSequenceStatus.EXECUTING)
        steps = ((self.steps_s[0], STEP_W[0]), (self.steps_s[1], STEP_W[1])) if msg.sequence_container_id == WASH \
            else ((self.steps_s[2], STEP_W[2]),)
        for seconds, watts in steps:
            await self.measure(watts)
            await asyncio.sleep(seconds)
        await self.measure(0.0)
        await self.report(msg.sequence_container_id, PPBCPowerSequenceStatus.FINISHED)
        await self.instruction_status(msg, InstructionStatus.SUCCEEDED)
        say(event="finished", container=str(msg.sequence_container_id))

    async def on_message(self, msg: Any, resource_id: uuid.UUID) -> bool:
        """Handle one message from the CEM; False once this RM is done."""
        if isinstance(msg, ReceptionStatus):
            kind = self.sent.pop(str(msg.subject_message_id), "?")
            say(event="reception", subject=kind, status=msg.status.value, label=msg.diagnostic_label)
            return True
        if isinstance(msg, PPBCScheduleInstruction) and (
                msg.power_profile_id != PROFILE or (msg.sequence_container_id, msg.power_sequence_id)
                not in ((WASH, WASH_SEQ), (SPIN, SPIN_SEQ))):
            await self.send(ReceptionStatus(subject_message_id=msg.message_id, status=ReceptionStatusValues.INVALID_CONTENT,
                                            diagnostic_label="no such profile, container or sequence"))
            say(event="refused", type=msg.message_type)
            return True
        await self.send(ReceptionStatus(subject_message_id=msg.message_id, status=ReceptionStatusValues.OK))
        say(event="received", type=msg.message_type)
        if msg.message_type == "HandshakeResponse":
            await self.send(details(resource_id))
        elif msg.message_type == "SelectControlType":
            say(event="selected", control_type=msg.control_type.value)
            await self.send(profile(self.steps_s, self.window_h, datetime.now(UTC)))
            for c in (WASH, SPIN):
                await self.report(c, PPBCPowerSequenceStatus.NOT_SCHEDULED)
            await self.measure(0.0)
        elif isinstance(msg, PPBCScheduleInstruction):
            return await self.on_schedule(msg)
        elif isinstance(msg, RevokeObject):
            for container, (instr, task) in list(self.runs.items()):
                if instr.id == msg.object_id:
                    task.cancel()
                    del self.runs[container]
                    await self.report(container, PPBCPowerSequenceStatus.NOT_SCHEDULED)
                    say(event="revoked", instruction_id=str(msg.object_id), container=str(container))
        return True

    async def on_schedule(self, msg: PPBCScheduleInstruction) -> bool:
        say(event="scheduled", instruction_id=str(msg.id), container=str(msg.sequence_container_id),
            execution_time=msg.execution_time.isoformat())
        await self.instruction_status(msg, InstructionStatus.ACCEPTED)
        if self.abandon:
            return False
        old = self.runs.pop(msg.sequence_container_id, None)
        if old is not None:
            old[1].cancel()
        self.runs[msg.sequence_container_id] = (msg, asyncio.create_task(self.run(msg)))
        await self.report(msg.sequence_container_id, PPBCPowerSequenceStatus.SCHEDULED)
        return True
