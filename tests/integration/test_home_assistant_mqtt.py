"""Issue 21 item 1: the house in Home Assistant over MQTT discovery, against a real Mosquitto.

The real :class:`EdgeAgent` runs against a SunSpec hybrid simulator on loopback with a
:class:`ManualClock` (polls happen when the test advances time); a plain aiomqtt subscriber
plays Home Assistant: it reads the retained discovery and states, publishes commands and
Home Assistant's ``online`` birth message.  No aggregator (the uplink retries a closed port).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import (
    AgentConfig,
    BatteryConfig,
    ControlConfig,
    DeviceConfig,
    HomeAssistantConfig,
)
from edge_agent.home_assistant.bridge import attach
from edge_agent.home_assistant.entities import discovery_topic, entities
from simulator.hybrid_device import Faults, SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from tests.conftest import free_port, until
from tests.ha_fixtures import Mosquitto, close_default_executor, mosquitto, polls  # noqa: F401 -- the fixture
from vpp_common.clock import ManualClock, cancel_and_wait

pytestmark = pytest.mark.timeout(60)

NOON = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
NODE = "house_ha"
ENERGY = ("grid_import", "grid_export", "pv_production", "battery_in", "battery_out")


@pytest.fixture(autouse=True)
def agent_state_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests give each agent its state_dir themselves (conftest's fixture sets it through the
    environment, which overrides what a test passes)."""
    monkeypatch.delenv("VPP_AGENT_STATE_DIR", raising=False)


def config(broker: Mosquitto, port: int, state_dir: Path) -> AgentConfig:
    return AgentConfig(
        house_id="house-ha", insecure=True, metrics_port=None, aggregator=f"127.0.0.1:{free_port()}",
        reconnect_initial_s=5.0, reconnect_max_s=5.0,
        device=DeviceConfig(port=port, timeout_s=0.2, poll_interval_s=1.0, stale_after_s=10.0, reconnect_max_s=4.0),
        battery=BatteryConfig(revert_s=10), control=ControlConfig(tick_s=0.02, deadband_w=20),
        state_dir=state_dir,
        home_assistant=HomeAssistantConfig(host=broker.host, port=broker.port, node_id=NODE,
                                           publish_interval_s=0.1, reconnect_initial_s=0.05, reconnect_max_s=0.2),
    )


class FakeHomeAssistant:
    """Subscribes to discovery and the agent's topics; keeps the last payload per topic."""

    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker
        self.seen: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self._ready = asyncio.Event()

    async def _run(self) -> None:
        async with aiomqtt.Client(self.broker.host, self.broker.port, identifier="fake-ha") as client:
            self._client = client
            await client.subscribe("homeassistant/#")
            await client.subscribe(f"vpp/{NODE}/#")
            self._ready.set()
            async for msg in client.messages:
                self.seen[msg.topic.value] = msg.payload.decode() if isinstance(msg.payload, bytes) else str(msg.payload)

    async def start(self) -> None:
        self.seen.clear()
        self._ready.clear()
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 5)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    async def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        assert self._client is not None
        await self._client.publish(topic, payload, qos=1, retain=retain)

    def configs(self) -> dict[str, dict[str, object]]:
        return {t: json.loads(p) for t, p in self.seen.items() if t.startswith("homeassistant/") and p}

    def state(self, key: str) -> str | None:
        return self.seen.get(f"vpp/{NODE}/{key}/state")


@pytest.fixture
async def house(tmp_path: Path) -> AsyncIterator[tuple[SunSpecHybridSimulator, ManualClock]]:
    clock = ManualClock(NOON)
    sim = SunSpecHybridSimulator(SimulatorConfig(physics=PhysicsConfig(initial_soc_pct=50)), clock)
    await sim.start()
    try:
        yield sim, clock
    finally:
        await sim.stop()
        await close_default_executor()


