"""What an agent sends, decoded on the aggregator's side: whatever the wire holds, a checked
message or ``InvalidMessage`` (the message is dropped, the stream kept), never another exception.

Another exception escaped the stream's reader task: the stream stayed open but nothing more of
it was read or acked.  Timestamps out of protobuf's range did exactly that (ValueError from
``Timestamp.ToDatetime``) until 2026-12-08.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.service import convert
from aggregator.service.bounds import InvalidMessage
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import flexibility_pb2 as fx
from vpp.v1 import telemetry_pb2 as tm

DECODERS = {
    "hello": lambda m: convert.hello_from_proto(m.hello),
    "telemetry": lambda m: convert.telemetry_from_proto(m.telemetry, []),
    "flexibility_update": lambda m: convert.flexibility_from_proto(m.flexibility_update),
    "plan_status": lambda m: convert.plan_status_from_proto(m.plan_status),
}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(sorted(DECODERS)))
def test_decoding_anything_raises_only_invalid_message(data: bytes, kind: str) -> None:
    msg = fs.ConnectRequest()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        return
    try:
        DECODERS[kind](msg)
    except InvalidMessage:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(-2**63, 2**63 - 1), st.integers(-2**31, 2**31 - 1))
def test_timestamps_anywhere_are_times_or_refusals(seconds: int, nanos: int) -> None:
    ts = Timestamp(seconds=seconds, nanos=nanos)
    try:
        expected = ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        with pytest.raises(InvalidMessage, match="telemetry.measured_at"):
            convert.timestamp(ts, "telemetry.measured_at")
        return
    got = convert.timestamp(ts, "telemetry.measured_at")
    assert got == expected and got.tzinfo is not None and got.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize("where", ["sample", "measurement", "resource"])
@pytest.mark.parametrize("seconds", [2**62, -2**62, 253_402_300_800, -62_135_596_801])
def test_telemetry_with_a_time_out_of_range_is_refused_naming_the_field(where: str, seconds: int) -> None:
    now = int(datetime.now(UTC).timestamp())
    t = tm.Telemetry()
    t.measured_at.seconds = now
    t.grid_power_w.value, t.grid_power_w.validity = 100.0, tm.VALIDITY_VALID
    t.grid_power_w.measured_at.seconds = now
    r = t.resources.add(resource_id="bat")
    r.power_w.value, r.power_w.validity = 10.0, tm.VALIDITY_VALID
    r.power_w.measured_at.seconds = now
    target = {"sample": t.measured_at, "measurement": t.grid_power_w.measured_at,
              "resource": r.power_w.measured_at}[where]
    target.seconds = seconds
    field = {"sample": "telemetry.measured_at", "measurement": "telemetry.grid_power_w.measured_at",
             "resource": "telemetry.resources[0].power_w.measured_at"}[where]
    with pytest.raises(InvalidMessage) as err:
        convert.telemetry_from_proto(t, [])
    assert err.value.field == field


def test_flexibility_and_plan_status_times_out_of_range_are_refused() -> None:
    f = fx.FlexibilityUpdate()
    f.valid_from.seconds = 2**62
    with pytest.raises(InvalidMessage, match="flexibility.valid_from"):
        convert.flexibility_from_proto(f)
    s = fs.PlanStatus(plan_id="p", version=1, state=fs.PLAN_STATE_ACCEPTED)
    s.at.seconds = -2**62
    with pytest.raises(InvalidMessage, match="plan_status.at"):
        convert.plan_status_from_proto(s)
