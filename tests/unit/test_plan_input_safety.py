"""Issue 19, plan side: every plan and grid signal from the aggregator is checked before use.

One test per case of the issue, each through the agent's real path: the message as it comes
off the wire (protobuf), decoded as the uplink client decodes it, handed to the real
``EdgeAgent``, which decides and writes to a recording device.  Each of these failed before
the checks: a NaN target or envelope was written as a NaN setpoint (full charge on a SunSpec
device), negative grid-signal limits made the battery charge from or discharge into the
grid, malformed plans were dropped without a PlanStatus, and a plan for a resource the house
does not have was ACCEPTED.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from aggregator.service import convert as agg
from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, BatteryConfig, ControlConfig, SiteConfig
from edge_agent.energy_manager.decide import BatteryLimits, decide, safety_clamp
from edge_agent.resources.house import HouseSnapshot, Nameplate
from edge_agent.uplink import convert
from vpp.v1 import grid_pb2, plan_pb2
from vpp_common.clock import UTC, ManualClock
from vpp_common.messages import (
    ControlType,
    DispatchPlan,
    Envelope,
    Flexibility,
    GridSignal,
    Measurement,
    PlanSlot,
    PlanState,
    PlanStatus,
    ResourceInfo,
    ResourceKind,
    Setpoint,
    SiteLimits,
    SiteTelemetry,
    StorageFlexibility,
    Validity,
)

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
MAX_CHARGE_W = 5000.0
MAX_DISCHARGE_W = 5000.0
RESERVE_PCT = 10.0
MAX_SOC_PCT = 95.0
MAX_IMPORT_W = 11_000.0
MAX_EXPORT_W = 4_600.0


class RecordingDevice:
    """A house's devices without Modbus: what the agent reads (``reading``) and writes."""

    battery_id = "battery"

    def __init__(self) -> None:
        self.nameplate = Nameplate(rated_power_w=MAX_CHARGE_W, capacity_wh=10_000.0, max_charge_w=MAX_CHARGE_W,
                                   max_discharge_w=MAX_DISCHARGE_W, wchamax_w=MAX_CHARGE_W)
        self.battery: list[float] = []
        self.pv_limits: list[float | None] = []

    @property
    def resources(self) -> tuple[ResourceInfo, ...]:
        return (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC, MAX_CHARGE_W, 10_000.0),
                ResourceInfo("pv", ResourceKind.PV, ControlType.PEBC, 6_000.0),
                ResourceInfo("grid_meter", ResourceKind.GRID_METER, ControlType.NOT_CONTROLLABLE))

    async def set_battery_power(self, power_w: float) -> bool:
        self.battery.append(power_w)
        return True

    async def set_pv_limit(self, limit_w: float | None) -> None:
        self.pv_limits.append(limit_w)


def snapshot(now: datetime, grid_w: float, pv_w: float, soc_pct: float, battery_w: float = 0.0,
             validity: Validity = Validity.VALID) -> HouseSnapshot:
    def m(v: float) -> Measurement:
        return Measurement(v, validity, now)

    load = grid_w - pv_w - battery_w
    tele = SiteTelemetry(now, m(grid_w), m(pv_w), m(battery_w), m(soc_pct), m(load))
    st = StorageFlexibility("battery", soc_pct, 0.0, 100.0, RESERVE_PCT, 10_000.0, MAX_CHARGE_W, MAX_DISCHARGE_W)
    return HouseSnapshot(tele, Flexibility(now, (st,)), MAX_CHARGE_W, MAX_DISCHARGE_W)


def make_agent(clock: ManualClock) -> tuple[EdgeAgent, RecordingDevice, list[object]]:
    cfg = AgentConfig(house_id="h", insecure=True, metrics_port=None,
                      site=SiteConfig(max_import_w=MAX_IMPORT_W, max_export_w=MAX_EXPORT_W),
                      battery=BatteryConfig(reserve_soc_pct=RESERVE_PCT, max_soc_pct=MAX_SOC_PCT),
                      control=ControlConfig(deadband_w=0))
    device = RecordingDevice()
    a = EdgeAgent(cfg, clock=clock, device=device)  # type: ignore[arg-type]
    sent: list[object] = []
    a.uplink.send = sent.append  # type: ignore[method-assign]
    return a, device, sent


def deliver_plan(a: EdgeAgent, msg: plan_pb2.DispatchPlan) -> None:
    """As the uplink client hands a received plan to the agent (edge_agent.uplink.client)."""
    try:
        plan: DispatchPlan | Exception = convert.plan_from_proto(msg)
    except convert.InvalidPlan as exc:
        plan = exc
    a._on_plan(plan)


