"""Datetimes and durations on the wire (google.protobuf Timestamp and Duration), shared by the
agent's and the aggregator's converters."""

from __future__ import annotations

from datetime import datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(dt: datetime) -> Timestamp:
    """``dt`` (timezone-aware) as a Timestamp, to the microsecond.  From the POSIX time:
    ``Timestamp.FromDatetime`` was a third of encoding a plan (thousands per cycle)."""
    us = round(dt.timestamp() * 1_000_000)
    return Timestamp(seconds=us // 1_000_000, nanos=us % 1_000_000 * 1000)


def duration(seconds: float) -> Duration:
    d = Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d
