"""A house of LAN devices only (``[device] kind = "lan"``; docs/lan-devices.md): a grid meter (a P1 port,
a Shelly Pro 3EM or Pro EM), a micro-inverter or none, smart plugs, no Modbus device and no battery.

It is the house's :class:`~edge_agent.resources.house.HouseResourceManager`, so the agent's safety path
works on it unchanged: the grid reading is the LAN meter's (import > 0), the export cap and a feeder
envelope become the micro-inverter's limit (decide's PV limit: ``decide_without_battery`` in
edge_agent/energy_manager/decide.py):

* telemetry: grid from the meter, PV from the micro-inverter (production < 0; a house without one
  has none: 0 W), household load = grid - PV (no battery; IMPLAUSIBLE if that leaves it negative beyond the
  tolerance, as in the Modbus houses); battery power and SoC MISSING;
* a meter that does not answer is STALE, then MISSING (edge_agent/resources/lan_device.py): the agent
  then writes nothing, as for any stale meter (the micro-inverter keeps the limit last sent);
* Hello: the grid meter (measured only) and the micro-inverter (PEBC if it takes a limit, else
  NOT_CONTROLLABLE); flexibility: its curtailment only (no FRBC: the aggregator plans no battery here
  and reaches the house by grid signals);
* ``set_pv_limit`` goes to the micro-inverter (held while the last limit applies:
  edge_agent/micro_inverter.py); ``set_battery_power`` refuses: there is no battery.

The plugs are not part of it: they are polled beside the agent's loops (edge_agent/lan_devices.py).
"""

from __future__ import annotations

import asyncio
import logging

from edge_agent.drivers.errors import DeviceError, ModelNotFound
from edge_agent.lan_pv import combine
from edge_agent.micro_inverter import MicroInverter
from edge_agent.resources.capabilities import (
    BATTERY_CONTROL,
    BATTERY_POWER,
    BATTERY_SOC,
    GRID_POWER,
    PV_CURTAILMENT,
    PV_POWER,
    Capabilities,
)
from edge_agent.resources.house import DeviceConfigurationError, HouseSnapshot, Nameplate
from edge_agent.resources.lan_device import LanDeviceRM
from edge_agent.resources.plausibility import Refused, load_from_balance
from edge_agent.resources.s2 import BatteryNameplate
from vpp_common.clock import Clock
from vpp_common.messages import (
    ControlType,
    Flexibility,
    Measurement,
    ResourceInfo,
    ResourceKind,
    ResourceTelemetry,
    SiteTelemetry,
    Validity,
)

log = logging.getLogger(__name__)
NO_BATTERY = "this house has no battery (a house of LAN devices only)"


