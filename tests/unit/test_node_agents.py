"""benchmarks/node_agents/agents.js (streams.py --clients node): its arguments are checked, and
the messages it sends are the Python cheap agents' (stream_agents).  Skipped without node, and
(encodings) without its node_modules: the suite installs no npm packages."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict

from vpp.v1 import fleet_service_pb2 as fs

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ROOT / "benchmarks" / "node_agents"
NODE = shutil.which("node")

needs_node = pytest.mark.skipif(NODE is None, reason="no node on PATH")


def _node(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NODE or "node", str(AGENTS / "agents.js"), *args], capture_output=True, text=True,
                          timeout=30, check=False)


GOOD = ["127.0.0.1:1", "0", "4", "10", "/tmp/r", "/tmp/s", "50"]


@needs_node
@pytest.mark.parametrize(("index", "value", "said"), [
    (0, "nowhere", "target"), (1, "-1", "first"), (1, "1.5", "first"), (2, "0", "stride"), (2, "NaN", "stride"),
    (3, "0", "count"), (3, "1e9", "count"), (6, "nan", "rate"), (6, "inf", "rate"), (6, "0", "rate"),
    (6, "-3", "rate"), (6, "1e6", "rate")])
def test_bad_arguments_are_refused(index: int, value: str, said: str) -> None:
    args = list(GOOD)
    args[index] = value
    r = _node("--client-node", *args)
    assert r.returncode == 2 and said in r.stderr and "usage:" in r.stderr


@needs_node
def test_too_few_arguments_are_refused() -> None:
    r = _node("--client-node", *GOOD[:-1])
    assert r.returncode == 2 and "7 arguments" in r.stderr


def _without_times(msg: dict[str, object]) -> dict[str, object]:
    return {k: _without_times(v) if isinstance(v, dict) else
            [_without_times(x) if isinstance(x, dict) else x for x in v] if isinstance(v, list) else v
            for k, v in msg.items() if k not in ("measured_at", "valid_from", "at")}


@needs_node
@pytest.mark.skipif(not (AGENTS / "node_modules").is_dir(), reason="benchmarks/node_agents: npm ci not run")
def test_the_messages_are_the_python_cheap_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    # by file: benchmarks/ on sys.path would shadow the edge_agent package with benchmarks/edge_agent.py
    spec = importlib.util.spec_from_file_location("stream_agents", ROOT / "benchmarks" / "stream_agents.py")
    assert spec is not None and spec.loader is not None
    cheap = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "stream_agents", cheap)  # its dataclasses look themselves up there
    spec.loader.exec_module(cheap)
    hello_bytes, flexibility_bytes, telemetry_bytes = cheap.hello_bytes, cheap.flexibility_bytes, cheap.telemetry_bytes

    r = _node("--encodings")
    assert r.returncode == 0, r.stderr
    sent = {k: fs.ConnectRequest.FromString(bytes.fromhex(v)) for k, v in json.loads(r.stdout).items()}
    assert sent["hello"].SerializeToString() == hello_bytes()  # the same bytes
    for key, python in (("flexibility", flexibility_bytes()), ("telemetry", telemetry_bytes())):
        ours = MessageToDict(sent[key], preserving_proto_field_name=True)
        theirs = MessageToDict(fs.ConnectRequest.FromString(python), preserving_proto_field_name=True)
        assert _without_times(ours) == _without_times(theirs)
    assert sent["telemetry"].telemetry.measured_at.seconds > 1.7e9
    assert sent["telemetry"].telemetry.grid_power_w.measured_at == sent["telemetry"].telemetry.measured_at
    st = sent["plan_status"]
    assert (st.sequence, st.plan_status.plan_id, st.plan_status.version, st.plan_status.state) == (
        5, "p-1", 7, fs.PLAN_STATE_ACCEPTED)
    assert st.plan_status.at.seconds > 1.7e9


def test_streams_says_what_to_install_without_node_or_npm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("streams_bench", ROOT / "benchmarks" / "streams.py")
    assert spec is not None and spec.loader is not None
    streams = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(streams)
    monkeypatch.setattr(streams, "NODE_AGENTS", tmp_path)  # no node_modules there
    monkeypatch.setattr(streams.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="no `node` on PATH"):
        streams.node_ready()
    monkeypatch.setattr(streams.shutil, "which", lambda name: "/usr/bin/node" if name == "node" else None)
    with pytest.raises(SystemExit, match="no `npm` on PATH"):
        streams.node_ready()
