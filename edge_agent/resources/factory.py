"""The house's Resource Manager as the agent's ``[device]`` config describes it.

SunSpec discovery of one hybrid by default, separate SunSpec devices per
role with ``[[device.parts]]``, a vendor catalogue entry with
``device.catalogue = "<id>"``.  Either way every register write passes one
:class:`~edge_agent.drivers.write_guard.WriteGuard` on the agent's clock, so
flash-wear limits hold whatever the control loop asks for.
"""

from __future__ import annotations

from typing import Protocol

from edge_agent.config import AgentConfig, DeviceConfig
from edge_agent.drivers.catalogue import load_entry
from edge_agent.drivers.sunspec import SunSpecDevice
from edge_agent.drivers.write_guard import WriteGuard
from edge_agent.resources.capabilities import Capabilities
from edge_agent.resources.catalogue import CatalogueHybridRM
from edge_agent.resources.hybrid import HouseSnapshot, HybridInverterRM, Nameplate
from edge_agent.resources.retry import DeviceRetry
from edge_agent.resources.s2 import BatteryNameplate
from vpp_common.clock import Clock
from vpp_common.config import ConfigError
from vpp_common.messages import ResourceInfo


class HouseResourceManager(Protocol):
    """What the agent needs of a device (HybridInverterRM and CatalogueHybridRM both are one)."""

    battery_id: str
    nameplate: Nameplate | None

    @property
    def pv_rating_w(self) -> float | None:
        """The PV inverter's rating, W (None: no PV device or unknown)."""
        ...

    @property
    def resources(self) -> tuple[ResourceInfo, ...]: ...

    def battery_nameplate(self) -> BatteryNameplate: ...

    @property
    def capabilities(self) -> Capabilities:
        """What the device can and cannot do (edge_agent.resources.capabilities); known after connect()."""
        ...

    def controllable(self, resource_id: str) -> str | None:
        """Why ``resource_id`` cannot take setpoints; None if it can."""
        ...

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def poll(self) -> HouseSnapshot: ...

    async def set_battery_power(self, power_w: float) -> bool:
        """Charging > 0.  False: the write guard deferred part of it; the device does not hold it yet."""
        ...

    async def release(self) -> object: ...

    async def set_pv_limit(self, limit_w: float | None) -> None: ...


def write_guard(device: DeviceConfig, revert_s: float, clock: Clock) -> WriteGuard:
    """One guard for the device's registers, on the agent's clock.

    Unchanged registers are re-sent at most every quarter of the revert
    timer: the agent's refresh (at half of it) always gets through, while a
    change of one point of a sequence (a new power) does not rewrite the
    unchanged mode registers next to it.
    """
    return WriteGuard(min_interval_s=device.write_min_interval_s, max_writes_per_hour=device.write_max_per_hour,
                      refresh_s=max(device.write_min_interval_s, revert_s / 4),
                      now_s=lambda: clock.now().timestamp())


def resource_manager(config: AgentConfig, clock: Clock) -> HouseResourceManager:
    """Build (not connect) the Resource Manager; ConfigError (field and reason) if the settings cannot work."""
    dev = config.device
    revert_s = config.battery.revert_s
    if dev.write_min_interval_s > revert_s / 2:
        raise ConfigError(
            f"device.write_min_interval_s ({dev.write_min_interval_s} s) must be <= battery.revert_s / 2 "
            f"({revert_s / 2} s), or the setpoint refresh is held back and the device reverts")
    if dev.parts:
        # one driver (one connection, one write guard) per address: two roles may share a device
        drivers: dict[tuple[str, int, int], SunSpecDevice] = {}
        for part in dev.parts:
            if part.address not in drivers:
                drivers[part.address] = SunSpecDevice(part.host, part.port, part.unit_id, timeout_s=dev.timeout_s,
                                                      write_guard=write_guard(dev, revert_s, clock))
        by_role = {p.role: p for p in dev.parts}
        return HybridInverterRM(
            dev, clock, reserve_soc_pct=config.battery.reserve_soc_pct, revert_s=revert_s,
            parts={p.role: drivers[p.address] for p in dev.parts},
            meter_import_positive={r: p.meter_import_positive for r, p in by_role.items()
                                   if p.meter_import_positive is not None and r in ("meter", "ev_charger")},
            battery_discharge_positive=by_role["battery"].battery_discharge_positive,
            max_import_w=config.site.max_import_w)
    guard = write_guard(dev, revert_s, clock)
    if dev.catalogue is None:
        sunspec = SunSpecDevice(dev.host, dev.port, 1 if dev.unit_id is None else dev.unit_id,
                                timeout_s=dev.timeout_s, write_guard=guard)
        return HybridInverterRM(dev, clock, reserve_soc_pct=config.battery.reserve_soc_pct, revert_s=revert_s,
                                device=sunspec, max_import_w=config.site.max_import_w)
    entry = load_entry(dev.catalogue)
    device_revert_s = entry.control.revert_s if entry.control is not None else None
    if device_revert_s is not None and revert_s > device_revert_s:
        raise ConfigError(
            f"battery.revert_s ({revert_s} s) is longer than {entry.device.id}'s own timeout ({device_revert_s:g} s): "
            "the agent would refresh its setpoint too late")
    defaults = {k: v for k, v in (("capacity_wh", dev.capacity_wh), ("rated_power_w", dev.rated_power_w),
                                  ("max_charge_w", dev.max_charge_w), ("max_discharge_w", dev.max_discharge_w))
                if v is not None}
    return CatalogueHybridRM(entry, dev.host, dev.port, clock, unit_id=dev.unit_id, timeout_s=dev.timeout_s,
                             reserve_soc_pct=config.battery.reserve_soc_pct, stale_after_s=dev.stale_after_s,
                             write_guard=guard, retry=DeviceRetry(min(dev.poll_interval_s, dev.reconnect_max_s),
                                                                  dev.reconnect_max_s),
                             max_import_w=config.site.max_import_w, **defaults)


__all__ = ["HouseResourceManager", "resource_manager", "write_guard"]
