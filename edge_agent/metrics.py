"""The edge agent's own house metrics: ``vpp_edge_*`` (one agent = one house)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

from edge_agent.energy_manager.decide import Decision
from vpp_common.messages import SiteTelemetry

# *_created series double the exposition for no use on dashboards
disable_created_metrics()


@dataclass
class AgentStats:
    """Counters for the demo summary and tests (metrics carry the same for Prometheus)."""

    polls: int = 0
    poll_errors: int = 0
    writes: int = 0
    write_errors: int = 0
    writes_held_stale: int = 0  # control ticks that wrote nothing because the device data was not fresh
    plans_accepted: int = 0
    plans_rejected: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    last_decision: Decision | None = None
    plan_received_at: dict[int, float] = field(default_factory=dict)  # version -> monotonic s


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.grid_power = Gauge("vpp_edge_grid_power_watts", "Grid power, W (import > 0).", registry=r)
        self.pv_power = Gauge("vpp_edge_pv_power_watts", "PV power, W (production < 0).", registry=r)
        self.battery_power = Gauge("vpp_edge_battery_power_watts", "Battery power, W (charging > 0).", registry=r)
        self.load_power = Gauge("vpp_edge_load_power_watts", "Household load, W.", registry=r)
        self.battery_soc = Gauge("vpp_edge_battery_soc_ratio", "Battery state of charge, 0..1.", registry=r)
        self.measurement_valid = Gauge("vpp_edge_measurement_valid", "1 if the measurement is valid now.",
                                       ["quantity"], registry=r)
        self.setpoint = Gauge("vpp_edge_battery_setpoint_watts", "Last battery setpoint written, W (charging > 0).",
                              registry=r)
        self.device_reads = Counter("vpp_edge_device_reads_total", "Device polls, by result.", ["result"],
                                    registry=r)
        self.device_writes = Counter("vpp_edge_device_writes_total", "Setpoint writes, by result.", ["result"],
                                     registry=r)
        self.decisions = Counter("vpp_edge_decisions_total", "Control decisions, by mode.", ["mode"], registry=r)
        self.safety_clamps = Counter("vpp_edge_safety_clamps_total", "Decisions changed by a safety rule.",
                                     ["rule"], registry=r)
        self.plans = Counter("vpp_edge_plans_total", "Plans received, by what the agent did.", ["result"],
                             registry=r)
        self.export_cap_violations = Counter(
            "vpp_edge_export_cap_violations_total",
            "Control ticks at which measured export exceeded the house's export cap.", registry=r)
        self.pv_limit = Gauge("vpp_edge_pv_limit_watts",
                              "PV production cap asked for by the export cap, W (-1 = none).", registry=r)
        self.forecast_error = Gauge("vpp_edge_forecast_mae_watts",
                                    "Mean absolute error of the next-hour forecasts over the last day, W.",
                                    ["quantity"], registry=r)
        self.resource_power = Gauge("vpp_edge_resource_power_watts",
                                    "Power of one device of the house (battery, pv, grid_meter, ev_charger), W "
                                    "(consumption > 0).", ["resource"], registry=r)
        self.resource_valid = Gauge("vpp_edge_resource_valid",
                                    "1 if the device's power reading is valid now (0: stale, missing, implausible).",
                                    ["resource"], registry=r)
        self.uplink_connected = Gauge("vpp_edge_uplink_connected", "1 while the aggregator stream is up.",
                                      registry=r)
        # vpp_edge_telemetry_*: edge_agent/uplink/telemetry_metrics.py (read from the uplink's spool)
        self.uplink_connects = Counter("vpp_edge_uplink_connects_total", "Accepted aggregator streams.",
                                       registry=r)
        self.refused = Counter("vpp_edge_refused_total",
                               "Values from outside refused before use (plan, grid_signal, device, config), "
                               "by reason.", ["source", "reason"], registry=r)
        # start-up: a device that does not answer yet is waited for (edge_agent/device_connect.py)
        self.device_connected = Gauge("vpp_edge_device_connected",
                                      "1 once the device answered the start-up discovery; 0 while the agent "
                                      "waits for it (nothing is controlled then).", registry=r)
        self.device_connect_attempts = Counter(
            "vpp_edge_device_connect_attempts_total",
            "Start-up connects to the device, by outcome (connected, unreachable, misconfigured).",
            ["result"], registry=r)
        # uplink identity: refused streams and the own certificate's expiry (edge_agent/uplink/identity.py)
        self.uplink_errors = Counter("vpp_edge_uplink_errors_total",
                                     "Aggregator streams that ended with an error, by gRPC status code.",
                                     ["code"], registry=r)
        self.tls_cert_expiry = Gauge("vpp_edge_tls_cert_expiry_timestamp_seconds",
                                     "notAfter of this house's own client certificate (Unix s; 0 = none, insecure).",
                                     registry=r)
        self.device_controlled = Gauge("vpp_edge_device_controlled",
                                       "1 while the device holds the control values written (read back each "
                                       "poll); 0 once re-asserting them did not stick.", registry=r)
        self.device_reasserts = Counter("vpp_edge_device_reasserts_total",
                                        "Control values re-written because the device read back different "
                                        "(reboot, another master, revert timer).", registry=r)

    def observe(self, t: SiteTelemetry) -> None:
        for name, m, gauge, scale in (
            ("grid_power", t.grid_power_w, self.grid_power, 1.0),
            ("pv_power", t.pv_power_w, self.pv_power, 1.0),
            ("battery_power", t.battery_power_w, self.battery_power, 1.0),
            ("load_power", t.load_power_w, self.load_power, 1.0),
            ("battery_soc", t.battery_soc_pct, self.battery_soc, 0.01),
        ):
            self.measurement_valid.labels(name).set(1 if m.usable else 0)
            if m.usable and m.value is not None:  # stale is not zero: keep the gauge, flag validity
                gauge.set(m.value * scale)
        for res in t.resources:
            self.resource_valid.labels(res.resource_id).set(1 if res.power_w.usable else 0)
            if res.power_w.usable and res.power_w.value is not None:
                self.resource_power.labels(res.resource_id).set(res.power_w.value)


def count_decision(metrics: AgentMetrics, stats: AgentStats, decision: Decision) -> None:
    """One control decision in the stats and the metrics (mode, safety rules, PV limit)."""
    stats.last_decision = decision
    metrics.pv_limit.set(decision.pv_limit_w if decision.pv_limit_w is not None else -1)
    stats.decisions[decision.mode] = stats.decisions.get(decision.mode, 0) + 1
    metrics.decisions.labels(decision.mode).inc()
    for rule in decision.clamped_by:
        metrics.safety_clamps.labels(rule).inc()
