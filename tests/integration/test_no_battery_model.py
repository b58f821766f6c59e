"""A SunSpec hybrid without model 802 (issue 19): models 1 (L=65), 120, 124, 203, 103 at base 50000.

Its battery power cannot be measured (103 W is PV and battery together), so the battery cannot be
controlled honestly, and without 123 or 704 its PV cannot be curtailed.  ``edge-agent scan`` says
so; the agent says so at start and while running, advertises neither FRBC nor PEBC, REJECTS plans
with the reason (it used to ACCEPT them and idle without a log line), and writes nothing, while
grid power, SoC and the household load (grid + the inverter's AC power) are still measured.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, BatteryConfig, ControlConfig, DeviceConfig
from simulator.hybrid_device import SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from tests.conftest import free_port, until
from tests.integration.test_scan import scan
from vpp_common.clock import ManualClock
from vpp_common.messages import (
    ControlType,
    DispatchPlan,
    Envelope,
    Flexibility,
    PlanSlot,
    PlanState,
    PlanStatus,
    Setpoint,
    Validity,
)

pytestmark = pytest.mark.timeout(60)
NOON = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
MODELS = (120, 124, 203, 103)  # after model 1


def simulator(clock: ManualClock) -> SunSpecHybridSimulator:
    return SunSpecHybridSimulator(SimulatorConfig(physics=PhysicsConfig(initial_soc_pct=50), model_order=MODELS,
                                                  model1_length=65), clock, base_address=50000)


async def test_scan_says_what_the_device_can_and_cannot_do() -> None:
    async with simulator(ManualClock(NOON)) as sim:
        code, out, err = await scan("--host", "127.0.0.1", "--port", str(sim.port), "--json")
        assert code == 0, err
        result = json.loads(out)
        assert result["base_address"] == 50000
        assert [m["id"] for m in result["models"]] == [1, *MODELS] and result["models"][0]["length"] == 65
        caps = result["capabilities"]
        assert caps["battery_controllable"] is False and caps["pv_curtailable"] is False
        assert set(caps["can"]) == {"grid_power", "battery_soc", "battery_control"}
        assert set(caps["cannot"]) == {"battery_power", "pv_power", "pv_curtailment"}
        assert "802" in caps["cannot"]["battery_power"]
        code, out, err = await scan("--host", "127.0.0.1", "--port", str(sim.port))
        assert code == 0, err
        assert "cannot: battery power (no model 802" in out
        assert "cannot: pv curtailment" in out
        assert "battery: NOT controllable" in out and "PV: NOT curtailable" in out


def _plan(now: datetime, version: int = 1) -> DispatchPlan:
    slot = PlanSlot(now, (Setpoint("battery", 2_000.0, Envelope(-5_000.0, 5_000.0)),))
    return DispatchPlan(f"p{version}", version, now, now, now + timedelta(hours=1), 3600, (slot,))


async def test_agent_reports_the_battery_not_controllable_and_rejects_plans(caplog: pytest.LogCaptureFixture
                                                                            ) -> None:
    caplog.set_level(logging.INFO)
    clock = ManualClock(NOON)
    async with simulator(clock) as sim:
        cfg = AgentConfig(house_id="house-no-802", insecure=True, metrics_port=None,
                          aggregator=f"127.0.0.1:{free_port()}", reconnect_initial_s=5.0, reconnect_max_s=5.0,
                          device=DeviceConfig(port=sim.port, timeout_s=0.5, poll_interval_s=1.0),
                          battery=BatteryConfig(revert_s=10), control=ControlConfig(tick_s=0.02))
        agent = EdgeAgent(cfg, clock=clock)
        sent: list[object] = []
        agent.uplink.send = sent.append  # type: ignore[method-assign]  # what would go up the stream
        try:
            await agent.start()
            # said at start: what it cannot do, at WARNING
            cannot = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "cannot" in
                      r.getMessage()]
            assert any("battery_power" in m and "802" in m for m in cannot), cannot
            assert any("pv_curtailment" in m for m in cannot), cannot

            # the Hello: nothing offered that cannot be delivered
            kinds = {r.resource_id: r.control_type for r in agent._hello().resources}
            assert kinds == {"battery": ControlType.NOT_CONTROLLABLE, "pv": ControlType.NOT_CONTROLLABLE,
                             "grid_meter": ControlType.NOT_CONTROLLABLE}

            await agent.wait_ready(5.0)
            for _ in range(3):
                polls = agent.stats.polls
                clock.advance(1.0)
                await until(lambda: agent.stats.polls > polls, "a poll")
            snap = agent.snapshot
            assert snap is not None
            t = snap.telemetry
            assert t.grid_power_w.usable and t.battery_soc_pct.usable and t.load_power_w.usable
            assert t.battery_power_w.validity is Validity.MISSING and t.pv_power_w.validity is Validity.MISSING
            sim_load = sim.snapshot().load_power_w
            assert t.load_power_w.value == pytest.approx(sim_load, abs=2.0)  # grid + the inverter's AC W

            agent.reports.send_flexibility(snap)
            flex = [m for m in sent if isinstance(m, Flexibility)]
            assert flex and all(f.storages == () and f.curtailments == () for f in flex)

            # a plan for the battery: REJECTED with the reason, never ACCEPTED and idled
            agent._on_plan(_plan(clock.now()))
            statuses = [m for m in sent if isinstance(m, PlanStatus)]
            assert [s.state for s in statuses] == [PlanState.REJECTED]
            assert "battery not controllable" in statuses[0].reason and "802" in statuses[0].reason
            assert agent.stats.plans_accepted == 0 and agent.plans.current is None

            # running: no write ever, and the reason said again (rate-limited), not silence
            decisions = sum(agent.stats.decisions.values())
            await until(lambda: sum(agent.stats.decisions.values()) >= decisions + 5, "control ticks")
            held = [r for r in caplog.records if "battery_not_controllable" in r.getMessage()]
            assert len(held) == 1 and held[0].levelno == logging.WARNING  # once, then rate-limited
            assert agent.metrics.registry.get_sample_value(
                "vpp_edge_refused_total", {"source": "device", "reason": "battery_not_controllable"}) >= 5
            assert agent.stats.writes == 0 and agent.stats.write_errors == 0
        finally:
            await agent.stop()
        assert sim.writes == [], "a register was written to a device the agent cannot control"
