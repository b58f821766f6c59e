"""Plausibility from the house over Modbus (issue 19, item 3): readings the house cannot produce,
scale factors outside -10..10, not-implemented markers and nameplates no home has are refused,
reported (logged once, counted) and never reach control or the aggregator as valid."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, BatteryConfig, ControlConfig, DeviceConfig, SiteConfig
from edge_agent.drivers.sunspec import SunSpecDevice
from edge_agent.resources.house import HouseSettings
from edge_agent.resources.hybrid import HybridInverterRM
from edge_agent.resources.plausibility import UNBALANCED_POLLS
from edge_agent.scan import scan_sunspec
from simulator.hybrid_device import SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig, PhysicsSnapshot
from tests.conftest import free_port, until
from vpp_common.clock import ManualClock
from vpp_common.messages import ControlType, Validity

pytestmark = pytest.mark.timeout(60)
NOON = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
FUSE_W = 11_000.0


class HostileSimulator(SunSpecHybridSimulator):
    """A hybrid whose chosen points read what the test says, whatever the physics does:
    ``values`` (model, point) -> engineering value (None = not implemented), ``raw_sf`` (model,
    scale factor point) -> a raw scale factor the image builder would refuse."""

    values: dict[tuple[int, str], float | None]
    raw_sf: dict[tuple[int, str], int]

    def _refresh_measurements(self, s: PhysicsSnapshot) -> None:
        img = self.image
        sane = getattr(self, "_sane_sf", {})
        for (model_id, name), raw in sane.items():  # the physics writes with a sane scale factor
            img.write(img.point(model_id, name).address, [raw & 0xFFFF])
        super()._refresh_measurements(s)
        for (model_id, name), value in getattr(self, "values", {}).items():
            if value is None:
                img.set_raw(model_id, name, None)
            else:
                img.set(model_id, name, value)
        self._sane_sf = {}
        for (model_id, name), sf in getattr(self, "raw_sf", {}).items():
            self._sane_sf[(model_id, name)] = int(img.get_raw(model_id, name))  # type: ignore[arg-type]
            img.write(img.point(model_id, name).address, [sf & 0xFFFF])


@asynccontextmanager
async def house(values: dict[tuple[int, str], float | None] | None = None,
                raw_sf: dict[tuple[int, str], int] | None = None
                ) -> AsyncIterator[tuple[HostileSimulator, ManualClock]]:
    clock = ManualClock(NOON)
    sim = HostileSimulator(SimulatorConfig(physics=PhysicsConfig(initial_soc_pct=50)), clock)
    sim.values, sim.raw_sf = values or {}, raw_sf or {}
    await sim.start()
    try:
        yield sim, clock
    finally:
        await sim.stop()


def rm_for(sim: SunSpecHybridSimulator, clock: ManualClock) -> HybridInverterRM:
    return HybridInverterRM(SunSpecDevice("127.0.0.1", sim.port, timeout_s=1.0), clock, HouseSettings(max_import_w=FUSE_W))


def reasons(snap) -> set[str]:  # type: ignore[no-untyped-def]
    return {r.reason for r in snap.refused}


async def test_grid_and_battery_at_32767_w_on_an_11_kw_fuse_and_soc_300_are_implausible() -> None:
    async with house({(203, "W"): 32_767.0, (802, "W"): 32_767.0, (124, "ChaState"): 300.0}) as (sim, clock):
        rm = rm_for(sim, clock)
        try:
            await rm.connect()
            # a full hybrid: everything it can do is offered
            assert rm.controllable("battery") is None and rm.controllable("pv") is None
            assert {r.resource_id: r.control_type for r in rm.resources} == {
                "battery": ControlType.FRBC, "pv": ControlType.PEBC, "grid_meter": ControlType.NOT_CONTROLLABLE}
            snap = await rm.poll()
            t = snap.telemetry
            assert t.grid_power_w.validity is Validity.IMPLAUSIBLE and t.grid_power_w.value == 32_767.0
            assert t.battery_power_w.validity is Validity.IMPLAUSIBLE
            assert t.battery_soc_pct.validity is Validity.IMPLAUSIBLE
            assert not t.load_power_w.usable
            assert {"grid_implausible", "battery_implausible", "soc_implausible"} <= reasons(snap)
            assert snap.flexibility.storages == ()  # no flexibility on readings the house cannot produce
            # once the readings are real again they are valid again
            sim.values = {}
            clock.advance(1.0)
            snap = await rm.poll()
            assert snap.telemetry.grid_power_w.usable and snap.telemetry.battery_soc_pct.usable
            assert snap.refused == ()
        finally:
            await rm.close()


async def test_readings_that_do_not_add_up_leave_the_load_implausible() -> None:
    # at night (no PV) the meter says 9 kW export: the battery (at most 5 kW) cannot give that
    async with house({(203, "W"): -9_000.0}) as (sim, clock):
        clock.advance(15 * 3600.0)  # 03:00
        rm = rm_for(sim, clock)
        try:
            await rm.connect()
            snap = await rm.poll()
            t = snap.telemetry
            assert t.pv_power_w.usable and t.pv_power_w.value == 0.0
            assert t.grid_power_w.usable  # plausible on its own: which reading is wrong cannot be told
            assert t.load_power_w.validity is Validity.IMPLAUSIBLE and t.load_power_w.value is not None
            assert t.load_power_w.value < -3_000.0
            assert "energy_balance" in reasons(snap)
            # once is a meter and an inverter read a moment apart; three polls in a row is a wrong reading:
            # then none of them is used (no control on readings that contradict each other)
            for _ in range(UNBALANCED_POLLS - 1):
                clock.advance(1.0)
                snap = await rm.poll()
            t = snap.telemetry
            assert t.grid_power_w.validity is Validity.IMPLAUSIBLE
            assert t.battery_power_w.validity is Validity.IMPLAUSIBLE
            sim.values = {}
            clock.advance(1.0)
            t = (await rm.poll()).telemetry
            assert t.grid_power_w.usable and t.battery_power_w.usable and t.load_power_w.usable
        finally:
            await rm.close()


async def test_scale_factor_minus_20_is_not_valid() -> None:
    # 1234 W with W_SF = -20 read as 1.2e-17 W, valid
    async with house(raw_sf={(203, "W_SF"): -20}) as (sim, clock):
        rm = rm_for(sim, clock)
        try:
            await rm.connect()
            snap = await rm.poll()
            assert snap.telemetry.grid_power_w.validity is Validity.MISSING
            assert snap.telemetry.grid_power_w.value is None
            assert "scale_factor" in reasons(snap)
            assert any("W_SF=-20" in r.detail for r in snap.refused)
        finally:
            await rm.close()


async def test_not_implemented_marker_is_missing_and_reported() -> None:
    async with house({(203, "W"): None}) as (sim, clock):
        rm = rm_for(sim, clock)
        try:
            await rm.connect()
            snap = await rm.poll()
            assert snap.telemetry.grid_power_w.validity is Validity.MISSING
            assert "not_implemented" in reasons(snap)
            assert any("model 203: W not implemented" in r.detail for r in snap.refused)
        finally:
            await rm.close()


async def test_a_10_mw_nameplate_is_not_passed_on() -> None:
    async with house() as (sim, clock):
        img = sim.image
        for name, value in (("WRtg", 10_000_000.0), ("WHRtg", 10_000_000.0)):
            img.set_raw(120, f"{name}_SF", 3)
            img.set(120, name, value)
        rm = rm_for(sim, clock)
        try:
            await rm.connect()
            assert all(r.rated_power_w < 100_000 and r.capacity_wh < 200_000 for r in rm.resources)
            assert rm.nameplate is not None and rm.nameplate.capacity_wh == 0.0  # unknown, not 10 MWh
            assert rm.pv_rating_w is None  # WMaxLimPct is a % of WRtg: no curtailment on a bad rating
            pv = next(r for r in rm.resources if r.resource_id == "pv")
            assert pv.control_type is ControlType.NOT_CONTROLLABLE
            snap = await rm.poll()
            assert "nameplate_implausible" in reasons(snap)
            assert snap.flexibility.curtailments == ()
            assert all(s.capacity_wh < 200_000 for s in snap.flexibility.storages)
        finally:
            await rm.close()


async def test_a_10_mw_battery_rating_makes_the_battery_not_controllable() -> None:
    async with house() as (sim, clock):
        sim.image.set_raw(124, "WChaMax_SF", 3)
        sim.image.set(124, "WChaMax", 10_000_000.0)
        rm = rm_for(sim, clock)
        try:
            await rm.connect()
            battery = next(r for r in rm.resources if r.resource_id == "battery")
            assert battery.control_type is ControlType.NOT_CONTROLLABLE
            why = rm.controllable("battery")
            assert why is not None and "WChaMax" in why
            snap = await rm.poll()
            assert snap.flexibility.storages == ()
        finally:
            await rm.close()


def _agent_config(port: int) -> AgentConfig:
    return AgentConfig(
        house_id="house-plausible", insecure=True, metrics_port=None,
        aggregator=f"127.0.0.1:{free_port()}", reconnect_initial_s=5.0, reconnect_max_s=5.0,
        device=DeviceConfig(port=port, timeout_s=0.5, poll_interval_s=1.0, stale_after_s=10.0),
        site=SiteConfig(max_import_w=FUSE_W), battery=BatteryConfig(revert_s=10),
        control=ControlConfig(tick_s=0.02, deadband_w=20))


@pytest.fixture
def refused_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.WARNING, logger="edge_agent.refused")
    yield caplog


async def test_agent_logs_once_counts_and_never_writes_on_soc_300(refused_log: pytest.LogCaptureFixture) -> None:
    async with house() as (sim, clock):
        agent = EdgeAgent(_agent_config(sim.port), clock=clock)
        try:
            await agent.start()
            await agent.wait_ready(5.0)
            await until(lambda: agent.stats.writes >= 1, "the first setpoint")
            sim.values = {(124, "ChaState"): 300.0}
            writes = len(sim.writes)
            for _ in range(3):
                polls = agent.stats.polls
                clock.advance(1.0)
                await until(lambda: agent.stats.polls > polls, "a poll")
            assert agent.snapshot is not None
            assert agent.snapshot.telemetry.battery_soc_pct.validity is Validity.IMPLAUSIBLE
            lines = [r for r in refused_log.records if "soc_implausible" in r.getMessage()]
            assert len(lines) == 1 and lines[0].levelno == logging.WARNING and "300 %" in lines[0].getMessage()
            counted = agent.metrics.registry.get_sample_value(
                "vpp_edge_refused_total", {"source": "device", "reason": "soc_implausible"})
            assert counted is not None and counted >= 3
            decisions = sum(agent.stats.decisions.values())
            await until(lambda: sum(agent.stats.decisions.values()) >= decisions + 5, "control ticks")
            assert len(sim.writes) == writes, "a setpoint was written on SoC 300 %"
        finally:
            await agent.stop()


async def test_scan_names_the_values_the_agent_would_refuse() -> None:
    async with house(raw_sf={(203, "W_SF"): -20}) as (sim, _clock):
        sim.image.set_raw(120, "WRtg_SF", 3)
        sim.image.set(120, "WRtg", 10_000_000.0)
        result = await scan_sunspec("127.0.0.1", sim.port, timeout_s=1.0)
        assert any("model 203 W (W_SF=-20)" in p for p in result.problems), result.problems
        assert any("model 120 WRtg reads 1e+07 W" in p for p in result.problems), result.problems
        meter = next(m for m in result.models if m.id == 203)
        assert next(p for p in meter.points if p.name == "W").value is None  # never 1.2e-17
        assert "problem: model 203 W (W_SF=-20)" in result.to_table()
