"""Protobuf <-> dataclass conversion on the agent side of the wire.

The agent encodes what it sends (Hello, Telemetry, FlexibilityUpdate,
PlanStatus, Heartbeat) and decodes what it receives (Welcome, DispatchPlan,
GridSignal, Drain).  Generated types stop here.  A malformed plan raises
:class:`InvalidPlan` and is reported back as REJECTED; a grid signal with a number that must
not be used raises :class:`InvalidGridSignal` and is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from edge_agent.energy_manager.plan_check import grid_signal_problem, plan_problem
from vpp.enums import CONTROL_TYPE, FALLBACK, PLAN_STATE, RESOURCE_KIND, VALIDITY
from vpp.loads import flexible_loads_to_proto
from vpp.timestamps import timestamp as _ts
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import flexibility_pb2 as fx
from vpp.v1 import grid_pb2 as gr
from vpp.v1 import plan_pb2 as pl
from vpp.v1 import telemetry_pb2 as tm
from vpp_common.clock import UTC
from vpp_common.messages import (
    DispatchPlan,
    Envelope,
    FallbackMode,
    Flexibility,
    GridSignal,
    Hello,
    Measurement,
    PlanSlot,
    PlanStatus,
    PriceSlot,
    RunStart,
    Setpoint,
    SiteLimits,
    SiteTelemetry,
)


class InvalidPlan(ValueError):
    """A DispatchPlan that breaks the contract; the agent rejects it.  It carries the plan's id
    and version as sent (even from a partly bad plan), so that the REJECTED status names the
    plan, and a short stable ``label`` for the refusal metric."""

    def __init__(self, detail: str, label: str = "malformed", plan_id: str = "", version: int = 0) -> None:
        super().__init__(detail)
        self.label = label
        self.plan_id = plan_id
        self.version = version


class InvalidGridSignal(ValueError):
    """A GridSignal with a number that must not be used (NaN or negative limit, non-finite
    price); the agent refuses it whole and keeps the one in force."""

    def __init__(self, detail: str, label: str = "malformed") -> None:
        super().__init__(detail)
        self.label = label


@dataclass(frozen=True, slots=True)
class WelcomeInfo:
    house_id: str
    replica_id: str
    telemetry_interval_s: float
    heartbeat_interval_s: float
    telemetry_acks: bool = False  # the aggregator acks stored telemetry: keep and resend the unacked


def hello_to_proto(hello: Hello) -> fs.Hello:
    return fs.Hello(
        agent_version=hello.agent_version,
        limits=gr.SiteLimits(max_import_w=hello.limits.max_import_w, max_export_w=hello.limits.max_export_w),
        resources=[fs.Resource(resource_id=r.resource_id, kind=RESOURCE_KIND.to_wire[r.kind],
                               control_type=CONTROL_TYPE.to_wire[r.control_type],
                               rated_power_w=r.rated_power_w, capacity_wh=r.capacity_wh) for r in hello.resources],
        last_plan_id=hello.last_plan_id,
        last_plan_version=hello.last_plan_version,
        claimed_house_id=hello.claimed_house_id,
    )


def _measurement(m: Measurement) -> tm.Measurement:
    msg = tm.Measurement(value=m.value if m.value is not None else 0.0, validity=VALIDITY.to_wire[m.validity])
    if m.measured_at is not None:
        msg.measured_at.CopyFrom(_ts(m.measured_at))
    return msg


def telemetry_to_proto(t: SiteTelemetry) -> tm.Telemetry:
    return tm.Telemetry(
        measured_at=_ts(t.measured_at),
        grid_power_w=_measurement(t.grid_power_w),
        pv_power_w=_measurement(t.pv_power_w),
        battery_power_w=_measurement(t.battery_power_w),
        battery_soc_pct=_measurement(t.battery_soc_pct),
        load_power_w=_measurement(t.load_power_w),
        resources=[tm.ResourceMeasurement(resource_id=r.resource_id, power_w=_measurement(r.power_w),
                                          soc_pct=_measurement(r.soc_pct)) for r in t.resources],
    )


def flexibility_to_proto(f: Flexibility) -> fx.FlexibilityUpdate:
    resources = [
        fx.ResourceFlexibility(resource_id=s.resource_id, frbc=fx.FrbcStorageDescription(
            soc_pct=s.soc_pct, soc_min_pct=s.soc_min_pct, soc_max_pct=s.soc_max_pct,
            reserve_soc_pct=s.reserve_soc_pct, capacity_wh=s.capacity_wh,
            charge_efficiency=s.charge_efficiency, discharge_efficiency=s.discharge_efficiency,
            operation_modes=[
                fx.FrbcOperationMode(id="charge", power_min_w=0.0, power_max_w=s.max_charge_power_w),
                fx.FrbcOperationMode(id="idle", power_min_w=0.0, power_max_w=0.0),
                fx.FrbcOperationMode(id="discharge", power_min_w=-s.max_discharge_power_w, power_max_w=0.0),
            ]))
        for s in f.storages
    ]
    resources += [
        fx.ResourceFlexibility(resource_id=c.resource_id, pebc=fx.PebcPowerEnvelopeDescription(
            present_power_w=c.present_power_w, lower_limit_min_w=c.min_lower_limit_w, lower_limit_max_w=0.0,
            consequence=fx.PEBC_CONSEQUENCE_VANISH))
        for c in f.curtailments
    ]
    resources += flexible_loads_to_proto(f)
    msg = fx.FlexibilityUpdate(valid_from=_ts(f.valid_from), resources=resources)
    for name, fc in (("load_forecast", f.load_forecast), ("pv_forecast", f.pv_forecast),
                     ("pv_clear_sky_forecast", f.pv_clear_sky_forecast)):
        if fc is not None:
            target = getattr(msg, name)
            target.start.CopyFrom(_ts(fc.start))
            target.slot_duration.FromTimedelta(timedelta(seconds=fc.slot_s))
            target.values_w.extend(fc.values_w)
    return msg


def plan_status_to_proto(s: PlanStatus) -> fs.PlanStatus:
    return fs.PlanStatus(plan_id=s.plan_id, version=s.version, state=PLAN_STATE.to_wire[s.state],
                         reason=s.reason, at=_ts(s.at))


def heartbeat(at: datetime) -> fs.Heartbeat:
    return fs.Heartbeat(sent_at=_ts(at))


def welcome_from_proto(msg: fs.Welcome) -> WelcomeInfo:
    return WelcomeInfo(msg.house_id, msg.replica_id, msg.telemetry_interval.ToTimedelta().total_seconds(),
                       msg.heartbeat_interval.ToTimedelta().total_seconds(), msg.telemetry_acks)


def _envelope(msg: pl.PowerEnvelope, where: str) -> Envelope:
    if math.isnan(msg.min_w) or math.isnan(msg.max_w):
        raise InvalidPlan(f"{where}: envelope ({msg.min_w}, {msg.max_w}) W is not a number", "non_finite")
    try:
        return Envelope(msg.min_w, msg.max_w)
    except ValueError as exc:
        raise InvalidPlan(f"{where}: {exc}", "inverted_envelope") from exc


def plan_from_proto(msg: pl.DispatchPlan) -> DispatchPlan:
    """Decode and check a plan: ids, ordering, contiguous slots covering the lease, every number
    (see ``energy_manager.plan_check``).  :class:`InvalidPlan` names the plan as sent."""
    try:
        plan = _plan_from_proto(msg)
        problem = plan_problem(plan)
    except InvalidPlan as exc:
        exc.plan_id, exc.version = msg.plan_id, msg.version
        raise
    except (ValueError, OverflowError) as exc:  # a timestamp or duration out of range
        raise InvalidPlan(f"malformed: {exc}", "malformed", msg.plan_id, msg.version) from exc
    if problem is not None:
        raise InvalidPlan(problem.detail, problem.label, msg.plan_id, msg.version)
    return plan


def _plan_from_proto(msg: pl.DispatchPlan) -> DispatchPlan:
    if not msg.plan_id:
        raise InvalidPlan("plan_id is empty", "plan_id")
    if msg.version == 0:
        raise InvalidPlan("version must be >= 1", "version")
    slot_s = int(msg.slot_duration.ToTimedelta().total_seconds())
    if slot_s <= 0:
        raise InvalidPlan("slot_duration must be > 0", "slots")
    valid_from = msg.valid_from.ToDatetime(tzinfo=UTC)
    valid_until = msg.valid_until.ToDatetime(tzinfo=UTC)
    if valid_until <= valid_from:
        raise InvalidPlan("valid_until must be after valid_from", "lease")
    slots = []
    first_s, first_ns = msg.valid_from.seconds, msg.valid_from.nanos
    step = timedelta(seconds=slot_s)
    start = valid_from
    for i, s in enumerate(msg.slots):
        # compared as integers: Timestamp.ToDatetime per slot was most of this function's time
        if s.start.seconds != first_s + i * slot_s or s.start.nanos != first_ns:
            got = s.start.ToDatetime(tzinfo=UTC)
            raise InvalidPlan(f"slot {i} starts at {got.isoformat()}, expected {start.isoformat()}"
                              " (slots must follow each other from valid_from, without gap or overlap)", "slots")
        setpoints = tuple(Setpoint(sp.resource_id, sp.target_power_w, _envelope(sp.envelope, f"slot {i} {sp.resource_id}"))
                          for sp in s.setpoints)
        grid = _envelope(s.grid_envelope, f"slot {i} grid") if s.HasField("grid_envelope") else None
        slots.append(PlanSlot(start, setpoints, grid, s.reason))
        start += step
    if not slots:
        raise InvalidPlan("plan has no slots", "slots")
    return DispatchPlan(
        plan_id=msg.plan_id, version=msg.version, created_at=msg.created_at.ToDatetime(tzinfo=UTC),
        valid_from=valid_from, valid_until=valid_until, slot_duration_s=slot_s, slots=tuple(slots),
        fallback=FALLBACK.from_wire.get(msg.fallback.mode, FallbackMode.SELF_CONSUMPTION),
        fallback_max_export_w=msg.fallback.max_export_w,
        run_starts=_run_starts(msg, valid_from),
    )


MAX_RUN_START_AHEAD = timedelta(days=7)


def _run_starts(msg: pl.DispatchPlan, valid_from: datetime) -> tuple[RunStart, ...]:
    """The chosen starts of the house's runs: one per named resource, each set and within a week
    of the plan (the agent checks it against the run's own window before using it)."""
    out: list[RunStart] = []
    for i, r in enumerate(msg.run_starts):
        if not r.resource_id or any(x.resource_id == r.resource_id for x in out):
            raise InvalidPlan(f"run_starts[{i}]: resource_id {r.resource_id!r} is empty or repeated", "run_starts")
        if r.start.seconds == 0 and r.start.nanos == 0:
            raise InvalidPlan(f"run_starts[{i}] ({r.resource_id}): start is not set", "run_starts")
        start = r.start.ToDatetime(tzinfo=UTC)
        if abs(start - valid_from) > MAX_RUN_START_AHEAD:
            raise InvalidPlan(f"run_starts[{i}] ({r.resource_id}): start {start.isoformat()} is more than "
                              f"{MAX_RUN_START_AHEAD.days} days from the plan's start", "run_starts")
        out.append(RunStart(r.resource_id, start))
    return tuple(out)


def grid_signal_from_proto(msg: gr.GridSignal) -> GridSignal:
    """Decode and check a grid signal (see ``energy_manager.plan_check.grid_signal_problem``);
    :class:`InvalidGridSignal` if any number in it must not be used."""
    try:
        signal = _grid_signal_from_proto(msg)
    except (ValueError, OverflowError) as exc:  # a timestamp or duration out of range
        raise InvalidGridSignal(f"malformed: {exc}") from exc
    problem = grid_signal_problem(signal)
    if problem is not None:
        raise InvalidGridSignal(problem.detail, problem.label)
    return signal


def _grid_signal_from_proto(msg: gr.GridSignal) -> GridSignal:
    limits = None
    if msg.HasField("limits"):
        limits = SiteLimits(msg.limits.max_import_w, msg.limits.max_export_w)
    return GridSignal(
        issued_at=msg.issued_at.ToDatetime(tzinfo=UTC), currency=msg.currency,
        prices=tuple(PriceSlot(p.start.ToDatetime(tzinfo=UTC), int(p.duration.ToTimedelta().total_seconds()),
                               p.import_price_per_kwh, p.export_price_per_kwh) for p in msg.prices),
        limits=limits,
        limits_valid_until=msg.limits_valid_until.ToDatetime(tzinfo=UTC) if msg.HasField("limits_valid_until")
        else None,
        limits_are_feeder_envelope=msg.limits_are_feeder_envelope and limits is not None,
    )
