"""A redis-server of one test alone, so that the test can stop, kill and start it again on the
same port: ``durable`` keeps what was acked (append-only file, fsync'd on every write, as a
production Redis configured for durability); without it a restart is a store that lost its data."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time

import redis

from tests.conftest import free_port


class RedisProcess:
    def __init__(self, durable: bool) -> None:
        self.port = free_port()
        self.durable = durable
        self.dir = tempfile.mkdtemp(prefix="vpp-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server not installed"
        keep = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      *keep, "--dir", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None
