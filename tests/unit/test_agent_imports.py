"""Importing the edge agent loads only what every house needs (docs/performance.md): TLS
certificate parsing, MQTT, tariffs, numpy (a site's clear-sky PV forecast, a tariff) and SunSpec
model definitions come when a house uses them, s2-python with S2 messages; pydantic-settings not at
all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import edge_agent.cli, edge_agent.agent, edge_agent.device_connect
import sunspec2.device
from datetime import UTC, datetime, timedelta
from edge_agent.config import AgentConfig
from edge_agent.energy_manager.forecast_plain import PlainForecaster
from vpp_common.config import load_config
load_config(AgentConfig, None, insecure=True, house_id="h", site={"timezone": "Europe/Berlin"})
f = PlainForecaster(900, days=7, timezone="Europe/Berlin")  # a house without a site forecasts so
t = datetime(2026, 3, 27, tzinfo=UTC)
for k in range(4 * 96):
    f.add(t + timedelta(minutes=15 * k), 300.0 + k % 96, 0.0)
f.forecast(t + timedelta(days=4), 96)
print(json.dumps({"modules": sorted(sys.modules), "model_defs": len(sunspec2.device.model_defs_cache)}))
"""


def test_importing_the_agent_loads_no_optional_package() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"PYTHONPATH": f"{ROOT}:{ROOT / 'proto'}", "PATH": "/usr/bin:/bin"}, timeout=60)
    loaded = json.loads(out.stdout.splitlines()[-1])
    top = {m.split(".")[0] for m in loaded["modules"]}
    # cryptography: mTLS houses only (certificate expiry); aiomqtt/paho: [home_assistant] only;
    # the tariff module: [tariff] (tou mode) only; pandas/pvlib: a [site] forecast only
    # numpy: a [site] (clear-sky PV) or a [tariff] only; pydantic_settings: replaced by vpp_common.config_env;
    # s2python: where S2 messages are made ([s2], resources/s2.py), not for a battery's nameplate
    optional = {"cryptography", "aiomqtt", "paho", "pandas", "pvlib", "numpy", "pydantic_settings", "s2python"}
    assert not top & optional, top & optional
    assert "vpp_common.tariff" not in loaded["modules"]
    assert "edge_agent.home_assistant.bridge" not in loaded["modules"]
    assert loaded["model_defs"] == 0  # SunSpec definitions load per model the device has, when read
