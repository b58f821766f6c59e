"""The house's identity towards the aggregator: refused streams said loudly, the own certificate watched.

The uplink retries for ever, as it must (a renewed certificate or a fixed config is picked up
without a restart).  But an aggregator that *refuses* this house (PERMISSION_DENIED: the
configured house_id is not the certificate's; UNAUTHENTICATED: a certificate of another fleet)
or a handshake that fails on an expired own certificate will not pass by waiting: those are
logged at ERROR with what to do, the first time and then at most once per ``interval_s``;
every stream that ends with an error is counted by code (``vpp_edge_uplink_errors_total``).
An aggregator that is away (UNAVAILABLE) is normal for an agent that works offline: INFO.

The own certificate's notAfter is read at start and on every renewal (a gauge, and a WARNING
when it is expired or expires within ``warn_within_s``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
from prometheus_client import Counter, Gauge

log = logging.getLogger("edge_agent.uplink")

WARN_WITHIN_S = 7 * 86_400.0  # a week to renew: enough for an installer's visit

# codes that say "not you, not now" need no operator; the others do
_HINTS = {
    grpc.StatusCode.PERMISSION_DENIED: "the aggregator refuses this house's identity: check house_id in the config "
                                       "against the certificate's house id (or remove house_id)",
    grpc.StatusCode.UNAUTHENTICATED: "the aggregator does not accept this house's credentials: a certificate of "
                                     "another fleet (trust domain) or, with --insecure, no house id; issue a new one "
                                     "with `aggregator certs house`",
    grpc.StatusCode.INVALID_ARGUMENT: "the aggregator refuses this agent's Hello: agent and aggregator versions?",
}


def certificate_not_after(path: Path) -> datetime:
    """The notAfter of the first certificate in a PEM file (ValueError if there is none)."""
    # only a house with mTLS reads a certificate: the others never load cryptography (~8 MB RSS)
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.not_valid_after_utc


def expiry_problem(not_after: datetime, now: datetime, warn_within_s: float = WARN_WITHIN_S) -> str | None:
    """What to say about a certificate valid until ``not_after`` (pure): None while it has time."""
    left_s = (not_after - now).total_seconds()
    if left_s <= 0:
        return f"expired at {not_after.isoformat()}: the aggregator refuses the handshake until it is renewed"
    if left_s < warn_within_s:
        return f"expires at {not_after.isoformat()} (in {left_s / 86_400:.1f} days): renew it"
    return None


class UplinkIdentity:
    """Counts and reports failed streams; watches the own certificate.  Metrics optional (tests)."""

    def __init__(self, errors: Counter | None = None, cert_expiry: Gauge | None = None,
                 interval_s: float = 300.0, monotonic: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._errors = errors
        self._cert_expiry = cert_expiry
        self._interval_s = interval_s
        self._monotonic = monotonic
        self._now = now
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self.cert_file: Path | None = None
        self.not_after: datetime | None = None
        self.errors: dict[str, int] = {}

    def check_certificate(self, cert_file: Path) -> str | None:
        """Read the own certificate's notAfter (at start, on renewal); the problem, if any, logged."""
        self.cert_file = cert_file
        try:
            self.not_after = certificate_not_after(cert_file)
        except (OSError, ValueError) as exc:  # mid-replacement or not PEM: the handshake will say more
            self._report("cert_unreadable", logging.WARNING, f"cannot read the client certificate {cert_file}: {exc}")
            return str(exc)
        if self._cert_expiry is not None:
            self._cert_expiry.set(self.not_after.timestamp())
        problem = expiry_problem(self.not_after, self._now())
        if problem is not None:
            self._report(f"cert {self.not_after.isoformat()}", logging.WARNING,
                         f"client certificate {cert_file} {problem}")
        return problem

    def stream_failed(self, code: grpc.StatusCode, details: str | None) -> None:
        """A stream ended with ``code``: counted; logged at a level that says whether to act."""
        self.errors[code.name] = self.errors.get(code.name, 0) + 1
        if self._errors is not None:
            self._errors.labels(code.name).inc()
        what = f"stream refused: {code.name} {details or ''}".rstrip()
        hint = _HINTS.get(code)
        if hint is None and code is grpc.StatusCode.UNAVAILABLE:
            expired = self.not_after is not None and self.not_after <= self._now()
            if expired:
                hint = (f"the client certificate {self.cert_file} expired at {self.not_after.isoformat()}"  # type: ignore[union-attr]
                        ": renew it (`aggregator certs house`); the agent picks the new file up by itself")
            elif details and "handshake" in details.lower():
                self._report("handshake", logging.WARNING, f"{what}: TLS handshake failed (CA, server name or "
                                                           "client certificate?); retrying")
                return
            else:
                log.info("stream ended: %s %s", code.name, details)  # the aggregator is away: normal offline
                return
        if hint is None:
            self._report(code.name, logging.WARNING, f"{what}; retrying")
            return
        self._report(code.name, logging.ERROR, f"{what}: {hint}; retrying (this will not pass by itself)")

    def _report(self, key: str, level: int, message: str) -> None:
        """Log the first time, then at most once per interval with the count in between."""
        now = self._monotonic()
        last = self._last_logged.get(key)
        if last is not None and now - last < self._interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            log.debug("%s", message)
            return
        self._last_logged[key] = now
        n = self._suppressed.pop(key, 0)
        log.log(level, "%s%s", message, f" ({n} more since the last report)" if n else "")


__all__ = ["UplinkIdentity", "WARN_WITHIN_S", "certificate_not_after", "expiry_problem"]
