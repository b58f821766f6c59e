"""Serving a Prometheus registry over HTTP beside asyncio, and stopping it cleanly."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from vpp_common.cli import StartupError  # the CLI prints it in one line and exits 1


class MetricsServer:
    """``/metrics`` for one registry (each component has its own, so that an
    agent and an aggregator can share a process in tests and demos)."""

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Serve; :class:`~vpp_common.cli.StartupError` if the address cannot be bound (in use, not local)."""
        try:
            self._server, self._thread = start_http_server(self._port, addr=self._host, registry=self._registry)
        except OSError as exc:
            raise StartupError(f"cannot serve /metrics on {self._host}:{self._port}: {exc.strerror or exc} "
                               "(another process on that port? choose another metrics_port, or turn /metrics off)") from None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("metrics server not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}/metrics"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None
