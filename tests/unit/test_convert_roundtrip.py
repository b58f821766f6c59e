"""What one side encodes, the other decodes to the same dataclass (wire compatibility)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from aggregator.service import convert as agg
from edge_agent.uplink import convert as edge
from vpp.v1 import plan_pb2
from vpp_common.clock import UTC
from vpp_common.messages import (
    ControlType,
    CurtailmentFlexibility,
    DispatchPlan,
    Envelope,
    FallbackMode,
    Flexibility,
    GridSignal,
    Hello,
    Measurement,
    PlanSlot,
    PlanState,
    PlanStatus,
    PowerForecast,
    PriceSlot,
    ResourceInfo,
    ResourceKind,
    ResourceTelemetry,
    Setpoint,
    SiteLimits,
    SiteTelemetry,
    StorageFlexibility,
    Validity,
)

T0 = datetime(2026, 6, 1, 12, 0, 0, 123000, tzinfo=UTC)


def test_hello_roundtrip() -> None:
    hello = Hello("0.1.0", SiteLimits(11_000, 4_600),
                  (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC, 5_000, 10_000),
                   ResourceInfo("pv", ResourceKind.PV, ControlType.PEBC, 8_000, 0)), "p1", 3)
    assert agg.hello_from_proto(edge.hello_to_proto(hello)) == hello


def test_telemetry_roundtrip_keeps_validity_and_missing() -> None:
    t = SiteTelemetry(T0, Measurement(-1200.5, Validity.VALID, T0), Measurement(-3000, Validity.STALE, T0),
                      Measurement.missing(), Measurement(55.5, Validity.IMPLAUSIBLE, T0),
                      Measurement(900, Validity.VALID, T0),
                      (ResourceTelemetry("battery", Measurement.missing(), Measurement(55.5, Validity.VALID, T0)),
                       ResourceTelemetry("pv", Measurement(-3000, Validity.STALE, T0))))
    assert agg.telemetry_from_proto(edge.telemetry_to_proto(t)) == t


def test_flexibility_roundtrip() -> None:
    f = Flexibility(T0, (StorageFlexibility("battery", 42, 0, 100, 10, 10_000, 5_000, 4_000, 0.96, 0.94),),
                    (CurtailmentFlexibility("pv", -2500, -8000),),
                    PowerForecast(T0, 900, (300.0, 310.5)), PowerForecast(T0, 900, (-0.0, -1200.0)),
                    PowerForecast(T0, 900, (-0.0, -3100.0)))
    assert agg.flexibility_from_proto(edge.flexibility_to_proto(f)) == f
    older = replace(f, pv_clear_sky_forecast=None)  # an agent that does not send it
    assert agg.flexibility_from_proto(edge.flexibility_to_proto(older)) == older


def test_plan_status_roundtrip() -> None:
    s = PlanStatus("p1", 7, PlanState.REJECTED, T0, "version 7 is not newer than 8")
    assert agg.plan_status_from_proto(edge.plan_status_to_proto(s)) == s


def _plan() -> DispatchPlan:
    slots = tuple(PlanSlot(T0 + timedelta(seconds=900 * i), (Setpoint("battery", 1000.0 * i, Envelope(-5, 1000.0 * i)),),
                           Envelope(-4600, 11_000) if i else None, f"slot {i}") for i in range(4))
    return DispatchPlan("p1", 5, T0, T0, T0 + timedelta(hours=1), 900, slots, FallbackMode.IDLE, 3000)


def test_plan_roundtrip() -> None:
    assert edge.plan_from_proto(agg.plan_to_proto(_plan())) == _plan()


def test_malformed_plans_are_rejected() -> None:
    msg = agg.plan_to_proto(_plan())
    gap = plan_pb2.DispatchPlan()
    gap.CopyFrom(msg)
    del gap.slots[1]
    with pytest.raises(edge.InvalidPlan, match="slot 1 starts"):
        edge.plan_from_proto(gap)
    bad = plan_pb2.DispatchPlan()
    bad.CopyFrom(msg)
    bad.version = 0
    with pytest.raises(edge.InvalidPlan, match="version"):
        edge.plan_from_proto(bad)
    inverted = plan_pb2.DispatchPlan()
    inverted.CopyFrom(msg)
    inverted.slots[0].setpoints[0].envelope.min_w = 99_999
    with pytest.raises(edge.InvalidPlan, match="envelope"):
        edge.plan_from_proto(inverted)


def test_invalid_hello_is_named() -> None:
    msg = edge.hello_to_proto(Hello("x", SiteLimits(1000, 0), ()))
    msg.limits.max_import_w = 0
    with pytest.raises(agg.InvalidMessage, match="max_import_w"):
        agg.hello_from_proto(msg)


def test_grid_signal_roundtrip() -> None:
    signal = GridSignal(T0, "EUR", (PriceSlot(T0, 900, 0.31, -0.02), PriceSlot(T0 + timedelta(seconds=900), 900, 0.2,
                                                                                 0.07)),
                        SiteLimits(8_000, 0), T0 + timedelta(hours=2))
    assert edge.grid_signal_from_proto(agg.grid_signal_to_proto(signal)) == signal


def test_feeder_envelope_flag_roundtrips_and_needs_limits() -> None:
    from dataclasses import replace

    signal = GridSignal(T0, "EUR", (), SiteLimits(17_000, 2_500), T0 + timedelta(seconds=150),
                        limits_are_feeder_envelope=True)
    assert edge.grid_signal_from_proto(agg.grid_signal_to_proto(signal)) == signal
    bare = replace(signal, limits=None, limits_valid_until=None)
    assert edge.grid_signal_from_proto(agg.grid_signal_to_proto(bare)).limits_are_feeder_envelope is False
