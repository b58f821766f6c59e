"""Aggregator replicas as real processes (``aggregator serve --insecure`` on loopback), as an
operator runs them: started with settings in the environment, stopped on every path (a
SIGSTOPped one is continued first: a stopped process cannot act on SIGTERM)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from tests.conftest import free_port


@dataclass
class Replica:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    def listening(self) -> bool:
        """gRPC listens just before the replica's first try for the lease."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False


def start_replica(name: str, store_url: str, **settings: object) -> Replica:
    """One replica; ``settings`` become ``VPP_AGG_<NAME>`` variables (``planning__cycle_s=30``)."""
    env = dict(os.environ, VPP_AGG_REPLICA_ID=name, VPP_AGG_DRAIN_GRACE_S="0.5")
    env.update({f"VPP_AGG_{k.upper()}": str(v) for k, v in settings.items()})
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aggregator.cli", "serve", "--insecure", "--listen", f"127.0.0.1:{port}",
         "--admin-listen", "127.0.0.1:0", "--metrics-port", "0", "--store-url", store_url],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Replica(name, port, proc)


def stop_replicas(replicas: Iterable[Replica]) -> None:
    replicas = list(replicas)
    for rep in replicas:
        if rep.proc.poll() is None:
            os.kill(rep.proc.pid, signal.SIGCONT)
            rep.proc.terminate()
    for rep in replicas:
        try:
            rep.proc.wait(10)
        except subprocess.TimeoutExpired:
            rep.proc.kill()
            rep.proc.wait(5)
