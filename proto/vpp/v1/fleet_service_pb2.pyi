import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
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

class ResourceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOURCE_KIND_UNSPECIFIED: _ClassVar[ResourceKind]
    RESOURCE_KIND_BATTERY: _ClassVar[ResourceKind]
    RESOURCE_KIND_PV: _ClassVar[ResourceKind]
    RESOURCE_KIND_GRID_METER: _ClassVar[ResourceKind]
    RESOURCE_KIND_EV_CHARGER: _ClassVar[ResourceKind]

class ControlType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTROL_TYPE_UNSPECIFIED: _ClassVar[ControlType]
    CONTROL_TYPE_NOT_CONTROLLABLE: _ClassVar[ControlType]
    CONTROL_TYPE_FRBC: _ClassVar[ControlType]
    CONTROL_TYPE_PEBC: _ClassVar[ControlType]
    CONTROL_TYPE_PPBC: _ClassVar[ControlType]
    CONTROL_TYPE_OMBC: _ClassVar[ControlType]
    CONTROL_TYPE_DDBC: _ClassVar[ControlType]

class PlanState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLAN_STATE_UNSPECIFIED: _ClassVar[PlanState]
    PLAN_STATE_ACCEPTED: _ClassVar[PlanState]
    PLAN_STATE_REJECTED: _ClassVar[PlanState]
    PLAN_STATE_ACTIVE: _ClassVar[PlanState]
    PLAN_STATE_EXPIRED: _ClassVar[PlanState]
RESOURCE_KIND_UNSPECIFIED: ResourceKind
RESOURCE_KIND_BATTERY: ResourceKind
RESOURCE_KIND_PV: ResourceKind
RESOURCE_KIND_GRID_METER: ResourceKind
RESOURCE_KIND_EV_CHARGER: ResourceKind
CONTROL_TYPE_UNSPECIFIED: ControlType
CONTROL_TYPE_NOT_CONTROLLABLE: ControlType
CONTROL_TYPE_FRBC: ControlType
CONTROL_TYPE_PEBC: ControlType
CONTROL_TYPE_PPBC: ControlType
CONTROL_TYPE_OMBC: ControlType
CONTROL_TYPE_DDBC: ControlType
PLAN_STATE_UNSPECIFIED: PlanState
PLAN_STATE_ACCEPTED: PlanState
PLAN_STATE_REJECTED: PlanState
PLAN_STATE_ACTIVE: PlanState
PLAN_STATE_EXPIRED: PlanState

class ConnectRequest(_message.Message):
    __slots__ = ("sequence", "hello", "telemetry", "flexibility_update", "plan_status", "heartbeat")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    FLEXIBILITY_UPDATE_FIELD_NUMBER: _ClassVar[int]
    PLAN_STATUS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    hello: Hello
    telemetry: _telemetry_pb2.Telemetry
    flexibility_update: _flexibility_pb2.FlexibilityUpdate
    plan_status: PlanStatus
    heartbeat: Heartbeat
    def __init__(self, sequence: _Optional[int] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ..., telemetry: _Optional[_Union[_telemetry_pb2.Telemetry, _Mapping]] = ..., flexibility_update: _Optional[_Union[_flexibility_pb2.FlexibilityUpdate, _Mapping]] = ..., plan_status: _Optional[_Union[PlanStatus, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("sequence", "welcome", "dispatch_plan", "grid_signal", "drain", "telemetry_ack")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_PLAN_FIELD_NUMBER: _ClassVar[int]
    GRID_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_ACK_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    welcome: Welcome
    dispatch_plan: _plan_pb2.DispatchPlan
    grid_signal: _grid_pb2.GridSignal
    drain: Drain
    telemetry_ack: TelemetryAck
    def __init__(self, sequence: _Optional[int] = ..., welcome: _Optional[_Union[Welcome, _Mapping]] = ..., dispatch_plan: _Optional[_Union[_plan_pb2.DispatchPlan, _Mapping]] = ..., grid_signal: _Optional[_Union[_grid_pb2.GridSignal, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., telemetry_ack: _Optional[_Union[TelemetryAck, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("agent_version", "limits", "resources", "last_plan_id", "last_plan_version", "claimed_house_id")
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    LAST_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_HOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    agent_version: str
    limits: _grid_pb2.SiteLimits
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    last_plan_id: str
    last_plan_version: int
    claimed_house_id: str
    def __init__(self, agent_version: _Optional[str] = ..., limits: _Optional[_Union[_grid_pb2.SiteLimits, _Mapping]] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., last_plan_id: _Optional[str] = ..., last_plan_version: _Optional[int] = ..., claimed_house_id: _Optional[str] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("resource_id", "kind", "control_type", "rated_power_w", "capacity_wh")
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONTROL_TYPE_FIELD_NUMBER: _ClassVar[int]
    RATED_POWER_W_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_WH_FIELD_NUMBER: _ClassVar[int]
    resource_id: str
    kind: ResourceKind
    control_type: ControlType
    rated_power_w: float
    capacity_wh: float
    def __init__(self, resource_id: _Optional[str] = ..., kind: _Optional[_Union[ResourceKind, str]] = ..., control_type: _Optional[_Union[ControlType, str]] = ..., rated_power_w: _Optional[float] = ..., capacity_wh: _Optional[float] = ...) -> None: ...

class PlanStatus(_message.Message):
    __slots__ = ("plan_id", "version", "state", "reason", "at")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    version: int
    state: PlanState
    reason: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, plan_id: _Optional[str] = ..., version: _Optional[int] = ..., state: _Optional[_Union[PlanState, str]] = ..., reason: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("sent_at",)
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    sent_at: _timestamp_pb2.Timestamp
    def __init__(self, sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("house_id", "telemetry_interval", "heartbeat_interval", "replica_id", "telemetry_acks")
    HOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_ACKS_FIELD_NUMBER: _ClassVar[int]
    house_id: str
    telemetry_interval: _duration_pb2.Duration
    heartbeat_interval: _duration_pb2.Duration
    replica_id: str
    telemetry_acks: bool
    def __init__(self, house_id: _Optional[str] = ..., telemetry_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., replica_id: _Optional[str] = ..., telemetry_acks: _Optional[bool] = ...) -> None: ...

class TelemetryAck(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ("reason", "reconnect_after")
    REASON_FIELD_NUMBER: _ClassVar[int]
    RECONNECT_AFTER_FIELD_NUMBER: _ClassVar[int]
    reason: str
    reconnect_after: _duration_pb2.Duration
    def __init__(self, reason: _Optional[str] = ..., reconnect_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
