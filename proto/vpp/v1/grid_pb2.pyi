import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SiteLimits(_message.Message):
    __slots__ = ("max_import_w", "max_export_w")
    MAX_IMPORT_W_FIELD_NUMBER: _ClassVar[int]
    MAX_EXPORT_W_FIELD_NUMBER: _ClassVar[int]
    max_import_w: float
    max_export_w: float
    def __init__(self, max_import_w: _Optional[float] = ..., max_export_w: _Optional[float] = ...) -> None: ...

class GridSignal(_message.Message):
    __slots__ = ("issued_at", "currency", "prices", "limits", "limits_valid_until", "limits_are_feeder_envelope")
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    LIMITS_ARE_FEEDER_ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    issued_at: _timestamp_pb2.Timestamp
    currency: str
    prices: _containers.RepeatedCompositeFieldContainer[PriceSlot]
    limits: SiteLimits
    limits_valid_until: _timestamp_pb2.Timestamp
    limits_are_feeder_envelope: bool
    def __init__(self, issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., currency: _Optional[str] = ..., prices: _Optional[_Iterable[_Union[PriceSlot, _Mapping]]] = ..., limits: _Optional[_Union[SiteLimits, _Mapping]] = ..., limits_valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limits_are_feeder_envelope: _Optional[bool] = ...) -> None: ...

class PriceSlot(_message.Message):
    __slots__ = ("start", "duration", "import_price_per_kwh", "export_price_per_kwh")
    START_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    IMPORT_PRICE_PER_KWH_FIELD_NUMBER: _ClassVar[int]
    EXPORT_PRICE_PER_KWH_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    import_price_per_kwh: float
    export_price_per_kwh: float
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., import_price_per_kwh: _Optional[float] = ..., export_price_per_kwh: _Optional[float] = ...) -> None: ...