def deliver_signal(a: EdgeAgent, msg: grid_pb2.GridSignal) -> None:
    """As the uplink client hands a received grid signal to the agent."""
    invalid = getattr(convert, "InvalidGridSignal", ())  # absent before the checks
    try:
        signal: GridSignal | Exception = convert.grid_signal_from_proto(msg)
    except invalid as exc:  # type: ignore[misc]
        signal = exc
    a.intake.on_grid_signal(signal)  # type: ignore[arg-type]


def statuses(sent: list[object]) -> list[PlanStatus]:
    return [m for m in sent if isinstance(m, PlanStatus)]


def plan_msg(target_w: float = 1000.0, env: tuple[float, float] = (1000.0, 1000.0), resource: str = "battery",
             n: int = 4, version: int = 1) -> plan_pb2.DispatchPlan:
    """A valid plan (n 15-min slots over a 1 h lease), encoded as the aggregator encodes it."""
    slots = tuple(PlanSlot(T0 + timedelta(seconds=900 * i), (Setpoint(resource, 1000.0, Envelope(1000.0, 1000.0)),),
                           Envelope(-MAX_EXPORT_W, MAX_IMPORT_W), f"slot {i}") for i in range(n))
    msg = agg.plan_to_proto(DispatchPlan(f"plan-{version}", version, T0, T0, T0 + timedelta(hours=1), 900, slots))
    for s in msg.slots:
        s.setpoints[0].target_power_w = target_w
        s.setpoints[0].envelope.min_w, s.setpoints[0].envelope.max_w = env
    return msg


def assert_within_house(device: RecordingDevice) -> None:
    for w in device.battery:
        assert math.isfinite(w) and -MAX_DISCHARGE_W <= w <= MAX_CHARGE_W, f"wrote {w} W"


def assert_rejected(sent: list[object], plan_id: str, version: int, words: str) -> None:
    st = statuses(sent)
    assert len(st) == 1, st
    assert st[0].state is PlanState.REJECTED and st[0].plan_id == plan_id and st[0].version == version
    assert words in st[0].reason, st[0].reason


# -- a NaN plan setpoint is not written as full charge ----------------------------------------

@pytest.mark.parametrize("target, env", [(math.nan, (0.0, 0.0)), (math.nan, (math.nan, math.nan)),
                                         (1000.0, (math.nan, math.nan)), (math.inf, (math.inf, math.inf))])
async def test_a_plan_setpoint_that_is_not_a_number_is_rejected_and_never_written(
        target: float, env: tuple[float, float]) -> None:
    clock = ManualClock(T0)
    a, device, sent = make_agent(clock)
    a.snapshot = snapshot(T0, grid_w=500.0, pv_w=0.0, soc_pct=50.0)
    deliver_plan(a, plan_msg(target, env))
    d = await a.control_once()
    assert d is not None
    assert_within_house(device)
    assert device.battery and device.battery[-1] < 0  # the fallback (self-consumption), not full charge
    assert a.plans.current is None
    assert_rejected(sent, "plan-1", 1, "non_finite")
    assert a.refusals.total == 1


def test_an_envelope_of_nan_is_not_an_envelope() -> None:
    with pytest.raises(ValueError, match="not a number"):
        Envelope(math.nan, math.nan)
    with pytest.raises(ValueError):
        Envelope(0.0, math.nan)


# -- negative grid-signal limits: no charge from, no discharge into the grid --------------------

def signal_msg(max_import_w: float, max_export_w: float) -> grid_pb2.GridSignal:
    return agg.grid_signal_to_proto(GridSignal(T0, limits=SiteLimits(max_import_w, max_export_w),
                                               limits_valid_until=T0 + timedelta(hours=1)))


async def test_a_negative_export_limit_does_not_charge_the_battery_from_the_grid() -> None:
    clock = ManualClock(T0)
    a, device, sent = make_agent(clock)
    a.snapshot = snapshot(T0, grid_w=800.0, pv_w=0.0, soc_pct=50.0)  # night: 800 W load, no PV
    deliver_signal(a, signal_msg(MAX_IMPORT_W, -5000.0))
    await a.control_once()
    assert device.battery == [-800.0]  # self-consumption: no charge from the grid (was +4200 W)
    assert a.intake.grid_signal is None  # refused, never stored
    assert a.intake.effective_limits(T0) == SiteLimits(MAX_IMPORT_W, MAX_EXPORT_W)
    assert a.refusals.total == 1