class LanHouseRM:
    """The grid meter ``meter`` (role grid_meter) and the micro-inverter ``pv`` (role pv, or None)."""

    has_battery = False  # the agent decides without one (edge_agent/house_battery.py)
    battery_id = "battery"  # no such resource: plans with a battery setpoint are refused (controllable)
    nameplate: Nameplate | None = None

    def __init__(self, meter: LanDeviceRM, pv: LanDeviceRM | None, clock: Clock) -> None:
        if meter.role != "grid_meter" or (pv is not None and pv.role != "pv"):
            raise ValueError("a LAN house needs a grid meter (role grid_meter) and at most a PV (role pv)")
        self.meter, self.clock = meter, clock
        self.micro = MicroInverter(pv, clock) if pv is not None else None

    @property
    def pv_rating_w(self) -> float | None:
        return (self.micro.rated_w or None) if self.micro is not None else None

    @property
    def resources(self) -> tuple[ResourceInfo, ...]:
        meter = ResourceInfo(self.meter.resource_id, ResourceKind.GRID_METER, ControlType.NOT_CONTROLLABLE)
        return (meter,) + ((self.micro.info(),) if self.micro is not None else ())

    def battery_nameplate(self) -> BatteryNameplate:
        raise DeviceConfigurationError(NO_BATTERY)

    @property
    def capabilities(self) -> Capabilities:
        meter = f"{self.meter.resource_id}: {self.meter.device.entry.device.id}"
        can = {GRID_POWER: meter}
        cannot = {BATTERY_POWER: NO_BATTERY, BATTERY_SOC: NO_BATTERY, BATTERY_CONTROL: NO_BATTERY}
        if self.micro is None:
            cannot[PV_POWER] = cannot[PV_CURTAILMENT] = "no micro-inverter in [[lan_devices]] (role pv)"
            return Capabilities(can, cannot)
        can[PV_POWER] = f"{self.micro.resource_id}: {self.micro.rm.device.entry.device.id}"
        if not self.micro.limitable:
            cannot[PV_CURTAILMENT] = self.micro.not_curtailable() or ""
        return self.micro.capabilities(Capabilities(can, cannot))

    def controllable(self, resource_id: str) -> str | None:
        """Why ``resource_id`` cannot take setpoints (None: it can).  A plan for it must be rejected."""
        if resource_id == self.battery_id:
            return NO_BATTERY
        if self.micro is not None and resource_id == self.micro.resource_id:
            return self.micro.not_curtailable()
        if resource_id == self.meter.resource_id:
            return f"{resource_id} is measured only"
        return f"no resource {resource_id!r} in this house"

    async def connect(self) -> None:
        """Nothing to connect (each poll is its own request); the micro-inverter is read once for its
        rating, which the Hello carries.  A device that does not answer is stale, not a failed start."""
        if self.micro is not None and self.micro.snapshot is None:
            await self.micro.poll()

    async def close(self) -> None:
        await self.meter.close()
        if self.micro is not None:
            await self.micro.close()

    async def poll(self) -> HouseSnapshot:
        """The meter and the micro-inverter read together, no faster than the micro-inverter allows (its
        entry's ``min_poll_interval_s``): a PV reading older than the grid's, taken before a limit
        applied, would make the next limit from readings that do not add up (measured: 1030 W -> 1600 W
        -> 1030 W on the simulated house)."""
        pv_resources: tuple[ResourceTelemetry, ...] = ()
        if self.micro is None:
            now = self.clock.now()
            grid = await self.meter.poll(now)
            pv_w, refused = Measurement(0.0, Validity.VALID, now), grid.refused
        else:  # both at once: a P1 read waits for the meter's next telegram
            if (wait_s := self.micro.due_in_s()) > 0:
                await self.clock.sleep(wait_s)
            now = self.clock.now()
            grid, pv = await asyncio.gather(self.meter.poll(now), self.micro.poll(force=True))
            pv_w, pv_resources, refused = pv.power_w, (pv.telemetry(),), grid.refused + pv.refused
            if grid.power_w.usable:  # no write on a stale meter: a held limit waits for a valid one
                await self._send_held()
        load, unbalanced = _load(grid.power_w, pv_w)
        telemetry = SiteTelemetry(now, grid_power_w=grid.power_w, pv_power_w=pv_w,
                                  battery_power_w=Measurement.missing(), battery_soc_pct=Measurement.missing(),
                                  load_power_w=load, resources=(grid.telemetry(), *pv_resources))
        flex = Flexibility(now, curtailments=self.micro.curtailments() if self.micro is not None else ())
        return HouseSnapshot(telemetry, flex, max_charge_w=0.0, max_discharge_w=0.0, refused=refused + unbalanced)

    async def _send_held(self) -> None:
        """A limit held while the last one applied goes out once the device settled."""
        assert self.micro is not None
        held, wish = self.micro.take_held()
        if held:
            try:
                await self.set_pv_limit(wish)
            except DeviceError as exc:  # the agent's next decision writes it again
                log.warning("%s: held PV limit not sent: %s", self.micro.resource_id, exc)

    async def set_battery_power(self, power_w: float) -> bool:
        raise ModelNotFound(NO_BATTERY)

    async def release(self) -> object:
        """The agent stops: the micro-inverter's limit is lifted (there is no battery to hand back)."""
        if self.micro is not None:
            await self.micro.lift()
        return None

    async def set_pv_limit(self, limit_w: float | None) -> None:
        """The house's PV limit (W of production, None: none) to the micro-inverter.  ModelNotFound (never
        asked again) if there is none or it takes no limit."""
        if self.micro is None:
            raise ModelNotFound("no micro-inverter in [[lan_devices]] (role pv)")
        if self.micro.hold(limit_w):  # the device is still applying the last one
            return
        if not self.micro.limitable:
            raise ModelNotFound(self.micro.not_curtailable() or "PV not curtailable")
        await self.micro.send(limit_w)


def _load(grid: Measurement, pv: Measurement) -> tuple[Measurement, tuple[Refused, ...]]:
    """The household load, grid - PV (no battery), as the Modbus houses' balance: readings that leave it
    negative beyond the tolerance do not add up (IMPLAUSIBLE, refused: a meter's CT turned round, a
    wrong sign); else the worse validity of the two."""
    if grid.usable and pv.usable:
        assert grid.value is not None and pv.value is not None
        load, refused = load_from_balance(grid.value, pv.value, 0.0)
        if refused is not None:
            return Measurement(load, Validity.IMPLAUSIBLE, grid.measured_at), (refused,)
    return combine(grid, pv, -1.0), ()


__all__ = ["NO_BATTERY", "LanHouseRM"]
