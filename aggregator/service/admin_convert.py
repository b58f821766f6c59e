"""Protobuf <-> dataclass conversion of the operator's (admin) views: houses, plans and
their states, fleet events.  Operator input is checked here (raises :class:`InvalidMessage`)."""

from __future__ import annotations

import math
from datetime import datetime

from aggregator.service.bounds import InvalidMessage
from aggregator.service.convert import required_datetime
from aggregator.store.base import FleetEventRecord, HouseRecord
from vpp.enums import CONTROL_TYPE, PLAN_STATE, RESOURCE_KIND, VALIDITY
from vpp.timestamps import timestamp as _ts
from vpp.v1 import admin_service_pb2 as adm
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import grid_pb2 as gr
from vpp.v1 import telemetry_pb2 as tm
from vpp_common.messages import DispatchPlan, Measurement, PlanStatus, ResourceInfo, SiteTelemetry


def measurement_to_proto(m: Measurement) -> tm.Measurement:
    msg = tm.Measurement(value=m.value if m.value is not None else 0.0, validity=VALIDITY.to_wire[m.validity])
    if m.measured_at is not None:
        msg.measured_at.CopyFrom(_ts(m.measured_at))
    return msg


def resource_to_proto(r: ResourceInfo) -> fs.Resource:
    return fs.Resource(resource_id=r.resource_id, kind=RESOURCE_KIND.to_wire[r.kind],
                       control_type=CONTROL_TYPE.to_wire[r.control_type], rated_power_w=r.rated_power_w,
                       capacity_wh=r.capacity_wh)


def plan_status_to_proto(s: PlanStatus) -> fs.PlanStatus:
    return fs.PlanStatus(plan_id=s.plan_id, version=s.version, state=PLAN_STATE.to_wire[s.state], reason=s.reason,
                         at=_ts(s.at))


def house_summary(record: HouseRecord, route: str | None, plan: DispatchPlan | None, status: PlanStatus | None,
                  telemetry: SiteTelemetry | None) -> adm.HouseSummary:
    limits = record.hello.limits
    msg = adm.HouseSummary(
        house_id=record.house_id, replica_id=route or "", agent_version=record.hello.agent_version,
        limits=gr.SiteLimits(max_import_w=limits.max_import_w, max_export_w=limits.max_export_w),
        first_seen=_ts(record.first_seen), last_hello=_ts(record.last_hello),
        plan_version=plan.version if plan else 0,
        plan_state=PLAN_STATE.to_wire[status.state] if status else fs.PLAN_STATE_UNSPECIFIED,
        battery_soc_pct=measurement_to_proto(telemetry.battery_soc_pct if telemetry else Measurement.missing()),
        grid_power_w=measurement_to_proto(telemetry.grid_power_w if telemetry else Measurement.missing()),
    )
    return msg


MAX_FLEET_W = 1e10  # 10 GW: a cap on a whole fleet; beyond it a number only upsets the LP
_DIRECTIONS = {adm.FLEET_EVENT_DIRECTION_EXPORT: "export", adm.FLEET_EVENT_DIRECTION_IMPORT: "import"}


def fleet_event_from_proto(msg: adm.FleetEvent, event_id: str, created_at: datetime) -> FleetEventRecord:
    """An operator's event, checked: raises InvalidMessage naming every problem."""
    problems = []
    direction = _DIRECTIONS.get(msg.direction)
    if direction is None:
        problems.append("direction must be FLEET_EVENT_DIRECTION_EXPORT or FLEET_EVENT_DIRECTION_IMPORT")
    start = end = None
    try:
        start = required_datetime(msg.start_time, "start_time")
    except InvalidMessage as exc:
        problems.append(str(exc))
    try:
        end = required_datetime(msg.end_time, "end_time")
    except InvalidMessage as exc:
        problems.append(str(exc))
    if start is not None and end is not None and end <= start:
        problems.append("end_time must be after start_time")
    which = msg.WhichOneof("limit")
    max_w = msg.max_power_w if which == "max_power_w" else None
    reduce_w = msg.reduce_by_w if which == "reduce_by_w" else None
    if which is None:
        problems.append("one of max_power_w and reduce_by_w is required")
    elif not (math.isfinite(value := float(max_w if max_w is not None else reduce_w or 0.0))
              and 0.0 <= value <= MAX_FLEET_W):
        problems.append(f"{which} must be a finite number of W in [0, {MAX_FLEET_W:g}] (got {value!r})")
    if problems:
        raise InvalidMessage("; ".join(problems))
    assert direction is not None and start is not None and end is not None
    return FleetEventRecord(event_id, direction, start, end, max_w=max_w, reduce_by_w=reduce_w,
                            reason=msg.reason, created_at=created_at)


def fleet_event_to_proto(e: FleetEventRecord) -> adm.FleetEvent:
    msg = adm.FleetEvent(event_id=e.event_id, reason=e.reason,
                         direction=adm.FLEET_EVENT_DIRECTION_IMPORT if e.direction == "import"
                         else adm.FLEET_EVENT_DIRECTION_EXPORT)
    msg.start_time.CopyFrom(_ts(e.start))
    msg.end_time.CopyFrom(_ts(e.end))
    if e.max_w is not None:
        msg.max_power_w = e.max_w
    else:
        msg.reduce_by_w = e.reduce_by_w or 0.0
    if e.created_at is not None:
        msg.created_at.CopyFrom(_ts(e.created_at))
    return msg
