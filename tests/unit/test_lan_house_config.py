"""``[device] kind = "lan"``: a house of LAN devices only; what makes one, and errors naming the field
for what cannot (no grid meter, two, Modbus settings beside it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import AgentConfig
from edge_agent.house_devices import device_label, resource_manager
from vpp_common.clock import ManualClock
from vpp_common.config import ConfigError, load_config

HEAD = 'house_id = "h1"\ninsecure = true\n'
METER = '[[lan_devices]]\nid = "p1"\nmodel = "dsmr5_p1"\nhost = "192.168.1.70"\nrole = "grid_meter"\n'
METER2 = '[[lan_devices]]\nid = "em"\nmodel = "shelly_pro_3em"\nhost = "192.168.1.71"\nrole = "grid_meter"\n'
PV = ('[[lan_devices]]\nid = "balcony"\nmodel = "opendtu_hoymiles"\nhost = "192.168.1.80"\nrole = "pv"\n'
      'serial = "114182180001"\npassword = "openDTU42"\n')
PLUG = '[[lan_devices]]\nid = "freezer"\nmodel = "shelly_plug_s"\nhost = "192.168.1.60"\nrole = "load"\n'


def _load(tmp_path: Path, text: str) -> AgentConfig:
    f = tmp_path / "edge-agent.toml"
    f.write_text(text)
    return load_config(AgentConfig, f)


def test_a_meter_a_micro_inverter_and_plugs_make_a_house(tmp_path: Path) -> None:
    cfg = _load(tmp_path, HEAD + '[device]\nkind = "lan"\n' + METER + PV + PLUG)
    assert cfg.device.kind == "lan" and [d.role for d in cfg.lan_devices] == ["grid_meter", "pv", "load"]
    assert device_label(cfg) == "LAN grid_meter p1, pv balcony"
    with pytest.raises(ConfigError, match="lan_devices"):  # not a Modbus Resource Manager
        resource_manager(cfg, ManualClock.__new__(ManualClock))
    assert _load(tmp_path, HEAD + '[device]\nkind = "lan"\n' + METER + PLUG).device.kind == "lan"  # no PV: a house


def test_the_default_is_the_modbus_house(tmp_path: Path) -> None:
    cfg = _load(tmp_path, HEAD + METER + PLUG)  # a LAN meter beside a Modbus inverter: telemetry only
    assert cfg.device.kind == "modbus" and device_label(cfg) == "127.0.0.1:502"


@pytest.mark.parametrize(("text", "error"), [
    ('[device]\nkind = "lan"\n' + PV + PLUG, r'lan_devices: a house of LAN devices only.*role = "grid_meter"'),
    ('[device]\nkind = "lan"\n', r"needs its grid meter"),
    ('[device]\nkind = "lan"\n' + METER + METER2 + PV, r"at most one grid_meter, got 2 \(p1, em\): the house has one"),
    ('[device]\nkind = "lan"\nhost = "192.168.1.50"\n' + METER + PV, r"remove device\.host"),
    ('[device]\nkind = "lan"\ncatalogue = "victron_gx"\nport = 503\n' + METER,
     r"remove device\.port, device\.catalogue"),
    ('[device]\nkind = "zigbee"\n' + METER, r"device\.kind"),
    (METER + PV + PV.replace('"balcony"', '"roof"').replace(".80", ".81"), r"at most one pv, got 2"),
])
def test_what_cannot_make_a_house_is_refused_naming_the_field(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        _load(tmp_path, HEAD + text)


def test_a_lan_house_may_have_several_micro_inverters(tmp_path: Path) -> None:
    cfg = _load(tmp_path, HEAD + '[device]\nkind = "lan"\n' + METER + PV
                + PV.replace('"balcony"', '"roof"').replace(".80", ".81"))
    assert [d.id for d in cfg.lan_devices if d.role == "pv"] == ["balcony", "roof"]
    assert device_label(cfg) == "LAN grid_meter p1, pv balcony, pv roof"


def test_the_environment_can_say_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPP_AGENT_DEVICE__KIND", "lan")
    assert _load(tmp_path, HEAD + METER + PV).device.kind == "lan"


def test_the_documented_example_loads(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "lan-devices.md").read_text()
    section = doc[doc.index("## A house of LAN devices only"):]
    example = section[section.index("```toml\n") + 8:section.index("```\n", section.index("```toml\n") + 8)]
    cfg = _load(tmp_path, example.replace('aggregator = "vpp.example.net:50051"', 'insecure = true'))
    assert cfg.device.kind == "lan" and [d.id for d in cfg.lan_devices] == ["p1", "balcony", "washer", "freezer",
                                                                             "station"]
