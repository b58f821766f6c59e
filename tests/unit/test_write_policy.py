"""When a decision goes to the device: deadband, refresh before the device reverts, PV limit rules."""

from __future__ import annotations

from datetime import datetime, timedelta

from edge_agent.energy_manager.write_policy import WritePolicy, pv_limit_may_change
from vpp_common.clock import UTC

T0 = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
POLICY = WritePolicy.for_revert(deadband_w=50.0, revert_s=60)


def test_a_battery_setpoint_is_written_first_then_past_the_deadband_or_before_the_device_reverts() -> None:
    assert POLICY.refresh_s == 30.0
    assert POLICY.battery_due(0.0, None, T0)  # nothing written yet
    last = (1000.0, T0)
    assert not POLICY.battery_due(1049.0, last, T0 + timedelta(seconds=29))
    assert POLICY.battery_due(1050.0, last, T0)  # the deadband reached
    assert POLICY.battery_due(950.0, last, T0)
    assert POLICY.battery_due(1000.0, last, T0 + timedelta(seconds=30))  # refreshed at half the revert time


def test_a_pv_limit_is_tightened_at_once_loosened_past_the_deadband_and_refreshed() -> None:
    assert not POLICY.pv_limit_due(None, None, T0)  # no limit, none in force
    assert POLICY.pv_limit_due(3000.0, None, T0)  # a new one
    current = (3000.0, T0)
    assert POLICY.pv_limit_due(None, current, T0)  # lifted
    assert POLICY.pv_limit_due(2998.0, current, T0)  # lower by more than meter noise
    assert not POLICY.pv_limit_due(2999.5, current, T0)
    assert not POLICY.pv_limit_due(3040.0, current, T0 + timedelta(seconds=29))  # loosening within the deadband
    assert POLICY.pv_limit_due(3050.0, current, T0)
    assert POLICY.pv_limit_due(3000.0, current, T0 + timedelta(seconds=30))  # refresh
    assert POLICY.pv_limit_due(3000.0, current, T0, force=True)  # the device lost it


def test_a_pv_limit_changes_only_on_a_poll_that_began_after_it_was_written() -> None:
    assert pv_limit_may_change(snapshot_poll=0, written_after_poll=5)  # readings not from the poll loop
    assert not pv_limit_may_change(snapshot_poll=5, written_after_poll=5)
    assert pv_limit_may_change(snapshot_poll=6, written_after_poll=5)
