"""The house's smart plugs, meters and micro-inverters on the LAN (``[[lan_devices]]``): built from the
config, polled beside the agent's loops as a component (``EdgeAgent.components``, attached by the CLI).
A micro-inverter (role ``pv``) is :meth:`LanDevices.claim` ed by the house's Resource Manager
(edge_agent/lan_pv.py), which polls it with the house: it is not polled here.

Each device is polled on the agent's clock every ``device.poll_interval_s`` (no faster than its
catalogue entry allows); one that fails is stale, then missing, never 0 W, and does not hold
up the others.  ``switch`` turns a switchable load on or off and checks the read-back.
"""

from __future__ import annotations

import asyncio
import logging

from edge_agent.config import AgentConfig
from edge_agent.drivers.lan_catalogue import load_lan_entry
from edge_agent.drivers.lan_device import LanDevice
from edge_agent.resources.lan_device import LanDeviceRM, LanSnapshot
from vpp_common.clock import Clock
from vpp_common.messages import ResourceTelemetry

log = logging.getLogger(__name__)


def lan_resource_managers(config: AgentConfig) -> list[LanDeviceRM]:
    """One Resource Manager per ``[[lan_devices]]`` entry (built, not connected)."""
    rms = []
    for d in config.lan_devices:
        device = LanDevice(load_lan_entry(d.model), d.host, d.port, d.timeout_s, username=d.username,
                           password=d.password.get_secret_value() if d.password is not None else None,
                           token=d.token.get_secret_value() if d.token is not None else None, serial=d.serial)
        rms.append(LanDeviceRM(d.id, d.role, device, config.device.stale_after_s))
    return rms


class LanDevices:
    """Polls the LAN devices; ``snapshots`` holds each one's latest poll."""

    def __init__(self, rms: list[LanDeviceRM], clock: Clock, poll_interval_s: float) -> None:
        self.rms = {rm.resource_id: rm for rm in rms}
        self.clock = clock
        self.poll_interval_s = max([poll_interval_s] + [rm.device.entry.device.min_poll_interval_s for rm in rms])
        self.snapshots: dict[str, LanSnapshot] = {}
        self.polled = asyncio.Event()  # set after each round (tests, listeners)

    def claim(self, role: str) -> LanDeviceRM | None:
        """The device of ``role`` (e.g. ``pv``), no longer polled here (its claimer polls it)."""
        rm = next((r for r in self.rms.values() if r.role == role), None)
        if rm is not None:
            del self.rms[rm.resource_id]
        return rm

    @classmethod
    def from_config(cls, config: AgentConfig, clock: Clock) -> LanDevices | None:
        if not config.lan_devices:
            return None
        return cls(lan_resource_managers(config), clock, config.device.poll_interval_s)

    async def poll_once(self) -> dict[str, LanSnapshot]:
        now = self.clock.now()
        snaps = await asyncio.gather(*(rm.poll(now) for rm in self.rms.values()))
        self.snapshots = {s.resource_id: s for s in snaps}
        self.polled.set()
        self.polled = asyncio.Event()
        return self.snapshots

    async def run(self) -> None:
        """Poll until cancelled; close the devices' connections then."""
        try:
            while True:
                await self.poll_once()
                await self.clock.sleep(self.poll_interval_s)
        finally:
            await self.close()

    async def close(self) -> None:
        for rm in self.rms.values():
            await rm.close()

    def telemetry(self) -> tuple[ResourceTelemetry, ...]:
        """Each device's power as the aggregator's telemetry carries it (W, consumption/import > 0)."""
        return tuple(s.telemetry() for s in self.snapshots.values())

    async def switch(self, resource_id: str, on: bool) -> None:
        """Switch a load; KeyError for an unknown id, ValueError if it cannot switch, driver errors
        (SwitchNotApplied when the read-back differs)."""
        await self.rms[resource_id].set_switch(on)
        log.info("%s switched %s (read back)", resource_id, "on" if on else "off")


__all__ = ["LanDevices", "lan_resource_managers"]
