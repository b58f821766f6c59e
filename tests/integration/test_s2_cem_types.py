"""PPBC, OMBC and PEBC sessions over a real WebSocket: every instruction the CEM sends is parsed
by s2-python on the RM's side; an OMBC heat pump is paused when the import limit binds and
resumed after; a PEBC inverter gets an envelope that keeps the export cap; a PPBC washer's
faults (a profile that cannot fit, a status of no container, an instruction sent by the RM,
a status update of no instruction, a second washer claiming its resource id, its profile
revoked) are refused clearly and the session goes on or ends cleanly."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import aiohttp
from s2python.common import (
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
    ResourceManagerDetails,
    RevokeObject,
    Timer,
)
from s2python.ombc import OMBCOperationMode, OMBCStatus, OMBCSystemDescription
from s2python.pebc import PEBCAllowedLimitRange, PEBCPowerConstraints

from tests.conftest import until
from tests.e2e import s2_washer
from tests.integration.test_s2_cem_server import TOKENS, Peer, cem, connect  # noqa: F401 (the fixture)
from vpp_common.clock import UTC

POWER = s2_washer.POWER
OFF, LOW, HIGH = (uuid.uuid4() for _ in range(3))


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


async def setup(peer: Peer, details: ResourceManagerDetails, control_type: str) -> None:
    assert (await peer.recv()).message_type == "Handshake"
    ok = await peer.status_of(Handshake(message_id=uuid.uuid4(), role=EnergyManagementRole.RM,
                                        supported_protocol_versions=["0.0.2-beta"]))
    assert ok.status.value == "OK"
    assert (await peer.recv()).message_type == "HandshakeResponse"
    assert (await peer.status_of(details)).status.value == "OK"
    assert (await peer.recv()).control_type.value == control_type


def rm_details(control_type: str, resource_id: uuid.UUID | None = None) -> ResourceManagerDetails:
    d = s2_washer.details(resource_id or uuid.uuid4())
    return d.model_copy(update={"available_control_types": [ControlType(control_type)]})


async def ok(peer: Peer, *messages: Any) -> None:
    for m in messages:
        got = await peer.status_of(m)
        assert got.status.value == "OK", got.diagnostic_label


def measured(watts: float) -> PowerMeasurement:
    return PowerMeasurement(message_id=uuid.uuid4(), measurement_timestamp=now(),
                            values=[PowerValue(commodity_quantity=POWER, value=watts)])


def ombc_status(mode: uuid.UUID) -> OMBCStatus:
    return OMBCStatus(message_id=uuid.uuid4(), active_operation_mode_id=str(mode), operation_mode_factor=0.0)


async def test_an_ombc_heat_pump_is_paused_by_the_import_limit_and_resumed(cem) -> None:
    server, house = cem
    http, peer = await connect(server, TOKENS["heatpump"])
    try:
        await setup(peer, rm_details("OPERATION_MODE_BASED_CONTROL"), "OPERATION_MODE_BASED_CONTROL")
        modes = [OMBCOperationMode(id=m, abnormal_condition_only=False, power_ranges=[
            PowerRange(start_of_range=w, end_of_range=w, commodity_quantity=POWER)]) for m, w in
            ((OFF, 0), (LOW, 1500), (HIGH, 3000))]
        desc = OMBCSystemDescription(message_id=uuid.uuid4(), valid_from=now(), operation_modes=modes,
                                     transitions=[], timers=[Timer(id=uuid.uuid4(), duration=Duration(300_000))])
        await ok(peer, desc, ombc_status(HIGH), measured(3000))
        house.grid_w = 8_000
        assert await server.instruct_all() == 0  # within the fuse, no plan for it: left to itself
        house.grid_w = 12_500  # 1.5 kW past the 11 kW fuse
        assert await server.instruct_all() == 1
        instr = await peer.recv()  # parsed by s2-python
        assert instr.message_type == "OMBC.Instruction" and instr.operation_mode_id == LOW
        upd = InstructionStatusUpdate(message_id=uuid.uuid4(), instruction_id=instr.id,
                                      status_type=InstructionStatus.SUCCEEDED, timestamp=now())
        await peer.send(s2_washer.ReceptionStatus(subject_message_id=instr.message_id, status="OK"))
        await ok(peer, upd, ombc_status(LOW), measured(1500))
        house.grid_w = 10_900
        assert await server.instruct_all() == 0  # 3 kW would pass the fuse again: it stays low
        house.grid_w = 4_000
        assert await server.instruct_all() == 1
        back = await peer.recv()
        assert back.message_type == "OMBC.Instruction" and back.operation_mode_id == HIGH
        (load,) = server.coordinator.snapshots["heatpump"].ombc_description.operation_modes[:1]  # type: ignore[union-attr]
        assert load.id == OFF
    finally:
        await http.close()


def pebc_constraints() -> PEBCPowerConstraints:
    def rng(kind: str, lo: float, hi: float) -> PEBCAllowedLimitRange:
        return PEBCAllowedLimitRange(commodity_quantity=POWER, limit_type=kind, abnormal_condition_only=False,
                                     range_boundary=NumberRange(start_of_range=lo, end_of_range=hi))

    return PEBCPowerConstraints(message_id=uuid.uuid4(), id=uuid.uuid4(), valid_from=now() - dt.timedelta(minutes=1),
                                valid_until=None, consequence_type="VANISH",
                                allowed_limit_ranges=[rng("LOWER_LIMIT", -6000, 0), rng("UPPER_LIMIT", 0, 0)])


async def test_a_pebc_inverter_gets_an_envelope_that_keeps_the_export_cap(cem) -> None:
    server, house = cem
    http, peer = await connect(server, TOKENS["heatpump"])
    try:
        await setup(peer, rm_details("POWER_ENVELOPE_BASED_CONTROL"), "POWER_ENVELOPE_BASED_CONTROL")
        constraints = pebc_constraints()
        await ok(peer, constraints, measured(-5000))
        house.grid_w = -6_000  # 6 kW exported, the cap is 4.6 kW
        assert await server.instruct_all() == 1
        instr = await peer.recv()
        assert instr.message_type == "PEBC.Instruction" and instr.power_constraints_id == constraints.id
        (element,) = instr.power_envelopes[0].power_envelope_elements
        assert element.lower_limit == -3600 and element.upper_limit == 0  # the house's 1 kW + the 4.6 kW cap
        assert await server.instruct_all() == 0  # no news
        revoke = RevokeObject(message_id=uuid.uuid4(), object_type="PEBC.PowerConstraints", object_id=constraints.id)
        await ok(peer, revoke)
        assert await server.instruct_all() == 0  # no constraints: nothing to instruct on
    finally:
        await http.close()


async def test_ppbc_faults_are_refused_clearly_and_the_session_goes_on(cem) -> None:
    server, _ = cem
    rid = uuid.uuid4()
    http, peer = await connect(server, TOKENS["heatpump"])
    http2 = None
    try:
        await setup(peer, s2_washer.details(rid), "POWER_PROFILE_BASED_CONTROL")
        too_short = s2_washer.profile((1800, 3600, 900), 1, now())  # 1 h 45 of programme in 1 h
        bad = await peer.status_of(too_short)
        assert bad.status.value == "INVALID_CONTENT" and "does not fit" in bad.diagnostic_label
        stray = json.loads(s2_washer.PPBCPowerProfileStatus(
            message_id=uuid.uuid4(), sequence_container_status=[s2_washer.PPBCPowerSequenceContainerStatus(
                power_profile_id=s2_washer.PROFILE, sequence_container_id=uuid.uuid4(), status="SCHEDULED")]).to_json())
        bad = await peer.status_of(json.dumps(stray))
        assert bad.status.value == "INVALID_CONTENT" and "before a PPBC.PowerProfileDefinition" in bad.diagnostic_label
        await ok(peer, s2_washer.profile((1800, 3600, 900), 8, now()), measured(0))
        bad = await peer.status_of(json.dumps(stray))
        assert bad.status.value == "INVALID_CONTENT" and "not in the present" in bad.diagnostic_label
        own = s2_washer.PPBCScheduleInstruction(
            message_id=uuid.uuid4(), id=uuid.uuid4(), power_profile_id=s2_washer.PROFILE,
            sequence_container_id=s2_washer.WASH, power_sequence_id=s2_washer.WASH_SEQ, execution_time=now(),
            abnormal_condition=False)
        bad = await peer.status_of(own)
        assert bad.status.value == "INVALID_CONTENT" and "sent by a CEM" in bad.diagnostic_label
        unknown = InstructionStatusUpdate(message_id=uuid.uuid4(), instruction_id=uuid.uuid4(),
                                          status_type=InstructionStatus.STARTED, timestamp=now())
        bad = await peer.status_of(unknown)
        assert bad.status.value == "INVALID_CONTENT" and "no instruction of this session" in bad.diagnostic_label
        assert await server.instruct_all() == 2  # no prices, no limit in the way: now, container after container
        first, second = await peer.recv(), await peer.recv()
        assert first.message_type == second.message_type == "PPBC.ScheduleInstruction"
        assert second.execution_time - first.execution_time == dt.timedelta(minutes=90)
        # a second washer claiming the same resource id: refused, ended; the first goes on
        http2, other = await connect(server, TOKENS["battery"])
        assert (await other.recv()).message_type == "Handshake"
        await other.status_of(Handshake(message_id=uuid.uuid4(), role=EnergyManagementRole.RM,
                                        supported_protocol_versions=["0.0.2-beta"]))
        assert (await other.recv()).message_type == "HandshakeResponse"
        refused = await other.status_of(s2_washer.details(rid))
        assert refused.status.value == "PERMANENT_ERROR" and "'heatpump'" in refused.diagnostic_label
        assert (await other.recv()).request.value == "TERMINATE"
        assert (await asyncio.wait_for(other.ws.receive(), 5)).type == aiohttp.WSMsgType.CLOSE
        # the washer withdraws its programme: its schedule is not renewed, the session goes on
        await ok(peer, RevokeObject(message_id=uuid.uuid4(), object_type="PPBC.PowerProfileDefinition",
                                    object_id=s2_washer.PROFILE))
        assert server.coordinator.snapshots["heatpump"].profile is None
        assert await server.instruct_all() == 0
        assert server.live["heatpump"][1].snap.phase == "active"
    finally:
        await http.close()
        if http2 is not None:
            await http2.close()


async def test_a_disconnect_mid_schedule_loses_it_and_leaves_the_run_out(cem) -> None:
    from edge_agent.s2_cem.flexibility import loads

    server, _ = cem
    http, peer = await connect(server, TOKENS["heatpump"])
    try:
        await setup(peer, s2_washer.details(uuid.uuid4()), "POWER_PROFILE_BASED_CONTROL")
        await ok(peer, s2_washer.profile((1800, 3600, 900), 8, now()))
        assert await server.instruct_all() == 2
        instr = await peer.recv()
        await ok(peer, InstructionStatusUpdate(message_id=uuid.uuid4(), instruction_id=instr.id,
                                               status_type=InstructionStatus.ACCEPTED, timestamp=now()))
        assert len(loads(server.coordinator.snapshots.values(), now(), 60)[1]) == 1
        await peer.ws.close()
    finally:
        await http.close()
    await until(lambda: not server.coordinator.snapshots["heatpump"].connected, "the session to end")
    snap = server.coordinator.snapshots["heatpump"]
    assert [r.status for r in snap.instructions] == ["LOST", "LOST"]
    assert loads(server.coordinator.snapshots.values(), now(), 60) == ((), ())  # stale: out, never 0 W
    assert await server.instruct_all() == 0
