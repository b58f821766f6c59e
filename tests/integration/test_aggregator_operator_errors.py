"""Operator mistakes with `aggregator serve` (issue 20): exit 2, the field and the reason on one
`error:` line, no traceback; and one process per port (a second server on a taken `listen`
refuses to start instead of sharing it through SO_REUSEPORT)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPP_AGG_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "proto"), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def serve(*args: str, timeout_s: float = 60.0, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aggregator.cli", "serve", "--insecure", "--admin-listen",
                           f"127.0.0.1:{free_port()}", "--metrics-port", "0", *args],
                          env=_env(**env), capture_output=True, text=True, timeout=timeout_s, cwd=ROOT)


def assert_operator_error(res: subprocess.CompletedProcess[str], *words: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith(("error:", "config error:"))]
    assert len(errors) == 1, res.stderr[-2000:]
    text = res.stderr[res.stderr.index(errors[0]):]
    for w in words:
        assert w in text, (w, text)


def test_store_url_with_an_unknown_scheme(tmp_path: Path) -> None:
    assert_operator_error(serve("--listen", f"127.0.0.1:{free_port()}", "--store-url", "postgres://x"),
                          "store_url", "redis://")


def test_a_directory_as_config(tmp_path: Path) -> None:
    assert_operator_error(serve("--config", str(tmp_path)), str(tmp_path), "is a directory")


def test_a_config_that_is_not_utf8(tmp_path: Path) -> None:
    bad = tmp_path / "agg.toml"
    bad.write_bytes(b'replica_id = "\xff\xfe"\n')
    assert_operator_error(serve("--config", str(bad)), "agg.toml", "not UTF-8")


def test_bad_json_in_an_env_variable() -> None:
    assert_operator_error(serve("--listen", f"127.0.0.1:{free_port()}", VPP_AGG_FEEDERS="[{bad"), "feeders")


def test_unknown_nested_key_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "agg.toml"
    cfg.write_text("[planning]\ncycle_sec = 5\n", encoding="utf-8")
    assert_operator_error(serve("--config", str(cfg)), "planning.cycle_sec", "unknown key")


def test_a_listen_address_that_cannot_be_bound() -> None:
    # TEST-NET-1 (RFC 5737): never an address of this machine
    assert_operator_error(serve("--listen", "192.0.2.1:50051"), "listen", "192.0.2.1:50051")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_busy_metrics_port(taken_port: int) -> None:
    res = subprocess.run([sys.executable, "-m", "aggregator.cli", "serve", "--insecure", "--listen",
                          f"127.0.0.1:{free_port()}", "--admin-listen", f"127.0.0.1:{free_port()}",
                          "--metrics-port", str(taken_port)],
                         env=_env(), capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert_operator_error(res, "metrics_port", str(taken_port))


def test_a_second_server_on_the_same_listen_refuses_to_start() -> None:
    port = free_port()
    first = subprocess.Popen([sys.executable, "-m", "aggregator.cli", "serve", "--insecure", "--listen",
                              f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{free_port()}",
                              "--metrics-port", "0"],
                             env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert first.stderr is not None
        for line in first.stderr:  # bounded by the process: it prints this line or exits
            if "serving on" in line:
                break
        else:
            pytest.fail(f"first server did not start (exit {first.wait(10)})")
        assert_operator_error(serve("--listen", f"127.0.0.1:{port}"), "listen", f"127.0.0.1:{port}", "in use")
        assert first.poll() is None  # the first one is untouched
    finally:
        first.terminate()
        first.wait(15)
        if first.stderr is not None:
            first.stderr.close()
