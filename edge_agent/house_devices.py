"""The house's Resource Manager as the agent's ``[device]`` config describes it.

SunSpec discovery of one hybrid by default, separate SunSpec devices per
role with ``[[device.parts]]``, a vendor catalogue entry with
``device.catalogue = "<id>"``.  Either way every register write passes one
:class:`~edge_agent.drivers.write_guard.WriteGuard` on the agent's clock, so
flash-wear limits hold whatever the control loop asks for.  The config is
read here, one level above the resources: they take plain settings
(edge_agent.resources.house.HouseSettings).
"""

from __future__ import annotations

from edge_agent.config import AgentConfig, DeviceConfig
from edge_agent.drivers.catalogue import load_entry
from edge_agent.drivers.catalogue_device import CatalogueDevice
from edge_agent.drivers.sunspec import SunSpecDevice
from edge_agent.drivers.sunspec_roles import Role
from edge_agent.drivers.write_guard import WriteGuard
from edge_agent.resources.catalogue import CatalogueHybridRM
from edge_agent.resources.house import HouseResourceManager, HouseSettings
from edge_agent.resources.hybrid import HybridInverterRM
from edge_agent.resources.sunspec_readings import SunSpecSigns
from vpp_common.clock import Clock
from vpp_common.config import ConfigError


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


def house_settings(config: AgentConfig) -> HouseSettings:
    dev = config.device
    return HouseSettings(reserve_soc_pct=config.battery.reserve_soc_pct, revert_s=config.battery.revert_s,
                         feeder_floor_soc_pct=min(config.battery.feeder_floor_soc_pct, config.battery.reserve_soc_pct),
                         poll_interval_s=dev.poll_interval_s, stale_after_s=dev.stale_after_s,
                         reconnect_max_s=dev.reconnect_max_s, max_import_w=config.site.max_import_w)


def sunspec_signs(device: DeviceConfig) -> SunSpecSigns:
    """The device's signs; a part's own override the device's."""
    by_role = {p.role: p for p in device.parts}

    meter, ev, battery = (by_role.get(r) for r in ("meter", "ev_charger", "battery"))
    return SunSpecSigns(
        meter_import_positive=_either(meter.meter_import_positive if meter else None, device.meter_import_positive),
        ev_import_positive=_either(ev.meter_import_positive if ev else None, device.meter_import_positive),
        battery_discharge_positive=_either(battery.battery_discharge_positive if battery else None,
                                           device.battery_discharge_positive))


def _either(own: bool | None, default: bool) -> bool:
    return default if own is None else own


def device_label(config: AgentConfig) -> str:
    """The house's devices as the logs name them: their addresses, or the LAN devices' ids."""
    dev = config.device
    if dev.kind == "lan":
        return "LAN " + ", ".join(f"{d.role} {d.id}" for d in config.lan_devices if d.role != "load")
    return ", ".join(f"{p.role} {p.host}:{p.port}" for p in dev.parts) or f"{dev.host}:{dev.port}"


def resource_manager(config: AgentConfig, clock: Clock) -> HouseResourceManager:
    """Build (not connect) the Resource Manager; ConfigError (field and reason) if the settings cannot work."""
    dev = config.device
    if dev.kind == "lan":  # no Modbus device: edge_agent/lan_house.py, assembled by edge_agent.cli.lan_agent
        raise ConfigError('device.kind = "lan": the house is its [[lan_devices]], not a Modbus device')
    revert_s = config.battery.revert_s
    if dev.write_min_interval_s > revert_s / 2:
        raise ConfigError(
            f"device.write_min_interval_s ({dev.write_min_interval_s} s) must be <= battery.revert_s / 2 "
            f"({revert_s / 2} s), or the setpoint refresh is held back and the device reverts")
    if dev.catalogue is None:
        return HybridInverterRM(_sunspec_parts(dev, revert_s, clock), clock, house_settings(config),
                                sunspec_signs(dev))
    entry = load_entry(dev.catalogue)
    device_revert_s = entry.control.revert_s if entry.control is not None else None
    if device_revert_s is not None and revert_s > device_revert_s:
        raise ConfigError(
            f"battery.revert_s ({revert_s} s) is longer than {entry.device.id}'s own timeout ({device_revert_s:g} s): "
            "the agent would refresh its setpoint too late")
    defaults = {k: v for k, v in (("capacity_wh", dev.capacity_wh), ("rated_power_w", dev.rated_power_w),
                                  ("max_charge_w", dev.max_charge_w), ("max_discharge_w", dev.max_discharge_w))
                if v is not None}
    device = CatalogueDevice(entry, dev.host, dev.port, dev.unit_id, timeout_s=dev.timeout_s,
                             write_guard=write_guard(dev, revert_s, clock))
    return CatalogueHybridRM(device, clock, house_settings(config), **defaults)


def _sunspec_parts(dev: DeviceConfig, revert_s: float, clock: Clock) -> SunSpecDevice | dict[Role, SunSpecDevice]:
    """One hybrid at host:port, or a driver per part's address (one connection and one write guard per
    address: two roles may share a device)."""
    if not dev.parts:
        return SunSpecDevice(dev.host, dev.port, 1 if dev.unit_id is None else dev.unit_id, timeout_s=dev.timeout_s,
                             write_guard=write_guard(dev, revert_s, clock))
    drivers: dict[tuple[str, int, int], SunSpecDevice] = {}
    for part in dev.parts:
        if part.address not in drivers:
            drivers[part.address] = SunSpecDevice(part.host, part.port, part.unit_id, timeout_s=dev.timeout_s,
                                                  write_guard=write_guard(dev, revert_s, clock))
    return {p.role: drivers[p.address] for p in dev.parts}


__all__ = ["device_label", "house_settings", "resource_manager", "sunspec_signs", "write_guard"]
