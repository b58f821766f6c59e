"""Home Assistant's entities as the house's devices (edge_agent/home_assistant/ha_devices.py,
ws_api.py, load_control.py) against a fake Home Assistant WebSocket server that follows the
protocol (tests/ha_ws_fake.py): auth failure, units, stale and unavailable entities, hostile
values, a server restart, switching with read-back, the load switching policy end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.energy_manager.load_switching import Action, LoadRules, Pressure
from edge_agent.ha_api_config import HomeAssistantApiConfig
from edge_agent.home_assistant.ha_devices import HaDevices, SwitchNotApplied
from edge_agent.home_assistant.load_control import LoadControl
from tests.conftest import until
from tests.ha_ws_fake import FakeHomeAssistant
from vpp_common.clock import ManualClock
from vpp_common.messages import Validity

NOON = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
ENTITIES = [
    {"id": "p1", "entity_id": "sensor.p1_power", "role": "grid_meter"},
    {"id": "fridge", "entity_id": "sensor.fridge_power", "role": "load"},
    {"id": "boiler", "entity_id": "switch.boiler", "role": "switchable_load",
     "power_entity_id": "sensor.boiler_power", "min_on_s": 60, "min_off_s": 120, "max_off_s": 600},
    {"id": "sg_ready", "entity_id": "input_boolean.sg_ready", "role": "switchable_load", "expected_power_w": 2000},
]


def api_config(url: str, token: str = "good-token", **kw: object) -> HomeAssistantApiConfig:
    return HomeAssistantApiConfig.model_validate({"url": url, "token": token, "entities": ENTITIES, "timeout_s": 2,
                                                  "heartbeat_s": 0.2, "reconnect_initial_s": 0.05,
                                                  "reconnect_max_s": 0.2, **kw})


@pytest.fixture
async def fake() -> AsyncIterator[FakeHomeAssistant]:
    ha = FakeHomeAssistant()
    await ha.set_state("sensor.p1_power", "1.5", "kW")
    await ha.set_state("sensor.fridge_power", "80", "W")
    await ha.set_state("sensor.boiler_power", "1200", "W")
    await ha.set_state("switch.boiler", "on")
    await ha.set_state("input_boolean.sg_ready", "on")
    await ha.start()
    try:
        yield ha
    finally:
        await ha.stop()


async def running(devices: HaDevices) -> asyncio.Task[None]:
    task = asyncio.create_task(devices.run())
    await until(lambda: devices.api.connected and len(devices.api.states) == 5, "subscribed to Home Assistant")
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_readings_units_and_telemetry(fake: FakeHomeAssistant) -> None:
    clock = ManualClock(NOON)
    devices = HaDevices(api_config(fake.url), clock, stale_after_s=30)
    task = await running(devices)
    try:
        snaps = devices.snapshots()
        assert snaps["p1"].power_w.value == 1500.0 and snaps["p1"].power_w.validity is Validity.VALID  # kW -> W
        assert snaps["fridge"].power_w.value == 80.0
        assert snaps["boiler"].power_w.value == 1200.0 and snaps["boiler"].switch_on.value == 1.0
        assert not snaps["sg_ready"].power_w.usable  # no power sensor: nothing measured
        assert {t.resource_id for t in devices.telemetry()} == {"p1", "fridge", "boiler"}
        await fake.set_state("sensor.p1_power", "-2.5")  # export, same unit (attributes kept)
        await until(lambda: devices.snapshots()["p1"].power_w.value == -2500.0, "the change pushed")
        # ping/pong keeps the connection; every command id grew
        await until(lambda: fake.pings >= 2, "pings")
        assert fake.ids_seen == sorted(set(fake.ids_seen))
    finally:
        await stop(task)


async def test_auth_failure_is_logged_and_nothing_is_read(fake: FakeHomeAssistant,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    devices = HaDevices(api_config(fake.url, token="wrong"), ManualClock(NOON), stale_after_s=30)
    task = asyncio.create_task(devices.run())
    try:
        await until(lambda: fake.auth_failures >= 2, "the token refused, and tried again")
        assert not devices.api.connected and "Invalid access token" in (devices.api.last_error or "")
        assert "refused the token" in caplog.text
        assert all(not t.power_w.usable for t in devices.telemetry())
    finally:
        await stop(task)


async def test_unavailable_entity_is_stale_then_missing_never_zero(fake: FakeHomeAssistant) -> None:
    clock = ManualClock(NOON)
    devices = HaDevices(api_config(fake.url), clock, stale_after_s=30)
    task = await running(devices)
    try:
        devices.snapshots()  # a valid reading
        await fake.set_state("sensor.fridge_power", "unavailable")
        await until(lambda: devices.api.states["sensor.fridge_power"].state == "unavailable", "unavailable")
        clock.advance(10)
        m = devices.snapshots()["fridge"].power_w
        assert (m.value, m.validity) == (80.0, Validity.STALE)
        clock.advance(30)
        assert devices.snapshots()["fridge"].power_w.validity is Validity.MISSING
        await fake.set_state("sensor.fridge_power", "unknown")
        await fake.set_state("switch.boiler", "unavailable")
        await until(lambda: devices.api.states["switch.boiler"].state == "unavailable", "unavailable")
        clock.advance(31)
        s = devices.snapshots()
        assert not s["fridge"].power_w.usable and s["boiler"].switch_on.validity is Validity.MISSING
    finally:
        await stop(task)


async def test_an_entity_not_updated_within_max_age_is_stale(fake: FakeHomeAssistant) -> None:
    entities = [dict(ENTITIES[0], max_age_s=60)]
    cfg = HomeAssistantApiConfig.model_validate({"url": fake.url, "token": "good-token", "entities": entities})
    clock = ManualClock(datetime.now(UTC))  # the fake stamps last_updated with the wall clock
    devices = HaDevices(cfg, clock, stale_after_s=120)
    task = asyncio.create_task(devices.run())
    try:
        await until(lambda: devices.api.connected and devices.api.states, "subscribed")
        assert devices.snapshots()["p1"].power_w.validity is Validity.VALID
        clock.advance(61)
        assert devices.snapshots()["p1"].power_w.validity is Validity.STALE
    finally:
        await stop(task)


@pytest.mark.parametrize(("state", "unit", "reason"), [
    ("abc", "W", "not_a_number"), ("nan", "W", "not_finite"), ("inf", "kW", "not_finite"),
    ("-Infinity", "W", "not_finite"), ("1e999", "W", "not_finite"), ("1e300", "W", "power_w_implausible"),
    ("-5", "W", "power_w_implausible"), ("500", "Wh", "unit"), ("500", None, "unit"), ("9" * 5000, "W", "not_finite"),
    ("", "W", None)])
async def test_hostile_values_are_refused_never_zero(fake: FakeHomeAssistant, state: str, unit: str | None,
                                                     reason: str | None) -> None:
    clock = ManualClock(NOON)
    refused: list[tuple[str, str]] = []
    devices = HaDevices(api_config(fake.url), clock, stale_after_s=5,
                        refuse=lambda r, detail: refused.append((r, detail)))
    task = await running(devices)
    try:
        await fake.set_state("sensor.fridge_power", state, unit if unit else None)
        if unit is None:  # a sensor that lost its unit
            fake.states["sensor.fridge_power"]["a"].pop("unit_of_measurement", None)
            devices.api.states["sensor.fridge_power"].attributes.pop("unit_of_measurement", None)
        await until(lambda: devices.api.states["sensor.fridge_power"].state == state, "the hostile value")
        clock.advance(6)
        m = devices.snapshots()["fridge"].power_w
        assert not m.usable and m.value != 0.0
        if reason is not None:  # each refused with a stable label, the detail naming the entity
            assert refused and {r for r, _ in refused} == {reason} and "sensor.fridge_power" in refused[-1][1]
        else:
            assert refused == []  # an empty state is no reading (stale), not a hostile one
        assert devices.snapshots()["p1"].power_w.usable  # the others unharmed
        await fake.send_raw("not json{")  # and garbage on the wire
        await fake.send_raw('{"id": "x", "type": "event", "event": 5}')
        await fake.set_state("sensor.fridge_power", "90", "W")
        await until(lambda: devices.snapshots()["fridge"].power_w.value == 90.0, "readings after the garbage")
    finally:
        await stop(task)


async def test_reconnect_after_the_server_restarts(fake: FakeHomeAssistant) -> None:
    clock = ManualClock(NOON)
    devices = HaDevices(api_config(fake.url), clock, stale_after_s=30)
    task = await running(devices)
    try:
        devices.snapshots()
        await fake.stop()
        await until(lambda: not devices.api.connected, "the connection lost")
        assert devices.snapshots()["p1"].power_w.validity is Validity.STALE  # not zero
        await fake.set_state("sensor.p1_power", "2", "kW")
        await fake.start()
        await until(lambda: devices.api.connects == 2 and devices.snapshots()["p1"].power_w.value == 2000.0,
                    "reconnected with backoff, states fetched again", 10)
    finally:
        await stop(task)


async def test_a_server_that_stops_answering_pings_is_left_and_reconnected(fake: FakeHomeAssistant) -> None:
    devices = HaDevices(api_config(fake.url, timeout_s=0.3), ManualClock(NOON), stale_after_s=30)
    task = await running(devices)
    try:
        fake.answer_pings = False
        await until(lambda: devices.api.connects >= 2 and "no answer to ping" in (devices.api.last_error or ""),
                    "the hung connection dropped and a new one made", 10)
        fake.answer_pings = True
        await until(lambda: devices.api.connected and devices.snapshots()["p1"].power_w.usable, "reading again")
    finally:
        await stop(task)


@pytest.mark.parametrize("hello", ["garbage", "binary", "close", "wrong_type"])
async def test_a_broken_handshake_is_retried_never_a_crash(fake: FakeHomeAssistant, hello: str) -> None:
    fake.hello = hello
    devices = HaDevices(api_config(fake.url), ManualClock(NOON), stale_after_s=30)
    task = asyncio.create_task(devices.run())
    try:
        await until(lambda: fake.handshakes >= 2, "tried again after the broken handshake")
        assert not task.done() and not devices.api.connected and devices.api.last_error
        fake.hello = None
        await until(lambda: devices.api.connected, "connected once the server behaves")
    finally:
        await stop(task)


async def test_switch_with_read_back(fake: FakeHomeAssistant) -> None:
    devices = HaDevices(api_config(fake.url, timeout_s=0.5), ManualClock(NOON), stale_after_s=30)
    task = await running(devices)
    try:
        await devices.switch("boiler", False)
        assert fake.states["switch.boiler"]["s"] == "off"
        assert fake.service_calls[-1] == {"id": fake.service_calls[-1]["id"], "type": "call_service",
                                          "domain": "switch", "service": "turn_off",
                                          "target": {"entity_id": "switch.boiler"}}
        await devices.switch("sg_ready", False)
        assert fake.service_calls[-1]["domain"] == "input_boolean"
        fake.stuck.add("switch.boiler")
        with pytest.raises(SwitchNotApplied, match="asked on, reads off"):
            await devices.switch("boiler", True)
        with pytest.raises(ValueError, match="not a switchable load"):
            await devices.switch("fridge", True)
    finally:
        await stop(task)


async def test_the_policy_sheds_and_brings_back_a_load_through_home_assistant(fake: FakeHomeAssistant) -> None:
    clock = ManualClock(NOON)
    devices = HaDevices(api_config(fake.url), clock, stale_after_s=30)
    task = await running(devices)
    rules = {"boiler": LoadRules(60, 120, 600, 0), "sg_ready": LoadRules(60, 120, 600, 2000)}

    def readings() -> dict[str, tuple[bool | None, float | None]]:
        s = devices.snapshots()
        return {r: (None if not s[r].switch_on.usable else s[r].switch_on.value == 1.0,
                    s[r].power_w.value if s[r].power_w.usable else None) for r in rules}

    def pressure(now: datetime) -> Pressure:
        grid = devices.grid_w()
        assert grid is not None
        return Pressure(grid.value if grid.usable else None, 5000.0)

    control = LoadControl(rules, readings, devices.switch, pressure, clock, 10)
    try:
        await fake.set_state("sensor.p1_power", "6", "kW")  # 1 kW over the limit: the boiler's 1.2 kW covers it
        await until(lambda: devices.snapshots()["p1"].power_w.value == 6000.0, "the import reading")
        assert await control.step() == (Action("boiler", False, "import_limit"),)
        assert fake.states["switch.boiler"]["s"] == "off" and fake.states["input_boolean.sg_ready"]["s"] == "on"
        await fake.set_state("sensor.p1_power", "2", "kW")
        await until(lambda: devices.snapshots()["p1"].power_w.value == 2000.0, "the import down")
        clock.advance(60)
        assert await control.step() == ()  # min_off 120 s
        clock.advance(60)
        assert await control.step() == (Action("boiler", True, "released"),)
        assert fake.states["switch.boiler"]["s"] == "on"
    finally:
        await stop(task)


def test_token_file(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("abc.def\n")
    cfg = HomeAssistantApiConfig.model_validate({"url": "ws://ha:8123/api/websocket", "token_file": str(f),
                                                 "entities": ENTITIES})
    assert cfg.token_value() == "abc.def"


async def test_attached_to_the_agent_a_price_spike_sheds_the_loads(fake: FakeHomeAssistant, tmp_path: Path) -> None:
    from datetime import time as dtime

    from edge_agent.agent import EdgeAgent
    from edge_agent.config import AgentConfig, TariffConfig, TariffPeriodConfig
    from edge_agent.home_assistant.devices_component import attach
    from edge_agent.link_config import HomeAssistantConfig

    config = AgentConfig(
        house_id="h", insecure=True, metrics_port=None, state_dir=tmp_path,
        tariff=TariffConfig(periods=[TariffPeriodConfig(start=dtime(0), end=dtime(0), import_price_per_kwh=0.9,
                                                        export_price_per_kwh=0.05)]),
        home_assistant=HomeAssistantConfig(api=api_config(fake.url, price_spike_per_kwh=0.5, control_interval_s=5)))
    clock = ManualClock(NOON)
    agent = EdgeAgent(config, clock=clock)
    component = attach(agent)
    assert component is not None and agent.components == [component]
    assert agent.extra_telemetry == [component.devices.telemetry]
    p = component.pressure(NOON)
    assert (p.max_import_w, p.price_per_kwh, p.price_spike_per_kwh) == (config.site.max_import_w, 0.9, 0.5)
    task = asyncio.create_task(component.run())
    try:
        await until(lambda: component.devices.api.connected and len(component.devices.api.states) == 5, "subscribed")
        clock.advance(5)  # the next decision
        await until(lambda: len(component.control.done) == 2, "both loads shed for the price spike")
        assert {a.resource_id for _, a in component.control.done} == {"boiler", "sg_ready"}
        assert fake.states["switch.boiler"]["s"] == "off" and fake.states["input_boolean.sg_ready"]["s"] == "off"
        assert component.pressure(NOON).grid_w == 1500.0  # Home Assistant's grid meter
        reg = agent.metrics.registry
        assert reg.get_sample_value("vpp_edge_home_assistant_api_connected") == 1.0
        assert reg.get_sample_value("vpp_edge_load_switches_total", {"result": "ok", "state": "off"}) == 2.0
        await fake.set_state("sensor.fridge_power", "garbage")
        await until(lambda: bool(component.devices.telemetry())  # read as each agent poll reads it
                    and agent.refusals.by_source.get("home_assistant_api", 0) > 0, "counted as a refusal")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
