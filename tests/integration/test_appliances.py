"""Acceptance (issue 22 item 3): an agent with a P1 meter and three plugs on their simulators, each with
its appliance behind it (simulator/appliances.py) on the agent's clock: a washing machine armed at
noon that must be done by 17:00, a freezer that may pause 30 minutes an hour, a power station that
needs 0.7 kWh by 18:00.  On a tariff cheapest from 14:00 to 16:00 with a spike from 16:00 to 17:00
and PV surplus until 13:00: the washer runs 14:00-16:00 (before its deadline, in the cheapest window),
the freezer's pauses respect their maximum, the station charges on the PV surplus then in the cheap
hours, and the flexibility the agent sends up lists the three loads (decoded as the aggregator does)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator.service.convert import flexibility_from_proto
from edge_agent.agent import EdgeAgent
from edge_agent.appliances import ApplianceControl
from edge_agent.config import AgentConfig
from edge_agent.lan_devices import LanDevices
from edge_agent.resources.house import HouseSnapshot
from edge_agent.uplink.convert import flexibility_to_proto
from simulator.appliances import Freezer, PowerStation, WashingMachine
from simulator.p1_device import P1Sim
from simulator.shelly_device import ShellySim
from simulator.tasmota_device import TasmotaSim
from vpp_common.clock import ManualClock
from vpp_common.messages import (
    DispatchPlan,
    Flexibility,
    GridSignal,
    Measurement,
    PriceSlot,
    RunStart,
    RunState,
    SiteTelemetry,
    Validity,
)

pytestmark = pytest.mark.timeout(120)
NOON = datetime(2026, 6, 22, 12, 0, tzinfo=UTC)
STEP_S = 30.0


def period(start: int, end: int, price: float) -> dict[str, Any]:
    return {"start": time(start).isoformat(), "end": time(end % 24).isoformat(), "import_price_per_kwh": price,
            "export_price_per_kwh": 0.08}


@dataclass
class House:
    clock: ManualClock
    washer: WashingMachine
    freezer: Freezer
    station: PowerStation
    sims: tuple[ShellySim, TasmotaSim, ShellySim, P1Sim]
    agent: EdgeAgent
    lan: LanDevices
    control: ApplianceControl

    def base_w(self, now: datetime) -> float:
        return -800.0 if now < NOON + timedelta(hours=1) else 400.0  # PV surplus until 13:00

    async def step(self) -> None:
        self.clock.advance(STEP_S)
        now = self.clock.now()
        w, f, s, p1 = self.sims
        p1.power_w = self.base_w(now) + w.plug_load_w() + f.plug_load_w() + s.plug_load_w()
        await self.lan.poll_once()
        await self.control.step()

    async def run_until(self, when: datetime) -> None:
        while self.clock.now() < when:
            await self.step()


@pytest.fixture
async def house(tmp_path: Path) -> AsyncIterator[House]:
    clock = ManualClock(NOON)
    washer, freezer, station = WashingMachine(clock=clock), Freezer(clock=clock), PowerStation(clock=clock)
    w, f, s, p1 = ShellySim("shelly_plug_s"), TasmotaSim(), ShellySim("shelly_plug_s", mac="A0B1C2D3E4F6"), \
        P1Sim(interval_s=0.01)
    w.appliance, f.appliance, s.appliance = washer, freezer, station
    ports = [await sim.start() for sim in (w, f, s, p1)]
    config = AgentConfig.model_validate({
        "house_id": "h", "insecure": True, "metrics_port": None, "state_dir": str(tmp_path),
        "tariff": {"periods": [period(0, 14, 0.30), period(14, 16, 0.15), period(16, 17, 0.60),
                               period(17, 24, 0.30)]},
        "lan_devices": [
            {"id": "washer", "model": "shelly_plug_s", "host": "127.0.0.1", "port": ports[0], "role": "load"},
            {"id": "freezer", "model": "tasmota_plug", "host": "127.0.0.1", "port": ports[1], "role": "load"},
            {"id": "station", "model": "shelly_plug_s", "host": "127.0.0.1", "port": ports[2], "role": "load"},
            {"id": "p1", "model": "dsmr5_p1", "host": "127.0.0.1", "port": ports[3], "role": "grid_meter"}],
        "appliances": [
            {"plug": "washer", "kind": "run", "profile": [[30, 2000], [90, 66.7]], "ready_by": "17:00"},
            {"plug": "freezer", "kind": "pausable", "max_pause_min": 30, "period_min": 60,
             "pause_above_per_kwh": 0.5, "power_w": 90},
            {"plug": "station", "kind": "battery", "capacity_kwh": 1.0, "charge_power_w": 300,
             "energy_kwh_per_day": 0.7, "ready_by": "18:00"}]})
    agent = EdgeAgent(config, clock=clock)
    lan = LanDevices.from_config(config, clock)
    assert lan is not None
    control = ApplianceControl(agent, lan, interval_s=STEP_S)
    agent.reports.flexibility_sources.append(control.flexibility)
    try:
        yield House(clock, washer, freezer, station, (w, f, s, p1), agent, lan, control)
    finally:
        await lan.close()
        for sim in (w, f, s, p1):
            await sim.stop()


def sent_flexibility(h: House) -> Flexibility:
    """What the agent's next flexibility update carries, decoded by the aggregator's converter."""
    sent: list[object] = []
    h.agent.uplink.send = sent.append  # type: ignore[method-assign]
    now = h.clock.now()
    m = Measurement(400.0, Validity.VALID, now)
    snap = HouseSnapshot(SiteTelemetry(now, m, m, m, m, m), Flexibility(now), 5000.0, 5000.0)
    h.agent.reports.last_flex_sent = None
    h.agent.reports.send_flexibility(snap)
    flex = next(x for x in sent if isinstance(x, Flexibility))
    return flexibility_from_proto(flexibility_to_proto(flex))


async def test_washer_freezer_and_station_scheduled_and_reported(house: House) -> None:
    h = house
    await h.run_until(NOON + timedelta(minutes=2))  # the washer idle: its plug reads 0.5 W
    h.washer.arm()  # a person loads it, sets the programme and presses start: it waits, drawing 4 W
    await h.run_until(NOON + timedelta(hours=1))
    assert h.washer.state == "armed" and not h.sims[0].output  # held off for the cheap window
    flex = sent_flexibility(h)
    assert [x.resource_id for x in flex.switchable_loads] == ["freezer"]
    runs = {r.resource_id: r for r in flex.shiftable_runs}
    assert set(runs) == {"washer", "station"}
    assert runs["washer"].state is RunState.SCHEDULED and runs["washer"].start == NOON + timedelta(hours=2)
    assert runs["washer"].latest_end == NOON + timedelta(hours=5)
    assert h.station.charged_wh > 250  # on the PV surplus

    await h.run_until(NOON + timedelta(hours=4))  # its last step paused the freezer, after the poll
    assert h.control.decisions[-1][1:] == ("freezer", False, "price_spike")
    assert "freezer" in [a.plug for a in h.control.held()]  # paused for the spike at 16:00
    h.clock.advance(STEP_S)
    await h.control.step()  # no poll since: the plug's last reading (on) predates the pause
    assert "freezer" in [a.plug for a in h.control.held()] and not h.sims[1].on  # the pause is not lost
    await h.run_until(NOON + timedelta(hours=5, minutes=30))
    assert len(h.washer.runs) == 1 and h.washer.interrupted == 0
    start, end = h.washer.runs[0]
    assert NOON + timedelta(hours=2) <= start <= NOON + timedelta(hours=2, seconds=STEP_S)  # the cheapest window
    assert end <= NOON + timedelta(hours=5)  # before its deadline
    assert h.freezer.off_spans, "the spike paused the freezer"
    for s, e in h.freezer.off_spans:
        assert e - s <= timedelta(minutes=30, seconds=STEP_S) and NOON + timedelta(hours=4) <= s
    assert h.freezer.off_since is None and h.freezer.max_temp_c < -15.0
    assert h.station.charged_wh >= 690  # its day's energy, long before 18:00
    reasons = {(plug, on, why) for _, plug, on, why in h.control.decisions}
    assert {("washer", False, "hold"), ("washer", True, "cheapest_window"), ("freezer", False, "price_spike"),
            ("station", True, "cheapest_hours")} <= reasons, reasons
    flex = sent_flexibility(h)
    runs = {r.resource_id: r for r in flex.shiftable_runs}
    assert runs["washer"].state is RunState.DONE and runs["station"].state in (RunState.DONE, RunState.WAITING)
    reg = h.agent.metrics.registry
    assert reg.get_sample_value("vpp_edge_appliances", {"kind": "run", "state": "done"}) == 1.0
    assert reg.get_sample_value("vpp_edge_appliance_switches_total",
                                {"kind": "pausable", "reason": "price_spike", "result": "ok"}) == 1.0


async def test_the_plans_start_is_followed_and_a_plug_that_fails_is_unknown(house: House) -> None:
    h = house
    await h.run_until(NOON + timedelta(minutes=2))
    h.washer.arm()
    plan = DispatchPlan("p1", 1, NOON, NOON, NOON + timedelta(hours=6), 900, (),
                        run_starts=(RunStart("washer", NOON + timedelta(hours=1)),))
    h.agent.plans.offer(plan, NOON)
    await h.run_until(NOON + timedelta(hours=1, minutes=5))
    assert h.washer.state == "running"
    assert ("washer", True, "plan") in {(p, on, why) for _, p, on, why in h.control.decisions}
    await h.sims[1].stop()  # the freezer's plug goes away: unknown, left alone, reported as unknown
    h.clock.advance(120.0)
    await h.run_until(NOON + timedelta(hours=1, minutes=10))
    fl = h.control.flexibility(h.clock.now())[0][0]
    assert fl.resource_id == "freezer" and fl.active_mode_id == ""


async def test_a_plug_found_off_is_restored_and_held_plugs_are_released_when_the_agent_stops(house: House) -> None:
    h = house
    h.sims[1].on = False  # the freezer's plug off when the agent starts (its own pause before a restart?)
    h.freezer.switched(False)
    await h.step()
    assert ("freezer", True, "restore") in {(p, on, why) for _, p, on, why in h.control.decisions}
    assert h.sims[1].on and h.freezer.off_since is None
    await h.run_until(NOON + timedelta(minutes=2))
    h.washer.arm()
    await h.run_until(NOON + timedelta(minutes=5))
    assert not h.sims[0].output and [a.plug for a in h.control.held()] == ["washer"]
    task = asyncio.create_task(h.control.run())
    await asyncio.sleep(0.1)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert h.sims[0].output and h.washer.state == "running"  # handed back: it runs now rather than never
    assert ("washer", True, "agent_stops") in {(p, on, why) for _, p, on, why in h.control.decisions}


async def test_the_aggregators_prices_replace_the_tariffs_where_they_cover(house: House) -> None:
    h = house
    h.agent.intake.on_grid_signal(GridSignal(NOON, prices=(PriceSlot(NOON + timedelta(hours=1), 3600, 0.01, 0.0),)))
    o = h.control.outlook(NOON, -300.0)
    assert o.import_price[:4] == (0.30,) * 4 and o.import_price[4:8] == (0.01,) * 4 and o.import_price[8] == 0.15
    assert o.export_price[4] == 0.0 and o.export_price[0] == 0.08 and o.surplus_now_w == 300.0
    assert math.isnan(o.surplus_w[0])  # no forecast yet: unknown, not 0
    assert h.control.outlook(NOON, float("nan")).surplus_now_w is None


async def test_a_freezer_on_a_home_assistant_switch(tmp_path: Path) -> None:
    """An appliance behind a Home Assistant entity (role switchable_load) is scheduled by the appliances,
    not by Home Assistant's load switching policy."""
    from edge_agent.appliances import attach
    from edge_agent.home_assistant.devices_component import attach as attach_ha
    from tests.conftest import until
    from tests.ha_ws_fake import FakeHomeAssistant

    fake = FakeHomeAssistant()
    await fake.set_state("input_boolean.freezer", "on")
    await fake.set_state("sensor.freezer_power", "85", "W")
    await fake.set_state("switch.boiler", "on")
    await fake.start()
    entities = [{"id": "freezer", "entity_id": "input_boolean.freezer", "role": "switchable_load",
                 "power_entity_id": "sensor.freezer_power"},
                {"id": "boiler", "entity_id": "switch.boiler", "role": "switchable_load"}]
    base = {"house_id": "h", "insecure": True, "metrics_port": None, "state_dir": str(tmp_path),
            "tariff": {"periods": [period(0, 0, 0.90)]},
            "home_assistant": {"api": {"url": fake.url, "token": "good-token", "entities": entities}}}
    with pytest.raises(ValueError, match=r"no \[\[lan_devices\]\] id nor Home Assistant entity"):
        AgentConfig.model_validate({**base, "appliances": [{"plug": "fridge", "kind": "pausable", "max_pause_min": 30}]})
    config = AgentConfig.model_validate({**base, "appliances": [
        {"plug": "freezer", "kind": "pausable", "max_pause_min": 30, "pause_above_per_kwh": 0.5}]})
    clock = ManualClock(NOON)
    agent = EdgeAgent(config, clock=clock)
    ha = attach_ha(agent)
    assert ha is not None and set(ha.control.rules) == {"boiler"}  # the freezer is the appliances'
    control = attach(agent, None, ha)
    assert control is not None and agent.reports.flexibility_sources[-1] == control.flexibility
    assert agent.components == [control] and control.owned == [ha]  # it stops after the plugs are handed back
    task = asyncio.create_task(ha.devices.run())
    try:
        await until(lambda: ha.devices.api.connected and len(ha.devices.api.states) == 3, "subscribed")
        await control.step()
        assert fake.states["input_boolean.freezer"]["s"] == "off"
        assert [(p, on, why) for _, p, on, why in control.decisions] == [("freezer", False, "price_spike")]
        clock.advance(30 * 60)
        await control.step()
        assert fake.states["input_boolean.freezer"]["s"] == "on" and control.decisions[-1][3] == "max_pause"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await fake.stop()


