"""``vpp_edge_telemetry_*``: the uplink's telemetry counts, read at scrape time.

A collector rather than counters bumped by a loop: the figures live in the
uplink and its spool, so /metrics shows them as they are, also while the
telemetry loop sleeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class _Spool(Protocol):
    dropped_full: int
    dropped_error: int

    def __len__(self) -> int: ...

    def oldest_measured_at(self) -> float | None: ...


class _Uplink(Protocol):
    @property
    def spool(self) -> _Spool: ...
    @property
    def telemetry_recorded(self) -> int: ...
    @property
    def telemetry_sent(self) -> int: ...
    @property
    def telemetry_resent(self) -> int: ...
    @property
    def telemetry_acked(self) -> int: ...


class TelemetryCollector(Collector):
    def __init__(self, uplink: _Uplink, now_s: Callable[[], float]) -> None:
        """``now_s``: the agent's clock in Unix s (samples carry its time)."""
        self._uplink = uplink
        self._now_s = now_s

    def collect(self) -> Iterator[Metric]:
        u, spool = self._uplink, self._uplink.spool
        for name, doc, value in (
            ("vpp_edge_telemetry_recorded", "Telemetry samples recorded (written to the spool), online or not.",
             u.telemetry_recorded),
            ("vpp_edge_telemetry_sent", "Telemetry samples sent to the aggregator, resends included.",
             u.telemetry_sent),
            ("vpp_edge_telemetry_resent", "Telemetry samples sent again after no ack in time on the same stream.",
             u.telemetry_resent),
            ("vpp_edge_telemetry_acked", "Telemetry samples the aggregator acknowledged (stored), then deleted "
                                         "from the spool.", u.telemetry_acked),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        dropped = CounterMetricFamily("vpp_edge_telemetry_dropped",
                                      "Telemetry samples lost before an ack: spool_full (the oldest gave way), "
                                      "spool_error (could not be written).", labels=["reason"])
        dropped.add_metric(["spool_full"], spool.dropped_full)
        dropped.add_metric(["spool_error"], spool.dropped_error)
        yield dropped
        yield GaugeMetricFamily("vpp_edge_telemetry_unacked",
                                "Telemetry samples in the spool, waiting for the aggregator's ack.", value=len(spool))
        oldest = spool.oldest_measured_at()
        yield GaugeMetricFamily("vpp_edge_telemetry_oldest_unacked_age_seconds",
                                "Age of the oldest telemetry sample in the spool, s (0 when empty).",
                                value=0.0 if oldest is None else max(0.0, self._now_s() - oldest))
