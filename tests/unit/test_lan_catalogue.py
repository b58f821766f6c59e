"""LAN catalogue entries and ``[[lan_devices]]`` config: what loads, and clear errors for what cannot work."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.config import AgentConfig
from edge_agent.drivers.catalogue import CatalogueError
from edge_agent.drivers.lan_catalogue import LanPoint, lan_catalogue_ids, load_lan_entry
from edge_agent.drivers.lan_device import LanReading, convert, dig
from edge_agent.lan_config import LanDeviceConfig, check_lan_devices
from edge_agent.lan_devices import LanDevices, lan_resource_managers
from vpp_common.clock import ManualClock
from vpp_common.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["apsystems_ez1", "dsmr5_p1", "enphase_envoy", "opendtu_hoymiles", "shelly_plug_s", "shelly_pro_3em",
           "shelly_pro_em", "tasmota_plug"]


def test_every_shipped_entry_loads() -> None:
    assert lan_catalogue_ids() == SHIPPED
    for model in SHIPPED:
        entry = load_lan_entry(model)
        assert entry.device.id == model and entry.device.source.startswith("https://")
    assert load_lan_entry("shelly_plug_s").switch is not None
    assert load_lan_entry("dsmr5_p1").device.roles == ("grid_meter",)


ENTRY = """
[device]
id = "x"
name = "x"
source = "https://example.org/api"
protocol = "shelly_rpc"
port = 80
roles = ["load"]
[points.power]
request = "Switch.GetStatus"
path = "apower"
role = "load_power_w"
"""


@pytest.mark.parametrize(("change", "error"), [
    (('role = "load_power_w"', 'role = "grid_power_w"'), "roles has 'load' but no point has role 'load_power_w'"),
    (('path = "apower"', 'path = "apower"\nscale = nan'), "scale must be finite"),
    (('path = "apower"', 'path = "apower"\nmin = 5\nmax = 1'), "min 5.0 > max 1.0"),
    (('path = "apower"', 'path = "apower"\nmax = inf'), "max must be finite"),
    (('request = "Switch.GetStatus"\n', ''), "request is required for shelly_rpc"),
    (('role = "load_power_w"', 'role = "load_power_w"\n[switch]\nrequest = "Switch.Set"'),
     "needs a point with role switch_on"),
    (('role = "load_power_w"', 'role = "switch_on"'), "switch_on goes with type bool or onoff"),
    (('path = "apower"', 'path = "apower"\nregister = 5'), "Extra inputs are not permitted"),
    (('protocol = "shelly_rpc"', 'protocol = "modbus"'), "protocol"),
    (('id = "x"', 'id = "x"\nid = "y"'), "not valid TOML"),
])
def test_bad_entries_name_the_field(tmp_path: Path, change: tuple[str, str], error: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(ENTRY.replace(*change))
    with pytest.raises(CatalogueError, match=error):
        load_lan_entry(f)
    f.write_text(ENTRY)
    assert load_lan_entry(f).device.id == "x"


def test_unknown_model() -> None:
    with pytest.raises(CatalogueError, match="unknown LAN device model 'shelly_1'; known: apsystems_ez1, dsmr5_p1"):
        load_lan_entry("shelly_1")


def test_values_are_checked_where_they_enter() -> None:
    p = LanPoint(path="a.b", scale=1000, unit="Wh")
    assert dig({"a": {"b": 1.5}}, "a.b") == 1.5 and dig({"a": [7]}, "a.0") == 7
    assert convert(p, dig({"a": {"b": 1.5}}, "a.b")) == (1500.0, None)
    assert convert(p, Decimal("0.5")) == (500.0, None)
    for raw, why in [(float("nan"), "not finite"), (float("inf"), "not finite"), (1e306, "not finite"),
                     (10 ** 400, "beyond float range"), ("12", "not a number"), (None, "not a number"),
                     (True, "not a number"), ([1], "not a number"), (Decimal("NaN"), "not finite")]:
        value, reason = convert(p, raw)
        assert value is None and reason is not None and why in reason, raw
    assert convert(p, dig({"a": {}}, "a.b"))[1] == "no field 'a.b'"
    onoff = LanPoint(path="POWER", type="onoff", role="switch_on")
    assert convert(onoff, "on") == (1.0, None) and convert(onoff, "OFF") == (0.0, None)
    assert convert(onoff, 1)[0] is None and convert(onoff, "maybe")[0] is None
    flag = LanPoint(path="output", type="bool", role="switch_on")
    assert convert(flag, False) == (0.0, None) and convert(flag, 0)[0] is None
    kw = LanPoint(path="P", device_unit="kW", scale=1000)
    assert convert(kw, {"value": Decimal("1.5"), "unit": "kW"}) == (1500.0, None)
    assert convert(kw, {"value": Decimal("1.5"), "unit": "W"})[1] == "unit 'W', expected 'kW'"


def test_summed_roles_are_missing_if_any_part_is() -> None:
    entry = load_lan_entry("dsmr5_p1")
    both = LanReading({"import_power": 0.0, "export_power": -1200.0})
    assert both.by_role(entry)["grid_power_w"] == -1200.0
    half = LanReading({"import_power": 0.0}, {"export_power": "no field"})
    assert half.by_role(entry)["grid_power_w"] is None
    assert math.isclose(LanReading({"import_t1": 1.0, "import_t2": 2.0}).by_role(entry)["energy_in_wh"] or 0, 3.0)


# -- the agent's config ------------------------------------------------------------------------

BASE = 'insecure = true\nhouse_id = "h1"\n'


def _config(tmp_path: Path, devices: str) -> AgentConfig:
    f = tmp_path / "agent.toml"
    f.write_text(BASE + devices)
    return load_config(AgentConfig, f)


def test_config_accepts_plugs_and_meters(tmp_path: Path) -> None:
    cfg = _config(tmp_path, """
