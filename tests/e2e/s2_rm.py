"""Independent S2 Resource Managers, written from the S2 messages only: an FRBC home battery
and a PPBC washing machine.

It imports nothing of this project: s2-python's models build and parse the JSON, aiohttp
carries the WebSocket.  Run as a process by tests/e2e/test_s2_rm.py:

    python s2_rm.py URL TOKEN [--cafile PEM] [--resource-id UUID] [--abandon]
                    [--control ppbc] [--steps-s 1800,3600,900] [--window-h 8]

It connects with ``Authorization: Bearer TOKEN``, sends Handshake, ResourceManagerDetails
(FRBC), an FRBC.SystemDescription of a 10 kWh / 5 kW battery, its StorageStatus,
ActuatorStatus and PowerMeasurement; it answers every message with a ReceptionStatus, every
FRBC.Instruction with InstructionStatusUpdate ACCEPTED, STARTED, SUCCEEDED (and the new
ActuatorStatus and PowerMeasurement).  ``--abandon``: it exits right after ACCEPTED, as a
device that drops off mid-instruction.  Each event is one JSON line on stdout.

``--control ppbc``: a washing machine instead (washer.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from s2python.common import (
    Commodity,
    CommodityQuantity,
    ControlType,
    Duration,
    EnergyManagementRole,
    Handshake,
    InstructionStatus,
    InstructionStatusUpdate,
    NumberRange,
    PowerMeasurement,
    PowerRange,
    PowerValue,
    ReceptionStatus,
    ReceptionStatusValues,
    ResourceManagerDetails,
    Role,
    RoleType,
)
from s2python.frbc import (
    FRBCActuatorDescription,
    FRBCActuatorStatus,
    FRBCInstruction,
    FRBCOperationMode,
    FRBCOperationModeElement,
    FRBCStorageDescription,
    FRBCStorageStatus,
    FRBCSystemDescription,
)
from s2python.s2_parser import S2Parser

POWER = CommodityQuantity.ELECTRIC_POWER_3_PHASE_SYMMETRIC
NS = uuid.UUID("2b0c1d6e-0f4c-4d43-9f57-2a4f1a1c0b7e")
ACTUATOR = uuid.uuid5(NS, "actuator")
CHARGE, IDLE, DISCHARGE = (uuid.uuid5(NS, m) for m in ("charge", "idle", "discharge"))
MAX_W, CAPACITY_WH = 5000.0, 10_000.0


def mode(mid: uuid.UUID, label: str, start_w: float, end_w: float) -> FRBCOperationMode:
    def rate(w: float) -> float:  # % per second
        return w / CAPACITY_WH * 100 / 3600

    return FRBCOperationMode(
        id=mid, diagnostic_label=label, abnormal_condition_only=False,
        elements=[FRBCOperationModeElement(
            fill_level_range=NumberRange(start_of_range=0, end_of_range=100),
            fill_rate=NumberRange(start_of_range=rate(start_w), end_of_range=rate(end_w)),
            power_ranges=[PowerRange(start_of_range=start_w, end_of_range=end_w, commodity_quantity=POWER)])])


def system_description() -> FRBCSystemDescription:
    return FRBCSystemDescription(
        message_id=uuid.uuid4(), valid_from=datetime.now(UTC),
        actuators=[FRBCActuatorDescription(
            id=ACTUATOR, diagnostic_label="inverter", supported_commodities=[Commodity.ELECTRICITY],
            operation_modes=[mode(CHARGE, "charge", 0, MAX_W), mode(IDLE, "idle", 0, 0),
                             mode(DISCHARGE, "discharge", -MAX_W, 0)],
            transitions=[], timers=[])],
        storage=FRBCStorageDescription(
            diagnostic_label="battery", fill_level_label="%", provides_leakage_behaviour=False,
            provides_fill_level_target_profile=False, provides_usage_forecast=False,
            fill_level_range=NumberRange(start_of_range=0, end_of_range=100)))


def details(resource_id: uuid.UUID) -> ResourceManagerDetails:
    return ResourceManagerDetails(
        message_id=uuid.uuid4(), resource_id=resource_id, name="test battery", manufacturer="Stranger",
        model="B10", roles=[Role(role=RoleType.ENERGY_STORAGE, commodity=Commodity.ELECTRICITY)],
        instruction_processing_delay=Duration(1000),
        available_control_types=[ControlType.OPERATION_MODE_BASED_CONTROL, ControlType.FILL_RATE_BASED_CONTROL],
        provides_forecast=False, provides_power_measurement_types=[POWER])


def say(**event: Any) -> None:
    print(json.dumps(event, default=str), flush=True)


class Battery:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, abandon: bool) -> None:
        self.ws, self.abandon = ws, abandon
        self.mode, self.factor, self.soc = IDLE, 0.0, 50.0
        self.sent: dict[str, str] = {}  # message id -> type, until its ReceptionStatus

    async def send(self, msg: Any) -> None:
        text = msg.to_json()
        S2Parser.parse_as_any_message(text)  # what goes on the wire is valid S2
        if not isinstance(msg, ReceptionStatus):
            self.sent[str(msg.message_id)] = msg.message_type
        await self.ws.send_str(text)

    def power_w(self) -> float:
        start, end = {CHARGE: (0.0, MAX_W), IDLE: (0.0, 0.0), DISCHARGE: (-MAX_W, 0.0)}[self.mode]
        return start + self.factor * (end - start)  # factor 0..1 maps the power range start..end

    async def state(self) -> None:
        now = datetime.now(UTC)
        await self.send(FRBCStorageStatus(message_id=uuid.uuid4(), present_fill_level=self.soc))
        await self.send(FRBCActuatorStatus(message_id=uuid.uuid4(), actuator_id=ACTUATOR,
                                           active_operation_mode_id=self.mode, operation_mode_factor=self.factor))
        await self.send(PowerMeasurement(message_id=uuid.uuid4(), measurement_timestamp=now,
                                         values=[PowerValue(commodity_quantity=POWER, value=self.power_w())]))

    async def status(self, instruction: FRBCInstruction, status: InstructionStatus) -> None:
        await self.send(InstructionStatusUpdate(message_id=uuid.uuid4(), instruction_id=instruction.id,
                                                status_type=status, timestamp=datetime.now(UTC)))
        say(event="status", instruction_id=str(instruction.id), status=status.value)

    async def on_message(self, msg: Any, resource_id: uuid.UUID) -> bool:
        """Handle one message from the CEM; False once this RM is done."""
        if isinstance(msg, ReceptionStatus):
            kind = self.sent.pop(str(msg.subject_message_id), "?")
            say(event="reception", subject=kind, status=msg.status.value, label=msg.diagnostic_label)
            return True
        await self.send(ReceptionStatus(subject_message_id=msg.message_id, status=ReceptionStatusValues.OK))
        say(event="received", type=msg.message_type)
        if msg.message_type == "HandshakeResponse":
            await self.send(details(resource_id))
        elif msg.message_type == "SelectControlType":
            say(event="selected", control_type=msg.control_type.value)
            await self.send(system_description())
            await self.state()
        elif isinstance(msg, FRBCInstruction):
            say(event="instruction", instruction_id=str(msg.id), mode=str(msg.operation_mode),
                factor=msg.operation_mode_factor)
            await self.status(msg, InstructionStatus.ACCEPTED)
            if self.abandon:
                return False
            await self.status(msg, InstructionStatus.STARTED)
            self.mode, self.factor = msg.operation_mode, msg.operation_mode_factor
            await self.state()
            await self.status(msg, InstructionStatus.SUCCEEDED)
        return True


async def main(url: str, token: str, cafile: str | None, resource_id: uuid.UUID, abandon: bool,
               control: str = "frbc", steps_s: tuple[float, ...] = (), window_h: float = 8.0) -> int:
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url, headers={"Authorization": f"Bearer {token}"}, ssl=ctx if ctx else False) as ws:
        say(event="connected")
        if control == "ppbc":
            from s2_washer import Washer  # beside this file: the script's directory is on sys.path

            rm: Any = Washer(ws, abandon, steps_s, window_h)
        else:
            rm = Battery(ws, abandon)
        await rm.send(Handshake(message_id=uuid.uuid4(), role=EnergyManagementRole.RM,
                                supported_protocol_versions=["0.0.2-beta"]))
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            msg = S2Parser.parse_as_any_message(frame.data)  # every message from the CEM validated
            if not await rm.on_message(msg, resource_id):
                say(event="abandoned")
                return 0
        say(event="closed", code=ws.close_code)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("token")
    p.add_argument("--cafile")
    p.add_argument("--resource-id", type=uuid.UUID, default=uuid.uuid5(NS, "resource"))
    p.add_argument("--abandon", action="store_true")
    p.add_argument("--control", choices=("frbc", "ppbc"), default="frbc")
    p.add_argument("--steps-s", default="1800,3600,900", help="ppbc: the programme's steps (heat, wash, spin), s")
    p.add_argument("--window-h", type=float, default=8.0, help="ppbc: done within this many hours from now")
    a = p.parse_args()
    steps = tuple(float(x) for x in a.steps_s.split(","))
    sys.exit(asyncio.run(main(a.url, a.token, a.cafile, a.resource_id, a.abandon, a.control, steps, a.window_h)))
