"""mTLS identity: the certificate names the house; nothing else does."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest

from aggregator.certs import Issued, create_ca, issue_house, issue_server
from aggregator.config import AggregatorConfig, TlsServerConfig
from aggregator.server import AggregatorServer
from edge_agent.metrics import AgentMetrics
from edge_agent.uplink import convert as edge
from edge_agent.uplink.client import TlsFiles, UplinkCallbacks, UplinkClient
from edge_agent.uplink.identity import UplinkIdentity, certificate_not_after, expiry_problem
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import fleet_service_pb2_grpc as fs_grpc
from vpp_common.backoff import Backoff
from vpp_common.clock import UTC
from vpp_common.messages import ControlType, Hello, ResourceInfo, ResourceKind, SiteLimits

TD = "vpp.test"
HELLO = Hello("test", SiteLimits(11_000, 4_600), (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC,
                                                                5_000, 10_000),))


@dataclass
class Pki:
    ca: Issued
    server: Issued
    dir: Path

    def house(self, house_id: str, **kw: object) -> Issued:
        return issue_house(self.ca, TD, house_id, **kw)  # type: ignore[arg-type]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = create_ca(TD)
    return Pki(ca, issue_server(ca, ["localhost", "127.0.0.1"]), d)


@pytest.fixture
async def server(pki: Pki) -> AsyncIterator[AggregatorServer]:
    tls = TlsServerConfig(cert_file=write(pki.dir / "srv.pem", pki.server.cert_pem),
                          key_file=write(pki.dir / "srv.key", pki.server.key_pem),
                          client_ca_file=write(pki.dir / "ca.pem", pki.ca.cert_pem), trust_domain=TD)
    srv = AggregatorServer(AggregatorConfig(admin_listen=None, listen="127.0.0.1:0", tls=tls, metrics_port=None, replica_id="r1"))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace_s=0.2)


async def connect(target: str, ca_pem: bytes, client: Issued | None, hello: Hello = HELLO,
                  ) -> fs.ConnectResponse:
    """Open a stream with ``client``'s certificate, send Hello, return the first answer."""
    creds = grpc.ssl_channel_credentials(ca_pem, client.key_pem if client else None,
                                         client.cert_pem if client else None)
    done = asyncio.Event()
    async with grpc.aio.secure_channel(target, creds) as channel:
        async def requests() -> AsyncIterator[fs.ConnectRequest]:
            yield fs.ConnectRequest(sequence=1, hello=edge.hello_to_proto(hello))
            await done.wait()  # keep our side open until we are done

        call = fs_grpc.FleetServiceStub(channel).Connect(requests())
        try:
            resp = await asyncio.wait_for(call.read(), 10)
        finally:
            done.set()
            call.cancel()
        assert resp is not grpc.aio.EOF
        return resp


async def test_house_identity_comes_from_the_certificate(server: AggregatorServer, pki: Pki) -> None:
    resp = await connect(server.target, pki.ca.cert_pem, pki.house("house-a"))
    assert resp.welcome.house_id == "house-a"
    record = await server.store.get_house("house-a")
    assert record is not None


async def test_claiming_another_house_is_denied(server: AggregatorServer, pki: Pki) -> None:
    claim_b = Hello(HELLO.agent_version, HELLO.limits, HELLO.resources, claimed_house_id="house-b")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await connect(server.target, pki.ca.cert_pem, pki.house("house-a"), claim_b)
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert await server.store.get_house("house-b") is None


@pytest.mark.parametrize("case", ["foreign_ca", "expired", "no_certificate"])
async def test_bad_client_certificates_are_refused(server: AggregatorServer, pki: Pki, case: str) -> None:
    if case == "foreign_ca":
        client: Issued | None = issue_house(create_ca(TD), TD, "house-a")
    elif case == "expired":
        client = pki.house("house-a", valid_days=1, now=datetime.now(UTC) - timedelta(days=3))
    else:
        client = None
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await connect(server.target, pki.ca.cert_pem, client)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE  # refused in the TLS handshake
    assert await server.store.get_house("house-a") is None


