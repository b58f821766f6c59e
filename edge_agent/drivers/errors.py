"""Driver errors, classified by how the caller must react (docs/architecture.md, "Errors by reaction").

* :class:`DeviceUnavailable` - transient: timeout, refused or lost
  connection, garbled answer.  Retry with backoff and jitter; mark the
  device's data stale (never turn it into 0 W).
* :class:`DeviceRejected` - the device answered with a Modbus exception
  response (illegal address/value, busy, ...).  Retrying the same request
  is pointless unless the code says busy; the request or the device's state
  must change.
* :class:`NotSunSpec` - configuration: no SunSpec map where one was
  expected.  The operator must fix host/port/unit id; do not retry.
* :class:`ModelNotFound` - not supported: the device does not offer the
  requested model (or instance).  Never retried.
* :class:`DeviceRefused` - an HTTP device (Shelly RPC, Tasmota) answered a
  request with an error (its code and message).  As DeviceRejected.
* :class:`AuthFailed` - configuration: the device wants credentials that are
  missing or wrong.  The operator must fix them; do not retry.
"""

from __future__ import annotations


class DeviceError(Exception):
    """Base of all driver errors; carries the device it concerns."""

    def __init__(self, message: str, *, device: str | None = None) -> None:
        super().__init__(f"{device}: {message}" if device else message)
        self.device = device


class DeviceUnavailable(DeviceError):
    """Transient: the device could not be reached or did not answer in time."""


class DeviceRejected(DeviceError):
    """The device answered a request with a Modbus exception response."""

    def __init__(self, message: str, *, exception_code: int, function_code: int | None = None,
                 address: int | None = None, device: str | None = None) -> None:
        super().__init__(f"{message} (Modbus exception {exception_code})", device=device)
        self.exception_code = exception_code
        self.function_code = function_code
        self.address = address


class NotSunSpec(DeviceError):
    """Configuration: no "SunS" marker at any base address, or a broken model chain."""


class ModelNotFound(DeviceError):
    """Not supported: the device has no such SunSpec model (or instance)."""


class DeviceRefused(DeviceError):
    """An HTTP device answered a request with an error object (Shelly RPC code, Tasmota's answer)."""

    def __init__(self, message: str, *, code: int | None = None, device: str | None = None) -> None:
        super().__init__(message if code is None else f"{message} (code {code})", device=device)
        self.code = code


class AuthFailed(DeviceError):
    """Configuration: the device refused the credentials (or wants some and none are configured)."""


__all__ = ["AuthFailed", "DeviceError", "DeviceRefused", "DeviceRejected", "DeviceUnavailable", "ModelNotFound",
           "NotSunSpec"]
