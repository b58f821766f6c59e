"""A house of any mix (simulator/mix_house.py): one balance seen by every meter, Modbus and LAN alike;
the printed edge-agent config loads; hostile options are refused."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.config import AgentConfig
from edge_agent.drivers.lan_catalogue import load_lan_entry
from edge_agent.drivers.lan_device import LanDevice
from edge_agent.drivers.sunspec import SunSpecDevice
from simulator.appliances import WashingMachine
from simulator.mix_cli import agent_config
from simulator.mix_house import MixHouse, MixSpec, PlugSpec, parse_plug
from vpp_common.clock import ManualClock
from vpp_common.config import load_config

pytestmark = pytest.mark.timeout(60)

NOON = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
BASE_W, MICRO_W, LAMP_W = 300.0, 600.0, 60.0


async def _lan_grid(model: str, port: int) -> float:
    dev = LanDevice(load_lan_entry(model), "127.0.0.1", port, 3.0)
    try:
        value = (await dev.read()).by_role(dev.entry)["grid_power_w"]
    finally:
        await dev.close()
    assert value is not None
    return value


async def _meters(ports: dict[str, int]) -> dict[str, float]:
    """The connection point as each meter of the house reads it (import > 0)."""
    sunspec = SunSpecDevice("127.0.0.1", ports["meter"], timeout_s=2.0)
    try:
        w = (await sunspec.read_model(203)).points["W"]
    finally:
        await sunspec.close()
    assert isinstance(w, float | int)
    return {"meter": float(w), "p1": await _lan_grid("dsmr5_p1", ports["p1"]),
            "pro3em": await _lan_grid("shelly_pro_3em", ports["pro3em"]),
            "proem": await _lan_grid("shelly_pro_em", ports["proem"])}


async def _switch(port: int, on: bool) -> None:
    plug = LanDevice(load_lan_entry("shelly_plug_s"), "127.0.0.1", port, 2.0)
    try:
        assert await plug.switch(on) is on
    finally:
        await plug.close()


async def test_a_charging_battery_and_a_running_washer_on_every_meter() -> None:
    """A Modbus battery told to charge and a washing machine running behind a Shelly plug, beside a
    micro-inverter and a Tasmota lamp: the SunSpec meter, the P1 port, the Pro 3EM and the Pro EM read one
    balance."""
    clock = ManualClock(NOON)
    spec = MixSpec(devices=("battery", "meter", "opendtu", "p1", "pro3em", "proem"),
                   plugs=(PlugSpec("washer", appliance="washer"), PlugSpec("lamp", LAMP_W, model="tasmota_plug")),
                   base_load_w=BASE_W, micro_pv_w=MICRO_W)
    house = MixHouse(spec, clock)
    ports = await house.start()
    try:
        # self-consumption: the battery takes the surplus the plugs and the micro-inverter leave
        armed = BASE_W + 4.0 + LAMP_W - MICRO_W
        assert armed < 0
        assert house.split.hybrid.snapshot().battery_power_w == pytest.approx(-armed)
        for name, w in (await _meters(ports)).items():
            assert w == pytest.approx(0.0, abs=1.0), name
        # the battery told to charge at 2 kW from the grid (124: StorCtl_Mod 3, In/OutWRte 40 % of 5 kW)
        battery = SunSpecDevice("127.0.0.1", ports["battery"], timeout_s=2.0)
        try:
            assert await battery.write_points(124, {"StorCtl_Mod": 3, "InWRte": 40.0, "OutWRte": -40.0,
                                                    "ChaGriSet": 1})
        finally:
            await battery.close()
        for name, w in (await _meters(ports)).items():
            assert w == pytest.approx(BASE_W + 4.0 + LAMP_W + 2000.0 - MICRO_W, abs=1.0), name
        # the washer's plug switched off and on: the armed machine runs (2 kW heating)
        await _switch(ports["washer"], False)
        await _switch(ports["washer"], True)
        washer = house.plugs["washer"].appliance
        assert isinstance(washer, WashingMachine) and washer.state == "running"
        expected = BASE_W + 2000.0 + LAMP_W + 2000.0 - MICRO_W
        for name, w in (await _meters(ports)).items():
            assert w == pytest.approx(expected, abs=1.0), name
        snap = house.split.hybrid.snapshot()
        assert snap.battery_power_w == pytest.approx(2000.0) and snap.pv_power_w == 0.0  # no Modbus PV here
        assert snap.other_power_w == pytest.approx(2000.0 + LAMP_W - MICRO_W)
        # half an hour on: the heating is over, the SoC rose by the battery's charge
        clock.advance(1800)
        assert house.grid_w() == pytest.approx(BASE_W + 66.7 + LAMP_W + 2000.0 - MICRO_W, abs=0.5)
        assert house.split.hybrid.snapshot().soc_pct == pytest.approx(50.0 + 1000.0 * 0.95 / 10_000 * 100)
    finally:
        await house.stop()


async def test_without_a_battery_or_modbus_pv_nothing_hides_the_balance() -> None:
    """A mix without Modbus devices: the P1 meter reads base load + plugs - micro-inverters, and the
    micro-inverter's limit shows at the meter once it applied."""
    clock = ManualClock(NOON)
    spec = MixSpec(devices=("ez1", "opendtu", "envoy", "p1"), plugs=(PlugSpec("kettle", 1500.0),), base_load_w=200.0,
                   micro_pv_w=500.0, apply_delay_s=0.0)
    house = MixHouse(spec, clock)
    ports = await house.start()
    try:
        assert await _lan_grid("dsmr5_p1", ports["p1"]) == pytest.approx(200.0 + 1500.0 - 1500.0, abs=1.0)
        house.micros["envoy"].pv.available_w = 0.0  # type: ignore[attr-defined]  # a cloud over its panels
        dtu = house.micros["opendtu"].pv  # type: ignore[attr-defined]
        assert dtu.rated_w == 2000.0  # a DTU of several inverters, as lan-house's: 1.6 kW fits
        dtu.available_w = 1600.0
        assert await _lan_grid("dsmr5_p1", ports["p1"]) == pytest.approx(200.0 + 1500.0 - 2100.0, abs=1.0)
        dtu.ask(100.0)
        assert await _lan_grid("dsmr5_p1", ports["p1"]) == pytest.approx(200.0 + 1500.0 - 600.0, abs=1.0)
    finally:
        await house.stop()