[[lan_devices]]
id = "meter"
model = "dsmr5_p1"
host = "192.168.1.70"
port = 2001
role = "grid_meter"
[[lan_devices]]
id = "freezer"
model = "shelly_plug_s"
host = "192.168.1.60"
role = "load"
password = "s3cret"
[[lan_devices]]
id = "washer"
model = "tasmota_plug"
host = "plug-washer.local"
role = "load"
""")
    assert [d.id for d in cfg.lan_devices] == ["meter", "freezer", "washer"]
    from edge_agent.lan_config import LanDeviceConfig
    assert LanDeviceConfig(id="x", model="tasmota_plug", host="fe80::1", role="load").host == "fe80::1"
    for bad in ("h:80", "[::1]:80", "user@h", " "):
        with pytest.raises(ValueError, match="without scheme, port or path"):
            LanDeviceConfig(id="x", model="tasmota_plug", host=bad, role="load")
    assert "s3cret" not in repr(cfg.lan_devices[1])
    rms = lan_resource_managers(cfg)
    assert [(rm.resource_id, rm.role, rm.device.port, rm.switchable) for rm in rms] == [
        ("meter", "grid_meter", 2001, False), ("freezer", "load", 80, True), ("washer", "load", 80, True)]
    lan = LanDevices.from_config(cfg, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)))
    assert lan is not None and lan.poll_interval_s == cfg.device.poll_interval_s


@pytest.mark.parametrize(("devices", "error"), [
    ('[[lan_devices]]\nid = "a"\nmodel = "shelly_1"\nhost = "h"\nrole = "load"\n',
     "lan_devices.0.model.*unknown LAN device model 'shelly_1'"),
    ('[[lan_devices]]\nid = "a"\nmodel = "dsmr5_p1"\nhost = "h"\nrole = "load"\n',
     "dsmr5_p1 cannot be a load .it can be: grid_meter."),
    ('[[lan_devices]]\nid = "a"\nmodel = "tasmota_plug"\nhost = "http://h/"\nrole = "load"\n',
     "lan_devices.0.host.*without scheme, port or path"),
    ('[[lan_devices]]\nid = "a"\nmodel = "tasmota_plug"\nhost = "h"\nrole = "load"\nport = 0\n',
     "lan_devices.0.port"),
    ('[[lan_devices]]\nid = "a"\nmodel = "tasmota_plug"\nhost = "h"\nrole = "load"\ntimeout_s = nan\n',
     "lan_devices.0.timeout_s"),
    ('[[lan_devices]]\nid = "A b"\nmodel = "tasmota_plug"\nhost = "h"\nrole = "load"\n', "lan_devices.0.id"),
    ('[[lan_devices]]\nid = "a"\nmodel = "tasmota_plug"\nhost = "h"\nrole = "load"\nsign = -1\n',
     "lan_devices.0.sign"),
    ('[[lan_devices]]\nid = "grid_meter"\nmodel = "dsmr5_p1"\nhost = "h"\nrole = "grid_meter"\n',
     r"lan_devices\[0\].id 'grid_meter' is the house's own"),
    ('[[lan_devices]]\nid = "a"\nmodel = "dsmr5_p1"\nhost = "h"\nrole = "grid_meter"\npassword = "x"\n',
     "a P1 port has no credentials"),
    ('[[lan_devices]]\nid = "a"\nmodel = "tasmota_plug"\nhost = "h"\nrole = "load"\n'
     '[[lan_devices]]\nid = "a"\nmodel = "tasmota_plug"\nhost = "h2"\nrole = "load"\n', r"lan_devices\[1\].id 'a' is used twice"),
    ('[[lan_devices]]\nid = "a"\nmodel = "tasmota_plug"\nhost = "h"\nrole = "load"\n'
     '[[lan_devices]]\nid = "b"\nmodel = "shelly_plug_s"\nhost = "h"\nrole = "load"\n', "h:default port is configured twice"),
    ('[[lan_devices]]\nid = "a"\nmodel = "dsmr5_p1"\nhost = "h"\nrole = "grid_meter"\n'
     '[[lan_devices]]\nid = "b"\nmodel = "shelly_pro_3em"\nhost = "h2"\nrole = "grid_meter"\n',
     "at most one grid_meter, got 2 .a, b."),
])
def test_bad_lan_devices_are_refused_naming_the_key(tmp_path: Path, devices: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        _config(tmp_path, devices)


# -- micro-inverters ------------------------------------------------------------------------------

def test_micro_inverter_entries() -> None:
    for model, limitable in (("opendtu_hoymiles", True), ("apsystems_ez1", True), ("enphase_envoy", False)):
        entry = load_lan_entry(model)
        assert entry.device.roles == ("pv",) and (entry.limit is not None) == limitable
    ez1 = load_lan_entry("apsystems_ez1").limit
    assert ez1 is not None and (ez1.min_w, ez1.max_w) == (30, 800)


def test_dig_selects_list_items_and_converts_text_numbers_and_enums() -> None:
    answer = {"production": [{"type": "inverters", "wNow": 5}, {"type": "eim", "wNow": 7}]}
    assert dig(answer, "production.type=eim.wNow") == 7
    assert convert(LanPoint(path="x"), dig(answer, "production.type=acb.wNow"))[0] is None
    text = LanPoint(path="x", type="numtext")
    assert convert(text, "800") == (800.0, None)
    for bad in ("NaN", "inf", "1e999", "", "12abc", "x" * 50, None, True):
        value, why = convert(text, bad)
        assert value is None and why, bad
    state = LanPoint(path="x", type="enum", values={"Ok": 1, "Pending": 0})
    assert convert(state, "Pending") == (0.0, None) and convert(state, "ok")[0] is None
    unit = LanPoint(path="x", device_unit="kWh", scale=1000)
    assert convert(unit, {"v": 1.5, "u": "kWh"}) == (1500.0, None)
    assert convert(unit, {"v": 1.5, "u": "Wh"})[0] is None


@pytest.mark.parametrize(("table", "why"), [
    ('[limit]\nrequest = "/set"\nmin_w = 0\nmax_w = 800\napply_s = 5\n', "must carry {value}"),
    ('[limit]\nrequest = "/set?p={value}"\nmin_w = 900\nmax_w = 800\napply_s = 5\n', "min_w <= max_w"),
    ('[limit]\nrequest = "/set?p={value}"\nmin_w = 0\nmax_w = inf\napply_s = 5\n', "max_w"),
    ('[limit]\nrequest = "/set?p={value}"\nmin_w = 0\nmax_w = 800\napply_s = 5\nsettle_s = 9\n', "settle_s"),
])
def test_bad_limit_tables_are_refused(tmp_path: Path, table: str, why: str) -> None:
    text = (ROOT / "edge_agent/catalogue/lan/apsystems_ez1.toml").read_text()
    path = tmp_path / "ez1.toml"
    path.write_text(text.split("[limit]")[0] + table)
    with pytest.raises(CatalogueError, match=why):
        load_lan_entry(path)


def test_micro_inverter_config_needs_its_serial_or_token() -> None:
    base = {"id": "balcony", "host": "192.168.1.9", "role": "pv"}
    with pytest.raises(ValidationError, match="serial is required"):
        LanDeviceConfig(model="opendtu_hoymiles", **base)
    with pytest.raises(ValidationError, match="token is required"):
        LanDeviceConfig(model="enphase_envoy", **base)
    with pytest.raises(ValidationError, match="token is not used"):
        LanDeviceConfig(model="apsystems_ez1", token="x", **base)
    with pytest.raises(ValidationError, match="serial"):
        LanDeviceConfig(model="opendtu_hoymiles", serial="../etc", **base)
    with pytest.raises(ValidationError, match="cannot be a load"):
        LanDeviceConfig(model="apsystems_ez1", **{**base, "role": "load"})
    ok = LanDeviceConfig(model="opendtu_hoymiles", serial="114182180001", password="pw", **base)
    with pytest.raises(ValueError, match="at most one pv"):
        check_lan_devices([ok, ok.model_copy(update={"id": "roof", "host": "192.168.1.10"})])
