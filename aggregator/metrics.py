"""Aggregator metrics: ``vpp_aggregator_*``, no per-house label (fleet distributions
as histograms, counts by type/result)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

if TYPE_CHECKING:
    from aggregator.feeder_control import FeederLoad


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
        # refusals of outside values (issue 20): source = hello, flexibility_update, telemetry, admin,
        # plan (a plan built with a non-finite number); reason = the field path without indices
        self.refused = Counter("vpp_aggregator_refused_total",
                               "Values refused where they entered, by source and field (bounds, contract).",
                               ["source", "reason"], registry=r)
        self.houses_excluded = Counter(
            "vpp_aggregator_houses_excluded_total",
            "Houses taken out of a planning cycle because their data broke their block (by reason).",
            ["reason"], registry=r)
        self.replans_coalesced = Counter(
            "vpp_aggregator_replans_coalesced_total",
            "Re-plan requests of a house folded into a later one (per-house minimum interval).", registry=r)
        self.store_errors = Counter("vpp_aggregator_store_errors_total", "State store operations that failed.",
                                    registry=r)
        self.flexibility_up = Gauge("vpp_aggregator_fleet_flexibility_up_watts",
                                    "Fleet power that could be added (more charging), W.", registry=r)
        self.flexibility_down = Gauge("vpp_aggregator_fleet_flexibility_down_watts",
                                      "Fleet power that could be shed (more discharging), W.", registry=r)
        self.store_up = Gauge("vpp_aggregator_store_up", "1 while the state store answers; 0 = degraded.",
                              registry=r)
        self.store_data_lost = Counter(
            "vpp_aggregator_store_data_lost_total",
            "Times the state store was found without its data (a new epoch) and rebuilt from this replica's "
            "streams.", registry=r)
        self.solve_duration = Histogram(
            "vpp_aggregator_solve_duration_seconds", "Wall time of the dispatch computation in one cycle.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120), registry=r)
        self.leader = Gauge("vpp_aggregator_dispatch_leader", "1 if this replica holds the dispatch lease.",
                            registry=r)
        # Feeder series come from the dispatch leader only (followers clear theirs); ``feeder``
        # is one of the configured feeders, so the label stays bounded (never a house).
        self.feeder_power = Gauge(
            "vpp_aggregator_feeder_power_watts",
            "Measured net grid power of a feeder's houses with fresh telemetry, W (import > 0, export < 0).",
            ["feeder"], registry=r)
        self.feeder_limit = Gauge(
            "vpp_aggregator_feeder_limit_watts",
            "A feeder's net limit by direction (import or export), W, positive; absent when unlimited.",
            ["feeder", "direction"], registry=r)
        self.feeder_over_limit = Gauge(
            "vpp_aggregator_feeder_over_limit_watts",
            "How far a feeder's measured load is beyond its import or export limit, W (0 = within).",
            ["feeder"], registry=r)
        self.feeder_least_over_limit = Gauge(
            "vpp_aggregator_feeder_least_over_limit_watts",
            "The least excess over a feeder's import limit possible now, W: the import its houses with fresh "
            "telemetry cannot avoid (every battery discharging as far as it can) beyond the limit; "
            "over_limit above it is the control's.",
            ["feeder"], registry=r)
        # the houses' shiftable runs (S2 PPBC) in the last LP cycle: placed (a start chosen), running
        # (fixed load), passed (window over, ignored), later (may start after the horizon)
        self.shiftable_runs = Gauge(
            "vpp_aggregator_shiftable_runs",
            "Shiftable runs of the fleet in the last planning cycle, by state: placed, running, passed, later.",
            ["state"], registry=r)
        self.feeder_fresh_ratio = Gauge(
            "vpp_aggregator_feeder_telemetry_fresh_ratio",
            "Share of a feeder's houses whose telemetry counted in the last measurement, 0..1.",
            ["feeder"], registry=r)

    def set_feeder_loads(self, loads: Mapping[str, FeederLoad]) -> None:
        """Publish one measurement round (the leader's); ``{}`` clears the feeder series."""
        for g in (self.feeder_power, self.feeder_limit, self.feeder_over_limit, self.feeder_least_over_limit,
                  self.feeder_fresh_ratio):
            g.clear()
        for fid, ld in loads.items():
            self.feeder_power.labels(fid).set(ld.power_w)
            self.feeder_over_limit.labels(fid).set(ld.over_limit_w)
            self.feeder_least_over_limit.labels(fid).set(ld.least_over_limit_w)
            self.feeder_fresh_ratio.labels(fid).set(ld.fresh_houses / ld.houses if ld.houses else 0.0)
            if math.isfinite(ld.import_limit_w):
                self.feeder_limit.labels(fid, "import").set(ld.import_limit_w)
            if math.isfinite(ld.export_limit_w):
                self.feeder_limit.labels(fid, "export").set(ld.export_limit_w)
