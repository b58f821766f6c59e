import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FallbackMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FALLBACK_MODE_UNSPECIFIED: _ClassVar[FallbackMode]
    FALLBACK_MODE_SELF_CONSUMPTION: _ClassVar[FallbackMode]
    FALLBACK_MODE_IDLE: _ClassVar[FallbackMode]
FALLBACK_MODE_UNSPECIFIED: FallbackMode
FALLBACK_MODE_SELF_CONSUMPTION: FallbackMode
FALLBACK_MODE_IDLE: FallbackMode

class DispatchPlan(_message.Message):
    __slots__ = ("plan_id", "version", "created_at", "valid_from", "valid_until", "slot_duration", "slots", "fallback", "run_starts")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    SLOT_DURATION_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    RUN_STARTS_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    version: int
    created_at: _timestamp_pb2.Timestamp
    valid_from: _timestamp_pb2.Timestamp
    valid_until: _timestamp_pb2.Timestamp
    slot_duration: _duration_pb2.Duration
    slots: _containers.RepeatedCompositeFieldContainer[PlanSlot]
    fallback: Fallback
    run_starts: _containers.RepeatedCompositeFieldContainer[RunStart]
    def __init__(self, plan_id: _Optional[str] = ..., version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., slot_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., slots: _Optional[_Iterable[_Union[PlanSlot, _Mapping]]] = ..., fallback: _Optional[_Union[Fallback, _Mapping]] = ..., run_starts: _Optional[_Iterable[_Union[RunStart, _Mapping]]] = ...) -> None: ...

class RunStart(_message.Message):
    __slots__ = ("resource_id", "start")
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    resource_id: str
    start: _timestamp_pb2.Timestamp
    def __init__(self, resource_id: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PlanSlot(_message.Message):
    __slots__ = ("start", "setpoints", "grid_envelope", "reason")
    START_FIELD_NUMBER: _ClassVar[int]
    SETPOINTS_FIELD_NUMBER: _ClassVar[int]
    GRID_ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    setpoints: _containers.RepeatedCompositeFieldContainer[ResourceSetpoint]
    grid_envelope: PowerEnvelope
    reason: str
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., setpoints: _Optional[_Iterable[_Union[ResourceSetpoint, _Mapping]]] = ..., grid_envelope: _Optional[_Union[PowerEnvelope, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ResourceSetpoint(_message.Message):
    __slots__ = ("resource_id", "target_power_w", "envelope")
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_POWER_W_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    resource_id: str
    target_power_w: float
    envelope: PowerEnvelope
    def __init__(self, resource_id: _Optional[str] = ..., target_power_w: _Optional[float] = ..., envelope: _Optional[_Union[PowerEnvelope, _Mapping]] = ...) -> None: ...

class PowerEnvelope(_message.Message):
    __slots__ = ("min_w", "max_w")
    MIN_W_FIELD_NUMBER: _ClassVar[int]
    MAX_W_FIELD_NUMBER: _ClassVar[int]
    min_w: float
    max_w: float
    def __init__(self, min_w: _Optional[float] = ..., max_w: _Optional[float] = ...) -> None: ...

class Fallback(_message.Message):
    __slots__ = ("mode", "max_export_w")
    MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_EXPORT_W_FIELD_NUMBER: _ClassVar[int]
    mode: FallbackMode
    max_export_w: float
    def __init__(self, mode: _Optional[_Union[FallbackMode, str]] = ..., max_export_w: _Optional[float] = ...) -> None: ...
