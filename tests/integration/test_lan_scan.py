"""``edge-agent scan --lan`` finds each plug and meter simulator and lists what it can be; the
``[[lan_devices]]`` component polls a house's plugs and meter and switches a plug."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.config import AgentConfig
from edge_agent.drivers.lan_catalogue import lan_catalogue_ids
from edge_agent.lan_devices import LanDevices
from edge_agent.lan_scan import scan_lan
from edge_agent.resources.lan_device import SwitchNotApplied
from simulator.hybrid_device import Faults
from tests.conftest import free_port
from tests.lan_fixtures import DEFAULT_POWER_W, DEVICE_KW, SIMS
from vpp_common.clock import ManualClock
from vpp_common.config import load_config
from vpp_common.messages import Validity

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("model", lan_catalogue_ids())
async def test_scan_finds_each_simulator(model: str) -> None:
    sim = SIMS[model]()
    port = await sim.start()
    try:
        result = await scan_lan("127.0.0.1", port, timeout_s=0.5, token=DEVICE_KW.get(model, {}).get("token"))
    finally:
        await sim.stop()
    assert [f.model for f in result.found] == [model], result.to_table()
    found = result.found[0]
    assert not found.problems, found.problems
    assert all(v is not None for v in found.points.values()), found.points
    assert found.switchable == (model in ("shelly_plug_s", "tasmota_plug"))
    assert found.curtailable == ({"opendtu_hoymiles": True, "apsystems_ez1": True, "enphase_envoy": False}
                                 .get(model))
    table = result.to_table()
    assert model in table and "can be:" in table
    lan_house = {"dsmr5_p1": "its grid meter", "shelly_pro_3em": "its grid meter", "shelly_pro_em": "its grid meter",
                 "opendtu_hoymiles": "its PV; the export cap's lever", "apsystems_ez1": "its PV; the export cap's lever",
                 "enphase_envoy": "its PV\n"}.get(model)  # what it is in a house of LAN devices only
    assert (lan_house in table + "\n") if lan_house else "kind = \"lan\"" not in table
    assert json.loads(result.to_json())["found"][0]["model"] == model


async def test_scan_reports_implausible_values_and_nothing_found() -> None:
    sim = SIMS["shelly_pro_3em"]()
    sim.faults = Faults(implausible=True)
    port = await sim.start()
    try:
        found = (await scan_lan("127.0.0.1", port, timeout_s=0.5)).found[0]
    finally:
        await sim.stop()
    assert any("outside the plausible" in p for p in found.problems)
    empty = await scan_lan("127.0.0.1", free_port(), timeout_s=0.3)
    assert empty.found == [] and "no plug or meter found" in empty.to_table()


async def test_scan_asks_for_the_envoys_token() -> None:
    sim = SIMS["enphase_envoy"]()
    port = await sim.start()
    try:
        found = (await scan_lan("127.0.0.1", port, timeout_s=0.5)).found
    finally:
        await sim.stop()
    assert [f.model for f in found] == ["enphase_envoy"] and "give --token" in found[0].problems[0]


async def test_scan_says_when_a_password_is_needed() -> None:
    sim = SIMS["tasmota_plug"](password="pw")
    port = await sim.start()
    try:
        locked = (await scan_lan("127.0.0.1", port, timeout_s=0.5)).found
        found = (await scan_lan("127.0.0.1", port, timeout_s=0.5, password="pw")).found
    finally:
        await sim.stop()
    assert [(f.protocol, f.model) for f in locked] == [("tasmota_http", None)]
    assert "give --password" in locked[0].problems[0]
    assert [f.model for f in found] == ["tasmota_plug"] and not found[0].problems


async def test_the_component_polls_on_the_agents_clock() -> None:
    plug = SIMS["shelly_plug_s"]()
    port = await plug.start()
    clock = ManualClock(datetime(2026, 1, 1, 12, tzinfo=UTC))
    cfg = AgentConfig(house_id="h1", insecure=True, lan_devices=[{  # type: ignore[list-item]
        "id": "dryer", "model": "shelly_plug_s", "host": "127.0.0.1", "port": port, "role": "load"}])
    lan = LanDevices.from_config(cfg, clock)
    assert lan is not None
    task = asyncio.create_task(lan.run())
    try:
        await asyncio.wait_for(lan.polled.wait(), 5)
        assert lan.snapshots["dryer"].power_w.measured_at == clock.now()
        polled = lan.polled
        clock.advance(lan.poll_interval_s)
        await asyncio.wait_for(polled.wait(), 5)
        assert lan.snapshots["dryer"].power_w.measured_at == clock.now()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await plug.stop()


async def test_scan_cli() -> None:
    sim = SIMS["tasmota_plug"]()
    port = await sim.start()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'proto'}"}
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent.cli", "scan", "--lan", "--host", "127.0.0.1", "--port", str(port),
            "--timeout", "0.5", "--json", stdout=asyncio.subprocess.PIPE, env=env)
        out, _ = await proc.communicate()
    finally:
        await sim.stop()
    assert proc.returncode == 0, out
    assert json.loads(out)["found"][0]["model"] == "tasmota_plug"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.cli", "scan", "--lan", "--host", "127.0.0.1", "--port", str(free_port()),
        "--timeout", "0.3", stdout=asyncio.subprocess.PIPE, env=env)
    out, _ = await proc.communicate()
    assert proc.returncode == 3 and b"no plug or meter found" in out


async def test_the_house_component_polls_and_switches(tmp_path: Path) -> None:
    meter, plug = SIMS["dsmr5_p1"](power_w=-2000.0), SIMS["shelly_plug_s"](password="pw")
    meter_port, plug_port = await meter.start(), await plug.start()
    f = tmp_path / "agent.toml"
    f.write_text(f'insecure = true\nhouse_id = "h1"\n'
                 f'[[lan_devices]]\nid = "meter"\nmodel = "dsmr5_p1"\nhost = "127.0.0.1"\nport = {meter_port}\n'
                 f'role = "grid_meter"\ntimeout_s = 0.5\n'
                 f'[[lan_devices]]\nid = "freezer"\nmodel = "shelly_plug_s"\nhost = "127.0.0.1"\nport = {plug_port}\n'
                 f'role = "load"\npassword = "pw"\ntimeout_s = 0.5\n')
    clock = ManualClock(datetime(2026, 1, 1, 12, tzinfo=UTC))
    lan = LanDevices.from_config(load_config(AgentConfig, f), clock)
    assert lan is not None
    try:
        snaps = await lan.poll_once()
        assert snaps["meter"].power_w.value == -2000.0 and snaps["meter"].power_w.validity is Validity.VALID
        assert snaps["freezer"].power_w.value == DEFAULT_POWER_W["shelly_plug_s"]
        assert {t.resource_id: t.power_w.value for t in lan.telemetry()} == {"meter": -2000.0, "freezer": 120.0}
        await lan.switch("freezer", False)
        assert plug.output is False and (await lan.poll_once())["freezer"].power_w.value == 0.0
        with pytest.raises(ValueError, match="not a switchable load"):
            await lan.switch("meter", True)
        plug.overrides["output"] = True  # the plug says on whatever it is asked: the read-back tells
        with pytest.raises(SwitchNotApplied, match="asked off, reads on"):
            await lan.switch("freezer", False)
        plug.faults = Faults(disconnect=True)  # one device down does not hold up the other
        snaps = await lan.poll_once()
        assert snaps["freezer"].power_w.validity is Validity.STALE and snaps["meter"].power_w.validity is Validity.VALID
    finally:
        await lan.close()
        await meter.stop()
        await plug.stop()


async def test_the_agent_reports_its_plugs_and_meter() -> None:
    """The real agent on a Sungrow simulator with a P1 meter and a Tasmota plug beside it (as ``edge-agent
    run`` attaches them): each LAN device's power is in the house's telemetry by its id."""
    from edge_agent.agent import EdgeAgent
    from edge_agent.cli import attach_lan_devices
    from edge_agent.config import BatteryConfig, ControlConfig, DeviceConfig
    from edge_agent.lan_config import LanDeviceConfig
    from simulator.catalogue_device import CatalogueSimulator
    from simulator.physics import PhysicsConfig
    from tests.conftest import until

    clock = ManualClock(datetime(2026, 6, 21, 2, tzinfo=UTC))
    meter, plug = SIMS["dsmr5_p1"](power_w=650.0), SIMS["tasmota_plug"]()
    meter_port, plug_port = await meter.start(), await plug.start()
    try:
        async with CatalogueSimulator("sungrow_sh", clock, PhysicsConfig(initial_soc_pct=50)) as sim:
            config = AgentConfig(
                house_id="house-lan", insecure=True, metrics_port=None, aggregator=f"127.0.0.1:{free_port()}",
                device=DeviceConfig(port=sim.port, catalogue="sungrow_sh", timeout_s=0.5, poll_interval_s=1.0),
                battery=BatteryConfig(revert_s=60), control=ControlConfig(tick_s=0.5),
                lan_devices=[LanDeviceConfig(id="p1", model="dsmr5_p1", host="127.0.0.1", port=meter_port,
                                             role="grid_meter", timeout_s=0.5),
                             LanDeviceConfig(id="washer", model="tasmota_plug", host="127.0.0.1", port=plug_port,
                                             role="load", timeout_s=0.5)])
            agent = EdgeAgent(config, clock=clock)
            lan = attach_lan_devices(agent)
            assert lan is not None
            await agent.start()
            try:
                await until(lambda: len(lan.snapshots) == 2, "the LAN devices' first poll")

                def resources() -> dict[str, float | None]:
                    snap = agent.snapshot
                    return {} if snap is None else {r.resource_id: r.power_w.value for r in snap.telemetry.resources}

                for _ in range(50):
                    if {"p1", "washer"} <= set(resources()):
                        break
                    polls = agent.stats.polls
                    clock.advance(1.0)
                    await until(lambda p=polls: agent.stats.polls > p, "a device poll")  # type: ignore[misc]
                assert resources()["p1"] == 650.0 and resources()["washer"] == DEFAULT_POWER_W["tasmota_plug"]
                assert "battery" in resources()  # the house's own devices stay
            finally:
                await agent.stop()
    finally:
        await meter.stop()
        await plug.stop()
