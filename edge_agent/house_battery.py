"""The house battery as control sees it: whether it takes setpoints, its ratings (the nameplate,
else the last reading), and the limits ``decide`` holds it to."""

from __future__ import annotations

from edge_agent.config import BatteryConfig, ControlConfig
from edge_agent.energy_manager.decide import BatteryLimits
from edge_agent.resources.house import HouseResourceManager, HouseSnapshot


def has_battery(device: HouseResourceManager) -> bool:
    """False for a house without a battery (a house of LAN devices only: edge_agent/lan_house.py); a
    device that does not say has one."""
    return bool(getattr(device, "has_battery", True))


def uncontrollable(device: HouseResourceManager, resource_id: str) -> str | None:
    """Why the device cannot take setpoints for ``resource_id`` (None: it can; a device that
    does not say, e.g. a test double, is taken as able)."""
    check = getattr(device, "controllable", None)
    return check(resource_id) if check is not None else None


def battery_ratings(device: HouseResourceManager, snapshot: HouseSnapshot | None) -> tuple[float | None, float | None]:
    """The battery's (charge, discharge) ratings, W: the nameplate's, else the last reading's;
    None while not known."""
    nameplate = getattr(device, "nameplate", None)
    if nameplate is not None:
        return nameplate.max_charge_w, nameplate.max_discharge_w
    if snapshot is not None:
        return snapshot.max_charge_w, snapshot.max_discharge_w
    return None, None


def battery_limits(snap: HouseSnapshot, battery: BatteryConfig, control: ControlConfig) -> BatteryLimits:
    """The battery's ratings from the reading, its SoC bounds and ramp from the config."""
    store = snap.flexibility.storages[0] if snap.flexibility.storages else None
    return BatteryLimits(snap.max_charge_w, snap.max_discharge_w, battery.reserve_soc_pct, battery.max_soc_pct,
                         control.max_ramp_w_per_s,
                         # taper the discharge so that one tick cannot cross the reserve (an RM
                         # without a capacity rating reports 1 Wh: no taper then)
                         capacity_wh=store.capacity_wh if store and store.capacity_wh >= 100 else 0.0,
                         control_period_s=control.tick_s,
                         discharge_efficiency=store.discharge_efficiency if store else 0.95,
                         feeder_floor_soc_pct=min(battery.feeder_floor_soc_pct, battery.reserve_soc_pct))
