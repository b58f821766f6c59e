"""Commands from Home Assistant: parsed and bounded (pure), then checked and applied by the agent."""

from __future__ import annotations

import math

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, BatteryConfig
from edge_agent.home_assistant.commands import Command, Refused, parse
from edge_agent.home_assistant.entities import HouseSpec

SPEC = HouseSpec(node_id="h1", house_name="h1", sw_version="0", max_soc_pct=90)
TOU = HouseSpec(node_id="h1", house_name="h1", sw_version="0", currency="EUR")


@pytest.mark.parametrize(("key", "payload", "expected"), [
    ("control_mode", b"self_consumption", Command("control_mode", "self_consumption")),
    ("control_mode", b" vpp\n", Command("control_mode", "vpp")),
    ("reserve_soc", b"25", Command("reserve_soc", 25.0)),
    ("reserve_soc", b"89", Command("reserve_soc", 89.0)),
    ("override_hours", b"1.5", Command("override_hours", 1.5)),
    ("charge_now", b"PRESS", Command("charge_now")),
])
def test_accepted(key: str, payload: bytes, expected: Command) -> None:
    assert parse(SPEC, key, payload) == expected


@pytest.mark.parametrize(("key", "payload", "label"), [
    ("control_mode", b"tou", "unknown_mode"),  # no tariff
    ("control_mode", b"VPP; DROP", "unknown_mode"),
    ("reserve_soc", b"nan", "not_a_number"),
    ("reserve_soc", b"inf", "not_a_number"),
    ("reserve_soc", b"1e400", "not_a_number"),
    ("reserve_soc", b"90", "out_of_range"),  # must stay below max_soc_pct
    ("reserve_soc", b"-1", "out_of_range"),
    ("reserve_soc", b"", "not_a_number"),
    ("override_hours", b"0", "out_of_range"),
    ("override_hours", b"1000", "out_of_range"),
    ("hold_battery", b"now", "bad_press"),
    ("reserve_soc", b"\xff\xfe", "not_text"),
    ("reserve_soc", b"1" * 65, "too_long"),
    ("../../etc", b"PRESS", "unknown_command"),
])
def test_refused(key: str, payload: bytes, label: str) -> None:
    r = parse(SPEC, key, payload)
    assert isinstance(r, Refused) and r.label == label, r


def test_tou_only_with_a_tariff() -> None:
    assert parse(TOU, "control_mode", b"tou") == Command("control_mode", "tou")


def agent(**kw: object) -> EdgeAgent:
    return EdgeAgent(AgentConfig(house_id="h1", insecure=True, metrics_port=None, **kw))


def refused(a: EdgeAgent, reason: str) -> float:
    return a.metrics.registry.get_sample_value("vpp_edge_refused_total",
                                               {"source": "home_assistant", "reason": reason}) or 0.0


async def test_apply_local_checks_like_the_config() -> None:
    a = agent(battery=BatteryConfig(reserve_soc_pct=10, max_soc_pct=90))
    assert a.apply_local("reserve_soc", 95.0, "home_assistant") is not None  # reserve >= max_soc_pct
    assert a.apply_local("reserve_soc", math.nan, "home_assistant") is not None
    assert a.config.battery.reserve_soc_pct == 10 and refused(a, "invalid_setting") == 2
    assert a.apply_local("control_mode", "tou", "home_assistant") is not None  # no [tariff]
    assert a.apply_local("control_mode", "bogus", "home_assistant") is not None
    assert a.config.control.mode == "vpp"
    assert a.apply_local("reserve_soc", 30.0, "home_assistant") is None
    assert a.apply_local("control_mode", "self_consumption", "home_assistant") is None
    assert (a.config.battery.reserve_soc_pct, a.config.control.mode) == (30.0, "self_consumption")
    assert a.apply_local("hold_battery", math.inf, "home_assistant") is not None and a.override is None
    assert a.apply_local("hold_battery", 2.0, "home_assistant") is None and a.override is not None
    assert (a.override.valid_until - a.override.valid_from).total_seconds() == 7200
