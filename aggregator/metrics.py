"""Aggregator metrics: ``vpp_aggregator_*``, no per-house label (fleet distributions
as histograms, counts by type/result)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, Histogram


# *_created series double the exposition for no use on dashboards
disable_created_metrics()


class AggregatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.connected_agents = Gauge("vpp_aggregator_connected_agents", "Agent streams open on this replica.",
                                      registry=r)
        self.messages = Counter("vpp_aggregator_messages_total", "Agent messages received, by type and result.",
                                ["type", "result"], registry=r)
        self.plans_sent = Counter("vpp_aggregator_plans_sent_total", "Dispatch plans written to agent streams.",
                                  registry=r)
        self.plan_ack_latency = Histogram(
            "vpp_aggregator_plan_ack_latency_seconds", "From sending a plan to the agent's ACCEPTED status.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.telemetry_age = Histogram(
            "vpp_aggregator_telemetry_age_seconds", "Age of telemetry when received (clock seconds).",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300), registry=r)
        self.plan_cycle_duration = Histogram(
            "vpp_aggregator_plan_cycle_duration_seconds", "Wall time of one planning cycle.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120), registry=r)
        self.store_errors = Counter("vpp_aggregator_store_errors_total", "State store operations that failed.",
                                    registry=r)
        self.flexibility_up = Gauge("vpp_aggregator_fleet_flexibility_up_watts",
                                    "Fleet power that could be added (more charging), W.", registry=r)
        self.flexibility_down = Gauge("vpp_aggregator_fleet_flexibility_down_watts",
                                      "Fleet power that could be shed (more discharging), W.", registry=r)
        self.store_up = Gauge("vpp_aggregator_store_up", "1 while the state store answers; 0 = degraded.",
                              registry=r)
        self.solve_duration = Histogram(
            "vpp_aggregator_solve_duration_seconds", "Wall time of the dispatch computation in one cycle.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120), registry=r)
        self.leader = Gauge("vpp_aggregator_dispatch_leader", "1 if this replica holds the dispatch lease.",
                            registry=r)