async def test_edge_agent_run_holds_the_washer_and_hands_it_back_on_stop(tmp_path: Path) -> None:
    """``edge-agent run`` as a process with an [[appliances]] washer on a simulated plug: held off for
    its cheaper window, shown in /metrics, switched back on (and so run) when the agent stops."""
    import signal
    import sys

    from tests.conftest import free_port, until
    from tests.integration.test_agent_startup import _env, _metrics

    sim = ShellySim("shelly_plug_s")
    washer = WashingMachine()
    washer.arm()
    sim.appliance = washer
    port, metrics_port = await sim.start(), free_port()
    config = tmp_path / "agent.toml"
    config.write_text(f'''insecure = true
house_id = "h1"
aggregator = "127.0.0.1:{free_port()}"
metrics_port = {metrics_port}
[device]
port = {free_port()}
[[tariff.periods]]
start = "00:00"
end = "13:00"
import_price_per_kwh = 0.30
export_price_per_kwh = 0.08
[[tariff.periods]]
start = "13:00"
end = "15:00"
import_price_per_kwh = 0.10
export_price_per_kwh = 0.08
[[tariff.periods]]
start = "15:00"
end = "00:00"
import_price_per_kwh = 0.30
export_price_per_kwh = 0.08
[[lan_devices]]
id = "washer"
model = "shelly_plug_s"
host = "127.0.0.1"
port = {port}
role = "load"
[[appliances]]
plug = "washer"
kind = "run"
energy_kwh = 1.1
duration_min = 120
ready_by = "17:00"
''')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config),
        "--clock-start", NOON.isoformat(), "--clock-speed", "10", env=_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await until(lambda: not sim.output, "the washer held off", timeout_s=30)
        assert washer.state == "armed"
        await until(lambda: 'vpp_edge_appliances{kind="run",state="scheduled"} 1.0' in _metrics(metrics_port),
                    "its state in /metrics", timeout_s=10)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert sim.output and washer.state == "running", err.decode()[-2000:]
        log = err.decode()
        assert "washer (run): armed" in log and "waits for 13:00 (cheapest_window)" in log, log[-3000:]
        assert "washer (run) switched on: agent_stops" in log, log[-3000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await sim.stop()


async def test_a_restart_keeps_the_pause_budget_and_the_held_run(house: House) -> None:
    h = house
    await h.run_until(NOON + timedelta(minutes=2))
    h.washer.arm()
    await h.run_until(NOON + timedelta(minutes=30))
    assert not h.sims[0].output  # the washer held for 14:00
    h.agent.spool.close()  # the agent restarts: a new one on the same state_dir
    agent = EdgeAgent(h.agent.config, clock=h.clock)
    h.agent, h.control = agent, ApplianceControl(agent, h.lan, interval_s=STEP_S)
    await h.run_until(NOON + timedelta(hours=4, minutes=10))  # the spike paused the freezer at 16:00
    h.agent.spool.close()
    agent = EdgeAgent(h.agent.config, clock=h.clock)
    h.agent, h.control = agent, ApplianceControl(agent, h.lan, interval_s=STEP_S)
    await h.run_until(NOON + timedelta(hours=5))
    decisions = [(p, on, why) for _, p, on, why in h.control.decisions]
    assert not [d for d in decisions if d[2] == "restore"], decisions  # its own holds, known
    assert ("freezer", True, "max_pause") in decisions  # 30 min after the pause began before the restart
    assert len(h.freezer.off_spans) == 1 and h.freezer.off_spans[0][1] - h.freezer.off_spans[0][0] <= \
        timedelta(minutes=30, seconds=STEP_S)
    assert h.washer.runs and NOON + timedelta(hours=2) <= h.washer.runs[0][0] <= NOON + timedelta(hours=2, minutes=1)


async def test_in_a_house_of_lan_devices_only_the_grid_is_the_houses_reading(house: House) -> None:
    """device.kind = "lan": the house's Resource Manager claims the P1 meter (edge_agent/lan_house.py), so
    the appliances read the grid from the house's snapshot, never a missing LAN snapshot's nothing."""
    h = house
    await h.lan.poll_once()
    assert h.control.grid_w() is not None
    meter = h.lan.claim("grid_meter")
    assert meter is not None
    assert h.control.grid_w() is None  # no snapshot of the house yet: unknown
    m = Measurement(1234.0, Validity.VALID, NOON)
    h.agent.snapshot = HouseSnapshot(SiteTelemetry(NOON, m, m, m, m, m), Flexibility(NOON), 0.0, 0.0)
    assert h.control.grid_w() == 1234.0
    await meter.close()
