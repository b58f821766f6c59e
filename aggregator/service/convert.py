"""Protobuf <-> dataclass conversion on the aggregator side of the wire.

The aggregator decodes what agents send (Hello, Telemetry, FlexibilityUpdate,
PlanStatus) and encodes what it sends (Welcome, DispatchPlan, GridSignal,
Drain).  Generated types stop here: the rest of the aggregator sees only
``vpp_common.messages``.  Malformed input raises :class:`InvalidMessage`.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from aggregator.dispatch.plans import PackedPlans
from aggregator.service import bounds
from aggregator.service.bounds import InvalidMessage
from aggregator.store.base import FleetEventRecord, HouseRecord
from vpp.v1 import admin_service_pb2 as adm
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import flexibility_pb2 as fx
from vpp.v1 import grid_pb2 as gr
from vpp.v1 import plan_pb2 as pl
from vpp.v1 import telemetry_pb2 as tm
from vpp_common.clock import UTC
from vpp_common.messages import (
    ControlType,
    CurtailmentFlexibility,
    DispatchPlan,
    FallbackMode,
    Flexibility,
    GridSignal,
    Hello,
    Measurement,
    PlanState,
    PlanStatus,
    PowerForecast,
    ResourceInfo,
    ResourceKind,
    ResourceTelemetry,
    SiteLimits,
    SiteTelemetry,
    StorageFlexibility,
    Validity,
)
from vpp_common.wire_time import timestamp as _ts

__all__ = ["InvalidMessage"]  # defined in bounds, raised from here too


def _dt(ts: Timestamp, field: str) -> datetime:
    if ts.seconds == 0 and ts.nanos == 0:
        raise InvalidMessage(f"{field} is not set", field)
    return ts.ToDatetime(tzinfo=UTC)


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


_RESOURCE_KIND = {
    fs.RESOURCE_KIND_BATTERY: ResourceKind.BATTERY,
    fs.RESOURCE_KIND_PV: ResourceKind.PV,
    fs.RESOURCE_KIND_GRID_METER: ResourceKind.GRID_METER,
    fs.RESOURCE_KIND_EV_CHARGER: ResourceKind.EV_CHARGER,
}
_CONTROL_TYPE = {
    fs.CONTROL_TYPE_NOT_CONTROLLABLE: ControlType.NOT_CONTROLLABLE,
    fs.CONTROL_TYPE_FRBC: ControlType.FRBC,
    fs.CONTROL_TYPE_PEBC: ControlType.PEBC,
    fs.CONTROL_TYPE_PPBC: ControlType.PPBC,
    fs.CONTROL_TYPE_OMBC: ControlType.OMBC,
    fs.CONTROL_TYPE_DDBC: ControlType.DDBC,
}
_VALIDITY = {
    tm.VALIDITY_VALID: Validity.VALID,
    tm.VALIDITY_STALE: Validity.STALE,
    tm.VALIDITY_MISSING: Validity.MISSING,
    tm.VALIDITY_IMPLAUSIBLE: Validity.IMPLAUSIBLE,
}
_PLAN_STATE = {
    fs.PLAN_STATE_ACCEPTED: PlanState.ACCEPTED,
    fs.PLAN_STATE_REJECTED: PlanState.REJECTED,
    fs.PLAN_STATE_ACTIVE: PlanState.ACTIVE,
    fs.PLAN_STATE_EXPIRED: PlanState.EXPIRED,
}
_FALLBACK = {
    FallbackMode.SELF_CONSUMPTION: pl.FALLBACK_MODE_SELF_CONSUMPTION,
    FallbackMode.IDLE: pl.FALLBACK_MODE_IDLE,
}


def hello_from_proto(msg: fs.Hello) -> Hello:
    bounds.finite(msg.limits.max_import_w, "hello.limits.max_import_w", 0.0, bounds.MAX_POWER_W, lo_open=True)
    bounds.power(msg.limits.max_export_w, "hello.limits.max_export_w", signed=False)
    resources = []
    for i, r in enumerate(msg.resources):
        if not r.resource_id:
            raise InvalidMessage(f"hello.resources[{i}].resource_id is empty", f"hello.resources[{i}].resource_id")
        if r.kind not in _RESOURCE_KIND:
            raise InvalidMessage(f"hello.resources[{i}].kind is unspecified", f"hello.resources[{i}].kind")
        if r.control_type not in _CONTROL_TYPE:
            raise InvalidMessage(f"hello.resources[{i}].control_type is unspecified",
                                 f"hello.resources[{i}].control_type")
        bounds.power(r.rated_power_w, f"hello.resources[{i}].rated_power_w", signed=False)
        bounds.finite(r.capacity_wh, f"hello.resources[{i}].capacity_wh", 0.0, bounds.MAX_CAPACITY_WH)
        resources.append(ResourceInfo(r.resource_id, _RESOURCE_KIND[r.kind], _CONTROL_TYPE[r.control_type],
                                      r.rated_power_w, r.capacity_wh))
    return Hello(
        agent_version=msg.agent_version,
        limits=SiteLimits(msg.limits.max_import_w, msg.limits.max_export_w),
        resources=tuple(resources),
        last_plan_id=msg.last_plan_id,
        last_plan_version=msg.last_plan_version,
        claimed_house_id=msg.claimed_house_id,
    )


def _measurement(msg: tm.Measurement, has: bool, field: str, lo: float, hi: float,
                 refused: list[str] | None) -> Measurement:
    validity = _VALIDITY.get(msg.validity, Validity.MISSING) if has else Validity.MISSING
    if validity is Validity.MISSING:
        return Measurement.missing()
    at = msg.measured_at.ToDatetime(tzinfo=UTC) if msg.HasField("measured_at") else None
    if not (math.isfinite(msg.value) and lo <= msg.value <= hi):
        # never stored as a number: the rest of the sample stays (and is acked), this value
        # is IMPLAUSIBLE without a value, so nothing downstream reads a NaN as measured
        if refused is not None:
            refused.append(field)
        return Measurement(None, Validity.IMPLAUSIBLE, at)
    return Measurement(msg.value, validity, at)


_P, _PCT = (-bounds.MAX_POWER_W, bounds.MAX_POWER_W), (0.0, 100.0)


def telemetry_from_proto(msg: tm.Telemetry, refused: list[str] | None = None) -> SiteTelemetry:
    """``refused`` collects the fields whose value was out of bounds (made IMPLAUSIBLE, no value)."""
    def m(name: str, lo_hi: tuple[float, float] = _P) -> Measurement:
        return _measurement(getattr(msg, name), msg.HasField(name), f"telemetry.{name}", *lo_hi, refused)

    return SiteTelemetry(
        measured_at=_dt(msg.measured_at, "telemetry.measured_at"),
        grid_power_w=m("grid_power_w"),
        pv_power_w=m("pv_power_w"),
        battery_power_w=m("battery_power_w"),
        battery_soc_pct=m("battery_soc_pct", _PCT),
        load_power_w=m("load_power_w"),
        resources=tuple(ResourceTelemetry(
            r.resource_id,
            _measurement(r.power_w, r.HasField("power_w"), f"telemetry.resources[{i}].power_w", *_P, refused),
            _measurement(r.soc_pct, r.HasField("soc_pct"), f"telemetry.resources[{i}].soc_pct", *_PCT, refused))
            for i, r in enumerate(msg.resources)),
    )


def _storage(i: int, resource_id: str, d: fx.FrbcStorageDescription) -> StorageFlexibility:
    """An FRBC storage description, every number checked (bounds)."""
    f = f"flexibility.resources[{i}].frbc"
    soc_min = bounds.pct(d.soc_min_pct, f"{f}.soc_min_pct")
    soc_max = bounds.pct(d.soc_max_pct, f"{f}.soc_max_pct")
    if soc_min > soc_max:
        raise InvalidMessage(f"{f}.soc_min_pct {soc_min:g} is above soc_max_pct {soc_max:g}", f"{f}.soc_min_pct")
    bounds.pct(d.soc_pct, f"{f}.soc_pct")
    bounds.pct(d.reserve_soc_pct, f"{f}.reserve_soc_pct")
    if not (math.isfinite(d.capacity_wh) and d.capacity_wh > 0):
        raise InvalidMessage(f"flexibility {resource_id}: capacity_wh must be > 0 (got {d.capacity_wh!r})",
                             f"{f}.capacity_wh")
    bounds.finite(d.capacity_wh, f"{f}.capacity_wh", 0.0, bounds.MAX_CAPACITY_WH, lo_open=True)
    for j, m in enumerate(d.operation_modes):
        lo = bounds.power(m.power_min_w, f"{f}.operation_modes[{j}].power_min_w")
        hi = bounds.power(m.power_max_w, f"{f}.operation_modes[{j}].power_max_w")
        if lo > hi:
            raise InvalidMessage(f"{f}.operation_modes[{j}]: power_min_w {lo:g} is above power_max_w {hi:g}",
                                 f"{f}.operation_modes[{j}].power_min_w")
    modes = {m.id: m for m in d.operation_modes}
    charge = max((m.power_max_w for m in modes.values()), default=0.0)
    discharge = -min((m.power_min_w for m in modes.values()), default=0.0)
    return StorageFlexibility(
        resource_id=resource_id, soc_pct=d.soc_pct, soc_min_pct=d.soc_min_pct,
        soc_max_pct=d.soc_max_pct, reserve_soc_pct=d.reserve_soc_pct, capacity_wh=d.capacity_wh,
        max_charge_power_w=max(0.0, charge), max_discharge_power_w=max(0.0, discharge),
        charge_efficiency=bounds.efficiency(d.charge_efficiency, f"{f}.charge_efficiency"),
        discharge_efficiency=bounds.efficiency(d.discharge_efficiency, f"{f}.discharge_efficiency"),
    )


def flexibility_from_proto(msg: fx.FlexibilityUpdate) -> Flexibility:
    storages, curtailments = [], []
    for i, r in enumerate(msg.resources):
        kind = r.WhichOneof("description")
        if kind == "frbc":
            storages.append(_storage(i, r.resource_id, r.frbc))
        elif kind == "pebc":
            f = f"flexibility.resources[{i}].pebc"
            bounds.power(r.pebc.present_power_w, f"{f}.present_power_w")
            bounds.power(r.pebc.lower_limit_min_w, f"{f}.lower_limit_min_w")
            bounds.power(r.pebc.lower_limit_max_w, f"{f}.lower_limit_max_w")
            curtailments.append(CurtailmentFlexibility(r.resource_id, r.pebc.present_power_w,
                                                       r.pebc.lower_limit_min_w))
        else:
            raise InvalidMessage(f"flexibility {r.resource_id}: no description", f"flexibility.resources[{i}]")
    def forecast(name: str) -> PowerForecast | None:
        if not msg.HasField(name):
            return None
        fc = getattr(msg, name)
        slot_s = int(fc.slot_duration.ToTimedelta().total_seconds())
        if not 0 < slot_s <= bounds.MAX_FORECAST_SLOT_S:
            raise InvalidMessage(f"flexibility.{name}.slot_duration must be > 0 and at most "
                                 f"{bounds.MAX_FORECAST_SLOT_S} s (got {slot_s} s)",
                                 f"flexibility.{name}.slot_duration")
        if len(fc.values_w) > bounds.MAX_FORECAST_SLOTS:
            raise InvalidMessage(f"flexibility.{name}.values_w has {len(fc.values_w)} values, at most "
                                 f"{bounds.MAX_FORECAST_SLOTS} accepted", f"flexibility.{name}.values_w")
        values = tuple(fc.values_w)
        if values and not all(math.isfinite(v) and abs(v) <= bounds.MAX_POWER_W for v in values):
            k, bad = next((k, v) for k, v in enumerate(values)
                          if not (math.isfinite(v) and abs(v) <= bounds.MAX_POWER_W))
            raise InvalidMessage(f"flexibility.{name}.values_w[{k}] must be a finite power within "
                                 f"+-{bounds.MAX_POWER_W:g} W (got {bad!r})", f"flexibility.{name}.values_w[{k}]")
        return PowerForecast(_dt(fc.start, f"flexibility.{name}.start"), slot_s, values)

    return Flexibility(_dt(msg.valid_from, "flexibility.valid_from"), tuple(storages), tuple(curtailments),
                       forecast("load_forecast"), forecast("pv_forecast"), forecast("pv_clear_sky_forecast"))


def plan_status_from_proto(msg: fs.PlanStatus) -> PlanStatus:
    if msg.state not in _PLAN_STATE:
        raise InvalidMessage("plan_status.state is unspecified")
    return PlanStatus(msg.plan_id, msg.version, _PLAN_STATE[msg.state], _dt(msg.at, "plan_status.at"), msg.reason)


def _envelope(env) -> pl.PowerEnvelope:  # type: ignore[no-untyped-def]
    return pl.PowerEnvelope(min_w=env.min_w, max_w=env.max_w)


def _wire_matches(msg: pl.DispatchPlan, plan: DispatchPlan) -> bool:
    """The encoded slots belong to these slots (a plan rebuilt with other slots but the same
    cache would otherwise send stale ones): same count, same first start."""
    if len(msg.slots) != len(plan.slots):
        return False
    return not plan.slots or msg.slots[0].start == _ts(plan.slots[0].start)


def plan_to_proto(plan: DispatchPlan) -> pl.DispatchPlan:
    if plan.wire_slots is not None:
        # slots encoded in the solver process (packed_slots_wire): parsing is C, building is Python
        out = pl.DispatchPlan.FromString(plan.wire_slots)
        if not _wire_matches(out, plan):
            out = pl.DispatchPlan()
    else:
        out = pl.DispatchPlan()
    out.plan_id, out.version = plan.plan_id, plan.version
    out.created_at.CopyFrom(_ts(plan.created_at))
    out.valid_from.CopyFrom(_ts(plan.valid_from))
    out.valid_until.CopyFrom(_ts(plan.valid_until))
    out.slot_duration.CopyFrom(_duration(plan.slot_duration_s))
    out.fallback.CopyFrom(pl.Fallback(mode=_FALLBACK[plan.fallback], max_export_w=plan.fallback_max_export_w))
    if out.slots or not plan.slots:
        return out
    add = out.slots.add  # in place: no message built twice (thousands of plans per cycle on the event loop)
    for s in plan.slots:
        add(
            start=_ts(s.start), reason=s.reason,
            setpoints=[pl.ResourceSetpoint(resource_id=sp.resource_id, target_power_w=sp.target_power_w,
                                           envelope=_envelope(sp.envelope)) for sp in s.setpoints],
            grid_envelope=None if s.grid_envelope is None else _envelope(s.grid_envelope),
        )
    return out


def packed_slots_wire(pk: PackedPlans) -> tuple[bytes, ...]:
    """Each house's slots of a packed block, encoded as ``plan_to_proto`` would encode the
    plan's slots (the same values and words), straight from the arrays: run in the solver
    process, so the service only parses them (DispatchPlan.wire_slots)."""
    t = pk.target_w.shape[1]
    starts = [_ts(pk.start + timedelta(seconds=s * pk.slot_s)) for s in range(t)]
    out = []
    for k in range(len(pk.house_ids)):
        msg = pl.DispatchPlan()
        add = msg.slots.add
        bid, reasons = pk.battery_ids[k], pk.reasons
        for st, tgt, lo, hi, g_lo, g_hi, r in zip(starts, pk.target_w[k].tolist(), pk.env_lo_w[k].tolist(),
                                                  pk.env_hi_w[k].tolist(), pk.grid_lo_w[k].tolist(),
                                                  pk.grid_hi_w[k].tolist(), pk.reason_codes[k].tolist(), strict=True):
            add(start=st, reason=reasons[r],
                setpoints=[pl.ResourceSetpoint(resource_id=bid, target_power_w=tgt,
                                               envelope=pl.PowerEnvelope(min_w=lo, max_w=hi))],
                grid_envelope=pl.PowerEnvelope(min_w=g_lo, max_w=g_hi))
        out.append(msg.SerializeToString())
    return tuple(out)


def grid_signal_to_proto(signal: GridSignal) -> gr.GridSignal:
    msg = gr.GridSignal(
        issued_at=_ts(signal.issued_at), currency=signal.currency,
        prices=[gr.PriceSlot(start=_ts(p.start), duration=_duration(p.duration_s),
                             import_price_per_kwh=p.import_price_per_kwh,
                             export_price_per_kwh=p.export_price_per_kwh) for p in signal.prices],
    )
    if signal.limits is not None:
        msg.limits.CopyFrom(gr.SiteLimits(max_import_w=signal.limits.max_import_w,
                                          max_export_w=signal.limits.max_export_w))
        if signal.limits_valid_until is not None:
            msg.limits_valid_until.CopyFrom(_ts(signal.limits_valid_until))
        msg.limits_are_feeder_envelope = signal.limits_are_feeder_envelope
    return msg


def welcome(house_id: str, replica_id: str, telemetry_interval_s: float, heartbeat_interval_s: float) -> fs.Welcome:
    return fs.Welcome(house_id=house_id, replica_id=replica_id,
                      telemetry_interval=_duration(telemetry_interval_s),
                      heartbeat_interval=_duration(heartbeat_interval_s),
                      telemetry_acks=True)  # every stored Telemetry is answered with a TelemetryAck


def drain(reason: str, reconnect_after_s: float = 0.0) -> fs.Drain:
    return fs.Drain(reason=reason, reconnect_after=_duration(reconnect_after_s))


# -- operator (admin) views ---------------------------------------------------
_KIND_TO_PROTO = {v: k for k, v in _RESOURCE_KIND.items()}
_CONTROL_TO_PROTO = {v: k for k, v in _CONTROL_TYPE.items()}
_VALIDITY_TO_PROTO = {v: k for k, v in _VALIDITY.items()}
_STATE_TO_PROTO = {v: k for k, v in _PLAN_STATE.items()}


def measurement_to_proto(m: Measurement) -> tm.Measurement:
    msg = tm.Measurement(value=m.value if m.value is not None else 0.0, validity=_VALIDITY_TO_PROTO[m.validity])
    if m.measured_at is not None:
        msg.measured_at.CopyFrom(_ts(m.measured_at))
    return msg


def resource_to_proto(r: ResourceInfo) -> fs.Resource:
    return fs.Resource(resource_id=r.resource_id, kind=_KIND_TO_PROTO[r.kind],
                       control_type=_CONTROL_TO_PROTO[r.control_type], rated_power_w=r.rated_power_w,
                       capacity_wh=r.capacity_wh)


def plan_status_to_proto(s: PlanStatus) -> fs.PlanStatus:
    return fs.PlanStatus(plan_id=s.plan_id, version=s.version, state=_STATE_TO_PROTO[s.state], reason=s.reason,
                         at=_ts(s.at))


def house_summary(record: HouseRecord, route: str | None, plan: DispatchPlan | None, status: PlanStatus | None,
                  telemetry: SiteTelemetry | None) -> adm.HouseSummary:
    limits = record.hello.limits
    msg = adm.HouseSummary(
        house_id=record.house_id, replica_id=route or "", agent_version=record.hello.agent_version,
        limits=gr.SiteLimits(max_import_w=limits.max_import_w, max_export_w=limits.max_export_w),
        first_seen=_ts(record.first_seen), last_hello=_ts(record.last_hello),
        plan_version=plan.version if plan else 0,
        plan_state=_STATE_TO_PROTO[status.state] if status else fs.PLAN_STATE_UNSPECIFIED,
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
        start = _dt(msg.start_time, "start_time")
    except InvalidMessage as exc:
        problems.append(str(exc))
    try:
        end = _dt(msg.end_time, "end_time")
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
