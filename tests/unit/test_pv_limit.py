"""Whether a micro-inverter holds its limit (edge_agent/resources/pv_limit.py), and how the house's PV
adds a micro-inverter's reading (edge_agent/lan_pv.combine): pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge_agent.lan_pv import combine
from edge_agent.resources.pv_limit import LimitTracker
from vpp_common.messages import Measurement, Validity

T0 = datetime(2026, 6, 21, 12, tzinfo=UTC)


def test_a_limit_is_pending_within_apply_s_then_failed() -> None:
    t = LimitTracker(apply_s=30.0, tolerance_w=10.0)
    assert t.observe(800.0, 1.0, T0) == "none"
    t.ask(300.0, T0)
    assert t.observe(800.0, 1.0, T0 + timedelta(seconds=29)) == "pending"
    assert t.observe(305.0, 0.0, T0 + timedelta(seconds=29)) == "pending"  # the device says Pending
    assert t.observe(305.0, 1.0, T0 + timedelta(seconds=2)) == "applied"
    assert t.observe(305.0, None, T0 + timedelta(seconds=2)) == "applied"  # no status: the read-back decides
    assert t.observe(800.0, 1.0, T0 + timedelta(seconds=31)) == "failed"
    assert t.observe(None, None, T0 + timedelta(seconds=31)) == "failed"
    assert t.observe(300.0, -1.0, T0) == "failed"  # the device says Failure
    t.ask(None, T0)
    assert t.observe(800.0, 1.0, T0) == "none"


def test_a_setting_that_reads_back_at_once_settles_first() -> None:
    t = LimitTracker(apply_s=15.0, tolerance_w=2.0, settle_s=5.0)
    t.ask(300.0, T0)
    assert t.observe(300.0, None, T0 + timedelta(seconds=1)) == "pending"
    assert t.observe(300.0, None, T0 + timedelta(seconds=5)) == "applied"


def test_combine_is_valid_only_when_both_are() -> None:
    v = Measurement(-1000.0, Validity.VALID, T0)
    stale = Measurement(-700.0, Validity.STALE, T0 - timedelta(seconds=10))
    assert combine(v, Measurement(-700.0, Validity.VALID, T0)) == Measurement(-1700.0, Validity.VALID, T0)
    assert combine(v, stale) == Measurement(-1700.0, Validity.STALE, stale.measured_at)
    assert combine(v, Measurement.missing()) == Measurement.missing()  # never the other alone as the sum
    assert combine(Measurement(-500.0, Validity.VALID, T0), v, -1.0).value == 500.0
    implausible = Measurement(-1e9, Validity.IMPLAUSIBLE, T0)
    assert combine(v, implausible).validity is Validity.IMPLAUSIBLE
