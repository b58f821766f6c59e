"""The live feeder control and a house without a battery (a house of LAN devices only: its Hello lists
no battery, its battery readings are MISSING): read by its grid alone, not as a silent house."""

from __future__ import annotations

from datetime import UTC, datetime

from aggregator.feeder_control import Feeder, HouseReading, round_envelopes
from aggregator.store.base import HouseRecord
from vpp_common.messages import (
    ControlType,
    Hello,
    Measurement,
    ResourceInfo,
    ResourceKind,
    SiteLimits,
    SiteTelemetry,
    Validity,
)

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _reading(resources: tuple[ResourceInfo, ...]) -> HouseReading:
    m = lambda v: Measurement(v, Validity.VALID, NOW)  # noqa: E731
    hello = Hello("0.1.0", SiteLimits(11_000.0, 4600.0), resources)
    tele = SiteTelemetry(NOW, m(-1300.0), m(-1600.0), Measurement.missing(), Measurement.missing(), m(300.0))
    return HouseReading(HouseRecord("h", hello, NOW, NOW), tele, None)


def test_a_house_without_a_battery_is_read_by_its_grid() -> None:
    lan = (ResourceInfo("p1", ResourceKind.GRID_METER, ControlType.NOT_CONTROLLABLE),
           ResourceInfo("balcony", ResourceKind.PV, ControlType.PEBC, 2000.0))
    _, loads = round_envelopes([Feeder("f", ("h",), float("inf"), 6000.0)], {"h": _reading(lan)}, NOW, 30.0,
                               600.0, 1 / 60)
    assert loads["f"].fresh_houses == 1 and loads["f"].power_w == -1300.0


def test_a_house_with_a_battery_whose_reading_is_missing_stays_unknown() -> None:
    hybrid = (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC, 5000.0, 10_000.0),)
    _, loads = round_envelopes([Feeder("f", ("h",), float("inf"), 6000.0)], {"h": _reading(hybrid)}, NOW, 30.0,
                               600.0, 1 / 60)
    assert loads["f"].fresh_houses == 0  # worst case: its whole cap
