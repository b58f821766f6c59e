"""The ``[home_assistant]`` table: off unless configured, refused where it cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.config import AgentConfig
from edge_agent.link_config import HomeAssistantConfig


@pytest.fixture(autouse=True)
def agent_state_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests give each agent its state_dir themselves (conftest's fixture sets it through the
    environment, which overrides what a test passes)."""
    monkeypatch.delenv("VPP_AGENT_STATE_DIR", raising=False)


def cfg(tmp_path: Path, **ha: object) -> AgentConfig:
    return AgentConfig(house_id="house 7", insecure=True, state_dir=tmp_path,
                       home_assistant=HomeAssistantConfig.model_validate({"host": "broker", **ha}))


def test_defaults(tmp_path: Path) -> None:
    c = cfg(tmp_path)
    assert c.home_assistant is not None
    assert (c.home_assistant.port, c.home_assistant.discovery_prefix, c.home_assistant.status_topic) == \
        (1883, "homeassistant", "homeassistant/status")
    assert AgentConfig(house_id="h", insecure=True).home_assistant is None  # off unless configured


def test_needs_a_state_dir() -> None:
    with pytest.raises(ValidationError, match="state_dir"):
        AgentConfig(house_id="h", insecure=True, state_dir=None, home_assistant=HomeAssistantConfig(host="broker"))


@pytest.mark.parametrize(("key", "value"), [("node_id", "a/b"), ("node_id", "a+b"), ("discovery_prefix", "ha/#"),
                                            ("port", 0), ("publish_interval_s", float("nan")), ("host", " "),
                                            ("typo", 1)])
def test_refused(tmp_path: Path, key: str, value: object) -> None:
    with pytest.raises(ValidationError):
        cfg(tmp_path, **{key: value})


def test_client_certificate_needs_both_files(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ValidationError, match="both cert_file and key_file"):
        cfg(tmp_path, tls={"ca_file": str(ca), "cert_file": str(ca)})
    with pytest.raises(ValidationError, match="does not exist"):
        cfg(tmp_path, tls={"ca_file": str(tmp_path / "nope.pem")})


async def test_an_unwritable_state_dir_stops_the_agent_at_start(tmp_path: Path) -> None:
    from edge_agent.agent import EdgeAgent
    from vpp_common.config import ConfigError

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="state_dir: cannot"):  # the telemetry spool's, at construction
        agent = EdgeAgent(cfg(blocker / "state").model_copy(update={"metrics_port": None}))
        await agent.start()
