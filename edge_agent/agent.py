"""The edge agent: device coordinator, control loop and uplink of one house.

Tasks (all on one event loop, none blocking it):

* poll: the Resource Manager reads the device every ``poll_interval_s`` and
  publishes an immutable snapshot (its device checks: device_watch.py);
* control: every ``tick_s``, or at once when a plan arrives or a poll reads
  the grid past a limit in force, decide the battery setpoint (pure
  ``energy_manager.decide``) and write what the write policy says is due
  (``energy_manager.write_policy``: past the deadband, for a site limit, or to
  refresh before the device reverts; the writes: device_writes.py);
* uplink: the gRPC stream (reconnecting); telemetry every interval,
  flexibility when it changes (reports.py), plans and grid signals checked as
  they come (plan_intake.py), plan statuses as they happen.

The agent is safe with no aggregator at all: without a plan it runs the
fallback (self-consumption with the export cap), and every setpoint passes
the safety envelope.  Components such as the Home Assistant bridge are built
by the CLI and run beside the loops (``EdgeAgent.components``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from edge_agent.config import AgentConfig
from edge_agent.device_connect import DeviceConnector
from edge_agent.device_watch import watch_device
from edge_agent.device_writes import DeviceWrites
from edge_agent.energy_manager.decide import INVALID_INPUT, Decision, decide, fresh_for_control
from edge_agent.energy_manager.history import Forecaster, Site
from edge_agent.energy_manager.limits import export_past_cap, past_limits
from edge_agent.energy_manager.plan_check import Problem
from edge_agent.energy_manager.plans import PlanBook
from edge_agent.energy_manager.write_policy import WritePolicy
from edge_agent.house_battery import battery_limits, battery_ratings, has_battery, uncontrollable
from edge_agent.house_devices import device_label, resource_manager
from edge_agent.local_control import (
    HouseNow,
    live_override,
    local_change,
    local_tou_planner,
    plan_in_force,
)
from edge_agent.metrics import AgentMetrics, AgentStats, count_decision
from edge_agent.plan_intake import PlanIntake, house_plan_problem
from edge_agent.refusals import Refusals
from edge_agent.reports import HouseReports
from edge_agent.resources.house import HouseResourceManager, HouseSnapshot
from edge_agent.resources.readback import ControlWatch
from edge_agent.resources.retry import DeviceRetry
from edge_agent.uplink.client import TlsFiles, UplinkCallbacks, UplinkClient
from edge_agent.uplink.convert import WelcomeInfo
from edge_agent.uplink.identity import UplinkIdentity
from edge_agent.uplink.spool import TelemetrySpool, spool_path
from edge_agent.uplink.telemetry_metrics import TelemetryCollector
from vpp_common.backoff import Backoff
from vpp_common.clock import Clock, SystemClock, cancel_and_wait, wait_event
from vpp_common.messages import DispatchPlan, Hello, ResourceTelemetry, SiteLimits
from vpp_common.metrics_http import MetricsServer

log = logging.getLogger(__name__)

AGENT_VERSION = "0.1.0"
EXPORT_TOLERANCE_W = 50.0  # meter noise and one control period of lag are not violations
# A poll that reads the grid this far past a limit in force wakes the control loop at once
# (else the house stays over until the next tick: up to tick_s after each step of the sun)
LIMIT_WAKE_W = 5.0


class Component(Protocol):
    """A part of the house that runs beside the agent's loops, started and stopped with them
    (the Home Assistant bridge, built by the CLI)."""

    async def run(self) -> None: ...


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
        self.local_tou = local_tou_planner(config)
        self.snapshot: HouseSnapshot | None = None
        self._wake = asyncio.Event()
        self._snapshot_ready = asyncio.Event()
        self.intake = PlanIntake(SiteLimits(config.site.max_import_w, config.site.max_export_w), self.plans,
                                 lambda status: self.uplink.send(status), self.metrics, self.stats, self.refusals,
                                 self._wake)
        self._stream_down_since: float | None = time.monotonic()
        self._polls_started = 0
        self._snapshot_poll = 0  # the poll that made ``snapshot`` (0: not from the poll loop)
        self.writes = DeviceWrites(self.device, self.metrics, self.stats, lambda: self._polls_started)
        # offline is normal: telemetry waits on disk (state_dir) until the aggregator has stored it
        self.spool = TelemetrySpool(spool_path(config.state_dir, config.house_id) if config.state_dir else None,
                                    config.telemetry_spool_max_samples)
        self.uplink = UplinkClient(
            target=config.aggregator, house_id=config.house_id or "", hello=self._hello,
            tls=TlsFiles(config.tls.ca_file, config.tls.cert_file, config.tls.key_file, config.tls.server_name,
                         config.tls.check_interval_s) if config.tls else None,
            backoff=Backoff(config.reconnect_initial_s, config.reconnect_max_s),
            callbacks=UplinkCallbacks(on_plan=self._on_plan, on_welcome=self._on_welcome,
                                      on_connection=self._on_connection, on_grid_signal=self.intake.on_grid_signal),
            spool=self.spool,
        )
        self.reports = HouseReports(self.uplink, self.metrics, config.telemetry_interval_s)
        self.metrics.registry.register(TelemetryCollector(self.uplink, lambda: self.clock.now().timestamp()))
        self._metrics_server = (MetricsServer(self.metrics.registry, config.metrics_host, config.metrics_port)
                                if config.metrics_port is not None else None)
        self._tasks: list[asyncio.Task[None]] = []
        self.override: DispatchPlan | None = None  # a local override (Home Assistant): edge_agent/local_control.py
        self.snapshot_listeners: list[Callable[[HouseSnapshot], None]] = []  # called with every poll's snapshot
        self.components: list[Component] = []  # run beside the loops once started
        # more devices' telemetry (the LAN plugs and meters: edge_agent/lan_devices.py), added to each poll's
        self.extra_telemetry: list[Callable[[], tuple[ResourceTelemetry, ...]]] = []
        self.plan_resources: list[Callable[[], Collection[str]]] = []  # more ids a plan may name (S2 RMs held now)

    @property
    def metrics_url(self) -> str | None:
        return self._metrics_server.url if self._metrics_server else None

    @property
    def forecaster(self) -> Forecaster | None:
        return self.reports.forecaster

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
            self.device, device_label(self.config),
            DeviceRetry(min(dev.poll_interval_s, dev.reconnect_max_s), dev.reconnect_max_s), self.clock,
            self.metrics.device_connected, self.metrics.device_connect_attempts)
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
        for c in self.components:  # e.g. the house over MQTT discovery, its own reconnect loop
            self._tasks.append(asyncio.create_task(c.run(), name=f"agent-{type(c).__name__}"))

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
            caps.log(log, f"device {device_label(self.config)}")
        site = self.config.site
        self.reports.start_forecasts(
            Site(site.latitude, site.longitude, site.pv_peak_w or self.device.pv_rating_w or 0.0)
            if site.latitude is not None and site.longitude is not None else None, site.timezone)
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
        return Hello(agent_version=AGENT_VERSION, limits=self.intake.limits, resources=self.device.resources,
                     last_plan_id=current.plan_id if current else "",
                     last_plan_version=current.version if current else 0,
                     claimed_house_id=self.config.house_id or "")

    def _on_welcome(self, welcome: WelcomeInfo) -> None:
        self.metrics.uplink_connects.inc()
        self.reports.welcome(welcome.telemetry_interval_s, self.snapshot)

    def _on_connection(self, up: bool) -> None:
        self.metrics.uplink_connected.set(1 if up else 0)
        self._stream_down_since = None if up else time.monotonic()
        self._wake.set()

    def _on_plan(self, plan: DispatchPlan | Exception) -> None:
        self.intake.offer(plan, self.clock.now(), self.config.control.mode, self._plan_problem)

    def _plan_problem(self, plan: DispatchPlan) -> Problem | None:
        return house_plan_problem(plan, self.device, self.snapshot, {r for f in self.plan_resources for r in f()})

    # -- loops ---------------------------------------------------------------
    async def _poll_loop(self) -> None:
        while True:
            self._polls_started += 1
            started = self._polls_started
            snap = self._with_extra_telemetry(await self.device.poll())
            self._snapshot_poll = started
            self.stats.polls += 1
            # the house was read: its SoC, what control and the aggregator need first (no battery: its grid)
            ok = (snap.telemetry.battery_soc_pct if has_battery(self.device) else snap.telemetry.grid_power_w).usable
            self.metrics.device_reads.labels("ok" if ok else "error").inc()
            if not ok:
                self.stats.poll_errors += 1
            self.snapshot = snap
            for listener in self.snapshot_listeners:
                listener(snap)
            if watch_device(snap, self.clock.now(), self.control_watch, self.refusals, self.metrics):
                self._reassert = True
                self._wake.set()
            self.metrics.observe(snap.telemetry)
            self.reports.learn(snap, self.writes.pv_limit[0] if self.writes.pv_limit else None)
            if ok:
                if self.uplink.connected:
                    self.reports.send_flexibility(snap)
                self._snapshot_ready.set()
                grid = snap.telemetry.grid_power_w
                if grid.usable and past_limits(grid.value, self.intake.effective_limits(self.clock.now()), LIMIT_WAKE_W):
                    self._wake.set()  # decide on this poll, not at the next tick
            await self.clock.sleep(self.config.device.poll_interval_s)

    def _with_extra_telemetry(self, snap: HouseSnapshot) -> HouseSnapshot:
        extra = tuple(r for source in self.extra_telemetry for r in source())
        if not extra:
            return snap
        return replace(snap, telemetry=replace(snap.telemetry, resources=snap.telemetry.resources + extra))

    async def _telemetry_loop(self) -> None:
        await self._snapshot_ready.wait()
        await self.reports.run_telemetry(lambda: self.snapshot, self.clock)

    def stream_ok(self) -> bool:
        """The aggregator's plan may be followed: the stream is up, or down within the grace period."""
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
        decision = self._decide(now, snap)
        self._count(decision, snap, now)
        battery = has_battery(self.device)  # a house of LAN devices only has none: its PV limit is written
        if battery and (why := uncontrollable(self.device, self.device.battery_id)) is not None:
            # the device cannot do it (said at start): no write, and said again (rate-limited), never silent
            self.refusals.refuse("device", "battery_not_controllable", why)
            return decision
        policy = WritePolicy.for_revert(self.config.control.deadband_w, self.config.battery.revert_s)
        if not fresh_for_control(snap.telemetry, battery):
            # No write on stale data: the device's revert timers hand it back; a house without a battery
            # (micro-inverters: no revert timer) once its meter is missing: PV held to the export cap.
            self.stats.writes_held_stale += 1
            self.metrics.device_writes.labels("held_stale").inc()
            if not battery and decision.pv_limit_w is not None:
                await self.writes.write(decision, now, policy, self._snapshot_poll, False, battery)
            return decision
        # the device lost what was written (reboot, another master, revert): write now, past the deadband
        force, self._reassert = self._reassert and self.control_watch.controlled, False
        await self.writes.write(decision, now, policy, self._snapshot_poll, force, battery)
        return decision

    def _decide(self, now: datetime, snap: HouseSnapshot) -> Decision:
        previous, pv_limit = self.writes.battery, self.writes.pv_limit
        # the adopted plan even once expired: decide then applies *its* fallback (mode, export cap)
        plan, stream_ok = self.plans.current, self.stream_ok()
        if self.local_tou is not None:
            plan, stream_ok = self._local_plan(now, snap), True  # needs no stream
        self.override = live_override(self.override, now)
        plan, stream_ok = plan_in_force(self.override, self.config.control.mode, plan, stream_ok)
        return decide(now, snap.telemetry, plan, stream_ok, self.intake.effective_limits(now),
                      # None: a house without a battery (LAN devices only), its PV limit is its one lever
                      battery_limits(snap, self.config.battery, self.config.control) if has_battery(self.device)
                      else None, self.device.battery_id,
                      previous_w=previous[0] if previous else None,
                      dt_s=(now - previous[1]).total_seconds() if previous else 0.0,
                      active_pv_limit_w=pv_limit[0] if pv_limit else None,
                      plan_grid_envelope=not self.intake.feeder_envelope_active(now))

    def _count(self, decision: Decision, snap: HouseSnapshot, now: datetime) -> None:
        """The decision in the stats and metrics; an export over the cap counted; a refused input said."""
        count_decision(self.metrics, self.stats, decision)
        grid = snap.telemetry.grid_power_w
        if grid.usable and export_past_cap(grid.value, self.intake.effective_limits(now).max_export_w, EXPORT_TOLERANCE_W):
            self.metrics.export_cap_violations.inc()
        if INVALID_INPUT in decision.clamped_by:
            self.refusals.refuse("control", INVALID_INPUT, decision.reason)

    def _local_plan(self, now: datetime, snap: HouseSnapshot) -> DispatchPlan | None:
        """tou mode: the local plan (re-made each slot); without a battery reading the last one,
        which expires on its short lease (then the fallback)."""
        assert self.local_tou is not None
        storages = snap.flexibility.storages
        if not storages or not snap.telemetry.battery_soc_pct.usable:
            return self.local_tou.current
        return self.local_tou.plan(now, storages[0], self.intake.effective_limits(now), self.forecaster)

    # -- local commands (Home Assistant) ---------------------------------------
    def apply_local(self, name: str, value: str | float | None, source: str) -> str | None:
        """A setting or override from the house (Home Assistant): checked like the config and the
        plans, applied, the safety clamp still last; returns why it was refused (logged, counted),
        None if applied."""
        now = self.clock.now()
        max_charge_w = battery_ratings(self.device, self.snapshot)[0]
        change = local_change(HouseNow(self.config, self.override, now, self.device.battery_id, max_charge_w,
                                       self._plan_problem), name, value)
        if isinstance(change, tuple):
            self.refusals.refuse(source, *change)
            return change[1]
        old_mode = self.config.control.mode
        self.config, self.override = change.config, change.override
        if self.config.control.mode != old_mode:
            self._switch_mode(old_mode, now, source)
        self._wake.set()  # decide on the new setting now, not at the next tick
        return None

    def _switch_mode(self, old: str, now: datetime, source: str) -> None:
        mode = self.config.control.mode
        self.local_tou = local_tou_planner(self.config)
        if old == "vpp":
            self.intake.drop(now, f"agent switched to {mode} mode ({source})")
        if mode == "vpp":
            self.reports.last_flex_sent = None  # flexibility re-sent: the aggregator plans for the house again