async def test_certificate_of_another_trust_domain_is_unauthenticated(server: AggregatorServer, pki: Pki) -> None:
    other = issue_house(pki.ca, "other.test", "house-a")  # our CA, but not our fleet's URI
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await connect(server.target, pki.ca.cert_pem, other)
    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_agent_renews_its_channel_when_the_certificate_file_changes(server: AggregatorServer, pki: Pki,
                                                                          tmp_path: Path) -> None:
    first = pki.house("house-r")
    files = TlsFiles(write(tmp_path / "ca.pem", pki.ca.cert_pem), write(tmp_path / "h.pem", first.cert_pem),
                     write(tmp_path / "h.key", first.key_pem), check_interval_s=0.05)
    welcomes: list[str] = []
    client = UplinkClient(target=server.target, house_id="", hello=lambda: HELLO, tls=files,
                          callbacks=UplinkCallbacks(on_plan=lambda p: None,
                                                    on_welcome=lambda w: welcomes.append(w.house_id)))
    task = asyncio.create_task(client.run())
    try:
        deadline = time.monotonic() + 10
        while client.connects < 1:
            assert time.monotonic() < deadline, "no first connect"
            await asyncio.sleep(0.01)
        renewed = pki.house("house-r")
        write(files.key_file, renewed.key_pem)
        write(files.cert_file, renewed.cert_pem)
        while client.connects < 2:
            assert time.monotonic() < deadline, "no reconnect after renewal"
            await asyncio.sleep(0.01)
        assert client.channels >= 2 and welcomes[-1] == "house-r"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _run_until(client: UplinkClient, pred: Callable[[], bool], what: str) -> None:
    task = asyncio.create_task(client.run())
    try:
        deadline = time.monotonic() + 10
        while not pred():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _client(server: AggregatorServer, files: TlsFiles, hello: Hello, metrics: AgentMetrics) -> UplinkClient:
    client = UplinkClient(target=server.target, house_id="", hello=lambda: hello, tls=files,
                          backoff=Backoff(0.01, 0.05), callbacks=UplinkCallbacks(on_plan=lambda p: None))
    client.identity = UplinkIdentity(metrics.uplink_errors, metrics.tls_cert_expiry)
    return client


def _files(tmp_path: Path, pki: Pki, house: Issued) -> TlsFiles:
    return TlsFiles(write(tmp_path / "ca.pem", pki.ca.cert_pem), write(tmp_path / "h.pem", house.cert_pem),
                    write(tmp_path / "h.key", house.key_pem))


async def test_wrong_house_id_is_an_error_said_once_and_counted(server: AggregatorServer, pki: Pki, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    # issue 19: this retried for ever with one INFO line per attempt
    metrics = AgentMetrics()
    claim_b = Hello(HELLO.agent_version, HELLO.limits, HELLO.resources, claimed_house_id="house-b")
    client = _client(server, _files(tmp_path, pki, pki.house("house-a")), claim_b, metrics)
    with caplog.at_level(logging.INFO, logger="edge_agent.uplink"):
        await _run_until(client, lambda: client.identity.errors.get("PERMISSION_DENIED", 0) >= 3, "3 refusals")
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and errors[0].levelno == logging.ERROR, [r.getMessage() for r in errors]
    assert "PERMISSION_DENIED" in errors[0].getMessage() and "check house_id" in errors[0].getMessage()
    assert metrics.registry.get_sample_value("vpp_edge_uplink_errors_total", {"code": "PERMISSION_DENIED"}) >= 3


async def test_expired_own_certificate_is_said_with_its_date(server: AggregatorServer, pki: Pki, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    metrics = AgentMetrics()
    expired = pki.house("house-a", valid_days=1, now=datetime.now(UTC) - timedelta(days=3))
    client = _client(server, _files(tmp_path, pki, expired), HELLO, metrics)
    with caplog.at_level(logging.INFO, logger="edge_agent.uplink"):
        await _run_until(client, lambda: client.identity.errors.get("UNAVAILABLE", 0) >= 2, "2 failed handshakes")
    not_after = certificate_not_after(tmp_path / "h.pem")
    assert metrics.registry.get_sample_value("vpp_edge_tls_cert_expiry_timestamp_seconds") == not_after.timestamp()
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert said[0][0] == "WARNING" and f"expired at {not_after.isoformat()}" in said[0][1]  # at the channel
    assert [lvl for lvl, _ in said[1:]] == ["ERROR"] and "renew it" in said[1][1], said  # once, at the refusal


def test_certificate_expiring_soon_is_warned() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert expiry_problem(now + timedelta(days=30), now) is None
    assert "in 2.0 days" in (expiry_problem(now + timedelta(days=2), now) or "")
    assert "expired at" in (expiry_problem(now - timedelta(seconds=1), now) or "")
