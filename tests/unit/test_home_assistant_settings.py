"""The settings file behind Home Assistant's mode and reserve (edge_agent/home_assistant/energy.py):
hostile content never reaches the agent as a number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.home_assistant.commands import Refused, parse
from edge_agent.home_assistant.energy import load_settings, save_settings
from edge_agent.home_assistant.entities import HouseSpec


@pytest.mark.parametrize("text", ['{"reserve_soc": NaN}', '{"reserve_soc": Infinity}', '{"reserve_soc": -Infinity}',
                                  '{"reserve_soc": true}', '{"reserve_soc": "20"}', '{"control_mode": 5}'])
def test_non_finite_or_mistyped_values_are_dropped(tmp_path: Path, text: str) -> None:
    p = tmp_path / "s.json"
    p.write_text(text)
    assert load_settings(p) == {}


@pytest.mark.parametrize("value", [-5.0, 1e300, 100.5])
def test_out_of_range_values_are_refused_by_the_command_checks_they_go_through(tmp_path: Path, value: float) -> None:
    p = tmp_path / "s.json"
    save_settings(p, {"reserve_soc": value})
    restored = load_settings(p)
    assert restored == {"reserve_soc": value}  # read as written, then checked as a command is
    spec = HouseSpec(node_id="n", house_name="h", sw_version="0", discovery_prefix="homeassistant", has_ev=False,
                     currency=None, max_soc_pct=100.0)
    cmd = parse(spec, "reserve_soc", str(restored["reserve_soc"]).encode())
    assert isinstance(cmd, Refused) and cmd.label == "out_of_range"


def test_a_file_that_is_not_json_is_set_aside(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text("{not json")
    assert load_settings(p) == {} and p.with_suffix(".corrupt").exists() and not p.exists()
    save_settings(p, {"control_mode": "tou"})
    assert json.loads(p.read_text()) == {"control_mode": "tou"}
