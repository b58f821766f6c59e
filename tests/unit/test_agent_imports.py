"""Importing the edge agent loads only what every house needs (docs/performance.md): TLS
certificate parsing, MQTT, tariffs and SunSpec model definitions come when a house uses them."""

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
print(json.dumps({"modules": sorted(sys.modules), "model_defs": len(sunspec2.device.model_defs_cache)}))
"""


def test_importing_the_agent_loads_no_optional_package() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"PYTHONPATH": f"{ROOT}:{ROOT / 'proto'}", "PATH": "/usr/bin:/bin"}, timeout=60)
    loaded = json.loads(out.stdout.splitlines()[-1])
    top = {m.split(".")[0] for m in loaded["modules"]}
    # cryptography: mTLS houses only (certificate expiry); aiomqtt/paho: [home_assistant] only;
    # the tariff module: [tariff] (tou mode) only; pandas/pvlib: a [site] forecast only
    assert not top & {"cryptography", "aiomqtt", "paho", "pandas", "pvlib"}, top & {"cryptography", "aiomqtt"}
    assert "vpp_common.tariff" not in loaded["modules"]
    assert "edge_agent.home_assistant.bridge" not in loaded["modules"]
    assert loaded["model_defs"] == 0  # SunSpec definitions load per model the device has, when read