def _load(text: str, tmp_path: Path) -> AgentConfig:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return load_config(AgentConfig, path)


PORTS = {k: 20000 + i for i, k in enumerate(("battery", "pv", "meter", "ev_charger", "opendtu", "ez1", "envoy", "p1",
                                              "pro3em", "proem", "washer", "freezer", "station", "lamp"))}
PLUGS = (PlugSpec("washer", appliance="washer"), PlugSpec("freezer", appliance="freezer"),
         PlugSpec("station", appliance="station", model="tasmota_plug"), PlugSpec("lamp", 60.0))


async def test_the_printed_config_loads(tmp_path: Path) -> None:
    clock = ManualClock(NOON)
    lan_only = agent_config(MixHouse(MixSpec(devices=("opendtu", "envoy", "p1"), plugs=PLUGS), clock), "127.0.0.1",
                            PORTS)
    cfg = _load(lan_only, tmp_path)
    assert cfg.device.kind == "lan"
    assert [(d.id, d.role) for d in cfg.lan_devices] == [
        ("p1", "grid_meter"), ("opendtu", "pv"), ("envoy", "pv"), ("washer", "load"), ("freezer", "load"),
        ("station", "load"), ("lamp", "load")]
    assert [(a.plug, a.kind) for a in cfg.appliances] == [("washer", "run"), ("freezer", "pausable"),
                                                           ("station", "battery")]
    mixed = agent_config(MixHouse(MixSpec(devices=("battery", "pv", "meter", "ev_charger", "ez1", "opendtu", "proem",
                                                   "p1"), plugs=PLUGS[:1]), clock), "127.0.0.1", PORTS)
    assert mixed.startswith("# opendtu serves too") and "# p1 serves too" in mixed
    cfg = _load(mixed, tmp_path)
    assert cfg.device.kind == "modbus"
    assert [(p.role, p.port) for p in cfg.device.parts] == [("battery", 20000), ("pv", 20001), ("meter", 20002),
                                                           ("ev_charger", 20003)]
    assert [(d.id, d.role) for d in cfg.lan_devices] == [("proem", "grid_meter"), ("ez1", "pv"), ("washer", "load")]
    for devices, why in ((("pv", "meter"), "a battery and a meter at least"), (("opendtu",), "needs a LAN grid meter")):
        text = agent_config(MixHouse(MixSpec(devices=devices), clock), "127.0.0.1", PORTS)
        assert text.startswith("# no edge-agent config") and why in text


@pytest.mark.parametrize("text", ["kettle=lots", "kettle=nan", "kettle=inf", "kettle=-1", "kettle=1e300",
                                  "kettle=4001", "=60", "kettle=", "ket tle=60", "kettle=60@zigbee", "kettle=true"])
def test_hostile_plugs_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--plug"):
        parse_plug(text)


def test_plug_forms() -> None:
    assert parse_plug("lamp=60") == PlugSpec("lamp", 60.0)
    assert parse_plug("w-1=washer@tasmota") == PlugSpec("w-1", appliance="washer", model="tasmota_plug")
    assert parse_plug("st=station@shelly") == PlugSpec("st", appliance="station")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"devices": ("p1", "p1")}, "twice"), ({"devices": ("zigbee",)}, "choose from"), ({}, "empty house"),
    ({"devices": ("p1",), "plugs": (PlugSpec("a", 1.0), PlugSpec("a", 2.0))}, "unique"),
    ({"devices": ("p1",), "plugs": (PlugSpec("battery", 1.0),)}, "unique"),
    *[({"devices": ("p1",), "base_load_w": v}, "--load") for v in (math.nan, math.inf, -1.0, 1e300)],
    *[({"devices": ("ez1",), "micro_pv_w": v}, "--micro-pv") for v in (math.nan, -math.inf, -5.0, 1e300)],
    ({"devices": ("ez1",), "apply_delay_s": math.nan}, "--apply-delay"),
    ({"devices": ("battery",), "soc_pct": 101.0}, "--soc"),
])
def test_hostile_mixes_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MixSpec(**kwargs)  # type: ignore[arg-type]
