"""Connecting the house's device at start-up: wait for one that does not answer, stop for one
that answers and is not what the config says.

A house often boots before its inverter (a power cut, a firmware update): exiting then would
leave it uncontrolled for good under a supervisor that does not restart configuration errors
(systemd ``RestartPreventExitStatus=2``).  So an unreachable device is tried again with
exponential backoff and jitter (:class:`~edge_agent.resources.retry.DeviceRetry`, from one poll
period up to ``device.reconnect_max_s`` clock seconds), reported on ``/metrics`` and in the log
(WARNING at the first failure, then at most once per ``report_interval_s``), and nothing is
written to it meanwhile.  A device that *answers* but is not SunSpec, lacks a model the config
needs or refuses the request (wrong unit id) will not change by waiting: that is
:class:`DeviceMisconfigured`, an operator's mistake (the CLI exits 2 with the reason).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

from prometheus_client import Counter, Gauge

from edge_agent.drivers.errors import DeviceRejected, DeviceUnavailable, ModelNotFound, NotSunSpec
from edge_agent.drivers.sunspec import NOT_READY_EXCEPTION_CODES
from edge_agent.resources.house import DeviceConfigurationError, HouseResourceManager
from edge_agent.resources.retry import DeviceRetry
from vpp_common.clock import Clock

log = logging.getLogger(__name__)

# Modbus exception codes that say "not now" rather than "not here" (busy, a gateway whose
# inverter still boots): wait for the device
TRANSIENT_EXCEPTION_CODES = NOT_READY_EXCEPTION_CODES

Outcome = Literal["connected", "unreachable", "misconfigured"]


class DeviceMisconfigured(Exception):
    """The device answers but cannot serve this config (not SunSpec, a model missing, requests
    refused): waiting will not help, the operator must fix the config or the device."""


def classify(exc: BaseException) -> Outcome:
    """How to react to a failed connect: wait for the device, or stop (pure)."""
    if isinstance(exc, DeviceRejected):
        return "unreachable" if exc.exception_code in TRANSIENT_EXCEPTION_CODES else "misconfigured"
    if isinstance(exc, (NotSunSpec, ModelNotFound, DeviceConfigurationError)):
        return "misconfigured"
    if isinstance(exc, DeviceUnavailable):
        return "unreachable"
    # Anything else (a driver that chokes on a half-booted device's registers): waiting is the safe
    # side for a house; it is logged at ERROR with its traceback (see DeviceConnector)
    return "unreachable"


class DeviceConnector:
    """Connects ``device``; one :meth:`attempt` at a time, or :meth:`until_connected`."""

    def __init__(self, device: HouseResourceManager, where: str, retry: DeviceRetry, clock: Clock,
                 connected: Gauge, attempts: Counter, report_interval_s: float = 300.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._device = device
        self._where = where
        self._retry = retry
        self._clock = clock
        self._connected = connected
        self._attempts = attempts
        self._report_interval_s = report_interval_s
        self._monotonic = monotonic
        self._first_failure: float | None = None
        self._last_report: float | None = None
        self._unexpected_logged = False
        self.failures = 0
        self.last_error: BaseException | None = None
        self.next_delay_s = 0.0  # clock s before the next attempt (after a failure)
        connected.set(0)

    async def attempt(self) -> bool:
        """Try once: True if connected, False if unreachable (logged, counted; the next
        attempt after ``next_delay_s``); DeviceMisconfigured if the device is not what the config says."""
        try:
            await self._device.connect()
        except Exception as exc:
            outcome = classify(exc)
            self._attempts.labels(outcome).inc()
            if outcome == "misconfigured":
                log.error("device at %s answers but cannot serve this config: %s", self._where, exc)
                raise DeviceMisconfigured(f"device at {self._where}: {exc} (check [device]: host, port, unit_id, "
                                          "catalogue; `edge-agent scan` shows what the device offers)") from exc
            self._failed(exc)
            return False
        self._attempts.labels("connected").inc()
        self._connected.set(1)
        if self.failures:
            waited = self._monotonic() - (self._first_failure or self._monotonic())
            log.warning("device at %s answered after %d failed attempts (%.0f s): starting control",
                        self._where, self.failures, waited)
        self._retry.succeeded()
        self.failures = 0
        self._first_failure = None
        return True

    async def until_connected(self) -> None:
        """Attempt until connected (backoff with jitter between attempts, clock s)."""
        while not await self.attempt():
            await self._clock.sleep(self.next_delay_s)

    def _failed(self, exc: BaseException) -> None:
        now = self._monotonic()
        self.failures += 1
        self.last_error = exc
        self.next_delay_s = self._retry.failed(self._clock.now())
        if not isinstance(exc, (DeviceUnavailable, DeviceRejected)) and not self._unexpected_logged:
            self._unexpected_logged = True  # once: a bug or a device answering nonsense
            log.error("unexpected error connecting to the device at %s (will retry)", self._where, exc_info=exc)
        if self._first_failure is None:
            self._first_failure = self._last_report = now
            log.warning("device at %s does not answer (%s): waiting for it, next attempt in %.1f s (backoff up "
                        "to %g s); nothing is controlled until it answers", self._where, exc,
                        self.next_delay_s, self._retry.max_s)
        elif self._last_report is not None and now - self._last_report >= self._report_interval_s:
            self._last_report = now
            log.warning("device at %s still does not answer after %d attempts (%.0f s): %s",
                        self._where, self.failures, now - self._first_failure, exc)
        else:
            log.debug("device at %s: attempt %d failed: %s; next in %.1f s", self._where, self.failures, exc,
                      self.next_delay_s)


__all__ = ["DeviceConnector", "DeviceMisconfigured", "TRANSIENT_EXCEPTION_CODES", "classify"]
