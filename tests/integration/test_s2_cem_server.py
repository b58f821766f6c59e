"""The S2 CEM server over real WebSockets on loopback: tokens, TLS, several RMs, the session's
order, and the faults (bad token, invalid JSON, out of order, unknown instruction, flood, a
resource id claimed twice, a disconnect mid-instruction)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry, Counter
from s2python.common import (
    EnergyManagementRole,
    Handshake,
    InstructionStatus,
    InstructionStatusUpdate,
)
from s2python.s2_parser import S2Parser

from edge_agent.link_config import S2Config
from edge_agent.refusals import Refusals
from edge_agent.s2_cem.server import HouseNow, S2CemServer
from tests.conftest import until
from tests.e2e import s2_rm
from tests.ha_fixtures import close_default_executor
from vpp_common.clock import UTC
from vpp_common.messages import DispatchPlan, Envelope, FallbackMode, PlanSlot, Setpoint, SiteLimits

TOKENS = {"battery": "b" * 32, "heatpump": "h" * 32}


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / "s2.pem", tmp / "s2.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def s2_config(**kw: Any) -> S2Config:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "insecure": True,
                            "resource_managers": [{"name": n, "token": t} for n, t in TOKENS.items()]}
    return S2Config.model_validate({**base, **kw})


class Plan:
    """The house as the instruction loop sees it: a plan that may name the RM's resource."""

    def __init__(self) -> None:
        self.target_w: float | None = None
        self.grid_w: float | None = 0.0
        self.limits = SiteLimits(11_000, 4_600)

    def __call__(self, now: dt.datetime) -> HouseNow:
        if self.target_w is None:
            return HouseNow(None, self.grid_w, self.limits)
        start = now - dt.timedelta(minutes=1)
        sp = Setpoint(str(s2_rm.uuid.uuid5(s2_rm.NS, "resource")), self.target_w, Envelope(self.target_w, self.target_w))
        plan = DispatchPlan("p1", 1, start, start, start + dt.timedelta(hours=1), 3600, (PlanSlot(start, (sp,)),),
                            fallback=FallbackMode.SELF_CONSUMPTION)
        return HouseNow(plan, self.grid_w, self.limits)


@pytest.fixture
async def cem() -> AsyncIterator[tuple[S2CemServer, Plan]]:
    house = Plan()
    registry = CollectorRegistry()
    refusals = Refusals(Counter("refused", "x", ["source", "reason"], registry=registry))
    server = S2CemServer(s2_config(max_messages_per_s=50, burst_messages=40, handshake_timeout_s=2),
                         lambda: dt.datetime.now(UTC), registry, refusals, house=house)
    await server.start()
    yield server, house
    await server.stop()


