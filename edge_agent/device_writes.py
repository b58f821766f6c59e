"""The control loop's writes to the device: the battery setpoint and the PV limit (S2 PEBC, for
the export cap), as the write policy says (``energy_manager.write_policy``), counted and logged.
A failed write is retried at the next decision; a PV limit the device does not support is never
asked for again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from edge_agent.drivers.errors import DeviceRejected, DeviceUnavailable, ModelNotFound
from edge_agent.energy_manager.decide import Decision
from edge_agent.energy_manager.write_policy import WritePolicy, Written, pv_limit_may_change
from edge_agent.metrics import AgentMetrics, AgentStats

log = logging.getLogger(__name__)


class WritableDevice(Protocol):
    async def set_battery_power(self, power_w: float) -> bool: ...

    async def set_pv_limit(self, limit_w: float | None) -> None: ...


class DeviceWrites:
    def __init__(self, device: WritableDevice, metrics: AgentMetrics, stats: AgentStats,
                 polls_started: Callable[[], int]) -> None:
        self.device, self.metrics, self.stats = device, metrics, stats
        self._polls_started = polls_started
        self.battery: Written | None = None  # the last setpoint the device took
        self.pv_limit: Written | None = None  # the PV limit in force (None: none)
        self.pv_limit_supported = True
        self.pv_written_after_poll = 0  # polls started when the PV limit was last written

    async def write(self, decision: Decision, now: datetime, policy: WritePolicy, snapshot_poll: int,
                    force: bool = False, battery: bool = True) -> None:
        """Write what is due of ``decision`` (``force``: the device lost what was written, e.g. a
        reboot, another master, a revert: write now, past the deadband; ``battery`` False: the house
        has none, only the PV limit is written)."""
        if battery and (force or policy.battery_due(decision.battery_w, self.battery, now, decision.clamped_by)):
            await self.write_battery(decision.battery_w, now)
        if force or pv_limit_may_change(snapshot_poll, self.pv_written_after_poll):
            await self.write_pv_limit(decision.pv_limit_w, now, policy, force)

    async def write_battery(self, power_w: float, now: datetime) -> None:
        try:
            applied = await self.device.set_battery_power(power_w)
        except Exception as exc:
            self.stats.write_errors += 1
            self.metrics.device_writes.labels("error").inc()
            log.warning("battery write failed (will retry): %s", exc)
            return
        if applied is False:  # the write guard deferred it (flash wear): not on the device yet, retry
            self.metrics.device_writes.labels("deferred").inc()
            return
        self.stats.writes += 1
        self.metrics.device_writes.labels("ok").inc()
        self.metrics.setpoint.set(power_w)
        self.battery = (power_w, now)

    async def write_pv_limit(self, limit_w: float | None, now: datetime, policy: WritePolicy,
                             force: bool = False) -> None:
        """Curtail PV for the export cap; refreshed before the device reverts it (``force``:
        re-asserted now, the device lost it)."""
        if not self.pv_limit_supported or not policy.pv_limit_due(limit_w, self.pv_limit, now, force):
            return
        try:
            await self.device.set_pv_limit(limit_w)
        except ModelNotFound as exc:  # not supported: never retried
            self.pv_limit_supported = False
            log.warning("PV curtailment not available (%s): export cap holds only as far as the battery can", exc)
            return
        except (DeviceUnavailable, DeviceRejected) as exc:
            self.metrics.device_writes.labels("error").inc()
            log.warning("PV limit write failed (will retry): %s", exc)
            return
        self.metrics.device_writes.labels("ok").inc()
        self.pv_limit = None if limit_w is None else (limit_w, now)
        self.pv_written_after_poll = self._polls_started()
