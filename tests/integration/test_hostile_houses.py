"""Hostile houses written from the proto against a real in-process FleetService on loopback
(issue 20): NaN, inf and absurd numbers are refused where they enter, naming the field and
counted; a house whose data still breaks the LP is left out of the cycle and the others get
the plans they get without it; a flooding house cannot make the fleet re-plan."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import grpc
import pytest

from aggregator.config import AggregatorConfig, PlanningConfig
from aggregator.planner import Planner
from aggregator.server import AggregatorServer
from edge_agent.uplink import convert as edge
from tests.conftest import until
from tests.integration.test_aggregator_service import RawAgent
from vpp.v1 import admin_service_pb2 as adm
from vpp.v1 import admin_service_pb2_grpc as adm_grpc
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import flexibility_pb2 as fx
from vpp.v1 import grid_pb2 as gr
from vpp_common.clock import UTC, ManualClock
from vpp_common.messages import (
    ControlType,
    Flexibility,
    Hello,
    PowerForecast,
    ResourceInfo,
    ResourceKind,
    SiteLimits,
    StorageFlexibility,
    Validity,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HELLO = Hello("hostile", SiteLimits(11_000, 4_600), (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC,
                                                                   5_000, 10_000),))


def flex(soc: float = 50.0) -> Flexibility:
    load = PowerForecast(T0, 900, tuple(400.0 + 50 * (i % 8) for i in range(96)))
    return Flexibility(T0, (StorageFlexibility("battery", soc, 0, 100, 10, 10_000, 5_000, 5_000),), load_forecast=load)


def refused(srv: AggregatorServer, source: str, reason: str) -> float:
    return srv.metrics.registry.get_sample_value("vpp_aggregator_refused_total",
                                                 {"source": source, "reason": reason}) or 0.0


@pytest.fixture
async def server() -> AsyncIterator[AggregatorServer]:
    cfg = AggregatorConfig(admin_listen="127.0.0.1:0", listen="127.0.0.1:0", insecure=True, metrics_port=None,
                           replica_id="r1", planning=PlanningConfig(house_replan_min_interval_s=1.0))
    srv = AggregatorServer(cfg, clock=ManualClock(T0))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace_s=0.2)


async def connected(srv: AggregatorServer, house_id: str) -> RawAgent:
    agent = RawAgent(srv.target, house_id)
    agent.send(fs.ConnectRequest(sequence=1, hello=edge.hello_to_proto(HELLO)))
    await agent.expect("welcome")
    return agent


def _set(path: str, value: float) -> Callable[[fs.Hello], None]:
    def poison(msg: fs.Hello) -> None:
        *parents, leaf = path.split(".")
        target = msg
        for p in parents:
            target = target.resources[0] if p == "resources[0]" else getattr(target, p)
        setattr(target, leaf, value)
    return poison


@pytest.mark.parametrize(("path", "value"), [
    ("limits.max_import_w", math.nan), ("limits.max_import_w", math.inf), ("limits.max_export_w", 1e300),
    ("limits.max_export_w", -math.inf), ("resources[0].capacity_wh", math.nan),
    ("resources[0].rated_power_w", 1e300),
])
async def test_hello_with_a_poisoned_number_is_refused_naming_the_field(server: AggregatorServer, path: str,
                                                                          value: float) -> None:
    hello = edge.hello_to_proto(HELLO)
    _set(path, value)(hello)
    agent = RawAgent(server.target, "poisoned")
    try:
        agent.send(fs.ConnectRequest(sequence=1, hello=hello))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await agent.expect("welcome")
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert f"hello.{path}" in (err.value.details() or "")
        assert refused(server, "hello", f"hello.{path}".replace("[0]", "[]")) == 1
        assert await server.store.get_house("poisoned") is None
    finally:
        await agent.close()


def _frbc(msg: fx.FlexibilityUpdate) -> fx.FrbcStorageDescription:
    return msg.resources[0].frbc


POISONED_FLEX: dict[str, tuple[Callable[[fx.FlexibilityUpdate], None], str]] = {
    "soc_pct NaN": (lambda m: setattr(_frbc(m), "soc_pct", math.nan), "resources[].frbc.soc_pct"),
    "soc_pct 300": (lambda m: setattr(_frbc(m), "soc_pct", 300.0), "resources[].frbc.soc_pct"),
    "capacity NaN": (lambda m: setattr(_frbc(m), "capacity_wh", math.nan), "resources[].frbc.capacity_wh"),
    "capacity 1e300": (lambda m: setattr(_frbc(m), "capacity_wh", 1e300), "resources[].frbc.capacity_wh"),
    "reserve inf": (lambda m: setattr(_frbc(m), "reserve_soc_pct", math.inf), "resources[].frbc.reserve_soc_pct"),
    "efficiency NaN": (lambda m: setattr(_frbc(m), "charge_efficiency", math.nan),
                       "resources[].frbc.charge_efficiency"),
    "mode power inf": (lambda m: setattr(_frbc(m).operation_modes[0], "power_max_w", math.inf),
                       "resources[].frbc.operation_modes[].power_max_w"),
    "load forecast NaN": (lambda m: m.load_forecast.values_w.__setitem__(3, math.nan), "load_forecast.values_w[]"),
    "load forecast 1e308": (lambda m: m.load_forecast.values_w.__setitem__(0, 1e308), "load_forecast.values_w[]"),
}


@pytest.mark.parametrize("case", sorted(POISONED_FLEX))
async def test_a_poisoned_flexibility_update_is_dropped_and_the_stream_kept(server: AggregatorServer,
                                                                            case: str) -> None:
    poison, reason = POISONED_FLEX[case]
    msg = edge.flexibility_to_proto(flex())
    poison(msg)
    agent = await connected(server, "poisoned")
    try:
        agent.send(fs.ConnectRequest(sequence=2, flexibility_update=msg))
        await until(lambda: refused(server, "flexibility_update", f"flexibility.{reason}") == 1, "the refusal")
        assert await server.store.get_flexibility("poisoned") is None  # never stored: planning never sees it
        # the stream is kept: a telemetry sample after it is stored and acknowledged
        agent.send(fs.ConnectRequest(sequence=3, telemetry=edge.telemetry_to_proto(_telemetry())))
        ack = await agent.expect("telemetry_ack")
        assert ack.telemetry_ack.sequence == 3
    finally:
        await agent.close()


def _telemetry():  # type: ignore[no-untyped-def]
    from vpp_common.messages import Measurement, SiteTelemetry

    ok = Measurement(100.0, Validity.VALID, T0)
    return SiteTelemetry(T0, ok, ok, ok, Measurement(50.0, Validity.VALID, T0), ok)


async def test_a_nan_telemetry_value_is_stored_implausible_without_a_value(server: AggregatorServer) -> None:
    agent = await connected(server, "poisoned")
    try:
        msg = edge.telemetry_to_proto(_telemetry())
        msg.grid_power_w.value = math.nan
        msg.battery_soc_pct.value = 300.0
        agent.send(fs.ConnectRequest(sequence=2, telemetry=msg))
        await agent.expect("telemetry_ack")  # the rest of the sample is kept
        t = await server.store.get_telemetry("poisoned")
        assert t is not None
        assert t.grid_power_w.validity is Validity.IMPLAUSIBLE and t.grid_power_w.value is None
        assert t.battery_soc_pct.validity is Validity.IMPLAUSIBLE and t.battery_soc_pct.value is None
        assert t.load_power_w.value == 100.0 and t.load_power_w.validity is Validity.VALID
        assert refused(server, "telemetry", "telemetry.grid_power_w") == 1
    finally:
        await agent.close()


async def test_set_site_limits_refuses_nan(server: AggregatorServer) -> None:
    await server.store.upsert_house("h1", HELLO, T0)
    assert server.admin_target is not None
    async with grpc.aio.insecure_channel(server.admin_target) as ch:
        stub = adm_grpc.AdminServiceStub(ch)
        for limits in (gr.SiteLimits(max_import_w=math.nan, max_export_w=100),
                       gr.SiteLimits(max_import_w=5000, max_export_w=math.inf)):
            req = adm.SetSiteLimitsRequest(house_id="h1", limits=limits, reason="test")
            req.duration.FromTimedelta(timedelta(hours=1))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.SetSiteLimits(req)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "limits.max_" in (err.value.details() or "")
    assert await server.store.get_limit_override("h1") is None
    assert refused(server, "admin", "limits.max_import_w") == 1 and refused(server, "admin", "limits.max_export_w") == 1


def _targets(plan) -> list[float]:  # type: ignore[no-untyped-def]
    return [s.setpoints[0].target_power_w for s in plan.slots]


async def test_a_house_that_breaks_the_lp_is_left_out_and_the_others_planned_as_without_it(
        caplog: pytest.LogCaptureFixture) -> None:
    """Data that got past the boundary (written to the store directly: older data, another
    path) must not cost the other houses their plans."""
    cfg = AggregatorConfig(admin_listen=None, listen="127.0.0.1:0", insecure=True, metrics_port=None, replica_id="r1",
                           planning=PlanningConfig(replan_on_update=False, cycle_s=86_400))
    srv = AggregatorServer(cfg, clock=ManualClock(T0))
    await srv.elector.try_acquire()  # not started: only the cycles this test runs plan
    try:
        store, good = srv.store, ["g1", "g2", "g3"]
        for h in [*good, "bad"]:
            await store.upsert_house(h, HELLO, T0)
            await store.put_flexibility(h, flex(50.0))
        assert await srv.planner.cycle() == 4
        for h in good:  # new data for the good houses, and the bad house poisoned
            await store.put_flexibility(h, flex(20.0 + 10 * good.index(h)))
        bad = flex(50.0)
        await store.put_flexibility("bad", Flexibility(T0, (StorageFlexibility(
            "battery", math.nan, 0, 100, 10, math.nan, 5_000, 5_000),), load_forecast=bad.load_forecast))
        before_bad = await store.get_plan("bad")
        with caplog.at_level(logging.WARNING, logger="aggregator.planner"):
            assert await srv.planner.cycle() == 3
        poisoned = {h: await store.get_plan(h) for h in good}
        assert await store.get_plan("bad") == before_bad  # no new plan for it
        assert any("bad" in r.getMessage() and "left out" in r.getMessage() for r in caplog.records)
        assert srv.metrics.registry.get_sample_value("vpp_aggregator_houses_excluded_total",
                                                     {"reason": "input_out_of_bounds"}) == 1
        # the reference: the same good houses, the other house harmless
        await store.put_flexibility("bad", flex(50.0))
        assert await srv.planner.cycle() == 4
        for h in good:
            ref = await store.get_plan(h)
            got = poisoned[h]
            assert ref is not None and got is not None
            assert "fallback" not in got.slots[0].reason and "shifted" not in got.slots[0].reason
            assert _targets(got) == pytest.approx(_targets(ref), abs=1.0), h
            for s in got.slots:  # finite envelopes
                env = s.setpoints[0].envelope
                assert math.isfinite(env.min_w) and math.isfinite(env.max_w)
    finally:
        await srv.stop(grace_s=0.2)


async def test_a_flooding_house_triggers_few_replans(monkeypatch: pytest.MonkeyPatch) -> None:
    requests: list[str] = []
    real = Planner.request

    def counting(self: Planner, house_id: str) -> None:
        requests.append(house_id)
        real(self, house_id)

    monkeypatch.setattr(Planner, "request", counting)  # what reaches the planner
    cfg = AggregatorConfig(admin_listen=None, listen="127.0.0.1:0", insecure=True, metrics_port=None,
                           replica_id="r1", planning=PlanningConfig(house_replan_min_interval_s=1.0,
                                                                    optimiser="tou"))
    server = AggregatorServer(cfg, clock=ManualClock(T0))
    await server.start()
    agent = await connected(server, "flooder")
    try:
        n = 300
        for i in range(n):
            agent.send(fs.ConnectRequest(sequence=2 + i, flexibility_update=edge.flexibility_to_proto(
                flex(40.0 + (i % 20)))))

        def received() -> float:
            return server.metrics.registry.get_sample_value(
                "vpp_aggregator_messages_total", {"type": "flexibility_update", "result": "ok"}) or 0.0

        started = time.monotonic()
        await until(lambda: received() == n, "the flood to arrive")
        took = time.monotonic() - started
        # the Hello's and the first update's (the burst), then one per interval (1 s here)
        allowed = 2 + math.ceil(took / 1.0)
        assert requests.count("flooder") <= allowed, (requests.count("flooder"), took)
        coalesced = server.metrics.registry.get_sample_value("vpp_aggregator_replans_coalesced_total") or 0.0
        assert coalesced >= n - allowed
        # the latest update is not lost: one deferred re-plan follows within the interval
        await until(lambda: requests.count("flooder") >= 3, "the deferred re-plan", timeout_s=5.0)
        assert requests.count("flooder") <= allowed + 1
        stored = await server.store.get_flexibility("flooder")
        assert stored is not None and stored.storages[0].soc_pct == 40.0 + ((n - 1) % 20)
    finally:
        await agent.close()
        await server.stop(grace_s=0.2)


@pytest.mark.parametrize("seconds", [2**62, -2**62])
async def test_a_telemetry_time_out_of_range_is_refused_and_the_stream_kept(server: AggregatorServer,
                                                                            seconds: int) -> None:
    """Protobuf's ValueError for such a time escaped the stream's reader: nothing more was read."""
    agent = await connected(server, "poisoned")
    try:
        msg = edge.telemetry_to_proto(_telemetry())
        msg.measured_at.seconds = seconds
        agent.send(fs.ConnectRequest(sequence=2, telemetry=msg))
        await until(lambda: refused(server, "telemetry", "telemetry.measured_at") == 1, "the refusal")
        agent.send(fs.ConnectRequest(sequence=3, telemetry=edge.telemetry_to_proto(_telemetry())))
        assert (await agent.expect("telemetry_ack")).telemetry_ack.sequence == 3
    finally:
        await agent.close()


async def test_a_failure_handling_one_message_costs_that_message_not_the_stream(
        server: AggregatorServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    agent = await connected(server, "unlucky")
    store_put = server.store.put_telemetry
    calls = 0

    async def put_once_broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        await store_put(*args, **kwargs)

    monkeypatch.setattr(server.store, "put_telemetry", put_once_broken)
    try:
        with caplog.at_level(logging.ERROR, logger="aggregator.service.fleet_servicer"):
            agent.send(fs.ConnectRequest(sequence=2, telemetry=edge.telemetry_to_proto(_telemetry())))
            await until(lambda: refused(server, "telemetry", "error") == 1, "the failure counted")
            agent.send(fs.ConnectRequest(sequence=3, telemetry=edge.telemetry_to_proto(_telemetry())))
            assert (await agent.expect("telemetry_ack")).telemetry_ack.sequence == 3
        assert server.metrics.registry.get_sample_value(
            "vpp_aggregator_messages_total", {"type": "telemetry", "result": "error"}) == 1
        assert any("RuntimeError: a bug" in (r.exc_text or "") for r in caplog.records)
        assert await server.store.get_telemetry("unlucky") is not None
    finally:
        await agent.close()
