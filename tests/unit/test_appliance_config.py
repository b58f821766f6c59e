"""``[[appliances]]`` in the agent's config: a working house, and every hostile or inconsistent value
refused with the key named (edge_agent/appliance_config.py)."""

from __future__ import annotations

from datetime import time
from typing import Any

import pytest
from pydantic import ValidationError

from edge_agent.appliance_config import PausableConfig, RunConfig, StationConfig
from edge_agent.config import AgentConfig

PLUGS = [{"id": "washer", "model": "shelly_plug_s", "host": "10.0.0.2", "role": "load"},
         {"id": "freezer", "model": "tasmota_plug", "host": "10.0.0.3", "role": "load"},
         {"id": "station", "model": "shelly_plug_s", "host": "10.0.0.4", "role": "load"},
         {"id": "p1", "model": "dsmr5_p1", "host": "10.0.0.5", "role": "grid_meter"}]
WASHER = {"plug": "washer", "kind": "run", "energy_kwh": 1.1, "duration_min": 120, "ready_by": "17:00"}
FREEZER = {"plug": "freezer", "kind": "pausable", "max_pause_min": 30, "period_min": 60}
STATION = {"plug": "station", "kind": "battery", "capacity_kwh": 1.0, "charge_power_w": 300,
           "energy_kwh_per_day": 0.9}


def config(*appliances: dict[str, Any], plugs: list[dict[str, Any]] | None = None) -> AgentConfig:
    return AgentConfig.model_validate({"house_id": "h", "insecure": True, "lan_devices": PLUGS if plugs is None
                                       else plugs, "appliances": list(appliances)})


def test_a_house_with_the_three_kinds() -> None:
    cfg = config(WASHER, FREEZER, STATION)
    washer, freezer, station = cfg.appliances
    assert isinstance(washer, RunConfig) and washer.ready_by == time(17) and washer.steps_s_w() == [(7200.0, 550.0)]
    assert isinstance(freezer, PausableConfig) and freezer.min_on_min == 10
    assert isinstance(station, StationConfig) and station.need_wh == 900.0
    profile = config({**{k: v for k, v in WASHER.items() if k not in ("energy_kwh", "duration_min")},
                      "profile": [[30, 2000], [90, 66.7]]}).appliances[0]
    assert isinstance(profile, RunConfig) and profile.steps_s_w() == [(1800.0, 2000.0), (5400.0, 66.7)]
    soc = config({**STATION, "energy_kwh_per_day": None, "target_soc_pct": 80}).appliances[0]
    assert isinstance(soc, StationConfig) and soc.need_wh == 800.0


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("nan", {**FREEZER, "max_pause_min": float("nan")}, "max_pause_min"),
    ("inf", {**FREEZER, "power_w": float("inf")}, "power_w"),
    ("huge", {**WASHER, "energy_kwh": 1e300}, "energy_kwh"),
    ("negative", {**FREEZER, "min_on_min": -1}, "min_on_min"),
    ("string", {**STATION, "capacity_kwh": "lots"}, "capacity_kwh"),
    ("bool_for_number", {**WASHER, "duration_min": True}, "duration_min: a number (or a time), not True"),
    ("bool_in_profile", {**{k: v for k, v in WASHER.items() if k not in ("energy_kwh", "duration_min")},
                         "profile": [[10, True]]}, "profile: a number"),
    ("pause_beyond_period", {**FREEZER, "max_pause_min": 90}, "max_pause_min (90.0) must be <= period_min"),
    ("min_off_beyond_pause", {**FREEZER, "min_off_min": 40}, "min_off_min"),
    ("both_programmes", {**WASHER, "profile": [[10, 100]]}, "either energy_kwh and duration_min, or profile"),
    ("no_programme", {"plug": "washer", "kind": "run", "ready_by": "17:00"}, "either energy_kwh"),
    ("half_programme", {**WASHER, "duration_min": None}, "either energy_kwh"),
    ("profile_nan", {**{k: v for k, v in WASHER.items() if k not in ("energy_kwh", "duration_min")},
                     "profile": [[10, float("nan")]]}, "finite number"),
    ("profile_negative", {**{k: v for k, v in WASHER.items() if k not in ("energy_kwh", "duration_min")},
                          "profile": [[-10, 100]]}, "profile[0]"),
    ("too_much_power", {**WASHER, "energy_kwh": 40, "duration_min": 60}, "more than a plug carries"),
    ("bad_time", {**WASHER, "ready_by": "25:00"}, "ready_by"),
    ("thresholds", {**WASHER, "armed_above_w": 60}, "running_above_w"),
    ("unknown_kind", {**FREEZER, "kind": "heat_pump"}, "kind"),
    ("unknown_key", {**FREEZER, "max_pause": 30}, "max_pause"),
    ("station_two_needs", {**STATION, "target_soc_pct": 50}, "either energy_kwh_per_day or target_soc_pct"),
    ("station_need_beyond_capacity", {**STATION, "energy_kwh_per_day": 5}, "more than capacity_kwh"),
    ("station_slow", {**STATION, "capacity_kwh": 50, "energy_kwh_per_day": 40, "charge_power_w": 100},
     "more than a day"),
    ("station_full_threshold", {**STATION, "full_below_w": 500}, "full_below_w"),
    ("unknown_plug", {**FREEZER, "plug": "fridge"}, "appliances[0].plug 'fridge' is no [[lan_devices]] id"),
    ("meter_as_plug", {**FREEZER, "plug": "p1"}, "must be a switchable plug of role load"),
]


@pytest.mark.parametrize(("name", "appliance", "said"), BAD, ids=[b[0] for b in BAD])
def test_hostile_and_inconsistent_values_are_refused(name: str, appliance: dict[str, Any], said: str) -> None:
    with pytest.raises(ValidationError) as err:
        config(appliance)
    assert said in str(err.value), str(err.value)


def test_one_appliance_per_plug_and_a_plug_that_cannot_switch() -> None:
    with pytest.raises(ValidationError, match="has another appliance already"):
        config(FREEZER, {**WASHER, "plug": "freezer"})
    meter_plug = [{"id": "freezer", "model": "shelly_pro_em", "host": "10.0.0.9", "role": "load"}]
    with pytest.raises(ValidationError, match="switchable plug"):
        config(FREEZER, plugs=meter_plug)


def test_a_home_assistant_switchable_entity_can_be_the_switch() -> None:
    ha = {"api": {"url": "ws://ha:8123/api/websocket", "token": "t", "entities": [
        {"id": "fridge_power", "entity_id": "sensor.fridge_power", "role": "load"},
        {"id": "ha_freezer", "entity_id": "switch.freezer", "role": "switchable_load"}]}}
    base = {"house_id": "h", "insecure": True, "home_assistant": ha}
    cfg = AgentConfig.model_validate({**base, "appliances": [{**FREEZER, "plug": "ha_freezer"}]})
    assert cfg.appliances[0].plug == "ha_freezer"
    with pytest.raises(ValidationError, match="is a Home Assistant load, not a switchable_load"):
        AgentConfig.model_validate({**base, "appliances": [{**FREEZER, "plug": "fridge_power"}]})
