"""``[home_assistant.api]``: Home Assistant's entities as the house's devices; refused where it
cannot work, with a message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.config import AgentConfig
from edge_agent.link_config import HomeAssistantConfig

OK = {"url": "ws://homeassistant.local:8123/api/websocket", "token": "eyJ.abc.def",
      "entities": [{"id": "p1", "entity_id": "sensor.p1_power", "role": "grid_meter"},
                   {"id": "boiler", "entity_id": "switch.boiler", "role": "switchable_load",
                    "power_entity_id": "sensor.boiler_power"}]}


@pytest.fixture(autouse=True)
def agent_state_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VPP_AGENT_STATE_DIR", raising=False)


def agent(api: dict, **ha: object) -> AgentConfig:
    return AgentConfig(house_id="h", insecure=True, state_dir=None,
                       home_assistant=HomeAssistantConfig.model_validate({"api": api, **ha}))


def test_api_alone_needs_no_broker_nor_state_dir() -> None:
    c = agent(OK)
    assert c.home_assistant is not None and c.home_assistant.host is None
    assert c.home_assistant.api is not None and c.home_assistant.api.token_value() == "eyJ.abc.def"


def test_neither_broker_nor_api_is_refused() -> None:
    with pytest.raises(ValidationError, match="give host"):
        HomeAssistantConfig.model_validate({})


def entity(**kw: object) -> dict:
    return {"api": {**OK, "entities": [{"id": "x", "entity_id": "sensor.x", "role": "load", **kw}]}}


@pytest.mark.parametrize(("api", "message"), [
    ({**OK, "url": "http://ha:8123/api/websocket"}, "ws://"),
    ({**OK, "url": "ws://ha 8123"}, "ws://"),
    ({**OK, "token": None}, "exactly one"),
    ({**OK, "token": "two words"}, "white space"),
    ({**OK, "token": ""}, "white space"),
    ({**OK, "token_file": "/nonexistent/token"}, "exactly one"),
    ({**OK, "entities": []}, "at least 1"),
    ({**OK, "timeout_s": float("nan")}, "finite"),
    ({**OK, "price_spike_per_kwh": float("inf")}, "finite"),
    ({**OK, "reconnect_initial_s": 10, "reconnect_max_s": 1}, "reconnect_initial_s"),
    ({**OK, "typo": 1}, "Extra inputs"),
    ({**OK, "entities": OK["entities"] * 2}, "each id once"),
    ({**OK, "entities": [OK["entities"][0], dict(OK["entities"][0], id="p2")]}, "each entity_id once"),
    ({**OK, "entities": [OK["entities"][0], dict(OK["entities"][0], id="p2", entity_id="sensor.other")]},
     "at most one grid_meter"),
])
def test_bad_api_config_is_refused(api: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        agent(api)


@pytest.mark.parametrize(("kw", "message"), [
    ({"entity_id": "switch.x"}, "a load is a sensor"),
    ({"role": "switchable_load"}, "switch.* or input_boolean"),
    ({"role": "switchable_load", "entity_id": "switch.x", "power_entity_id": "switch.y"}, "must be a sensor"),
    ({"power_entity_id": "sensor.y"}, "for a switchable_load only"),
    ({"role": "switchable_load", "entity_id": "input_boolean.x", "min_off_s": 600, "max_off_s": 300}, "max_off_s"),
    ({"id": "Bad Id"}, "pattern"),
    ({"role": "meter"}, "grid_meter"),
    ({"min_on_s": -1}, "greater than or equal"),
    ({"expected_power_w": 1e300}, "less than or equal"),
    ({"max_age_s": 0}, "greater than"),
])
def test_bad_entity_is_refused(kw: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        agent(**entity(**kw))


def test_entity_ids_that_are_the_houses_own_are_refused() -> None:
    with pytest.raises(ValidationError, match="already the house's"):
        agent(**entity(id="battery"))


def test_token_file(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("  tok-123\n")
    c = agent({**{k: v for k, v in OK.items() if k != "token"}, "token_file": str(f)})
    assert c.home_assistant is not None and c.home_assistant.api is not None
    assert c.home_assistant.api.token_value() == "tok-123"
    f.write_text("\n")
    with pytest.raises(ValidationError, match="token_file"):
        agent({**{k: v for k, v in OK.items() if k != "token"}, "token_file": str(f)})
    with pytest.raises(ValidationError, match="No such file"):
        agent({**{k: v for k, v in OK.items() if k != "token"}, "token_file": str(tmp_path / "nope")})


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The add-on passes the entities as JSON in one variable (deploy/home-assistant)."""
    monkeypatch.setenv("VPP_AGENT_HOME_ASSISTANT__API__URL", "ws://supervisor/core/websocket")
    monkeypatch.setenv("VPP_AGENT_HOME_ASSISTANT__API__TOKEN", "supervisor-token")
    monkeypatch.setenv("VPP_AGENT_HOME_ASSISTANT__API__ENTITIES",
                       '[{"id": "p1", "entity_id": "sensor.p1_power", "role": "grid_meter", "invert": true}]')
    c = AgentConfig(house_id="h", insecure=True, state_dir=None)
    assert c.home_assistant is not None and c.home_assistant.api is not None
    assert c.home_assistant.api.url == "ws://supervisor/core/websocket"
    assert c.home_assistant.api.entities[0].invert
