"""S2 descriptions of the resources (edge_agent/resources/s2.py), validated by s2-python."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from s2python.frbc import FRBCSystemDescription
from s2python.pebc import PEBCPowerConstraints
from s2python.s2_validation_error import S2ValidationError

from edge_agent.resources.s2 import (
    BatteryNameplate,
    battery_frbc_storage_status,
    battery_frbc_system_description,
    pv_pebc_power_constraints,
)

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def test_battery_frbc_round_trips_through_the_s2_parser() -> None:
    b = BatteryNameplate(max_charge_w=5_000, max_discharge_w=4_000, capacity_wh=10_000, reserve_soc_pct=10)
    sd = battery_frbc_system_description("battery", b, T0)
    again = FRBCSystemDescription.from_json(sd.to_json())
    modes = {m.diagnostic_label: m for m in again.actuators[0].operation_modes}
    assert set(modes) == {"charge", "idle", "discharge"}
    charge = modes["charge"].elements[0]
    assert charge.power_ranges[0].end_of_range == 5_000
    assert charge.fill_rate.end_of_range == pytest.approx(5_000 * 0.95 / 10_000 * 100 / 3600)
    discharge = modes["discharge"].elements[0]
    assert discharge.power_ranges[0].start_of_range == -4_000
    assert discharge.fill_level_range.start_of_range == 10
    # ids are stable across descriptions
    assert battery_frbc_system_description("battery", b, T0).actuators[0].id == sd.actuators[0].id
    assert battery_frbc_storage_status(42.5).present_fill_level == 42.5


def test_pv_pebc_envelope() -> None:
    pc = PEBCPowerConstraints.from_json(pv_pebc_power_constraints("pv", 8_000, T0).to_json())
    lower = [r for r in pc.allowed_limit_ranges if r.limit_type.value == "LOWER_LIMIT"][0]
    assert (lower.range_boundary.start_of_range, lower.range_boundary.end_of_range) == (-8_000, 0)


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        BatteryNameplate(max_charge_w=-1, max_discharge_w=1, capacity_wh=1)
    with pytest.raises(S2ValidationError):
        battery_frbc_system_description("battery", BatteryNameplate(5_000, 5_000, 10_000),
                                        datetime(2024, 6, 1, 12, 0))  # naive time: S2 needs aware
