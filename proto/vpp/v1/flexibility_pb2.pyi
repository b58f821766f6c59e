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

class PebcConsequence(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PEBC_CONSEQUENCE_UNSPECIFIED: _ClassVar[PebcConsequence]
    PEBC_CONSEQUENCE_VANISH: _ClassVar[PebcConsequence]
    PEBC_CONSEQUENCE_DEFER: _ClassVar[PebcConsequence]

class PpbcRunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PPBC_RUN_STATE_UNSPECIFIED: _ClassVar[PpbcRunState]
    PPBC_RUN_STATE_WAITING: _ClassVar[PpbcRunState]
    PPBC_RUN_STATE_SCHEDULED: _ClassVar[PpbcRunState]
    PPBC_RUN_STATE_RUNNING: _ClassVar[PpbcRunState]
    PPBC_RUN_STATE_DONE: _ClassVar[PpbcRunState]
PEBC_CONSEQUENCE_UNSPECIFIED: PebcConsequence
PEBC_CONSEQUENCE_VANISH: PebcConsequence
PEBC_CONSEQUENCE_DEFER: PebcConsequence
PPBC_RUN_STATE_UNSPECIFIED: PpbcRunState
PPBC_RUN_STATE_WAITING: PpbcRunState
PPBC_RUN_STATE_SCHEDULED: PpbcRunState
PPBC_RUN_STATE_RUNNING: PpbcRunState
PPBC_RUN_STATE_DONE: PpbcRunState

class FlexibilityUpdate(_message.Message):
    __slots__ = ("valid_from", "resources", "load_forecast", "pv_forecast", "pv_clear_sky_forecast")
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    LOAD_FORECAST_FIELD_NUMBER: _ClassVar[int]
    PV_FORECAST_FIELD_NUMBER: _ClassVar[int]
    PV_CLEAR_SKY_FORECAST_FIELD_NUMBER: _ClassVar[int]
    valid_from: _timestamp_pb2.Timestamp
    resources: _containers.RepeatedCompositeFieldContainer[ResourceFlexibility]
    load_forecast: PowerForecast
    pv_forecast: PowerForecast
    pv_clear_sky_forecast: PowerForecast
    def __init__(self, valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resources: _Optional[_Iterable[_Union[ResourceFlexibility, _Mapping]]] = ..., load_forecast: _Optional[_Union[PowerForecast, _Mapping]] = ..., pv_forecast: _Optional[_Union[PowerForecast, _Mapping]] = ..., pv_clear_sky_forecast: _Optional[_Union[PowerForecast, _Mapping]] = ...) -> None: ...

class PowerForecast(_message.Message):
    __slots__ = ("start", "slot_duration", "values_w")
    START_FIELD_NUMBER: _ClassVar[int]
    SLOT_DURATION_FIELD_NUMBER: _ClassVar[int]
    VALUES_W_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    slot_duration: _duration_pb2.Duration
    values_w: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., slot_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., values_w: _Optional[_Iterable[float]] = ...) -> None: ...

class ResourceFlexibility(_message.Message):
    __slots__ = ("resource_id", "frbc", "pebc", "ombc", "ppbc")
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    FRBC_FIELD_NUMBER: _ClassVar[int]
    PEBC_FIELD_NUMBER: _ClassVar[int]
    OMBC_FIELD_NUMBER: _ClassVar[int]
    PPBC_FIELD_NUMBER: _ClassVar[int]
    resource_id: str
    frbc: FrbcStorageDescription
    pebc: PebcPowerEnvelopeDescription
    ombc: OmbcDescription
    ppbc: PpbcDescription
    def __init__(self, resource_id: _Optional[str] = ..., frbc: _Optional[_Union[FrbcStorageDescription, _Mapping]] = ..., pebc: _Optional[_Union[PebcPowerEnvelopeDescription, _Mapping]] = ..., ombc: _Optional[_Union[OmbcDescription, _Mapping]] = ..., ppbc: _Optional[_Union[PpbcDescription, _Mapping]] = ...) -> None: ...