def refused(agent: EdgeAgent, reason: str) -> float:
    return agent.metrics.registry.get_sample_value(
        "vpp_edge_refused_total", {"source": "home_assistant", "reason": reason}) or 0.0


async def test_house_in_home_assistant(mosquitto: Mosquitto, house, tmp_path: Path) -> None:
    sim, clock = house
    ha = FakeHomeAssistant(mosquitto)
    await ha.start()
    agent = EdgeAgent(config(mosquitto, sim.port, tmp_path / "state"), clock=clock)
    bridge = attach(agent)
    assert bridge is not None
    try:
        await agent.start()
        await agent.wait_ready(5)
        await polls(agent, clock, 3)

        # -- discovery: every entity announced, retained, with a state ----------------------
        await until(lambda: ha.seen.get(f"vpp/{NODE}/availability") == "online", "availability online")
        expected = {discovery_topic(bridge.spec(), e) for e in entities(bridge.spec())}
        # 4 power, 5 energy, SoC, activity, reason, mode, reserve, duration, 3 buttons, 3 events (no tariff: no price)
        assert len(expected) == 21
        await until(lambda: set(ha.configs()) == expected, "every discovery config")
        configs = ha.configs()
        for topic, cfg in configs.items():
            assert cfg["unique_id"] == f"vpp_{NODE}_{topic.split('/')[3]}"
            assert cfg["device"]["identifiers"] == [f"vpp_{NODE}"]  # one device per house
            assert cfg["origin"]["name"] and cfg["availability"][0]["topic"] == f"vpp/{NODE}/availability"
            if "state_topic" in cfg and "/event/" not in topic:  # events: only when one fires
                await until(lambda: cfg["state_topic"] in ha.seen, f"state of {topic}")
        await until(lambda: ha.state("battery_soc") not in (None, "None"), "a valid SoC")
        assert 0 <= float(ha.state("battery_soc")) <= 100
        await until(lambda: ha.state("activity") in ("plan", "fallback"), "a decision")
        assert json.loads(ha.seen[f"vpp/{NODE}/reason/attributes"])["control_mode"] == "vpp"

        # -- automations: no aggregator for a minute (vpp mode) fires its event, not retained ----
        assert f"vpp/{NODE}/aggregator_event/state" not in ha.seen
        await polls(agent, clock, 7, step_s=10.0)
        await until(lambda: f"vpp/{NODE}/aggregator_event/state" in ha.seen, "the aggregator_unreachable event")
        assert json.loads(ha.seen[f"vpp/{NODE}/aggregator_event/state"]) == {"event_type": "aggregator_unreachable"}
        assert bridge.events_published == 1

        # -- the mode select changes the agent's mode ----------------------------------------
        await ha.publish(f"vpp/{NODE}/control_mode/set", "self_consumption")
        await until(lambda: agent.config.control.mode == "self_consumption", "mode self_consumption")
        await until(lambda: ha.state("control_mode") == "self_consumption", "mode state re-published")
        await ha.publish(f"vpp/{NODE}/reserve_soc/set", "20")
        await until(lambda: agent.config.battery.reserve_soc_pct == 20.0, "reserve 20 %")

        # -- hostile commands refused, the state that holds published again -------------------
        for topic, payload, reason in (("reserve_soc", "nan", "not_a_number"), ("reserve_soc", "100", "out_of_range"),
                                       ("control_mode", "tou", "unknown_mode"),  # no tariff: no tou
                                       ("control_mode", "x" * 500, "too_long"),
                                       ("hold_battery", "rm -rf", "bad_press")):
            before = refused(agent, reason)
            ha.seen.pop(f"vpp/{NODE}/{topic}/state", None)
            await ha.publish(f"vpp/{NODE}/{topic}/set", payload)
            await until(lambda: refused(agent, reason) > before, f"{payload[:10]!r} on {topic} refused")
            if topic != "hold_battery":
                await until(lambda: ha.state(topic) is not None, f"{topic} state re-published")
        assert agent.config.battery.reserve_soc_pct == 20.0 and agent.config.control.mode == "self_consumption"
        assert ha.state("reserve_soc") == "20"

        # -- an override goes through decide (safety clamp last) ------------------------------
        await ha.publish(f"vpp/{NODE}/override_hours/set", "1.5")
        await until(lambda: bridge.override_hours == 1.5, "override duration")
        await ha.publish(f"vpp/{NODE}/hold_battery/set", "PRESS")
        await until(lambda: agent.override is not None, "hold override")
        await polls(agent, clock, 1)
        await until(lambda: ha.state("activity") == "override", "activity override")
        d = agent.stats.last_decision
        # held at 0 W unless a safety rule moves it (the clamp is still last: at noon, the export cap)
        assert d is not None and d.reason == "override: hold the battery" and (d.battery_w == 0.0 or d.clamped_by)
        await ha.publish(f"vpp/{NODE}/charge_now/set", "PRESS")
        await until(lambda: agent.override is not None and "charge" in agent.override.plan_id, "charge override")
        await polls(agent, clock, 1)
        await until(lambda: agent.stats.last_decision is not None
                    and agent.stats.last_decision.reason == "override: charge now", "charging on the override")
        assert agent.stats.last_decision.battery_w > 0
        await ha.publish(f"vpp/{NODE}/cancel_override/set", "PRESS")
        await until(lambda: agent.override is None, "override cancelled")

        # -- Home Assistant restarts: re-announce --------------------------------------------
        n = bridge.announcements
        await ha.publish("homeassistant/status", "online")
        await until(lambda: bridge.announcements > n, "re-announce on HA online")

        # -- broker restart: the agent comes back on its own ----------------------------------
        await ha.stop()
        mosquitto.stop()
        # at once when the socket closes; at worst after the client's 10 s operation timeout
        await until(lambda: not bridge.connected, "agent notices the broker is gone", 25)
        mosquitto.start()  # no persistence: nothing retained survives
        await ha.start()
        await until(lambda: set(ha.configs()) == expected and ha.seen.get(f"vpp/{NODE}/availability") == "online",
                    "discovery published again after the broker restart")
    finally:
        await agent.stop()
        await ha.stop()
    # stopped: offline said (retained), not left to the last will
    ha2 = FakeHomeAssistant(mosquitto)
    await ha2.start()
    try:
        await until(lambda: ha2.seen.get(f"vpp/{NODE}/availability") == "offline", "offline after stop")
    finally:
        await ha2.stop()


