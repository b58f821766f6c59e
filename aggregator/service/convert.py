"""Protobuf <-> dataclass conversion on the aggregator side of the wire.

The aggregator decodes what agents send (Hello, Telemetry, FlexibilityUpdate,
PlanStatus) and encodes what it sends (Welcome, DispatchPlan, GridSignal,
Drain).  Generated types stop here: the rest of the aggregator sees only
``vpp_common.messages``.  Malformed input raises :class:`InvalidMessage`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from aggregator.service import bounds, load_convert
from aggregator.service.bounds import InvalidMessage
from aggregator.service.plan_wire import packed_slots_to_wire, varint
from vpp.enums import CONTROL_TYPE, FALLBACK, PLAN_STATE, RESOURCE_KIND, VALIDITY
from vpp.timestamps import duration as _duration
from vpp.timestamps import timestamp as _ts
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import flexibility_pb2 as fx
from vpp.v1 import grid_pb2 as gr
from vpp.v1 import plan_pb2 as pl
from vpp.v1 import telemetry_pb2 as tm
from vpp_common.clock import UTC
from vpp_common.messages import (
    CurtailmentFlexibility,
    DispatchPlan,
    Envelope,
    Flexibility,
    GridSignal,
    Hello,
    Measurement,
    PlanStatus,
    PowerForecast,
    ResourceInfo,
    ResourceTelemetry,
    SiteLimits,
    SiteTelemetry,
    StorageFlexibility,
    Validity,
)

__all__ = ["InvalidMessage", "packed_slots_to_wire"]  # defined in bounds and plan_wire


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_S, _MAX_S = -62_135_596_800, 253_402_300_799  # protobuf's range: 0001-01-01 to 9999-12-31


def timestamp(ts: Timestamp, field: str) -> datetime:
    """A Timestamp as an aware datetime, as ``ts.ToDatetime(tzinfo=UTC)`` gives it; outside
    protobuf's range an InvalidMessage naming ``field`` (protobuf raises ValueError, which
    escaped a stream's reader and left the stream half dead).  A third of ToDatetime's time."""
    s, n = ts.seconds, ts.nanos
    if not (_MIN_S <= s <= _MAX_S and 0 <= n <= 999_999_999):
        raise InvalidMessage(f"{field} is not a time (seconds {s}, nanos {n})", field)
    return _EPOCH + timedelta(seconds=s, microseconds=n // 1000)


def required_datetime(ts: Timestamp, field: str) -> datetime:
    """A Timestamp that must be set (raises InvalidMessage naming ``field`` if not, or out of range)."""
    if ts.seconds == 0 and ts.nanos == 0:
        raise InvalidMessage(f"{field} is not set", field)
    return timestamp(ts, field)


def hello_from_proto(msg: fs.Hello) -> Hello:
    bounds.finite(msg.limits.max_import_w, "hello.limits.max_import_w", 0.0, bounds.MAX_POWER_W, lo_open=True)
    bounds.power(msg.limits.max_export_w, "hello.limits.max_export_w", signed=False)
    resources = []
    for i, r in enumerate(msg.resources):
        if not r.resource_id:
            raise InvalidMessage(f"hello.resources[{i}].resource_id is empty", f"hello.resources[{i}].resource_id")
        if r.kind not in RESOURCE_KIND.from_wire:
            raise InvalidMessage(f"hello.resources[{i}].kind is unspecified", f"hello.resources[{i}].kind")
        if r.control_type not in CONTROL_TYPE.from_wire:
            raise InvalidMessage(f"hello.resources[{i}].control_type is unspecified",
                                 f"hello.resources[{i}].control_type")
        bounds.power(r.rated_power_w, f"hello.resources[{i}].rated_power_w", signed=False)
        bounds.finite(r.capacity_wh, f"hello.resources[{i}].capacity_wh", 0.0, bounds.MAX_CAPACITY_WH)
        resources.append(ResourceInfo(r.resource_id, RESOURCE_KIND.from_wire[r.kind],
                                      CONTROL_TYPE.from_wire[r.control_type],
                                      r.rated_power_w, r.capacity_wh))
    return Hello(
        agent_version=msg.agent_version,
        limits=SiteLimits(msg.limits.max_import_w, msg.limits.max_export_w),
        resources=tuple(resources),
        last_plan_id=msg.last_plan_id,
        last_plan_version=msg.last_plan_version,
        claimed_house_id=msg.claimed_house_id,
    )


def _measured_at(ts: Timestamp, field: str) -> datetime:
    return timestamp(ts, f"{field}.measured_at")


def _measurement(msg: tm.Measurement, has: bool, field: str, lo: float, hi: float,
                 refused: list[str] | None, when: Callable[[Timestamp, str], datetime] = _measured_at) -> Measurement:
    """``when(ts, field)``: the measurement's ``measured_at`` as a datetime (default: converted anew)."""
    validity = VALIDITY.from_wire.get(msg.validity, Validity.MISSING) if has else Validity.MISSING
    if validity is Validity.MISSING:
        return Measurement.missing()
    at = when(msg.measured_at, field) if msg.HasField("measured_at") else None
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
    # a sample's measurements mostly carry its own instant: converted once (thousands a second)
    seen: dict[tuple[int, int], datetime] = {}

    def when(ts: Timestamp, field: str) -> datetime:
        key = (ts.seconds, ts.nanos)
        at = seen.get(key)
        if at is None:
            at = seen[key] = _measured_at(ts, field)  # the field's name is made only here
        return at

    def m(name: str, lo_hi: tuple[float, float] = _P) -> Measurement:
        return _measurement(getattr(msg, name), msg.HasField(name), f"telemetry.{name}", *lo_hi, refused, when)

    measured_at = seen[(msg.measured_at.seconds, msg.measured_at.nanos)] = required_datetime(
        msg.measured_at, "telemetry.measured_at")
    return SiteTelemetry(
        measured_at=measured_at,
        grid_power_w=m("grid_power_w"),
        pv_power_w=m("pv_power_w"),
        battery_power_w=m("battery_power_w"),
        battery_soc_pct=m("battery_soc_pct", _PCT),
        load_power_w=m("load_power_w"),
        resources=tuple(ResourceTelemetry(
            r.resource_id,
            _measurement(r.power_w, r.HasField("power_w"), f"telemetry.resources[{i}].power_w", *_P, refused, when),
            _measurement(r.soc_pct, r.HasField("soc_pct"), f"telemetry.resources[{i}].soc_pct", *_PCT, refused, when))
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
    storages, curtailments, switchable, shiftable = [], [], [], []
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
        elif kind == "ombc":
            switchable.append(load_convert.switchable_from_proto(i, r.resource_id, r.ombc))
        elif kind == "ppbc":
            shiftable.append(load_convert.shiftable_from_proto(i, r.resource_id, r.ppbc))
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
        return PowerForecast(required_datetime(fc.start, f"flexibility.{name}.start"), slot_s, values)

    return Flexibility(required_datetime(msg.valid_from, "flexibility.valid_from"), tuple(storages), tuple(curtailments),
                       forecast("load_forecast"), forecast("pv_forecast"), forecast("pv_clear_sky_forecast"),
                       tuple(switchable), tuple(shiftable))


def plan_status_from_proto(msg: fs.PlanStatus) -> PlanStatus:
    if msg.state not in PLAN_STATE.from_wire:
        raise InvalidMessage("plan_status.state is unspecified")
    return PlanStatus(msg.plan_id, msg.version, PLAN_STATE.from_wire[msg.state], required_datetime(msg.at, "plan_status.at"), msg.reason)


def plan_to_proto(plan: DispatchPlan, encoded_slots: bytes | None = None) -> pl.DispatchPlan:
    """``encoded_slots``: the plan's slots already encoded by :func:`slots_to_wire` (the
    service's plan encoder does it off the event loop); parsing them is C, building is Python."""
    out = pl.DispatchPlan.FromString(encoded_slots) if encoded_slots is not None else _slots_to_proto(plan)
    _head(plan, out)
    _tail(plan, out)
    return out


def _head(plan: DispatchPlan, out: pl.DispatchPlan) -> None:
    """The plan's fields before its slots (numbers 1-6)."""
    out.plan_id, out.version = plan.plan_id, plan.version
    out.created_at.CopyFrom(_ts(plan.created_at))
    out.valid_from.CopyFrom(_ts(plan.valid_from))
    out.valid_until.CopyFrom(_ts(plan.valid_until))
    out.slot_duration.CopyFrom(_duration(plan.slot_duration_s))


def _tail(plan: DispatchPlan, out: pl.DispatchPlan) -> None:
    """The plan's fields after its slots (numbers 8-9)."""
    out.fallback.CopyFrom(pl.Fallback(mode=FALLBACK.to_wire[plan.fallback], max_export_w=plan.fallback_max_export_w))
    for r in plan.run_starts:
        out.run_starts.add(resource_id=r.resource_id).start.CopyFrom(_ts(r.start))


_PLAN_FIELD = b"\x5a"  # ConnectResponse.dispatch_plan: field 11, length-delimited


def plan_response_bytes(plan: DispatchPlan, encoded_slots: bytes, sequence: int) -> bytes:
    """``ConnectResponse(sequence=sequence, dispatch_plan=plan_to_proto(plan, encoded_slots))``
    serialized, without parsing the slots or copying the plan's message: the fields before the
    slots, the slots as they were encoded, the fields after them (the same bytes, in field order,
    as serializing the message)."""
    head, tail = pl.DispatchPlan(), pl.DispatchPlan()
    _head(plan, head)
    _tail(plan, tail)
    body = b"".join((head.SerializeToString(), encoded_slots, tail.SerializeToString()))
    seq = fs.ConnectResponse(sequence=sequence).SerializeToString()
    return b"".join((seq, _PLAN_FIELD, varint(len(body)), body))


def slots_to_wire(plan: DispatchPlan) -> bytes:
    """The plan's slots alone, encoded as a DispatchPlan message (see :func:`plan_to_proto`)."""
    return _slots_to_proto(plan).SerializeToString()


def _envelope(env: Envelope) -> pl.PowerEnvelope:
    return pl.PowerEnvelope(min_w=env.min_w, max_w=env.max_w)


def _slots_to_proto(plan: DispatchPlan) -> pl.DispatchPlan:
    out = pl.DispatchPlan()
    add = out.slots.add  # in place: no message built twice (thousands of plans per cycle)
    for s in plan.slots:
        add(
            start=_ts(s.start), reason=s.reason,
            setpoints=[pl.ResourceSetpoint(resource_id=sp.resource_id, target_power_w=sp.target_power_w,
                                           envelope=_envelope(sp.envelope)) for sp in s.setpoints],
            grid_envelope=None if s.grid_envelope is None else _envelope(s.grid_envelope),
        )
    return out


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


