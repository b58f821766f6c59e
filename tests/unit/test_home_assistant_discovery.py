"""Discovery payloads against Home Assistant's documented MQTT schema (2024.3 and later)."""

from __future__ import annotations

import json
import re

from edge_agent.home_assistant.entities import HouseSpec, discovery, discovery_payload, entities

SPEC = HouseSpec(node_id="h1", house_name="VPP house h1", sw_version="0.1.0")
FULL = HouseSpec(node_id="h1", house_name="VPP house h1", sw_version="0.1.0", has_ev=True, currency="EUR",
                 max_soc_pct=95)
# required keys per component (homeassistant/components/mqtt/<component>.py schemas)
REQUIRED = {"sensor": {"state_topic"}, "select": {"command_topic", "options"}, "number": {"command_topic"},
            "button": {"command_topic"}, "event": {"state_topic", "event_types"}}
# units Home Assistant accepts per device class (sensor/const.py DEVICE_CLASS_UNITS, the ones used here)
UNITS = {"power": {"W", "kW"}, "energy": {"Wh", "kWh", "MWh"}, "battery": {"%"}}
STATE_CLASSES = {"power": {"measurement"}, "energy": {"total", "total_increasing"}, "battery": {"measurement"},
                 "monetary": {None, "total"}, "enum": {None}}


def by_key(spec: HouseSpec) -> dict[str, dict[str, object]]:
    return {e.key: discovery_payload(spec, e) for e in entities(spec)}


def test_every_entity_has_the_keys_its_component_requires() -> None:
    for spec in (SPEC, FULL):
        for e in entities(spec):
            payload = discovery_payload(spec, e)
            assert REQUIRED[e.component] <= payload.keys(), e.key
            assert payload["unique_id"] == f"vpp_h1_{e.key}"
            assert payload["device"] == {"identifiers": ["vpp_h1"], "name": "VPP house h1",
                                         "manufacturer": "VPP project", "model": "Edge agent", "sw_version": "0.1.0"}
            assert payload["origin"] == {"name": "vpp edge agent", "sw_version": "0.1.0"}
            assert payload["availability"] == [{"topic": "vpp/h1/availability"}]
            assert (payload["payload_available"], payload["payload_not_available"]) == ("online", "offline")
            dc = payload.get("device_class")
            if dc in UNITS:
                assert payload["unit_of_measurement"] in UNITS[dc], e.key
            if dc in STATE_CLASSES:
                assert payload.get("state_class") in STATE_CLASSES[dc], e.key
            if dc == "enum":
                assert payload["options"] and "unit_of_measurement" not in payload


def test_power_and_energy_dashboard_sensors() -> None:
    p = by_key(FULL)
    for key in ("grid_power", "pv_power", "battery_power", "load_power", "ev_power"):
        assert (p[key]["device_class"], p[key]["unit_of_measurement"], p[key]["state_class"]) == \
            ("power", "W", "measurement")
    for key in ("grid_import", "grid_export", "pv_production", "battery_in", "battery_out"):
        assert (p[key]["device_class"], p[key]["unit_of_measurement"], p[key]["state_class"]) == \
            ("energy", "kWh", "total_increasing")
    assert p["battery_soc"]["device_class"] == "battery"
    assert p["money_saved_today"]["unit_of_measurement"] == "EUR"


def test_controls_bounded_by_the_config_checks() -> None:
    p = by_key(FULL)
    assert p["control_mode"]["options"] == ["vpp", "self_consumption", "tou"]
    assert by_key(SPEC)["control_mode"]["options"] == ["vpp", "self_consumption"]  # no tariff: no tou
    assert (p["reserve_soc"]["min"], p["reserve_soc"]["max"]) == (0, 94)  # reserve < max_soc_pct (95)
    assert {"hold_battery", "charge_now", "cancel_override", "override_hours"} <= p.keys()


def test_optional_entities_only_where_the_house_has_them() -> None:
    keys = {e.key for e in entities(SPEC)}
    assert "ev_power" not in keys and "money_saved_today" not in keys
    assert "price_event" not in keys  # no tariff: no price events


def test_event_entities_for_automations() -> None:
    p = by_key(FULL)
    assert p["price_event"]["event_types"] == ["cheap_window_started", "negative_price_started"]
    assert p["grid_limit_event"]["event_types"] == ["export_limit_binding", "import_limit_binding"]
    assert p["aggregator_event"]["event_types"] == ["aggregator_unreachable", "aggregator_reachable"]
    assert p["plan_event"]["event_types"] == ["plan_refused"]
    assert all(p[k]["state_topic"] == f"vpp/h1/{k}/state" for k in ("price_event", "plan_event"))


def test_topics_and_stable_ids() -> None:
    msgs = discovery(FULL)
    topics = [t for t, _ in msgs]
    assert len(topics) == len(set(topics))
    for topic, payload in msgs:
        assert re.fullmatch(r"homeassistant/(sensor|select|number|button|event)/h1/[a-z_]+/config", topic)
        assert json.loads(payload)["unique_id"] == "vpp_h1_" + topic.split("/")[3]
    assert discovery(FULL) == msgs  # the same every time: unique ids stable across restarts


def test_a_house_without_a_battery_has_no_battery_entities() -> None:
    """A house of LAN devices only (docs/lan-devices.md): nothing to show or do with a battery."""
    from dataclasses import replace

    keys = set(by_key(replace(FULL, has_battery=False)))
    assert not keys & {"battery_power", "battery_in", "battery_out", "battery_soc", "reserve_soc", "hold_battery",
                       "charge_now", "money_saved_today"}
    assert {"grid_power", "pv_power", "load_power", "grid_import", "pv_production", "control_mode"} <= keys
    assert set(by_key(FULL)) - keys == {"battery_power", "battery_in", "battery_out", "battery_soc", "reserve_soc",
                                        "hold_battery", "charge_now", "money_saved_today"}
