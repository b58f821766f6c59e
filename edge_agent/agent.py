"""The edge agent: device coordinator, control loop and uplink of one house.

Tasks (all on one event loop, none blocking it):

* poll: the Resource Manager reads the device every ``poll_interval_s`` and
  publishes an immutable snapshot;
* control: every ``tick_s``, or at once when a plan arrives or a poll reads
  the grid past a limit in force, decide the battery setpoint (pure
  ``energy_manager.decide``) and write it if it moved more than the deadband,
  a site limit needs it, or the device's revert timer needs a refresh;
* uplink: the gRPC stream (reconnecting); telemetry every interval,
  flexibility when it changes, plan statuses as they happen.

The agent is safe with no aggregator at all: without a plan it runs the
fallback (self-consumption with the export cap), and every setpoint passes
the safety envelope.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from edge_agent.config import AgentConfig
from edge_agent.device_connect import DeviceConnector
from edge_agent.drivers.errors import DeviceRejected, DeviceUnavailable, ModelNotFound
from edge_agent.energy_manager.decide import (
    INVALID_INPUT,
    BatteryLimits,
    Decision,
    decide,
    fresh_for_control,
    pv_limit_binding,
    tighten_limits,
)
from edge_agent.energy_manager.forecast import ForecastErrors, HistoryForecaster, Site
from edge_agent.energy_manager.local_tou import LocalTouPlanner
from edge_agent.energy_manager.plan_check import (
    Problem,
    grid_signal_problem,
    plan_house_problem,
    plan_problem,
)
from edge_agent.energy_manager.plans import PlanBook
from edge_agent.house_devices import resource_manager
from edge_agent.local_control import apply_local, plan_in_force
from edge_agent.metrics import AgentMetrics
from edge_agent.refusals import Refusals
from edge_agent.resources.capabilities import plan_refusal
from edge_agent.resources.house import HouseResourceManager, HouseSnapshot
from edge_agent.resources.readback import ControlWatch
from edge_agent.resources.retry import DeviceRetry
from edge_agent.uplink.client import Backoff, TlsFiles, UplinkCallbacks, UplinkClient
from edge_agent.uplink.convert import InvalidGridSignal, InvalidPlan, WelcomeInfo
from edge_agent.uplink.identity import UplinkIdentity
from edge_agent.uplink.spool import TelemetrySpool, spool_path
from edge_agent.uplink.telemetry_metrics import TelemetryCollector
from vpp_common.clock import Clock, SystemClock, cancel_and_wait, wait_event
from vpp_common.messages import (
    DispatchPlan,
    GridSignal,
    Hello,
    PlanState,
    PlanStatus,
    PowerForecast,
    SiteLimits,
)
from vpp_common.metrics_http import MetricsServer
from vpp_common.timeslots import align_down

if TYPE_CHECKING:
    from edge_agent.home_assistant.bridge import HomeAssistantBridge

log = logging.getLogger(__name__)

AGENT_VERSION = "0.1.0"
FORECAST_SLOT_S = 900
FORECAST_HORIZON_SLOTS = 96  # 24 h
EXPORT_TOLERANCE_W = 50.0  # meter noise and one control period of lag are not violations
# A write that keeps a house within a site limit goes out even when smaller than the deadband
# (1 W: below it, meter noise)
TIGHTEN_MIN_W = 1.0
# A poll that reads the grid this far past a limit in force wakes the control loop at once
# (else the house stays over until the next tick: up to tick_s after each step of the sun)
LIMIT_WAKE_W = 5.0


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


class EdgeAgent:
    def __init__(self, config: AgentConfig, clock: Clock | None = None,
                 device: HouseResourceManager | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        # SunSpec or a catalogue entry (config.device.catalogue), writes through the write guard
        self.device = device or resource_manager(config, self.clock)
        self.metrics = AgentMetrics()
        self.refusals = Refusals(self.metrics.refused)  # every refused outside value: logged, counted
        # control registers read back different from what was written: re-assert at once, or give up
        self.control_watch = ControlWatch(tries=3, stick_s=max(config.battery.revert_s,
                                                               3 * config.device.poll_interval_s))
        self._reassert = False
        self.metrics.device_controlled.set(1)
        self.stats = AgentStats()
        self.plans = PlanBook()
        # tou mode: the agent's own plan on its tariff and forecasts, followed like an aggregator's
        self.local_tou = (LocalTouPlanner(config.tariff.price_source(), FORECAST_SLOT_S, FORECAST_HORIZON_SLOTS)
                          if config.control.mode == "tou" and config.tariff is not None else None)
        self.limits = SiteLimits(config.site.max_import_w, config.site.max_export_w)
        self.snapshot: HouseSnapshot | None = None
        self.grid_signal: GridSignal | None = None
        self._wake = asyncio.Event()
        self._snapshot_ready = asyncio.Event()
        self._telemetry_interval_s = config.telemetry_interval_s
        self._stream_down_since: float | None = time.monotonic()
        self._last_written: tuple[float, datetime] | None = None
        self._pv_limit: tuple[float, datetime] | None = None  # (W, when written)
        self._pv_limit_supported = True
        # A PV limit is changed only on a poll that began after it was last written: one that began
        # before may not show the write's effect, or show half of it (meter and inverter are read at
        # different instants), and a limit set from readings that do not add up overshoots and is
        # corrected the other way (measured live: limits swinging 0 <-> 3 kW within seconds)
        self._polls_started = 0
        self._snapshot_poll = 0  # the poll that made ``snapshot`` (0: not from the poll loop)
        self._pv_written_after_poll = 0  # polls started when the PV limit was last written
        self._last_flex_sent: object = None
        self._last_recorded: object = None  # the last telemetry sample given to the uplink
        # offline is normal: telemetry waits on disk (state_dir) until the aggregator has stored it
        self.spool = TelemetrySpool(spool_path(config.state_dir, config.house_id) if config.state_dir else None,
                                    config.telemetry_spool_max_samples)
        self.uplink = UplinkClient(
            target=config.aggregator, house_id=config.house_id or "", hello=self._hello,
            tls=TlsFiles(config.tls.ca_file, config.tls.cert_file, config.tls.key_file, config.tls.server_name,
                         config.tls.check_interval_s) if config.tls else None,
            backoff=Backoff(config.reconnect_initial_s, config.reconnect_max_s),
            callbacks=UplinkCallbacks(on_plan=self._on_plan, on_welcome=self._on_welcome,
                                      on_connection=self._on_connection, on_grid_signal=self._on_grid_signal),
            spool=self.spool,
        )
        self.metrics.registry.register(TelemetryCollector(self.uplink, lambda: self.clock.now().timestamp()))
        self._metrics_server = (MetricsServer(self.metrics.registry, config.metrics_host, config.metrics_port)
                                if config.metrics_port is not None else None)
        self._tasks: list[asyncio.Task[None]] = []
        self.forecaster: HistoryForecaster | None = None  # made once the nameplate is known
        self.forecast_errors = ForecastErrors()
        self._forecast: tuple[datetime, PowerForecast, PowerForecast, PowerForecast | None] | None = None
        self.override: DispatchPlan | None = None  # a local override (Home Assistant): edge_agent/local_control.py
        self.snapshot_listeners: list[Callable[[HouseSnapshot], None]] = []  # called with every poll's snapshot
        self.home_assistant: HomeAssistantBridge | None = None  # made at start with a [home_assistant] table

    @property
    def metrics_url(self) -> str | None:
        return self._metrics_server.url if self._metrics_server else None

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        """Serve /metrics and connect the device: one that answers starts the loops now; one that
        does not is waited for in the background (``vpp_edge_device_connected`` 0, logged), so a
        house that boots before its inverter comes up on its own.  A device that answers but is not
        what the config says raises DeviceMisconfigured here, or ends :meth:`wait_failed` later."""
        dev = self.config.device
        self.fatal_error: BaseException | None = None
        self._failed = asyncio.Event()
        self._device_connected = False
        self._connector = DeviceConnector(
            self.device, ", ".join(f"{p.role} {p.host}:{p.port}" for p in dev.parts) or f"{dev.host}:{dev.port}",
            DeviceRetry(min(dev.poll_interval_s, dev.reconnect_max_s), dev.reconnect_max_s), self.clock,
            self.metrics.device_connected, self.metrics.device_connect_attempts)
        if self.config.home_assistant is not None and self.home_assistant is None:
            from edge_agent.home_assistant.bridge import HomeAssistantBridge

            self.home_assistant = HomeAssistantBridge(self)  # loads the energy counters: an unwritable dir fails here
        if self._metrics_server is not None:
            self._metrics_server.start()  # up first: it tells whether the device answers
        self.uplink.identity = UplinkIdentity(self.metrics.uplink_errors, self.metrics.tls_cert_expiry)
        if self.config.tls is not None:  # said at start, even while the uplink waits for the device
            self.uplink.identity.check_certificate(self.config.tls.cert_file)
        try:
            connected = await self._connector.attempt()
        except BaseException:
            await self.device.close()
            if self._metrics_server is not None:
                self._metrics_server.stop()
            raise
        if connected:
            self._start_control()
        else:
            self._tasks = [asyncio.create_task(self._connect_then_control(), name="agent-connect")]
        if self.home_assistant is not None:  # the house over MQTT discovery, its own reconnect loop
            self._tasks.append(asyncio.create_task(self.home_assistant.run(), name="agent-home-assistant"))

    async def _connect_then_control(self) -> None:
        try:
            await self._connector.until_connected()
        except Exception as exc:
            self.fatal_error = exc
            self._failed.set()
            return
        self._start_control()

    async def wait_failed(self) -> BaseException:
        """Returns the error that stops the agent (a device that turned out misconfigured)."""
        await self._failed.wait()
        assert self.fatal_error is not None
        return self.fatal_error

    def _start_control(self) -> None:
        """The device answered: forecasts, polling, control, telemetry and the uplink (whose Hello
        carries the nameplate just read) start; the control loop waits for a fresh poll."""
        self._device_connected = True
        # say once what the device can and cannot do (a role it cannot play is never silently idled)
        if (caps := getattr(self.device, "capabilities", None)) is not None:
            caps.log(log, f"device {self.config.device.host}:{self.config.device.port}")
        site = self.config.site
        location = None
        if site.latitude is not None and site.longitude is not None:
            peak = site.pv_peak_w or self.device.pv_rating_w or 0.0
            location = Site(site.latitude, site.longitude, peak)
        self.forecaster = HistoryForecaster(FORECAST_SLOT_S, days=7, site=location)
        self._tasks = [t for t in self._tasks if not t.done() and t is not asyncio.current_task()] + [
            asyncio.create_task(self._poll_loop(), name="agent-poll"),
            asyncio.create_task(self._control_loop(), name="agent-control"),
            asyncio.create_task(self._telemetry_loop(), name="agent-telemetry"),
            asyncio.create_task(self.uplink.run(), name="agent-uplink"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        try:
            if getattr(self, "_device_connected", False):  # never connected: nothing of ours to release
                await self.device.release()  # hand the battery back to the device's own mode
        except Exception as exc:
            log.warning("could not release the battery on stop: %s", exc)
        await self.device.close()
        if self._metrics_server is not None:
            self._metrics_server.stop()
        self.spool.close()

    async def __aenter__(self) -> EdgeAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        if not await wait_event(self._snapshot_ready, timeout_s):
            if getattr(self, "fatal_error", None) is not None:
                raise self.fatal_error  # type: ignore[misc]
            raise TimeoutError(f"no device reading within {timeout_s} s")

    # -- uplink callbacks (run on the loop; must not block) ------------------
    def _hello(self) -> Hello:
        current = self.plans.current
        return Hello(agent_version=AGENT_VERSION, limits=self.limits, resources=self.device.resources,
                     last_plan_id=current.plan_id if current else "",
                     last_plan_version=current.version if current else 0,
                     claimed_house_id=self.config.house_id or "")

    def uncontrollable(self, resource_id: str) -> str | None:
        """Why the device cannot take setpoints for ``resource_id`` (None: it can; a device that
        does not say, e.g. a test double, is taken as able)."""
        check = getattr(self.device, "controllable", None)
        return check(resource_id) if check is not None else None

    def _on_welcome(self, welcome: WelcomeInfo) -> None:
        if welcome.telemetry_interval_s > 0:
            self._telemetry_interval_s = welcome.telemetry_interval_s
        self.metrics.uplink_connects.inc()
        self._last_flex_sent = None  # everything is re-sent on a new session
        if self.snapshot is not None:
            self._record_telemetry()
            self._send_flexibility(self.snapshot)

    def _on_connection(self, up: bool) -> None:
        self.metrics.uplink_connected.set(1 if up else 0)
        self._stream_down_since = None if up else time.monotonic()
        self._wake.set()

    def _on_grid_signal(self, signal: GridSignal | Exception) -> None:
        """Store a checked grid signal; a refused one is counted and logged, never stored (the one
        in force stays until it expires: a refused limit must not loosen anything)."""
        if not isinstance(signal, Exception):
            problem = grid_signal_problem(signal)  # checked at the wire too; this also covers other callers
            signal = signal if problem is None else InvalidGridSignal(problem.detail, problem.label)
        if isinstance(signal, Exception):
            self.refusals.refuse("grid_signal", getattr(signal, "label", "malformed"), str(signal))
            return
        self.grid_signal = signal
        self._wake.set()

    def _signal_limits_active(self, now: datetime) -> bool:
        s = self.grid_signal
        return not (s is None or s.limits is None or (s.limits_valid_until is not None and now >= s.limits_valid_until))

    def feeder_envelope_active(self, now: datetime) -> bool:
        """The aggregator's live feeder share holds: it replaces the plan's grid envelopes."""
        return self._signal_limits_active(now) and bool(self.grid_signal and self.grid_signal.limits_are_feeder_envelope)

    def effective_limits(self, now: datetime) -> SiteLimits:
        """Configured limits, tightened (never loosened) by the aggregator's temporary ones."""
        s = self.grid_signal
        if s is None or s.limits is None or not self._signal_limits_active(now):
            return self.limits
        return tighten_limits(self.limits, s.limits)  # never negative or NaN

    def _on_plan(self, plan: DispatchPlan | Exception) -> None:
        now = self.clock.now()
        if isinstance(plan, Exception):
            self._reject_invalid(plan, now)
            return
        self.stats.plan_received_at[plan.version] = time.monotonic()
        if self.config.control.mode != "vpp":
            status = PlanStatus(plan.plan_id, plan.version, PlanState.REJECTED, now,
                                f"agent runs in {self.config.control.mode} mode")
            self.uplink.send(status)
            self.stats.plans_rejected += 1
            self.metrics.plans.labels("rejected").inc()
            return
        problem = self._plan_problem(plan)
        if problem is not None:
            self._reject_invalid(InvalidPlan(problem.detail, problem.label, plan.plan_id, plan.version), now)
            return
        status = self.plans.offer(plan, now)
        self.uplink.send(status)
        if status.state is PlanState.ACCEPTED:
            self.stats.plans_accepted += 1
            self.metrics.plans.labels("accepted").inc()
            self._wake.set()  # apply the new slot now, not at the next tick
        else:
            self.stats.plans_rejected += 1
            self.metrics.plans.labels("rejected").inc()

    def _plan_problem(self, plan: DispatchPlan) -> Problem | None:
        """Why this house cannot follow ``plan``: a bad number or slot (checked at the wire too),
        a setpoint for a resource it does not have or control, a battery power outside its
        nameplate; None if it can."""
        problem = plan_problem(plan)
        if problem is not None:
            return problem
        if (why := plan_refusal(plan, self.uncontrollable, self.device.battery_id)) is not None:
            # what the house cannot deliver is REJECTED with the reason, never ACCEPTED and then idled
            return Problem("not_controllable", why)
        nameplate = getattr(self.device, "nameplate", None)
        if nameplate is not None:
            max_charge, max_discharge = nameplate.max_charge_w, nameplate.max_discharge_w
        elif self.snapshot is not None:
            max_charge, max_discharge = self.snapshot.max_charge_w, self.snapshot.max_discharge_w
        else:
            max_charge = max_discharge = None  # not known yet: the safety clamp holds the device's ratings
        known = tuple(r.resource_id for r in getattr(self.device, "resources", ()))
        return plan_house_problem(plan, self.device.battery_id, known, max_charge, max_discharge)

    def _reject_invalid(self, exc: Exception, now: datetime) -> None:
        """A plan this house must not follow: REJECTED with the reason, to the aggregator (it would
        otherwise believe the house follows it) and to the log (once, then rate-limited)."""
        plan_id, version = getattr(exc, "plan_id", ""), getattr(exc, "version", 0)
        label = getattr(exc, "label", "malformed")
        self.stats.plans_rejected += 1
        self.metrics.plans.labels("invalid").inc()
        self.refusals.refuse("plan", label, f"plan {plan_id or '?'} v{version}: {exc}")
        self.uplink.send(PlanStatus(plan_id, version, PlanState.REJECTED, now, f"{label}: {exc}"))

    # -- loops ---------------------------------------------------------------
    def _forecasts(self, now: datetime) -> tuple[PowerForecast, PowerForecast, PowerForecast | None] | None:
        """Load, PV and clear-sky PV forecasts (the last None without a site), made once per forecast slot."""
        if self.forecaster is None:
            return None
        slot = align_down(now, FORECAST_SLOT_S)
        if self._forecast is None or self._forecast[0] != slot:
            fc = self.forecaster.forecast(now, FORECAST_HORIZON_SLOTS)
            self.forecast_errors.record(fc)

            def power(values: np.ndarray, sign: float) -> PowerForecast:
                return PowerForecast(fc.start, fc.slot_s, tuple(round(sign * float(v), 1) for v in values))

            self._forecast = (slot, power(fc.load_w, 1.0), power(fc.pv_w, -1.0),
                              None if fc.pv_clear_sky_w is None else power(fc.pv_clear_sky_w, -1.0))
        return self._forecast[1], self._forecast[2], self._forecast[3]

    def _send_flexibility(self, snap: HouseSnapshot) -> None:
        flex = snap.flexibility
        forecasts = self._forecasts(snap.telemetry.measured_at)
        # SoC in 5 % steps and a new forecast per slot: the aggregator re-plans on every
        # update, so send only material changes
        key = (tuple((s.resource_id, round(s.soc_pct / 5)) for s in flex.storages),
               self._forecast[0] if self._forecast else None)
        if key != self._last_flex_sent:
            if forecasts is not None:
                flex = replace(flex, load_forecast=forecasts[0], pv_forecast=forecasts[1],
                               pv_clear_sky_forecast=forecasts[2])
            self.uplink.send(flex)
            self._last_flex_sent = key

    async def _poll_loop(self) -> None:
        while True:
            self._polls_started += 1
            started = self._polls_started
            snap = await self.device.poll()
            for r in snap.refused:  # implausible or unreadable device values: logged (rate-limited), counted
                self.refusals.refuse(r.source, r.reason, r.detail)
            self._snapshot_poll = started
            self.stats.polls += 1
            ok = snap.telemetry.battery_soc_pct.usable
            self.metrics.device_reads.labels("ok" if ok else "error").inc()
            if not ok:
                self.stats.poll_errors += 1
            self.snapshot = snap
            for listener in self.snapshot_listeners:
                listener(snap)
            self._watch_device(snap)
            self.metrics.observe(snap.telemetry)
            self._learn(snap)
            if ok:
                if self.uplink.connected:
                    self._send_flexibility(snap)
                self._snapshot_ready.set()
                if self._outside_limits(snap):
                    self._wake.set()  # decide on this poll, not at the next tick
            await self.clock.sleep(self.config.device.poll_interval_s)

    def _watch_device(self, snap: HouseSnapshot) -> None:
        """Frozen registers (the RM marked them stale) and the control read-back: logged, counted, and
        a device that no longer holds what was written is re-asserted on this poll (or, when that does
        not stick, declared uncontrolled)."""
        if snap.frozen:
            self.refusals.refuse("device", "frozen", f"measurements stopped updating: {snap.frozen}")
        verdict = self.control_watch.observe(self.clock.now(), snap.control)
        if verdict == "reassert":
            self.refusals.refuse("device", "control_overridden",
                                 "control registers differ from what was written (re-asserting): "
                                 + "; ".join(snap.control.mismatches))
            self.metrics.device_reasserts.inc()
            self._reassert = True
            self._wake.set()
        elif verdict == "lost":
            self.metrics.device_controlled.set(0)
            self.refusals.refuse("device", "uncontrolled",
                                 f"re-asserting did not stick {self.control_watch.tries} times: device declared "
                                 "uncontrolled (ordinary refresh only): " + "; ".join(snap.control.mismatches))
        elif verdict == "regained":
            self.metrics.device_controlled.set(1)
            log.info("device holds the written control values again: controlled")

    def _outside_limits(self, snap: HouseSnapshot) -> bool:
        """The grid reading is past the export cap or import limit in force (beyond meter noise):
        a step of the sun or the load since the last decision, or a new feeder envelope."""
        grid = snap.telemetry.grid_power_w
        if not grid.usable or grid.value is None:
            return False
        lim = self.effective_limits(self.clock.now())
        return grid.value < -lim.max_export_w - LIMIT_WAKE_W or grid.value > lim.max_import_w + LIMIT_WAKE_W

    def _learn(self, snap: HouseSnapshot) -> None:
        """Feed the forecaster with valid readings; score past forecasts."""
        t = snap.telemetry
        if self.forecaster is None or not (t.load_power_w.usable and t.pv_power_w.usable):
            return
        assert t.load_power_w.value is not None and t.pv_power_w.value is not None
        limit = self._pv_limit[0] if self._pv_limit else None
        self.forecaster.add(t.measured_at, t.load_power_w.value, -t.pv_power_w.value,
                            pv_limited=pv_limit_binding(t.pv_power_w.value, limit))
        self.forecast_errors.settle(self.forecaster, t.measured_at)
        mae_load, mae_pv = self.forecast_errors.mae_w
        if mae_load is not None:
            self.metrics.forecast_error.labels("load").set(mae_load)
        if mae_pv is not None:
            self.metrics.forecast_error.labels("pv").set(mae_pv)

    async def _telemetry_loop(self) -> None:
        """A telemetry sample every interval, online or not (the uplink spools it until the
        aggregator has stored it); a Heartbeat instead while the device gives nothing new."""
        await self._snapshot_ready.wait()
        while True:
            if not self._record_telemetry() and self.uplink.connected:
                self.uplink.send_heartbeat(self.clock.now())
            await self.clock.sleep(self._telemetry_interval_s)

    def _record_telemetry(self) -> bool:
        """Give the latest sample to the uplink, once; False if there is nothing new."""
        snap = self.snapshot
        if snap is None or snap.telemetry is self._last_recorded:
            return False
        self.uplink.send(snap.telemetry)
        self._last_recorded = snap.telemetry
        return True

    def _stream_ok(self) -> bool:
        down = self._stream_down_since
        return down is None or (time.monotonic() - down) * self.clock.speed < self.config.control.grace_s

    async def _control_loop(self) -> None:
        await self._snapshot_ready.wait()
        cfg = self.config
        while True:
            self._wake.clear()
            await self.control_once()
            await wait_event(self._wake, cfg.control.tick_s / self.clock.speed)

    async def control_once(self) -> Decision | None:
        snap = self.snapshot
        if snap is None:
            return None
        now = self.clock.now()
        expired = self.plans.expiry(now)
        if expired is not None:
            self.uplink.send(expired)
        store = snap.flexibility.storages[0] if snap.flexibility.storages else None
        battery = BatteryLimits(snap.max_charge_w, snap.max_discharge_w, self.config.battery.reserve_soc_pct,
                                self.config.battery.max_soc_pct, self.config.control.max_ramp_w_per_s,
                                # taper the discharge so that one tick cannot cross the reserve (an RM
                                # without a capacity rating reports 1 Wh: no taper then)
                                capacity_wh=store.capacity_wh if store and store.capacity_wh >= 100 else 0.0,
                                control_period_s=self.config.control.tick_s,
                                discharge_efficiency=store.discharge_efficiency if store else 0.95)
        previous = self._last_written
        # the adopted plan even once expired: decide then applies *its* fallback (mode, export cap)
        plan, stream_ok = self.plans.current, self._stream_ok()
        if self.local_tou is not None:
            plan, stream_ok = self._local_plan(now, snap), True  # needs no stream
        plan, stream_ok = plan_in_force(self, now, plan, stream_ok)  # a local override; self_consumption: none
        decision = decide(now, snap.telemetry, plan, stream_ok, self.effective_limits(now),
                          battery, self.device.battery_id,
                          previous_w=previous[0] if previous else None,
                          dt_s=(now - previous[1]).total_seconds() if previous else 0.0,
                          active_pv_limit_w=self._pv_limit[0] if self._pv_limit else None,
                          plan_grid_envelope=not self.feeder_envelope_active(now))
        self.stats.last_decision = decision
        grid = snap.telemetry.grid_power_w
        cap_w = self.effective_limits(now).max_export_w
        if grid.usable and grid.value is not None and grid.value < -cap_w - EXPORT_TOLERANCE_W:
            self.metrics.export_cap_violations.inc()
        self.metrics.pv_limit.set(decision.pv_limit_w if decision.pv_limit_w is not None else -1)
        self.stats.decisions[decision.mode] = self.stats.decisions.get(decision.mode, 0) + 1
        self.metrics.decisions.labels(decision.mode).inc()
        for rule in decision.clamped_by:
            self.metrics.safety_clamps.labels(rule).inc()
        if INVALID_INPUT in decision.clamped_by:
            self.refusals.refuse("control", INVALID_INPUT, decision.reason)
        if (why := self.uncontrollable(self.device.battery_id)) is not None:
            # the device cannot do it (said at start): no write, and said again (rate-limited), never silent
            self.refusals.refuse("device", "battery_not_controllable", why)
            return decision
        if not fresh_for_control(snap.telemetry):
            # Never write (nor refresh) on stale data: the device's own revert timers hand the
            # battery and any PV limit back to its own mode if this lasts.
            self.stats.writes_held_stale += 1
            self.metrics.device_writes.labels("held_stale").inc()
            return decision
        # the device lost what was written (reboot, another master, revert): write now, past the deadband
        force, self._reassert = self._reassert and self.control_watch.controlled, False
        if force or self._should_write(decision.battery_w, now, decision.clamped_by):
            try:
                applied = await self.device.set_battery_power(decision.battery_w)
            except Exception as exc:
                self.stats.write_errors += 1
                self.metrics.device_writes.labels("error").inc()
                log.warning("battery write failed (will retry): %s", exc)
            else:
                if applied is False:  # the write guard deferred it (flash wear): not on the device yet, retry
                    self.metrics.device_writes.labels("deferred").inc()
                else:
                    self.stats.writes += 1
                    self.metrics.device_writes.labels("ok").inc()
                    self.metrics.setpoint.set(decision.battery_w)
                    self._last_written = (decision.battery_w, now)
        if force or not 0 < self._snapshot_poll <= self._pv_written_after_poll:
            await self._apply_pv_limit(decision.pv_limit_w, now, force=force)
        return decision

    def _local_plan(self, now: datetime, snap: HouseSnapshot) -> DispatchPlan | None:
        """tou mode: the local plan (re-made each slot); without a battery reading the last one,
        which expires on its short lease (then the fallback)."""
        assert self.local_tou is not None
        storages = snap.flexibility.storages
        if not storages or not snap.telemetry.battery_soc_pct.usable:
            return self.local_tou.current
        return self.local_tou.plan(now, storages[0], self.effective_limits(now), self.forecaster)

    async def _apply_pv_limit(self, limit_w: float | None, now: datetime, force: bool = False) -> None:
        """Curtail PV (S2 PEBC) for the export cap; refreshed before the device reverts it (``force``:
        re-asserted now, the device lost it)."""
        if not self._pv_limit_supported:
            return
        current = self._pv_limit
        if limit_w is None and current is None:
            return
        if limit_w is not None and current is not None:
            # a lower limit is always written: the deadband saves writes, it must not let the
            # house run above its export cap (on a shared feeder, a few W per house add up)
            changed = (limit_w < current[0] - TIGHTEN_MIN_W
                       or abs(limit_w - current[0]) >= self.config.control.deadband_w)
            if not (changed or force) and (now - current[1]).total_seconds() < self.config.battery.revert_s / 2:
                return
        try:
            await self.device.set_pv_limit(limit_w)
        except ModelNotFound as exc:  # not supported: never retried
            self._pv_limit_supported = False
            log.warning("PV curtailment not available (%s): export cap holds only as far as the battery can", exc)
            return
        except (DeviceUnavailable, DeviceRejected) as exc:
            self.metrics.device_writes.labels("error").inc()
            log.warning("PV limit write failed (will retry): %s", exc)
            return
        self.metrics.device_writes.labels("ok").inc()
        self._pv_limit = None if limit_w is None else (limit_w, now)
        self._pv_written_after_poll = self._polls_started

    def _should_write(self, value_w: float, now: datetime, clamped_by: tuple[str, ...] = ()) -> bool:
        """Whether to write a setpoint: a change beyond the deadband, a refresh before the device
        reverts, or any move that a site limit asked for (more charge for the export cap, more
        discharge for the import limit): the deadband must not hold a house above its limits."""
        if self._last_written is None:
            return True
        last_w, at = self._last_written
        refresh_due = (now - at).total_seconds() >= self.config.battery.revert_s / 2
        tightens = (("export_cap" in clamped_by and value_w > last_w + TIGHTEN_MIN_W)
                    or ("import_limit" in clamped_by and value_w < last_w - TIGHTEN_MIN_W))
        return refresh_due or tightens or abs(value_w - last_w) >= self.config.control.deadband_w

    def apply_local(self, name: str, value: str | float | None, source: str) -> str | None:
        """A setting or override from the house (Home Assistant): checked like the config and the
        plans, applied, the safety clamp still last; returns why it was refused, None if applied."""
        return apply_local(self, name, value, source)

    def plan_status(self) -> PlanStatus | None:
        p = self.plans.current
        if p is None:
            return None
        return PlanStatus(p.plan_id, p.version, PlanState.ACTIVE, self.clock.now())