async def test_energy_counters_survive_an_agent_restart(mosquitto: Mosquitto, house, tmp_path: Path) -> None:
    sim, clock = house
    state_dir = tmp_path / "state"
    ha = FakeHomeAssistant(mosquitto)
    await ha.start()
    try:
        agent = EdgeAgent(config(mosquitto, sim.port, state_dir), clock=clock)
        attach(agent)
        try:
            await agent.start()
            await agent.wait_ready(5)
            await polls(agent, clock, 6)
            await until(lambda: float(ha.state("pv_production") or 0) > 0, "PV energy counted")
        finally:
            await agent.stop()
        before = {k: float(ha.state(k) or 0) for k in ENERGY}
        saved = json.loads((state_dir / f"home_assistant_energy_{NODE}.json").read_text())["kwh"]
        # published only once on disk (as published: 4 decimals, rounding is monotonic)
        assert all(float(f"{saved[k]:.4f}") >= before[k] for k in ENERGY), (saved, before)

        for k in ENERGY:
            ha.seen.pop(f"vpp/{NODE}/{k}/state", None)
        agent = EdgeAgent(config(mosquitto, sim.port, state_dir), clock=clock)
        attach(agent)
        try:
            await agent.start()
            await until(lambda: all(ha.state(k) is not None for k in ENERGY), "counters published again")
            first = {k: float(ha.state(k) or 0) for k in ENERGY}
            assert all(first[k] >= before[k] for k in ENERGY), (before, first)
            await agent.wait_ready(5)
            await polls(agent, clock, 3)
            await until(lambda: float(ha.state("pv_production") or 0) > first["pv_production"], "counting on")
        finally:
            await agent.stop()
    finally:
        await ha.stop()


