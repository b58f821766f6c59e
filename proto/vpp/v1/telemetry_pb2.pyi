import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Validity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VALIDITY_UNSPECIFIED: _ClassVar[Validity]
    VALIDITY_VALID: _ClassVar[Validity]
    VALIDITY_STALE: _ClassVar[Validity]
    VALIDITY_MISSING: _ClassVar[Validity]
    VALIDITY_IMPLAUSIBLE: _ClassVar[Validity]
VALIDITY_UNSPECIFIED: Validity
VALIDITY_VALID: Validity
VALIDITY_STALE: Validity
VALIDITY_MISSING: Validity
VALIDITY_IMPLAUSIBLE: Validity

class Measurement(_message.Message):
    __slots__ = ("value", "validity", "measured_at")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_FIELD_NUMBER: _ClassVar[int]
    MEASURED_AT_FIELD_NUMBER: _ClassVar[int]
    value: float
    validity: Validity
    measured_at: _timestamp_pb2.Timestamp
    def __init__(self, value: _Optional[float] = ..., validity: _Optional[_Union[Validity, str]] = ..., measured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Telemetry(_message.Message):
    __slots__ = ("measured_at", "grid_power_w", "pv_power_w", "battery_power_w", "battery_soc_pct", "load_power_w", "resources")
    MEASURED_AT_FIELD_NUMBER: _ClassVar[int]
    GRID_POWER_W_FIELD_NUMBER: _ClassVar[int]
    PV_POWER_W_FIELD_NUMBER: _ClassVar[int]
    BATTERY_POWER_W_FIELD_NUMBER: _ClassVar[int]
    BATTERY_SOC_PCT_FIELD_NUMBER: _ClassVar[int]
    LOAD_POWER_W_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    measured_at: _timestamp_pb2.Timestamp
    grid_power_w: Measurement
    pv_power_w: Measurement
    battery_power_w: Measurement
    battery_soc_pct: Measurement
    load_power_w: Measurement
    resources: _containers.RepeatedCompositeFieldContainer[ResourceMeasurement]
    def __init__(self, measured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., grid_power_w: _Optional[_Union[Measurement, _Mapping]] = ..., pv_power_w: _Optional[_Union[Measurement, _Mapping]] = ..., battery_power_w: _Optional[_Union[Measurement, _Mapping]] = ..., battery_soc_pct: _Optional[_Union[Measurement, _Mapping]] = ..., load_power_w: _Optional[_Union[Measurement, _Mapping]] = ..., resources: _Optional[_Iterable[_Union[ResourceMeasurement, _Mapping]]] = ...) -> None: ...

class ResourceMeasurement(_message.Message):
    __slots__ = ("resource_id", "power_w", "soc_pct")
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    POWER_W_FIELD_NUMBER: _ClassVar[int]
    SOC_PCT_FIELD_NUMBER: _ClassVar[int]
    resource_id: str
    power_w: Measurement
    soc_pct: Measurement
    def __init__(self, resource_id: _Optional[str] = ..., power_w: _Optional[_Union[Measurement, _Mapping]] = ..., soc_pct: _Optional[_Union[Measurement, _Mapping]] = ...) -> None: ...
