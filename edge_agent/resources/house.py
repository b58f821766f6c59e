"""A house's Resource Manager as the agent sees it: its settings, what it publishes, what it offers.

Both Resource Managers (SunSpec: edge_agent.resources.hybrid, vendor catalogue:
edge_agent.resources.catalogue) are a :class:`HouseResourceManager`; they take
:class:`HouseSettings`, plain values edge_agent.house_devices builds from the
agent's config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from edge_agent.resources.capabilities import Capabilities
from edge_agent.resources.nameplate import BatteryNameplate
from edge_agent.resources.plausibility import Refused
from edge_agent.resources.readback import ControlReadback
from vpp_common.messages import Flexibility, ResourceInfo, SiteTelemetry


class DeviceConfigurationError(Exception):
    """The device lacks what this Resource Manager needs (operator must act)."""


@dataclass(frozen=True, slots=True)
class HouseSettings:
    """``revert_s``: the device drops a setpoint not refreshed within it; ``poll_interval_s`` and
    ``reconnect_max_s`` bound the retry of a device that stopped answering; a reading older than
    ``stale_after_s`` is missing; ``max_import_w``: the connection limit (plausibility)."""

    reserve_soc_pct: float = 10.0
    feeder_floor_soc_pct: float = 5.0  # reported as the storage's soc_min (never above the reserve)
    revert_s: int = 60
    poll_interval_s: float = 5.0
    stale_after_s: float = 30.0
    reconnect_max_s: float = 60.0
    max_import_w: float | None = None


@dataclass(frozen=True, slots=True)
class Nameplate:
    rated_power_w: float
    capacity_wh: float
    max_charge_w: float
    max_discharge_w: float
    wchamax_w: float  # model 124 WChaMax: the base of InWRte/OutWRte percentages


@dataclass(frozen=True, slots=True)
class HouseSnapshot:
    telemetry: SiteTelemetry
    flexibility: Flexibility
    max_charge_w: float
    max_discharge_w: float
    # readings and nameplate values refused since the last snapshot (edge_agent.resources.plausibility):
    # the agent logs and counts them (edge_agent.refusals)
    refused: tuple[Refused, ...] = ()
    control: ControlReadback = ControlReadback()
    """The control points the agent wrote, read back this poll (edge_agent.resources.readback)."""
    frozen: str = ""
    """Why measurements are marked stale as frozen (edge_agent.resources.frozen); "" if none is."""


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


__all__ = ["DeviceConfigurationError", "HouseResourceManager", "HouseSettings", "HouseSnapshot", "Nameplate"]