async def test_a_negative_import_limit_does_not_discharge_the_battery_into_the_grid() -> None:
    clock = ManualClock(T0)
    a, device, sent = make_agent(clock)
    a.snapshot = snapshot(T0, grid_w=800.0, pv_w=0.0, soc_pct=50.0)
    deliver_signal(a, signal_msg(-5000.0, MAX_EXPORT_W))
    await a.control_once()
    assert device.battery == [-800.0]  # covers the load, exports nothing (was -5000 W)
    assert a.intake.grid_signal is None
    assert a.refusals.total == 1


async def test_a_refused_signal_keeps_the_tighter_one_in_force() -> None:
    clock = ManualClock(T0)
    a, _, _ = make_agent(clock)
    deliver_signal(a, signal_msg(MAX_IMPORT_W, 1000.0))
    deliver_signal(a, signal_msg(math.nan, math.nan))
    deliver_signal(a, signal_msg(MAX_IMPORT_W, -1.0))
    assert a.intake.effective_limits(T0) == SiteLimits(MAX_IMPORT_W, 1000.0)
    assert a.refusals.total == 2


# -- malformed plans are answered REJECTED -----------------------------------------------------

def _overlap(msg: plan_pb2.DispatchPlan) -> None:
    msg.slots[1].start.CopyFrom(msg.slots[0].start)


def _gap(msg: plan_pb2.DispatchPlan) -> None:
    del msg.slots[1]


def _missing_last(msg: plan_pb2.DispatchPlan) -> None:
    del msg.slots[-1]


def _inverted(msg: plan_pb2.DispatchPlan) -> None:
    msg.slots[2].setpoints[0].envelope.min_w, msg.slots[2].setpoints[0].envelope.max_w = 3000.0, -3000.0


def _inverted_grid(msg: plan_pb2.DispatchPlan) -> None:
    msg.slots[0].grid_envelope.min_w, msg.slots[0].grid_envelope.max_w = 1000.0, -1000.0


def _negative_fallback_cap(msg: plan_pb2.DispatchPlan) -> None:
    msg.fallback.max_export_w = -5000.0


@pytest.mark.parametrize("break_it, words", [(_overlap, "slot 1 starts"), (_gap, "slot 1 starts"),
                                             (_missing_last, "before the lease ends"), (_inverted, "envelope"),
                                             (_inverted_grid, "envelope"),
                                             (_negative_fallback_cap, "fallback.max_export_w")])
def test_a_malformed_plan_is_answered_rejected_with_the_reason(break_it, words: str) -> None:  # type: ignore[no-untyped-def]
    clock = ManualClock(T0)
    a, _, sent = make_agent(clock)
    msg = plan_msg()
    break_it(msg)
    deliver_plan(a, msg)
    assert a.plans.current is None
    assert_rejected(sent, "plan-1", 1, words)
    assert a.stats.plans_rejected == 1 and a.refusals.total == 1


# -- plans this house cannot follow --------------------------------------------------------------

def test_a_plan_for_a_resource_the_house_does_not_have_is_rejected() -> None:
    clock = ManualClock(T0)
    a, _, sent = make_agent(clock)
    deliver_plan(a, plan_msg(resource="battery-2"))
    assert a.plans.current is None
    assert_rejected(sent, "plan-1", 1, "'battery-2'")
    assert "unknown_resource" in statuses(sent)[0].reason


def test_a_plan_outside_the_battery_nameplate_is_rejected() -> None:
    clock = ManualClock(T0)
    a, _, sent = make_agent(clock)
    deliver_plan(a, plan_msg(target_w=50_000.0, env=(50_000.0, 50_000.0)))
    assert a.plans.current is None
    assert_rejected(sent, "plan-1", 1, "nameplate")


def test_a_plan_the_aggregator_makes_is_accepted() -> None:
    """Envelopes at the nameplate, wide grid envelopes and fallback caps (up to inf: no bound) are
    what the aggregator may send: they only tighten the site limits."""
    clock = ManualClock(T0)
    a, _, sent = make_agent(clock)
    msg = plan_msg(target_w=-MAX_DISCHARGE_W, env=(-MAX_DISCHARGE_W, MAX_CHARGE_W))
    msg.slots[0].grid_envelope.min_w, msg.slots[0].grid_envelope.max_w = -math.inf, math.inf
    msg.slots[1].grid_envelope.min_w = -20_000.0  # a relaxed house cap: only ever intersected
    msg.fallback.max_export_w = math.inf  # the house's own cap, from a config without one
    deliver_plan(a, msg)
    assert a.plans.current is not None and statuses(sent)[0].state is PlanState.ACCEPTED
    assert a.refusals.total == 0


# -- the safety envelope for any input -----------------------------------------------------------

BATTERY = BatteryLimits(MAX_CHARGE_W, MAX_DISCHARGE_W, RESERVE_PCT, MAX_SOC_PCT)


