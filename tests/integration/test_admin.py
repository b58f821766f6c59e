"""The admin port: AdminService, health, reflection and channelz; and the operator CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_channelz.v1 import channelz_pb2, channelz_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from aggregator.cli import main as aggregator_main
from aggregator.config import AggregatorConfig
from aggregator.server import AggregatorServer
from vpp.v1 import admin_service_pb2 as adm
from vpp.v1 import admin_service_pb2_grpc as adm_grpc
from vpp_common.clock import UTC, ManualClock
from vpp_common.messages import (
    ControlType,
    Flexibility,
    Hello,
    Measurement,
    ResourceInfo,
    ResourceKind,
    SiteLimits,
    SiteTelemetry,
    StorageFlexibility,
    Validity,
)

T0 = datetime(2026, 6, 1, 18, 0, tzinfo=UTC)
HELLO = Hello("9.9", SiteLimits(11_000, 4_600), (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC,
                                                               5_000, 10_000),))


@pytest.fixture
async def server() -> AsyncIterator[AggregatorServer]:
    cfg = AggregatorConfig(listen="127.0.0.1:0", admin_listen="127.0.0.1:0", insecure=True, metrics_port=None,
                           replica_id="r1")
    srv = AggregatorServer(cfg, clock=ManualClock(T0))
    await srv.start()
    store = srv.store
    await store.upsert_house("h1", HELLO, T0)
    await store.set_route("h1", "r1", 60)
    v = Measurement(42.0, Validity.VALID, T0)
    await store.put_telemetry("h1", SiteTelemetry(T0, Measurement(300, Validity.VALID, T0), Measurement.missing(),
                                                  Measurement(-500, Validity.VALID, T0), v,
                                                  Measurement(800, Validity.VALID, T0)), 60)
    await store.put_flexibility("h1", Flexibility(T0, (StorageFlexibility("battery", 42, 0, 100, 10, 10_000, 5_000,
                                                                          5_000),)))
    await srv.planner.cycle({"h1"})
    try:
        yield srv
    finally:
        await srv.stop(grace_s=0.2)


async def test_admin_service_health_reflection_and_channelz(server: AggregatorServer) -> None:
    assert server.admin_target is not None
    async with grpc.aio.insecure_channel(server.admin_target) as ch:
        houses = await adm_grpc.AdminServiceStub(ch).ListHouses(adm.ListHousesRequest())
        assert [h.house_id for h in houses.houses] == ["h1"]
        h = houses.houses[0]
        assert h.replica_id == "r1" and h.plan_version >= 1 and h.battery_soc_pct.value == 42
        plan = await adm_grpc.AdminServiceStub(ch).GetPlan(adm.GetPlanRequest(house_id="h1"))
        assert plan.plan.version >= 1 and len(plan.plan.slots) == 96
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await adm_grpc.AdminServiceStub(ch).GetHouse(adm.GetHouseRequest(house_id="nope"))
        assert err.value.code() is grpc.StatusCode.NOT_FOUND
        health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        call = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = [s.name async for r in call for s in r.list_services_response.service]
        assert "vpp.v1.AdminService" in names and "grpc.channelz.v1.Channelz" in names
        assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= set(names)
        servers = await channelz_pb2_grpc.ChannelzStub(ch).GetServers(channelz_pb2.GetServersRequest())
        assert len(servers.server) >= 1
    # the agents' port does not expose the admin service
    async with grpc.aio.insecure_channel(server.target) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await adm_grpc.AdminServiceStub(ch).ListHouses(adm.ListHousesRequest())
        assert err.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_reflection_v1_lists_and_describes(server: AggregatorServer) -> None:
    """grpcurl and Postman ask grpc.reflection.v1 (its messages are v1alpha's on the wire)."""
    assert server.admin_target is not None
    async with grpc.aio.insecure_channel(server.admin_target) as ch:
        info = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        answers = [r async for r in info(iter([
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="vpp.v1.AdminService"),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection")]))]
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"vpp.v1.AdminService", "grpc.reflection.v1.ServerReflection"} <= names
    for answer, name in zip(answers[1:], ("vpp/v1/admin_service.proto", "grpc/reflection/v1/reflection.proto"),
                            strict=True):
        assert answer.WhichOneof("message_response") == "file_descriptor_response", answer
        first = descriptor_pb2.FileDescriptorProto.FromString(answer.file_descriptor_response.file_descriptor_proto[0])
        assert first.name == name


async def test_operator_cli_tables_and_json(server: AggregatorServer, capsys: pytest.CaptureFixture[str]) -> None:
    admin = server.admin_target
    assert admin is not None

    def run(*argv: str) -> int:
        return aggregator_main(list(argv))

    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=1)  # the CLI is blocking; the server runs on this loop
    assert await loop.run_in_executor(pool, run, "houses", "list", "--admin", admin) == 0
    out = capsys.readouterr().out
    assert "h1" in out and "1 houses, 1 connected" in out
    assert await loop.run_in_executor(pool, run, "houses", "show", "h1", "--admin", admin, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["house"]["agent_version"] == "9.9" and shown["resources"][0]["resource_id"] == "battery"
    assert await loop.run_in_executor(pool, run, "plan", "show", "h1", "--admin", admin) == 0
    assert "peak price" in capsys.readouterr().out  # 18:00 is in the peak window
    assert await loop.run_in_executor(pool, run, "plan", "show", "nope", "--admin", admin) == 4
    pool.shutdown()


async def test_limits_set_reaches_the_house_and_replans(capsys: pytest.CaptureFixture[str]) -> None:
    from edge_agent.uplink import convert as edge
    from vpp.v1 import fleet_service_pb2 as fs

    from .test_aggregator_service import RawAgent

    cfg = AggregatorConfig(listen="127.0.0.1:0", admin_listen="127.0.0.1:0", insecure=True, metrics_port=None)
    srv = AggregatorServer(cfg, clock=ManualClock(datetime(2026, 6, 1, 2, 0, tzinfo=UTC)))  # cheap: charging
    await srv.start()
    agent = RawAgent(srv.target, "h-lim")
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        agent.send(fs.ConnectRequest(sequence=1, hello=edge.hello_to_proto(HELLO)))
        agent.send(fs.ConnectRequest(sequence=2, flexibility_update=edge.flexibility_to_proto(Flexibility(
            T0, (StorageFlexibility("battery", 20, 0, 100, 10, 10_000, 5_000, 5_000),)))))
        first = edge.plan_from_proto((await agent.expect("dispatch_plan")).dispatch_plan)
        assert max(s.setpoints[0].target_power_w for s in first.slots) == 5_000
        admin = srv.admin_target
        assert admin is not None
        loop = asyncio.get_running_loop()
        rc = await loop.run_in_executor(pool, aggregator_main, ["limits", "set", "h-lim", "--max-import-w", "3000",
                                                                 "--max-export-w", "0", "--for", "2h",
                                                                 "--admin", admin])
        assert rc == 0 and "import <= 3000 W" in capsys.readouterr().out
        signal = edge.grid_signal_from_proto((await agent.expect("grid_signal")).grid_signal)
        assert signal.limits is not None and signal.limits.max_import_w == 3000 and signal.limits.max_export_w == 0
        while True:  # the re-plan charges within the new import limit
            plan = edge.plan_from_proto((await agent.expect("dispatch_plan")).dispatch_plan)
            if max(s.setpoints[0].target_power_w for s in plan.slots) <= 3_000:
                break
        assert plan.version > first.version and plan.fallback_max_export_w == 0
        bad = await loop.run_in_executor(pool, aggregator_main, ["limits", "set", "h-lim", "--max-import-w", "0",
                                                                  "--max-export-w", "0", "--for", "1h",
                                                                  "--admin", admin])
        assert bad == 2
    finally:
        pool.shutdown()
        await agent.close()
        await srv.stop(grace_s=0.2)


async def test_fleet_events_set_list_replan_and_clear(server: AggregatorServer,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """An operator caps the fleet's import for an hour in which h1 charges from the grid: the
    event is stored and listed, and the fleet is re-planned to meet it."""
    admin = server.admin_target
    assert admin is not None
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=1)

    def run(*argv: str) -> int:
        return aggregator_main([*argv, "--admin", admin])

    try:
        before = await server.store.get_plan("h1")
        assert before is not None
        # the first hour-aligned slot from which h1 charges from the grid at >= 2 kW for an hour (night tariff)
        k = next(k for k in range(0, len(before.slots) - 4, 4)
                 if all(s.setpoints[0].target_power_w >= 2_000 for s in before.slots[k:k + 4]))
        start, end = before.slots[k].start, before.slots[k].start + timedelta(hours=1)
        rc = await loop.run_in_executor(pool, run, "events", "set", "--direction", "import", "--max-w", "500",
                                        "--start", start.isoformat(), "--end", end.isoformat(),
                                        "--reason", "DSO call")
        out = capsys.readouterr().out
        assert rc == 0 and "import <= 500 W" in out, out
        event_id = out.split()[2].rstrip(":")
        assert await loop.run_in_executor(pool, run, "events", "list", "--json") == 0
        listed = json.loads(capsys.readouterr().out)["events"]
        assert [(e["event_id"], e["direction"], e["max_power_w"], e["reason"]) for e in listed] == [
            (event_id, "FLEET_EVENT_DIRECTION_IMPORT", 500.0, "DSO call")]
        assert listed[0]["start_time"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert await loop.run_in_executor(pool, run, "events", "list") == 0
        assert "1 fleet events" in capsys.readouterr().out
        deadline = asyncio.get_running_loop().time() + 30
        while True:  # the set triggers a re-plan of the fleet that meets the cap
            plan = await server.store.get_plan("h1")
            if plan is not None and any(event_id in s.reason for s in plan.slots):
                break
            assert asyncio.get_running_loop().time() < deadline, "no re-plan that meets the fleet event"
            await asyncio.sleep(0.05)
        assert plan.version > before.version
        window = plan.slots[k:k + 4]
        assert all(s.setpoints[0].target_power_w <= 500 + 1.0 for s in window)  # no PV at night: charging <= import
        assert all(f"fleet import event {event_id} binds" in s.reason for s in window)
        rep = server.planner.last_event_reports
        assert [r.event_id for r in rep] == [event_id] and rep[0].binding and rep[0].converged
        assert all(a <= c + 1.0 for a, c in zip(rep[0].achieved_w, rep[0].cap_w, strict=True))
        # bad input is refused with a clear message
        rc = await loop.run_in_executor(pool, run, "events", "set", "--direction", "import", "--max-w", "5",
                                        "--start", "2026-06-01T20:00Z", "--end", "2026-06-01T19:00Z")
        assert rc == 2 and "must be after --start" in capsys.readouterr().err
        with pytest.raises(SystemExit) as exc:
            await loop.run_in_executor(pool, run, "events", "set", "--direction", "export", "--max-w", "-1",
                                       "--start", "2026-06-01T18:00Z", "--end", "2026-06-01T19:00Z")
        assert exc.value.code == 2 and "W >= 0" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            await loop.run_in_executor(pool, run, "events", "set", "--direction", "export", "--max-w", "1",
                                       "--start", "2026-06-01T18:00", "--end", "2026-06-01T19:00Z")
        assert "time zone" in capsys.readouterr().err
        rc = await loop.run_in_executor(pool, run, "events", "set", "--direction", "export", "--max-w", "1",
                                        "--start", "2026-05-01T18:00Z", "--end", "2026-05-01T19:00Z")
        assert rc == 2 and "already ended" in capsys.readouterr().err  # checked by the server
        # clear: gone from the list; clearing it again is "not found"
        assert await loop.run_in_executor(pool, run, "events", "clear", event_id) == 0
        assert "cleared" in capsys.readouterr().out
        assert await loop.run_in_executor(pool, run, "events", "clear", event_id) == 4
        assert "no fleet event" in capsys.readouterr().err
        assert await loop.run_in_executor(pool, run, "events", "list", "--json") == 0
        assert json.loads(capsys.readouterr().out).get("events", []) == []
    finally:
        pool.shutdown()


async def test_flexible_loads_reach_the_operator_and_a_nan_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """An agent's switchable load (OMBC) and shiftable run (PPBC) go up its stream, are stored and
    shown by `houses show`; an update with a NaN power in a load is refused whole and the house
    keeps its last valid flexibility."""
    from edge_agent.uplink import convert as edge
    from vpp.v1 import fleet_service_pb2 as fs
    from vpp_common.messages import (
        LoadMode,
        ProfileStep,
        RunState,
        ShiftableRunFlexibility,
        SwitchableLoadFlexibility,
    )

    from .test_aggregator_service import RawAgent

    cfg = AggregatorConfig(listen="127.0.0.1:0", admin_listen="127.0.0.1:0", insecure=True, metrics_port=None)
    srv = AggregatorServer(cfg, clock=ManualClock(T0))
    await srv.start()
    agent = RawAgent(srv.target, "h-loads")
    pool = ThreadPoolExecutor(max_workers=1)
    freezer = SwitchableLoadFlexibility("freezer", (LoadMode("on", 90.0), LoadMode("off", 0.0)), "off",
                                        T0 - timedelta(minutes=5), 300.0, 1800.0)
    washer = ShiftableRunFlexibility("washer", (ProfileStep(1800, 2000.0), ProfileStep(5400, 66.7)), T0,
                                     T0 + timedelta(hours=9), RunState.WAITING)
    flex = Flexibility(T0, (StorageFlexibility("battery", 50, 0, 100, 10, 10_000, 5_000, 5_000),),
                       switchable_loads=(freezer,), shiftable_runs=(washer,))
    try:
        agent.send(fs.ConnectRequest(sequence=1, hello=edge.hello_to_proto(HELLO)))
        agent.send(fs.ConnectRequest(sequence=2, flexibility_update=edge.flexibility_to_proto(flex)))
        await agent.expect("dispatch_plan")
        bad = edge.flexibility_to_proto(flex)
        bad.resources[1].ombc.operation_modes[0].power_w = float("nan")
        agent.send(fs.ConnectRequest(sequence=3, flexibility_update=bad))
        agent.send(fs.ConnectRequest(sequence=4, heartbeat=fs.Heartbeat()))
        await asyncio.sleep(0.3)
        assert (await srv.store.get_flexibility("h-loads")) == flex  # the NaN update refused, the last kept
        admin = srv.admin_target
        assert admin is not None
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(pool, aggregator_main, ["houses", "show", "h-loads", "--admin", admin]) == 0
        out = capsys.readouterr().out
        assert "flexible load freezer: OMBC (on 90 W, off 0 W), now off" in out, out
        assert "pauses at most 30 min" in out
        assert "flexible load washer: PPBC run of 1.10 kWh over 2.0 h" in out and "waiting" in out, out
    finally:
        pool.shutdown()
        await agent.close()
        await srv.stop(grace_s=0.2)