async def test_stale_readings_are_unknown_and_not_counted(mosquitto: Mosquitto, house, tmp_path: Path) -> None:
    sim, clock = house
    ha = FakeHomeAssistant(mosquitto)
    await ha.start()
    agent = EdgeAgent(config(mosquitto, sim.port, tmp_path / "state"), clock=clock)
    bridge = attach(agent)
    assert bridge is not None
    try:
        await agent.start()
        await agent.wait_ready(5)
        await polls(agent, clock, 3)
        await until(lambda: ha.state("grid_power") not in (None, "None"), "a grid power reading")
        counters = bridge.counters
        sim.faults = Faults(timeout=True)  # the device stops answering: its readings go stale
        await polls(agent, clock, 2)
        kwh = dict(counters.kwh)
        await polls(agent, clock, 5)
        assert counters.kwh == kwh  # nothing integrated from stale readings
        for key in ("grid_power", "pv_power", "battery_power", "battery_soc"):
            await until(lambda: ha.state(key) == "None", f"{key} unknown (stale is not zero)")
        sim.faults = Faults()
        for _ in range(10):  # the device's reads back off (up to 4 clock s): poll until they come back
            await polls(agent, clock, 1)
            if agent.snapshot is not None and agent.snapshot.telemetry.grid_power_w.usable:
                break
        await until(lambda: ha.state("grid_power") not in (None, "None"), "readings valid again")
        assert all(counters.kwh[k] >= kwh[k] for k in kwh)
    finally:
        await agent.stop()
        await ha.stop()


async def test_mode_and_reserve_set_in_home_assistant_survive_an_agent_restart(mosquitto: Mosquitto, house,
                                                                              tmp_path: Path) -> None:
    sim, clock = house
    state_dir = tmp_path / "state"
    settings = state_dir / f"home_assistant_settings_{NODE}.json"
    ha = FakeHomeAssistant(mosquitto)
    await ha.start()
    try:
        agent = EdgeAgent(config(mosquitto, sim.port, state_dir), clock=clock)
        attach(agent)
        assert not settings.exists()  # nothing set in Home Assistant: the config's values, nothing kept
        try:
            await agent.start()
            await until(lambda: ha.state("control_mode") == "vpp", "mode published")
            await ha.publish(f"vpp/{NODE}/control_mode/set", "self_consumption")
            await ha.publish(f"vpp/{NODE}/reserve_soc/set", "25")
            await until(lambda: agent.config.battery.reserve_soc_pct == 25.0, "reserve 25 %")
        finally:
            await agent.stop()
        assert json.loads(settings.read_text()) == {"control_mode": "self_consumption", "reserve_soc": 25.0}

        agent = EdgeAgent(config(mosquitto, sim.port, state_dir), clock=clock)
        attach(agent)  # restored through the same checks before the agent starts
        assert agent.config.control.mode == "self_consumption" and agent.config.battery.reserve_soc_pct == 25.0

        # a value the checks refuse now (a reserve above max SoC) is forgotten; garbage is set aside
        settings.write_text(json.dumps({"control_mode": "idle-ish", "reserve_soc": 99.5}))
        agent = EdgeAgent(config(mosquitto, sim.port, state_dir), clock=clock)
        attach(agent)
        assert agent.config.control.mode == "vpp" and agent.config.battery.reserve_soc_pct != 99.5
        assert json.loads(settings.read_text()) == {}
        settings.write_text("{not json")
        agent = EdgeAgent(config(mosquitto, sim.port, state_dir), clock=clock)
        attach(agent)
        assert agent.config.control.mode == "vpp" and settings.with_suffix(".corrupt").exists()
    finally:
        await ha.stop()