class Peer:
    """A raw RM for fault tests: frames in, parsed S2 messages out."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, msg: Any) -> None:
        await self.ws.send_str(msg if isinstance(msg, str) else msg.to_json())

    async def recv(self) -> Any:
        frame = await asyncio.wait_for(self.ws.receive(), 5)
        assert frame.type == aiohttp.WSMsgType.TEXT, (frame.type, frame.data, frame.extra)
        return S2Parser.parse_as_any_message(frame.data)

    async def status_of(self, msg: Any) -> Any:
        """Send ``msg`` and return the ReceptionStatus that answers it."""
        await self.send(msg)
        while True:
            got = await self.recv()
            if got.message_type == "ReceptionStatus":
                return got

    async def setup(self, resource_id: uuid.UUID, hello_read: bool = False) -> None:
        """Handshake .. SelectControlType (FRBC)."""
        if not hello_read:
            assert (await self.recv()).message_type == "Handshake"  # the CEM's own
        assert (await self.status_of(Handshake(message_id=uuid.uuid4(), role=EnergyManagementRole.RM,
                                               supported_protocol_versions=["0.0.2-beta"]))).status.value == "OK"
        assert (await self.recv()).message_type == "HandshakeResponse"
        assert (await self.status_of(s2_rm.details(resource_id))).status.value == "OK"
        assert (await self.recv()).control_type.value == "FILL_RATE_BASED_CONTROL"


async def connect(server: S2CemServer, token: str, **kw: Any) -> tuple[aiohttp.ClientSession, Peer]:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(server.url, headers={"Authorization": f"Bearer {token}"}, **kw)
    return http, Peer(ws)


async def test_bad_or_missing_token_is_refused_before_the_upgrade(cem) -> None:
    server, _ = cem
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer " + "x" * 32}, {"Authorization": "Basic " + TOKENS["battery"]}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await http.ws_connect(server.url, headers=headers)
            assert err.value.status == 401
    assert server.refusals.by_source["s2"] == 3 and not server.live


async def test_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    registry = CollectorRegistry()
    server = S2CemServer(s2_config(insecure=False, cert_file=cert, key_file=key), lambda: dt.datetime.now(UTC),
                         registry, Refusals(Counter("r", "x", ["source", "reason"], registry=registry)))
    await server.start()
    try:
        assert server.url.startswith("wss://")
        url = server.url.replace("127.0.0.1", "localhost")
        ctx = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as http, http.ws_connect(
                url, headers={"Authorization": f"Bearer {TOKENS['battery']}"}, ssl=ctx) as ws:
            peer = Peer(ws)
            await peer.setup(uuid.uuid4())
        with pytest.raises(aiohttp.ClientConnectorCertificateError):  # no trust in it: no session
            async with aiohttp.ClientSession() as http:
                await http.ws_connect(url, headers={"Authorization": f"Bearer {TOKENS['battery']}"})
    finally:
        await server.stop()
        await close_default_executor()  # "localhost" was resolved in the loop's executor


async def test_session_flow_instruction_and_status(cem) -> None:
    server, house = cem
    http, peer = await connect(server, TOKENS["battery"])
    rid = uuid.uuid5(s2_rm.NS, "resource")
    try:
        await peer.setup(rid)
        for msg in (s2_rm.system_description(),):
            assert (await peer.status_of(msg)).status.value == "OK"
        battery = s2_rm.Battery(peer.ws, abandon=False)
        await battery.state()
        for _ in range(3):
            assert (await peer.recv()).status.value == "OK"
        snap = server.coordinator.snapshots["battery"]
        assert snap.phase == "active" and snap.fill_level is not None and snap.fill_level.value == 50
        assert snap.power_w is not None and snap.power_w.value == 0 and snap.resource_id == str(rid)
        assert await server.instruct_all() == 0  # no plan names it: the RM is left to itself
        house.target_w = 2500.0
        assert await server.instruct_all() == 1
        instr = await peer.recv()
        assert instr.message_type == "FRBC.Instruction" and instr.operation_mode == s2_rm.CHARGE
        assert instr.operation_mode_factor == pytest.approx(0.5)
        assert await server.instruct_all() == 0  # the same again is not news
        await peer.send(s2_rm.ReceptionStatus(subject_message_id=instr.message_id, status="OK"))
        upd = InstructionStatusUpdate(message_id=uuid.uuid4(), instruction_id=instr.id,
                                      status_type=InstructionStatus.ACCEPTED, timestamp=dt.datetime.now(UTC))
        assert (await peer.status_of(upd)).status.value == "OK"
        unknown = InstructionStatusUpdate(message_id=uuid.uuid4(), instruction_id=uuid.uuid4(),
                                          status_type=InstructionStatus.SUCCEEDED, timestamp=dt.datetime.now(UTC))
        refused = await peer.status_of(unknown)
        assert refused.status.value == "INVALID_CONTENT" and "no instruction of this session" in refused.diagnostic_label
        assert server.coordinator.snapshots["battery"].instructions[-1].status == "ACCEPTED"
        # a disconnect mid-instruction: the instruction is lost, the RM stale (not zero)
        await peer.ws.close()
        await until(lambda: not server.coordinator.snapshots["battery"].connected, "the session to end")
        snap = server.coordinator.snapshots["battery"]
        assert snap.instructions[-1].status == "LOST" and snap.stale(dt.datetime.now(UTC), 60)
        assert snap.power_w is not None  # kept, marked stale by the snapshot, never replaced by 0
        assert await server.instruct_all() == 0
    finally:
        await http.close()


async def test_invalid_json_ends_the_session_with_invalid_data(cem) -> None:
    server, _ = cem
    http, peer = await connect(server, TOKENS["battery"])
    try:
        await peer.recv()  # the CEM's Handshake
        await peer.send("{not json")
        status = await peer.recv()
        assert status.status.value == "INVALID_DATA" and "not JSON" in status.diagnostic_label
        frame = await asyncio.wait_for(peer.ws.receive(), 5)
        assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 1003
    finally:
        await http.close()
    await until(lambda: not server.live, "the session to end")


async def test_invalid_messages_and_out_of_order_keep_the_session(cem) -> None:
    server, _ = cem
    http, peer = await connect(server, TOKENS["battery"])
    try:
        await peer.recv()
        mid = str(uuid.uuid4())
        bad = await peer.status_of(json.dumps({"message_type": "FRBC.StorageStatus", "message_id": mid,
                                               "present_fill_level": "lots"}))
        assert bad.status.value == "INVALID_MESSAGE" and str(bad.subject_message_id) == mid
        assert "present_fill_level" in bad.diagnostic_label
        nan = await peer.status_of(f'{{"message_type": "FRBC.StorageStatus", "message_id": "{mid}", '
                                   '"present_fill_level": NaN}')
        assert nan.status.value == "INVALID_MESSAGE" and "NaN" in nan.diagnostic_label
        early = await peer.status_of(s2_rm.details(uuid.uuid4()))
        assert early.status.value == "INVALID_CONTENT" and "before the Handshake" in early.diagnostic_label
        await peer.setup(uuid.uuid4(), hello_read=True)  # the session goes on
        again = await peer.status_of(Handshake(message_id=uuid.uuid4(), role=EnergyManagementRole.RM,
                                               supported_protocol_versions=["0.0.2-beta"]))
        assert again.status.value == "INVALID_CONTENT" and "out of order" in again.diagnostic_label
        ombc = await peer.status_of(json.dumps({"message_type": "OMBC.Status", "message_id": str(uuid.uuid4()),
                                                "active_operation_mode_id": str(uuid.uuid4()),
                                                "operation_mode_factor": 0.5}))
        assert ombc.status.value == "INVALID_CONTENT" and "selected control type" in ombc.diagnostic_label
        big = await peer.status_of(json.dumps({"message_type": "PowerMeasurement", "message_id": str(uuid.uuid4()),
                                               "measurement_timestamp": dt.datetime.now(UTC).isoformat(),
                                               "values": [{"commodity_quantity": "ELECTRIC.POWER.L1",
                                                           "value": 1e300}]}))
        assert big.status.value == "INVALID_CONTENT" and "values[0].value" in big.diagnostic_label
        assert server.live["battery"][1].snap.phase == "active"
    finally:
        await http.close()


async def test_a_flood_ends_the_session(cem) -> None:
    server, _ = cem
    http, peer = await connect(server, TOKENS["battery"])
    try:
        await peer.recv()
        text = json.dumps({"message_type": "PowerMeasurement", "message_id": str(uuid.uuid4())})
        for _ in range(200):
            if peer.ws.closed:
                break
            try:
                await peer.ws.send_str(text)
            except ConnectionError:
                break
        while (frame := await asyncio.wait_for(peer.ws.receive(), 5)).type == aiohttp.WSMsgType.TEXT:
            pass
        assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 1008 and "messages/s" in frame.extra
    finally:
        await http.close()
    await until(lambda: not server.live, "the session to end")
    assert server.metrics.closed.labels("flood")._value.get() == 1


async def test_two_rms_at_once_and_a_resource_id_claimed_twice(cem) -> None:
    server, _ = cem
    rid = uuid.uuid4()
    http1, first = await connect(server, TOKENS["battery"])
    http2, second = await connect(server, TOKENS["heatpump"])
    try:
        await first.setup(rid)
        assert (await second.recv()).message_type == "Handshake"
        await second.status_of(Handshake(message_id=uuid.uuid4(), role=EnergyManagementRole.RM,
                                         supported_protocol_versions=["0.0.2-beta"]))
        assert (await second.recv()).message_type == "HandshakeResponse"
        refused = await second.status_of(s2_rm.details(rid))
        assert refused.status.value == "PERMANENT_ERROR" and "'battery'" in refused.diagnostic_label
        assert (await second.recv()).request.value == "TERMINATE"
        assert (await asyncio.wait_for(second.ws.receive(), 5)).type == aiohttp.WSMsgType.CLOSE
        await until(lambda: "heatpump" not in server.live, "the second session to end")
        assert server.live["battery"][1].snap.phase == "active"  # the first one is untouched
        http3, third = await connect(server, TOKENS["heatpump"])  # with its own resource id: welcome
        try:
            await third.setup(uuid.uuid4())
            assert len(server.live) == 2
            assert server.metrics.sessions.labels("FILL_RATE_BASED_CONTROL")._value.get() == 2
        finally:
            await http3.close()
    finally:
        await http1.close()
        await http2.close()


async def test_no_handshake_in_time_ends_the_session(cem) -> None:
    server, _ = cem
    http, peer = await connect(server, TOKENS["battery"])
    try:
        await peer.recv()
        frame = await asyncio.wait_for(peer.ws.receive(), 5)
        assert frame.type == aiohttp.WSMsgType.CLOSE and "no S2 session set up" in frame.extra
    finally:
        await http.close()