@pytest.mark.parametrize("desired, base, soc", [(math.nan, 0.0, 50.0), (1000.0, math.nan, 50.0),
                                                (1000.0, 0.0, math.nan), (math.inf, -math.inf, 50.0)])
def test_safety_clamp_idles_on_anything_not_a_number(desired: float, base: float, soc: float) -> None:
    value, rules = safety_clamp(desired, base, soc, SiteLimits(MAX_IMPORT_W, MAX_EXPORT_W), BATTERY)
    assert value == 0.0 and rules == ("invalid_input",)


@pytest.mark.parametrize("limits", [SiteLimits(math.nan, MAX_EXPORT_W), SiteLimits(MAX_IMPORT_W, -5000.0)])
def test_safety_clamp_idles_on_limits_that_are_not_limits(limits: SiteLimits) -> None:
    assert safety_clamp(-3000.0, 800.0, 50.0, limits, BATTERY) == (0.0, ("invalid_input",))


def test_decide_idles_on_a_soc_that_is_not_a_number() -> None:
    """A SoC of NaN marked valid: the reserve cannot be known, so no discharge (it was -800 W)."""
    snap = snapshot(T0, grid_w=800.0, pv_w=0.0, soc_pct=math.nan)
    d = decide(T0, snap.telemetry, None, True, SiteLimits(MAX_IMPORT_W, MAX_EXPORT_W), BATTERY)
    assert d.battery_w == 0.0 and d.mode == "safe_idle" and "SoC" in d.reason


# -- a feeder envelope below 0 on import: "export at least" (the battery helps its neighbours) ---

def envelope_msg(max_import_w: float, max_export_w: float) -> grid_pb2.GridSignal:
    return agg.grid_signal_to_proto(GridSignal(T0, limits=SiteLimits(max_import_w, max_export_w),
                                               limits_valid_until=T0 + timedelta(minutes=5),
                                               limits_are_feeder_envelope=True))


async def test_a_feeder_envelope_below_0_on_import_makes_the_battery_export_within_the_export_limit() -> None:
    clock = ManualClock(T0)
    a, device, _ = make_agent(clock)
    a.snapshot = snapshot(T0, grid_w=800.0, pv_w=0.0, soc_pct=50.0)  # night: 800 W load, no PV
    deliver_signal(a, envelope_msg(-2000.0, 3000.0))
    await a.control_once()
    assert device.battery == [-2800.0]  # the house's load and 2 kW to the feeder
    assert a.refusals.total == 0


@pytest.mark.parametrize("max_import_w, max_export_w", [(-3500.0, 3000.0), (-math.inf, math.inf),
                                                        (-5000.0, MAX_EXPORT_W * 2)])
async def test_a_feeder_envelope_below_0_past_the_export_limit_is_refused(max_import_w: float,
                                                                          max_export_w: float) -> None:
    # past the envelope's own export limit, not a number, or past the house's configured cap (4.6 kW)
    clock = ManualClock(T0)
    a, device, _ = make_agent(clock)
    a.snapshot = snapshot(T0, grid_w=800.0, pv_w=0.0, soc_pct=50.0)
    deliver_signal(a, envelope_msg(max_import_w, max_export_w))
    await a.control_once()
    assert device.battery == [-800.0]  # covers the load, exports nothing
    assert a.intake.effective_limits(T0).max_import_w >= 0


def test_safety_clamp_takes_an_import_limit_below_0_within_the_export_limit() -> None:
    assert safety_clamp(-800.0, 800.0, 50.0, SiteLimits(-2000.0, 3000.0), BATTERY) == (-2800.0, ("import_limit",))
    for limits in (SiteLimits(-3500.0, 3000.0), SiteLimits(-math.inf, math.inf), SiteLimits(-1.0, math.nan)):
        assert safety_clamp(-800.0, 800.0, 50.0, limits, BATTERY) == (0.0, ("invalid_input",))


def test_an_export_at_least_in_force_gives_way_to_a_tighter_export_limit() -> None:
    from edge_agent.energy_manager.decide import tighten_limits

    assert tighten_limits(SiteLimits(-2000.0, 3000.0), SiteLimits(math.inf, 1000.0)) == SiteLimits(-1000.0, 1000.0)
    # below the export limit in force, or not a number: not a limit, the one in force stays
    assert tighten_limits(SiteLimits(MAX_IMPORT_W, 3000.0), SiteLimits(-4000.0, math.inf)) == SiteLimits(
        MAX_IMPORT_W, 3000.0)
    assert tighten_limits(SiteLimits(MAX_IMPORT_W, 3000.0), SiteLimits(math.nan, math.nan)) == SiteLimits(
        MAX_IMPORT_W, 3000.0)
