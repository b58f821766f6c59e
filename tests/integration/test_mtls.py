"""mTLS identity: the certificate names the house; nothing else does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest

from aggregator.certs import Issued, create_ca, issue_house, issue_server
from aggregator.config import AggregatorConfig, TlsServerConfig
from aggregator.server import AggregatorServer
from edge_agent.uplink import convert as edge
from edge_agent.uplink.client import TlsFiles, UplinkCallbacks, UplinkClient
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import fleet_service_pb2_grpc as fs_grpc
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
