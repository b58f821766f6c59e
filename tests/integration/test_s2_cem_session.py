"""More of the S2 session over a real WebSocket: statuses checked against the description,
RevokeObject both ways, SessionRequest, a reconnect replacing a half-open connection, a frame
too large, and ``edge-agent s2 list`` reading the agent's status file."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter
from s2python.common import PowerMeasurement, PowerValue, RevokeObject, SessionRequest
from s2python.frbc import FRBCActuatorStatus

from edge_agent.cli import main
from edge_agent.refusals import Refusals
from edge_agent.s2_cem.server import S2CemServer
from tests.conftest import until
from tests.e2e import s2_rm
from tests.integration.test_s2_cem_server import TOKENS, Peer, Plan, connect, s2_config
from vpp_common.clock import UTC


@pytest.fixture
async def cem(tmp_path: Path) -> AsyncIterator[tuple[S2CemServer, Plan]]:
    house = Plan()
    registry = CollectorRegistry()
    server = S2CemServer(s2_config(max_message_bytes=8192, max_bytes_per_s=8192), lambda: dt.datetime.now(UTC), registry,
                         Refusals(Counter("refused", "x", ["source", "reason"], registry=registry)), house=house,
                         status_file=tmp_path / "s2_sessions.json")
    await server.start()
    yield server, house
    await server.stop()


async def active(server: S2CemServer, token: str = TOKENS["battery"]) -> tuple[aiohttp.ClientSession, Peer]:
    http, peer = await connect(server, token)
    await peer.setup(uuid.uuid5(s2_rm.NS, "resource"))
    return http, peer


async def test_statuses_are_checked_against_the_description(cem) -> None:
    server, _ = cem
    http, peer = await active(server)
    try:
        def actuator(actuator_id: uuid.UUID, mode: uuid.UUID, factor: float) -> FRBCActuatorStatus:
            return FRBCActuatorStatus(message_id=uuid.uuid4(), actuator_id=actuator_id,
                                      active_operation_mode_id=mode, operation_mode_factor=factor)

        early = await peer.status_of(actuator(s2_rm.ACTUATOR, s2_rm.IDLE, 0))
        assert early.status.value == "INVALID_CONTENT" and "before an FRBC.SystemDescription" in early.diagnostic_label
        desc = s2_rm.system_description()
        assert (await peer.status_of(desc)).status.value == "OK"
        for msg, words in ((actuator(uuid.uuid4(), s2_rm.IDLE, 0), "not in the system description"),
                           (actuator(s2_rm.ACTUATOR, uuid.uuid4(), 0), "is not a mode"),
                           (actuator(s2_rm.ACTUATOR, s2_rm.CHARGE, 1.5), "not within 0..1")):
            got = await peer.status_of(msg)
            assert got.status.value == "INVALID_CONTENT" and words in got.diagnostic_label
        future = PowerMeasurement(message_id=uuid.uuid4(),
                                  measurement_timestamp=dt.datetime.now(UTC) + dt.timedelta(hours=1),
                                  values=[PowerValue(commodity_quantity=s2_rm.POWER, value=10)])
        assert "in the future" in (await peer.status_of(future)).diagnostic_label
        # the RM withdraws its description: nothing is instructed until a new one
        other = RevokeObject(message_id=uuid.uuid4(), object_type="FRBC.SystemDescription", object_id=uuid.uuid4())
        assert (await peer.status_of(other)).status.value == "INVALID_CONTENT"
        revoke = RevokeObject(message_id=uuid.uuid4(), object_type="FRBC.SystemDescription",
                              object_id=desc.message_id)
        assert (await peer.status_of(revoke)).status.value == "OK"
        assert server.live["battery"][1].snap.system_description is None
    finally:
        await http.close()


async def test_the_cem_revokes_an_instruction(cem) -> None:
    server, house = cem
    http, peer = await active(server)
    try:
        await s2_rm.Battery(peer.ws, abandon=False).state()  # no description yet: statuses still taken
        assert (await peer.status_of(s2_rm.system_description())).status.value == "OK"
        await s2_rm.Battery(peer.ws, abandon=False).state()
        house.target_w = 1000.0
        await until(lambda: server.live["battery"][1].snap.actuators != (), "the actuator status")
        assert await server.instruct_all() == 1
        while (instr := await peer.recv()).message_type != "FRBC.Instruction":
            pass
        assert await server.revoke("battery", str(instr.id))
        revoke = await peer.recv()
        assert revoke.message_type == "RevokeObject" and revoke.object_id == instr.id
        assert server.live["battery"][1].snap.instructions[-1].status == "REVOKED"
        assert not await server.revoke("battery", str(instr.id))  # once
        assert not await server.revoke("nobody", str(instr.id))
    finally:
        await http.close()


@pytest.mark.parametrize("request_type", ["TERMINATE", "RECONNECT"])
async def test_session_request_ends_the_session_cleanly(cem, request_type: str) -> None:
    server, _ = cem
    http, peer = await active(server)
    try:
        msg = SessionRequest(message_id=uuid.uuid4(), request=request_type, diagnostic_label="maintenance")
        assert (await peer.status_of(msg)).status.value == "OK"
        frame = await asyncio.wait_for(peer.ws.receive(), 5)
        assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 1000 and "maintenance" in frame.extra
    finally:
        await http.close()
    await until(lambda: not server.live, "the session to end")
    assert server.coordinator.snapshots["battery"].closed_reason.startswith(f"the RM asked to {request_type.lower()}")


async def test_a_reconnect_replaces_the_older_connection_and_keeps_the_claim(cem) -> None:
    server, _ = cem
    http1, old = await active(server)
    http2, new = await active(server)  # same token, same resource id: the same RM back
    try:
        frame = await asyncio.wait_for(old.ws.receive(), 5)
        assert frame.type == aiohttp.WSMsgType.CLOSE and "replaced" in frame.extra
        assert server.live["battery"][1].snap.session == 2 and server.live["battery"][1].snap.phase == "active"
        await until(lambda: server.coordinator.snapshots["battery"].session == 2, "the newer snapshot")
        assert server.coordinator.snapshots["battery"].connected  # the older's close did not overwrite it
    finally:
        await http1.close()
        await http2.close()


async def test_a_frame_too_large_ends_the_session(cem) -> None:
    server, _ = cem
    http, peer = await connect(server, TOKENS["battery"])
    try:
        await peer.recv()
        await peer.send(json.dumps({"message_type": "PowerMeasurement", "pad": "x" * 20_000}))
        frame = await asyncio.wait_for(peer.ws.receive(), 5)
        assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 1009
    finally:
        await http.close()
    await until(lambda: not server.live, "the session to end")


async def test_a_flood_of_bytes_ends_the_session(cem) -> None:
    server, _ = cem
    http, peer = await connect(server, TOKENS["battery"])
    try:
        await peer.recv()
        frame_text = json.dumps({"message_type": "PowerMeasurement", "pad": "x" * 7000})  # each one refused
        for _ in range(10):
            try:
                await peer.ws.send_str(frame_text)
            except ConnectionError:
                break
        while (frame := await asyncio.wait_for(peer.ws.receive(), 5)).type == aiohttp.WSMsgType.TEXT:
            pass
        assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 1008 and "bytes/s" in frame.extra
    finally:
        await http.close()


async def test_s2_list_reads_the_status_file(cem, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VPP_AGENT_STATE_DIR", raising=False)  # conftest's; the config file says it here
    server, _ = cem
    http, peer = await active(server)
    try:
        server.write_status(force=True)
    finally:
        await http.close()
    config = tmp_path / "agent.toml"
    config.write_text(f'insecure = true\nhouse_id = "h1"\nstate_dir = "{tmp_path}"\n[s2]\ninsecure = true\n'
                      f'[[s2.resource_managers]]\nname = "battery"\ntoken = "{TOKENS["battery"]}"\n')
    assert main(["s2", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "battery" in out and "FILL_RATE_BASED_CONTROL" in out and "active" in out
    await until(lambda: not server.live, "the session to end")
    server.write_status(force=True)
    assert main(["s2", "list", "--config", str(config), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["resource_managers"]
    assert listed[0]["state"] == "disconnected" and listed[0]["control_type"] == "FILL_RATE_BASED_CONTROL"
    (tmp_path / "s2_sessions.json").unlink()
    assert main(["s2", "list", "--config", str(config)]) == 3
    config.write_text('insecure = true\nhouse_id = "h1"\n')
    assert main(["s2", "list", "--config", str(config)]) == 2


async def test_a_stopping_agent_says_terminate(cem) -> None:
    server, _ = cem
    http, peer = await active(server)
    try:
        await server.stop()
        bye = await peer.recv()
        assert bye.message_type == "SessionRequest" and bye.request.value == "TERMINATE"
        frame = await asyncio.wait_for(peer.ws.receive(), 5)
        assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 1001
    finally:
        await http.close()
    assert not server.coordinator.snapshots["battery"].connected
