"""The agent's control step with a live feeder envelope: it replaces the plan slot's grid
envelope (made on forecasts), and it expires back to it."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, ControlConfig, SiteConfig
from edge_agent.energy_manager.write_policy import WritePolicy
from edge_agent.resources.house import HouseSnapshot
from vpp_common.clock import UTC, ManualClock
from vpp_common.messages import (
    DispatchPlan,
    Envelope,
    Flexibility,
    GridSignal,
    Measurement,
    PlanSlot,
    Setpoint,
    SiteLimits,
    SiteTelemetry,
    StorageFlexibility,
    Validity,
)

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)


class FakeDevice:
    """Records what the agent writes; no Modbus."""

    battery_id = "battery"

    def __init__(self) -> None:
        self.battery: list[float] = []
        self.pv_limits: list[float | None] = []

    async def set_battery_power(self, power_w: float) -> bool:
        self.battery.append(power_w)
        return True

    async def set_pv_limit(self, limit_w: float | None) -> None:
        self.pv_limits.append(limit_w)


def _snapshot(now: datetime) -> HouseSnapshot:
    m = lambda v: Measurement(v, Validity.VALID, now)  # noqa: E731
    # PV 6 kW, load 1 kW, battery idle at 50 %: 5 kW surplus
    tele = SiteTelemetry(now, m(-5000.0), m(-6000.0), m(0.0), m(50.0), m(1000.0))
    st = StorageFlexibility("battery", 50.0, 5.0, 100.0, 10.0, 10_000.0, 5000.0, 5000.0)
    return HouseSnapshot(tele, Flexibility(now, (st,)), 5000.0, 5000.0)


def _plan() -> DispatchPlan:
    # the plan (on forecasts): battery free to follow the house balance, grid: export at most 1 kW
    slot = PlanSlot(T0, (Setpoint("battery", 0.0, Envelope(-5000.0, 5000.0)),), Envelope(-1000.0, 17_000.0),
                    "feeder f export limit binds")
    return DispatchPlan("p", 1, T0, T0, T0 + timedelta(hours=1), 3600, (slot,))



class PolledDevice(FakeDevice):
    """A device whose polls return ``reading`` (set it to change what the next poll sees)."""

    def __init__(self, reading: HouseSnapshot) -> None:
        super().__init__()
        self.reading = reading

    async def poll(self) -> HouseSnapshot:
        return self.reading


@contextlib.asynccontextmanager
async def polling(cfg: AgentConfig, clock: ManualClock, reading: HouseSnapshot):  # type: ignore[no-untyped-def]
    """An agent on a PolledDevice with its poll loop running (no uplink, no learning); the
    first poll has been taken when the block starts."""
    device = PolledDevice(reading)
    agent = EdgeAgent(cfg, clock=clock, device=device)  # type: ignore[arg-type]
    agent.uplink.send = lambda _msg: None  # type: ignore[method-assign]
    agent.reports.learn = lambda _snap, _limit: None  # type: ignore[method-assign]
    poller = asyncio.create_task(agent._poll_loop())
    try:
        await _let_run()
        yield agent, device
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller


async def _let_run() -> None:
    for _ in range(3):
        await asyncio.sleep(0)

async def test_a_feeder_envelope_replaces_the_plan_slots_grid_envelope_until_it_expires() -> None:
    clock = ManualClock(T0)
    cfg = AgentConfig(house_id="h", insecure=True, metrics_port=None,
                      site=SiteConfig(max_import_w=17_000, max_export_w=10_000), control=ControlConfig(deadband_w=0))
    device = FakeDevice()
    agent = EdgeAgent(cfg, clock=clock, device=device)  # type: ignore[arg-type]
    agent.uplink.send = lambda _msg: None  # type: ignore[method-assign]
    agent._on_plan(_plan())
    agent.snapshot = _snapshot(T0)

    # plan alone: the battery follows the house balance within its envelope and takes the whole
    # 5 kW surplus (export 0, within the slot's grid envelope)
    d = await agent.control_once()
    assert d is not None and d.battery_w == 5000.0

    # the aggregator's live share of the feeder: this house may export 3.5 kW now
    agent.intake.on_grid_signal(GridSignal(T0, limits=SiteLimits(17_000, 3_500), limits_valid_until=T0 + timedelta(minutes=2),
                                     limits_are_feeder_envelope=True))
    assert agent.intake.feeder_envelope_active(T0)
    assert agent.intake.effective_limits(T0) == SiteLimits(17_000, 3_500)

    # a plan slot that exports (battery held at 0): with the plan's grid envelope the house could
    # export only 1 kW and the battery would have to take 4 kW; the feeder envelope lets it export 3.5
    held = PlanSlot(T0, (Setpoint("battery", 0.0, Envelope(0.0, 0.0)),), Envelope(-1000.0, 17_000.0),
                    "feeder f export limit binds")
    agent._on_plan(DispatchPlan("p", 2, T0, T0, T0 + timedelta(hours=1), 3600, (held,)))
    d = await agent.control_once()
    assert d is not None and d.battery_w == 1500.0  # 5 kW surplus - 3.5 kW envelope
    assert d.pv_limit_w is None and "export_cap" in d.clamped_by

    # once the envelope expires, the plan slot's grid envelope is back: export 1 kW, battery 4 kW
    clock.advance(150)
    agent.snapshot = _snapshot(clock.now())
    assert not agent.intake.feeder_envelope_active(clock.now())
    d = await agent.control_once()
    assert d is not None and d.battery_w == 4000.0
    assert device.battery[-1] == 4000.0


async def test_a_pv_limit_changes_only_on_a_poll_that_began_after_it_was_written() -> None:
    """A poll that began before a PV-limit write may not show it (or show half: meter and
    inverter read at different instants); a limit set from it overshoots the other way."""

    clock = ManualClock(T0)
    cfg = AgentConfig(house_id="h", insecure=True, metrics_port=None,
                      site=SiteConfig(max_import_w=17_000, max_export_w=3_000), control=ControlConfig(deadband_w=0))

    def full(now: datetime, grid_w: float, pv_w: float) -> HouseSnapshot:
        m = lambda v: Measurement(v, Validity.VALID, now)  # noqa: E731
        tele = SiteTelemetry(now, m(grid_w), m(pv_w), m(0.0), m(100.0), m(1000.0))
        st = StorageFlexibility("battery", 100.0, 5.0, 100.0, 10.0, 10_000.0, 5000.0, 5000.0)
        return HouseSnapshot(tele, Flexibility(now, (st,)), 0.0, 5000.0)  # full: cannot charge

    async with polling(cfg, clock, full(T0, -5000.0, -6000.0)) as (agent, device):  # 5 kW export, 3 kW cap
        assert agent.snapshot is not None
        d = await agent.control_once()
        assert d is not None and device.pv_limits == [4000.0]  # curtail to 1 kW load + 3 kW cap
        # the same poll again (it began before the write): a new limit would rest on old readings
        device.reading = full(T0, -2000.0, -3000.0)
        agent.snapshot = device.reading
        d = await agent.control_once()
        assert d is not None and device.pv_limits == [4000.0]
        # the next poll began after the write: the limit follows it
        clock.advance(cfg.device.poll_interval_s)
        await _let_run()
        await agent.control_once()
        assert len(device.pv_limits) == 2


async def test_the_deadband_never_holds_a_house_above_its_limits() -> None:
    """The deadband saves device writes; a write that keeps the house within a site limit goes out
    however small (on a shared feeder, ten houses a few W over their envelopes are 200 W over)."""
    cfg = AgentConfig(house_id="h", insecure=True, metrics_port=None, control=ControlConfig(deadband_w=200))
    device = FakeDevice()
    agent = EdgeAgent(cfg, clock=ManualClock(T0), device=device)  # type: ignore[arg-type]
    policy = WritePolicy.for_revert(cfg.control.deadband_w, cfg.battery.revert_s)
    await agent.writes.write_pv_limit(4000.0, T0, policy)
    await agent.writes.write_pv_limit(3990.0, T0, policy)  # 10 W lower: written
    await agent.writes.write_pv_limit(4100.0, T0, policy)  # 110 W higher: a loosening within the deadband waits
    assert device.pv_limits == [4000.0, 3990.0]
    last = (1000.0, T0)
    assert not policy.battery_due(1050.0, last, T0)  # within the deadband
    assert policy.battery_due(1050.0, last, T0, ("export_cap",))  # more charge for the export cap
    assert not policy.battery_due(950.0, last, T0, ("export_cap",))
    assert policy.battery_due(950.0, last, T0, ("import_limit",))  # more discharge for the import limit


async def test_a_poll_past_a_limit_wakes_the_control_loop_at_once() -> None:
    """A step of the sun would otherwise keep the house over its cap until the next tick."""

    clock = ManualClock(T0)
    cfg = AgentConfig(house_id="h", insecure=True, metrics_port=None,
                      site=SiteConfig(max_import_w=17_000, max_export_w=3_000))

    async with polling(cfg, clock, _snapshot(T0)) as (agent, device):  # 5 kW export against a 3 kW cap
        assert agent._wake.is_set()
        # within the cap: the control loop keeps its tick
        agent._wake.clear()
        m = lambda v: Measurement(v, Validity.VALID, T0)  # noqa: E731
        device.reading = HouseSnapshot(SiteTelemetry(T0, m(-2000.0), m(-3000.0), m(0.0), m(50.0), m(1000.0)),
                                       device.reading.flexibility, 5000.0, 5000.0)
        clock.advance(cfg.device.poll_interval_s)
        await _let_run()
        assert agent.snapshot is device.reading and not agent._wake.is_set()
