"""A throwaway Mosquitto broker on a free loopback port (Home Assistant MQTT tests).

Function-scoped, so a test may stop and start it (a broker restart) on the same port; no
persistence, so whatever is retained after a restart was published again by the agent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, until


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)


class Mosquitto:
    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
                             "log_dest stderr\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start on port {self.port} (exit {self.proc.poll()})")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    binary = mosquitto_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed (.ci/run installs it)")
        pytest.skip("mosquitto not installed (Debian package mosquitto)")
    workdir = Path(tempfile.mkdtemp(prefix="vpp-mosquitto-"))
    broker = Mosquitto(binary, workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)



async def close_default_executor() -> None:
    """aiomqtt connects in the event loop's default executor, whose thread lives as long as the
    loop (by design, not a leak): shut it down at the end of a test, before the leak check."""
    await asyncio.get_running_loop().shutdown_default_executor()


async def polls(agent: Any, clock: Any, n: int, step_s: float = 1.0) -> None:
    """``n`` device polls of ``agent``, each after ``step_s`` of its (manual) clock."""
    for _ in range(n):
        done = agent.stats.polls
        clock.advance(step_s)
        await until(lambda: agent.stats.polls > done, "a device poll")

