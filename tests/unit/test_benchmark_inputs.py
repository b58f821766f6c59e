"""The benchmarks refuse numbers they cannot run with, naming the flag, and time plans to
registers as their docstring says (benchmarks/edge_agent.py, benchmarks/dispatch.py, benchmarks/streams.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={"PYTHONPATH": f"{ROOT}:{ROOT / 'proto'}", "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize(("args", "said"), [
    (("--houses", "10,x"), "--houses"),
    (("--houses", "0"), "--houses"),
    (("--houses", "10", "--max-memory-mb", "nan"), "--max-memory-mb"),
    (("--houses", "10", "--max-memory-mb", "-1"), "--max-memory-mb"),
])
def test_dispatch_refuses_bad_numbers(args: tuple[str, ...], said: str) -> None:
    r = _run("dispatch.py", *args)
    assert r.returncode == 2 and said in r.stderr, r.stderr


def test_dispatch_names_a_size_it_skips_for_memory_before_running() -> None:
    r = _run("dispatch.py", "--houses", "30000", "--max-memory-mb", "1000")
    assert r.returncode == 0, r.stderr
    assert "# SKIPPED 30000 houses: estimated peak" in r.stdout and '"config": "default (2 futures)"' in r.stdout


@pytest.mark.parametrize(("args", "said"), [
    (("--seconds", "inf"), "--seconds"),
    (("--warmup", "nan"), "--warmup"),
    (("--plan-interval", "0"), "--plan-interval"),
    (("--plans", "-1"), "--plans"),
])
def test_edge_agent_refuses_bad_numbers(args: tuple[str, ...], said: str) -> None:
    r = _run("edge_agent.py", *args)
    assert r.returncode == 2 and said in r.stderr, r.stderr


def _edge_agent_benchmark():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_edge_agent", ROOT / "benchmarks" / "edge_agent.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_plan_is_timed_to_the_last_write_of_the_command_it_changed() -> None:
    b = _edge_agent_benchmark()
    sent = [(1.0, 1000.0), (2.0, 3000.0), (3.0, 1000.0), (4.0, 3000.0)]
    commands = [(0.5, 0.0, 0.0),
                (1.01, 1000.0, 1000.0), (1.02, 1000.0, 1000.0), (1.5, 1000.0, 1000.0),  # plan 1, then a refresh
                (2.05, 3000.0, 3000.0),  # plan 2
                (3.2, 3000.0, 3000.0),  # plan 3: the same command again (clamped): no change, unmatched
                (4.01, 1000.0, 1000.0), (4.09, 1000.0, 1000.0), (4.30, 1000.0, 1000.0)]  # burst ends at 4.09
    ms, unmatched = b.latencies_ms(sent, commands)
    assert ms == pytest.approx([20.0, 50.0, 90.0]) and unmatched == 1
    assert b.percentile(list(range(1, 201)), 99) == 198 and b.percentile([], 99) != b.percentile([], 99)  # NaN


@pytest.mark.parametrize(("args", "said"), [
    (("--cycle", "nan"), "--cycle"), (("--cycle", "inf"), "--cycle"), (("--cycle", "-1"), "--cycle"),
    (("--cycle", "1e12"), "--cycle"), (("--connect-rate", "nan"), "--connect-rate"),
    (("--connect-rate", "-inf"), "--connect-rate"), (("--cycles", "0"), "--cycles"),
    (("--cycles", "1000000"), "--cycles"), (("--procs", "-2"), "--procs"), (("--levels", "10,x"), "--levels"),
    (("--levels", "0"), "--levels"), (("--levels", "-5"), "--levels"), (("--levels", "10000000"), "--levels"),
])
def test_streams_refuses_bad_numbers(args: tuple[str, ...], said: str) -> None:
    r = _run("streams.py", *args)
    assert r.returncode == 2 and said in r.stderr, r.stderr