class FrbcStorageDescription(_message.Message):
    __slots__ = ("soc_pct", "soc_min_pct", "soc_max_pct", "reserve_soc_pct", "capacity_wh", "operation_modes", "charge_efficiency", "discharge_efficiency")
    SOC_PCT_FIELD_NUMBER: _ClassVar[int]
    SOC_MIN_PCT_FIELD_NUMBER: _ClassVar[int]
    SOC_MAX_PCT_FIELD_NUMBER: _ClassVar[int]
    RESERVE_SOC_PCT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_WH_FIELD_NUMBER: _ClassVar[int]
    OPERATION_MODES_FIELD_NUMBER: _ClassVar[int]
    CHARGE_EFFICIENCY_FIELD_NUMBER: _ClassVar[int]
    DISCHARGE_EFFICIENCY_FIELD_NUMBER: _ClassVar[int]
    soc_pct: float
    soc_min_pct: float
    soc_max_pct: float
    reserve_soc_pct: float
    capacity_wh: float
    operation_modes: _containers.RepeatedCompositeFieldContainer[FrbcOperationMode]
    charge_efficiency: float
    discharge_efficiency: float
    def __init__(self, soc_pct: _Optional[float] = ..., soc_min_pct: _Optional[float] = ..., soc_max_pct: _Optional[float] = ..., reserve_soc_pct: _Optional[float] = ..., capacity_wh: _Optional[float] = ..., operation_modes: _Optional[_Iterable[_Union[FrbcOperationMode, _Mapping]]] = ..., charge_efficiency: _Optional[float] = ..., discharge_efficiency: _Optional[float] = ...) -> None: ...

class FrbcOperationMode(_message.Message):
    __slots__ = ("id", "power_min_w", "power_max_w")
    ID_FIELD_NUMBER: _ClassVar[int]
    POWER_MIN_W_FIELD_NUMBER: _ClassVar[int]
    POWER_MAX_W_FIELD_NUMBER: _ClassVar[int]
    id: str
    power_min_w: float
    power_max_w: float
    def __init__(self, id: _Optional[str] = ..., power_min_w: _Optional[float] = ..., power_max_w: _Optional[float] = ...) -> None: ...

class PebcPowerEnvelopeDescription(_message.Message):
    __slots__ = ("present_power_w", "lower_limit_min_w", "lower_limit_max_w", "consequence")
    PRESENT_POWER_W_FIELD_NUMBER: _ClassVar[int]
    LOWER_LIMIT_MIN_W_FIELD_NUMBER: _ClassVar[int]
    LOWER_LIMIT_MAX_W_FIELD_NUMBER: _ClassVar[int]
    CONSEQUENCE_FIELD_NUMBER: _ClassVar[int]
    present_power_w: float
    lower_limit_min_w: float
    lower_limit_max_w: float
    consequence: PebcConsequence
    def __init__(self, present_power_w: _Optional[float] = ..., lower_limit_min_w: _Optional[float] = ..., lower_limit_max_w: _Optional[float] = ..., consequence: _Optional[_Union[PebcConsequence, str]] = ...) -> None: ...

class OmbcDescription(_message.Message):
    __slots__ = ("operation_modes", "active_mode_id", "active_since", "min_mode_duration", "max_reduced_duration")
    OPERATION_MODES_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_MODE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SINCE_FIELD_NUMBER: _ClassVar[int]
    MIN_MODE_DURATION_FIELD_NUMBER: _ClassVar[int]
    MAX_REDUCED_DURATION_FIELD_NUMBER: _ClassVar[int]
    operation_modes: _containers.RepeatedCompositeFieldContainer[OmbcOperationMode]
    active_mode_id: str
    active_since: _timestamp_pb2.Timestamp
    min_mode_duration: _duration_pb2.Duration
    max_reduced_duration: _duration_pb2.Duration
    def __init__(self, operation_modes: _Optional[_Iterable[_Union[OmbcOperationMode, _Mapping]]] = ..., active_mode_id: _Optional[str] = ..., active_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., min_mode_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_reduced_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class OmbcOperationMode(_message.Message):
    __slots__ = ("id", "power_w")
    ID_FIELD_NUMBER: _ClassVar[int]
    POWER_W_FIELD_NUMBER: _ClassVar[int]
    id: str
    power_w: float
    def __init__(self, id: _Optional[str] = ..., power_w: _Optional[float] = ...) -> None: ...

class PpbcDescription(_message.Message):
    __slots__ = ("elements", "earliest_start", "latest_end", "state", "start")
    ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    EARLIEST_START_FIELD_NUMBER: _ClassVar[int]
    LATEST_END_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    elements: _containers.RepeatedCompositeFieldContainer[PpbcProfileElement]
    earliest_start: _timestamp_pb2.Timestamp
    latest_end: _timestamp_pb2.Timestamp
    state: PpbcRunState
    start: _timestamp_pb2.Timestamp
    def __init__(self, elements: _Optional[_Iterable[_Union[PpbcProfileElement, _Mapping]]] = ..., earliest_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., latest_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[PpbcRunState, str]] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PpbcProfileElement(_message.Message):
    __slots__ = ("duration", "power_w")
    DURATION_FIELD_NUMBER: _ClassVar[int]
    POWER_W_FIELD_NUMBER: _ClassVar[int]
    duration: _duration_pb2.Duration
    power_w: float
    def __init__(self, duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., power_w: _Optional[float] = ...) -> None: ...
