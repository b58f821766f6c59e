"""Each enum of the wire contract paired with its domain enum, once: one table per enum, read
in both directions by the agent's and the aggregator's converters."""

from __future__ import annotations

from enum import Enum
from typing import Generic, TypeVar

from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import flexibility_pb2 as fx
from vpp.v1 import plan_pb2 as pl
from vpp.v1 import telemetry_pb2 as tm
from vpp_common.messages import (
    ControlType,
    FallbackMode,
    PlanState,
    ResourceKind,
    RunState,
    Validity,
)

E = TypeVar("E", bound=Enum)


class EnumTable(Generic[E]):
    """Domain enum <-> wire enum value.  A wire value missing from ``from_wire`` (UNSPECIFIED,
    or one newer than this code) is the caller's to refuse or default."""

    __slots__ = ("from_wire", "to_wire")

    def __init__(self, pairs: dict[E, int]) -> None:
        self.to_wire: dict[E, int] = pairs
        self.from_wire: dict[int, E] = {wire: domain for domain, wire in pairs.items()}


RESOURCE_KIND = EnumTable({
    ResourceKind.BATTERY: fs.RESOURCE_KIND_BATTERY,
    ResourceKind.PV: fs.RESOURCE_KIND_PV,
    ResourceKind.GRID_METER: fs.RESOURCE_KIND_GRID_METER,
    ResourceKind.EV_CHARGER: fs.RESOURCE_KIND_EV_CHARGER,
})
CONTROL_TYPE = EnumTable({
    ControlType.NOT_CONTROLLABLE: fs.CONTROL_TYPE_NOT_CONTROLLABLE,
    ControlType.FRBC: fs.CONTROL_TYPE_FRBC,
    ControlType.PEBC: fs.CONTROL_TYPE_PEBC,
    ControlType.PPBC: fs.CONTROL_TYPE_PPBC,
    ControlType.OMBC: fs.CONTROL_TYPE_OMBC,
    ControlType.DDBC: fs.CONTROL_TYPE_DDBC,
})
VALIDITY = EnumTable({
    Validity.VALID: tm.VALIDITY_VALID,
    Validity.STALE: tm.VALIDITY_STALE,
    Validity.MISSING: tm.VALIDITY_MISSING,
    Validity.IMPLAUSIBLE: tm.VALIDITY_IMPLAUSIBLE,
})
PLAN_STATE = EnumTable({
    PlanState.ACCEPTED: fs.PLAN_STATE_ACCEPTED,
    PlanState.REJECTED: fs.PLAN_STATE_REJECTED,
    PlanState.ACTIVE: fs.PLAN_STATE_ACTIVE,
    PlanState.EXPIRED: fs.PLAN_STATE_EXPIRED,
})
FALLBACK = EnumTable({
    FallbackMode.SELF_CONSUMPTION: pl.FALLBACK_MODE_SELF_CONSUMPTION,
    FallbackMode.IDLE: pl.FALLBACK_MODE_IDLE,
})
RUN_STATE = EnumTable({
    RunState.WAITING: fx.PPBC_RUN_STATE_WAITING,
    RunState.SCHEDULED: fx.PPBC_RUN_STATE_SCHEDULED,
    RunState.RUNNING: fx.PPBC_RUN_STATE_RUNNING,
    RunState.DONE: fx.PPBC_RUN_STATE_DONE,
})
