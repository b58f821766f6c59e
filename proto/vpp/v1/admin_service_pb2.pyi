import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from vpp.v1 import fleet_service_pb2 as _fleet_service_pb2
from vpp.v1 import flexibility_pb2 as _flexibility_pb2
from vpp.v1 import grid_pb2 as _grid_pb2
from vpp.v1 import plan_pb2 as _plan_pb2
from vpp.v1 import telemetry_pb2 as _telemetry_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FleetEventDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLEET_EVENT_DIRECTION_UNSPECIFIED: _ClassVar[FleetEventDirection]
    FLEET_EVENT_DIRECTION_EXPORT: _ClassVar[FleetEventDirection]
    FLEET_EVENT_DIRECTION_IMPORT: _ClassVar[FleetEventDirection]
FLEET_EVENT_DIRECTION_UNSPECIFIED: FleetEventDirection
FLEET_EVENT_DIRECTION_EXPORT: FleetEventDirection
FLEET_EVENT_DIRECTION_IMPORT: FleetEventDirection

class FleetEvent(_message.Message):
    __slots__ = ("event_id", "direction", "start_time", "end_time", "max_power_w", "reduce_by_w", "reason", "created_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_POWER_W_FIELD_NUMBER: _ClassVar[int]
    REDUCE_BY_W_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    direction: FleetEventDirection
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    max_power_w: float
    reduce_by_w: float
    reason: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., direction: _Optional[_Union[FleetEventDirection, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_power_w: _Optional[float] = ..., reduce_by_w: _Optional[float] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetFleetEventRequest(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: FleetEvent
    def __init__(self, event: _Optional[_Union[FleetEvent, _Mapping]] = ...) -> None: ...

class SetFleetEventResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: FleetEvent
    def __init__(self, event: _Optional[_Union[FleetEvent, _Mapping]] = ...) -> None: ...

class ListFleetEventsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFleetEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[FleetEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[FleetEvent, _Mapping]]] = ...) -> None: ...

class ClearFleetEventRequest(_message.Message):
    __slots__ = ("event_id",)
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    def __init__(self, event_id: _Optional[str] = ...) -> None: ...

class ClearFleetEventResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetSiteLimitsRequest(_message.Message):
    __slots__ = ("house_id", "limits", "duration", "reason")
    HOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    house_id: str
    limits: _grid_pb2.SiteLimits
    duration: _duration_pb2.Duration
    reason: str
    def __init__(self, house_id: _Optional[str] = ..., limits: _Optional[_Union[_grid_pb2.SiteLimits, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class SetSiteLimitsResponse(_message.Message):
    __slots__ = ("valid_until",)
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    valid_until: _timestamp_pb2.Timestamp
    def __init__(self, valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListHousesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListHousesResponse(_message.Message):
    __slots__ = ("houses",)
    HOUSES_FIELD_NUMBER: _ClassVar[int]
    houses: _containers.RepeatedCompositeFieldContainer[HouseSummary]
    def __init__(self, houses: _Optional[_Iterable[_Union[HouseSummary, _Mapping]]] = ...) -> None: ...

class HouseSummary(_message.Message):
    __slots__ = ("house_id", "replica_id", "agent_version", "limits", "first_seen", "last_hello", "plan_version", "plan_state", "battery_soc_pct", "grid_power_w")
    HOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_HELLO_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLAN_STATE_FIELD_NUMBER: _ClassVar[int]
    BATTERY_SOC_PCT_FIELD_NUMBER: _ClassVar[int]
    GRID_POWER_W_FIELD_NUMBER: _ClassVar[int]
    house_id: str
    replica_id: str
    agent_version: str
    limits: _grid_pb2.SiteLimits
    first_seen: _timestamp_pb2.Timestamp
    last_hello: _timestamp_pb2.Timestamp
    plan_version: int
    plan_state: _fleet_service_pb2.PlanState
    battery_soc_pct: _telemetry_pb2.Measurement
    grid_power_w: _telemetry_pb2.Measurement
    def __init__(self, house_id: _Optional[str] = ..., replica_id: _Optional[str] = ..., agent_version: _Optional[str] = ..., limits: _Optional[_Union[_grid_pb2.SiteLimits, _Mapping]] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_hello: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., plan_version: _Optional[int] = ..., plan_state: _Optional[_Union[_fleet_service_pb2.PlanState, str]] = ..., battery_soc_pct: _Optional[_Union[_telemetry_pb2.Measurement, _Mapping]] = ..., grid_power_w: _Optional[_Union[_telemetry_pb2.Measurement, _Mapping]] = ...) -> None: ...

class GetHouseRequest(_message.Message):
    __slots__ = ("house_id",)
    HOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    house_id: str
    def __init__(self, house_id: _Optional[str] = ...) -> None: ...

class GetHouseResponse(_message.Message):
    __slots__ = ("house", "resources", "battery_power_w", "pv_power_w", "load_power_w", "measured_at", "flexible_loads")
    HOUSE_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    BATTERY_POWER_W_FIELD_NUMBER: _ClassVar[int]
    PV_POWER_W_FIELD_NUMBER: _ClassVar[int]
    LOAD_POWER_W_FIELD_NUMBER: _ClassVar[int]
    MEASURED_AT_FIELD_NUMBER: _ClassVar[int]
    FLEXIBLE_LOADS_FIELD_NUMBER: _ClassVar[int]
    house: HouseSummary
    resources: _containers.RepeatedCompositeFieldContainer[_fleet_service_pb2.Resource]
    battery_power_w: _telemetry_pb2.Measurement
    pv_power_w: _telemetry_pb2.Measurement
    load_power_w: _telemetry_pb2.Measurement
    measured_at: _timestamp_pb2.Timestamp
    flexible_loads: _containers.RepeatedCompositeFieldContainer[_flexibility_pb2.ResourceFlexibility]
    def __init__(self, house: _Optional[_Union[HouseSummary, _Mapping]] = ..., resources: _Optional[_Iterable[_Union[_fleet_service_pb2.Resource, _Mapping]]] = ..., battery_power_w: _Optional[_Union[_telemetry_pb2.Measurement, _Mapping]] = ..., pv_power_w: _Optional[_Union[_telemetry_pb2.Measurement, _Mapping]] = ..., load_power_w: _Optional[_Union[_telemetry_pb2.Measurement, _Mapping]] = ..., measured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., flexible_loads: _Optional[_Iterable[_Union[_flexibility_pb2.ResourceFlexibility, _Mapping]]] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("house_id",)
    HOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    house_id: str
    def __init__(self, house_id: _Optional[str] = ...) -> None: ...

class GetPlanResponse(_message.Message):
    __slots__ = ("plan", "status")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    plan: _plan_pb2.DispatchPlan
    status: _fleet_service_pb2.PlanStatus
    def __init__(self, plan: _Optional[_Union[_plan_pb2.DispatchPlan, _Mapping]] = ..., status: _Optional[_Union[_fleet_service_pb2.PlanStatus, _Mapping]] = ...) -> None: ...
