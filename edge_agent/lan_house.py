"""A house of LAN devices only (``[device] kind = "lan"``; docs/lan-devices.md): a grid meter (a P1 port,
a Shelly Pro 3EM or Pro EM), micro-inverters (or none), smart plugs, no Modbus device and no battery.

It is the house's :class:`~edge_agent.resources.house.HouseResourceManager`, so the agent's safety path
works on it unchanged: the grid reading is the LAN meter's (import > 0), the export cap and a feeder
envelope become the micro-inverter's limit (decide's PV limit: ``decide_without_battery`` in
edge_agent/energy_manager/decide.py):

* telemetry: grid from the meter, PV from the micro-inverters (their sum, production < 0; a house
  without one has none: 0 W), household load = grid - PV (no battery; IMPLAUSIBLE if that leaves it negative beyond the
  tolerance, as in the Modbus houses); battery power and SoC MISSING;
* a meter that does not answer is STALE, then MISSING (edge_agent/resources/lan_device.py): the agent
  then writes nothing, as for any stale meter (the micro-inverter keeps the limit last sent);
* Hello: the grid meter (measured only) and the micro-inverter (PEBC if it takes a limit, else
  NOT_CONTROLLABLE); flexibility: its curtailment only (no FRBC: the aggregator plans no battery here
  and reaches the house by grid signals);
* ``set_pv_limit`` goes to the micro-inverters that take one, split by their ratings, less what those
  that take none produce (held while the last limit applies: edge_agent/micro_inverter.py);
  ``set_battery_power`` refuses: there is no battery.

The plugs are not part of it: they are polled beside the agent's loops (edge_agent/lan_devices.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace

from edge_agent.drivers.errors import DeviceError, ModelNotFound
from edge_agent.lan_pv import combine
from edge_agent.micro_inverter import MicroInverter, split_limit
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
from edge_agent.resources.nameplate import BatteryNameplate
from edge_agent.resources.plausibility import Refused, load_from_balance
from vpp_common.clock import Clock
from vpp_common.messages import (
    ControlType,
    Flexibility,
    Measurement,
    ResourceInfo,
    ResourceKind,
    SiteTelemetry,
    Validity,
)

log = logging.getLogger(__name__)
NO_BATTERY = "this house has no battery (a house of LAN devices only)"


class LanHouseRM:
    """The grid meter ``meter`` (role grid_meter) and the micro-inverters ``pvs`` (role pv; none: a house
    without PV)."""

    has_battery = False  # the agent decides without one (edge_agent/house_battery.py)
    battery_id = "battery"  # no such resource: plans with a battery setpoint are refused (controllable)
    nameplate: Nameplate | None = None

    def __init__(self, meter: LanDeviceRM, pvs: Sequence[LanDeviceRM], clock: Clock) -> None:
        if meter.role != "grid_meter" or any(pv.role != "pv" for pv in pvs):
            raise ValueError("a LAN house needs a grid meter (role grid_meter) and its PV (role pv)")
        self.meter, self.clock = meter, clock
        self.micros = tuple(MicroInverter(pv, clock) for pv in pvs)

    @property
    def _curtailable(self) -> tuple[MicroInverter, ...]:
        return tuple(m for m in self.micros if m.limitable)

    @property
    def pv_rating_w(self) -> float | None:
        return sum(m.rated_w for m in self.micros) or None

    @property
    def resources(self) -> tuple[ResourceInfo, ...]:
        meter = ResourceInfo(self.meter.resource_id, ResourceKind.GRID_METER, ControlType.NOT_CONTROLLABLE)
        return (meter, *(m.info() for m in self.micros))

    def battery_nameplate(self) -> BatteryNameplate:
        raise DeviceConfigurationError(NO_BATTERY)

    @property
    def capabilities(self) -> Capabilities:
        caps = Capabilities({GRID_POWER: f"{self.meter.resource_id}: {self.meter.device.entry.device.id}"},
                            {BATTERY_POWER: NO_BATTERY, BATTERY_SOC: NO_BATTERY, BATTERY_CONTROL: NO_BATTERY})
        if not self.micros:
            none = "no micro-inverter in [[lan_devices]] (role pv)"
            return replace(caps, cannot={**caps.cannot, PV_POWER: none, PV_CURTAILMENT: none})
        caps = replace(caps, can={**caps.can, PV_POWER: ", ".join(
            f"{m.resource_id}: {m.rm.device.entry.device.id}" for m in self.micros)})
        if not self._curtailable:
            return replace(caps, cannot={**caps.cannot, PV_CURTAILMENT: "; ".join(
                m.not_curtailable() or "" for m in self.micros)})
        for m in self._curtailable:
            caps = m.capabilities(caps)
        return caps

    def controllable(self, resource_id: str) -> str | None:
        """Why ``resource_id`` cannot take setpoints (None: it can).  A plan for it must be rejected."""
        if resource_id == self.battery_id:
            return NO_BATTERY
        for m in self.micros:
            if resource_id == m.resource_id:
                return m.not_curtailable()
        if resource_id == self.meter.resource_id:
            return f"{resource_id} is measured only"
        return f"no resource {resource_id!r} in this house"

    async def connect(self) -> None:
        """Nothing to connect (each poll is its own request); the micro-inverters are read once for their
        ratings, which the Hello carries.  A device that does not answer is stale, not a failed start."""
        for m in self.micros:
            if m.snapshot is None:
                await m.poll()

    async def close(self) -> None:
        await self.meter.close()
        for m in self.micros:
            await m.close()

    async def poll(self) -> HouseSnapshot:
        """The meter and the micro-inverters read together, no faster than the micro-inverters allow
        (their entries' ``min_poll_interval_s``): a PV reading older than the grid's, taken before a
        limit applied, would make the next limit from readings that do not add up (measured: 1030 W ->
        1600 W -> 1030 W on the simulated house).  A P1 read waits for the meter's next telegram."""
        if (wait_s := max((m.due_in_s() for m in self.micros), default=0.0)) > 0:
            await self.clock.sleep(wait_s)
        now = self.clock.now()
        grid, *pvs = await asyncio.gather(self.meter.poll(now), *(m.poll(force=True) for m in self.micros))
        pv_w = Measurement(0.0, Validity.VALID, now)  # a house without PV has none
        for i, pv in enumerate(pvs):
            pv_w = pv.power_w if i == 0 else combine(pv_w, pv.power_w)
        if grid.power_w.usable:  # no write on a stale meter: a held limit waits for a valid one
            await self._send_held()
        load, unbalanced = _load(grid.power_w, pv_w)
        telemetry = SiteTelemetry(now, grid_power_w=grid.power_w, pv_power_w=pv_w,
                                  battery_power_w=Measurement.missing(), battery_soc_pct=Measurement.missing(),
                                  load_power_w=load, resources=(grid.telemetry(), *(pv.telemetry() for pv in pvs)))
        flex = Flexibility(now, curtailments=tuple(c for m in self.micros for c in m.curtailments()))
        refused = grid.refused + tuple(r for pv in pvs for r in pv.refused) + unbalanced
        return HouseSnapshot(telemetry, flex, max_charge_w=0.0, max_discharge_w=0.0, refused=refused)

    async def _send_held(self) -> None:
        """A limit held while the last one applied goes out once the devices settled."""
        for m in self.micros:
            held, wish = m.take_held()
            if held:
                try:
                    await self.set_pv_limit(wish)
                except DeviceError as exc:  # the agent's next decision writes it again
                    log.warning("%s: held PV limit not sent: %s", m.resource_id, exc)

    async def set_battery_power(self, power_w: float) -> bool:
        raise ModelNotFound(NO_BATTERY)

    async def release(self) -> object:
        """The agent stops: the micro-inverters' limits are lifted (there is no battery to hand back)."""
        for m in self.micros:
            await m.lift()
        return None

    async def set_pv_limit(self, limit_w: float | None) -> None:
        """The house's PV limit (W of production, None: none), less what the PV that takes no limit
        produces (its rating if unknown), split over the micro-inverters that take one by their ratings.
        Held while one still applies the last.  ModelNotFound (never asked again) if none takes one."""
        curtailable = self._curtailable
        if not curtailable:
            why = "; ".join(m.not_curtailable() or "" for m in self.micros)
            raise ModelNotFound(why or "no micro-inverter in [[lan_devices]] (role pv)")
        pending = [m for m in curtailable if m.snapshot is not None and m.snapshot.limit == "pending"]
        if pending:  # the latest only, held on one of them, sent once it settled (_send_held)
            for m in curtailable:
                m.drop_held()
            pending[0].hold(limit_w)
            return
        others_w = sum(m.production_w(m.rm.rated_w) for m in self.micros if not m.limitable)
        for m, share in zip(curtailable, split_limit(limit_w, [m.rated_w for m in curtailable], others_w),
                            strict=True):
            await m.send(share)


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
