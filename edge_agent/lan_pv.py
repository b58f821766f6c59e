"""A micro-inverter on the LAN as (part of) the house's PV: the house's Resource Manager with the
micro-inverter's production added (``[[lan_devices]]`` with ``role = "pv"``; docs/lan-devices.md).

The agent sees one :class:`~edge_agent.resources.house.HouseResourceManager`, so export caps and
feeder curtailment (decide's PV limit, S2 PEBC) work with it unchanged:

* telemetry: the PV power is the sum (production < 0); the household load, which the inverter's
  Resource Manager derives from its own balance, is corrected by the micro-inverter's production;
* Hello: the micro-inverter is a PV resource, PEBC if it takes a limit, NOT_CONTROLLABLE if not
  (Enphase's local API takes none): the aggregator knows this PV cannot be curtailed;
* the house's PV limit goes to the micro-inverter if it takes one (the limit less what the other PV
  produces), else to the inverter's own PV (less the micro-inverter's production);
* a limit takes seconds to apply (OpenDTU: Pending): while it does, new limits are held and the
  latest is sent once the device settled (its readings meanwhile do not show the first one's effect).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from edge_agent.drivers.errors import DeviceError
from edge_agent.micro_inverter import MicroInverter, production_w
from edge_agent.resources.capabilities import Capabilities
from edge_agent.resources.house import HouseResourceManager, HouseSnapshot
from edge_agent.resources.lan_device import LanDeviceRM, LanSnapshot
from vpp_common.clock import Clock
from vpp_common.messages import Measurement, ResourceInfo, ResourceKind, SiteTelemetry, Validity

log = logging.getLogger(__name__)


def combine(inner: Measurement, extra: Measurement, sign: float = 1.0) -> Measurement:
    """``inner + sign * extra``: VALID if both are; else the worse validity, a value only if both have one."""
    value = None if inner.value is None or extra.value is None else inner.value + sign * extra.value
    if inner.usable and extra.usable:
        return Measurement(value, Validity.VALID, min(inner.measured_at or extra.measured_at,  # type: ignore[type-var]
                                                       extra.measured_at or inner.measured_at))
    worse = extra if not extra.usable else inner
    return Measurement(value, worse.validity if value is not None else Validity.MISSING,
                       worse.measured_at if value is not None else None)


class HouseWithLanPv:
    """``inner`` (SunSpec or catalogue) plus the micro-inverter ``pv``, polled with the house."""

    def __init__(self, inner: HouseResourceManager, pv: LanDeviceRM, clock: Clock) -> None:
        self.inner, self.pv, self.clock = inner, pv, clock
        self.micro = MicroInverter(pv, clock)  # polling, held limits, the Hello: shared with lan_house.py
        self._inner_has_pv = False
        self._inner_pv: Measurement | None = None  # the inverter's own PV, last poll

    def __getattr__(self, name: str) -> Any:  # the rest of the inner RM (tests, scan)
        if name in ("inner", "micro"):  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def pv_snapshot(self) -> LanSnapshot | None:
        return self.micro.snapshot

    @property
    def battery_id(self) -> str:
        return self.inner.battery_id

    @battery_id.setter
    def battery_id(self, value: str) -> None:
        self.inner.battery_id = value

    @property
    def nameplate(self) -> Any:
        return self.inner.nameplate

    @nameplate.setter
    def nameplate(self, value: Any) -> None:
        self.inner.nameplate = value

    @property
    def pv_rating_w(self) -> float | None:
        total = (self.inner.pv_rating_w or 0.0) + (self.pv.rated_w or 0.0)
        return total or None

    @property
    def resources(self) -> tuple[ResourceInfo, ...]:
        return self.inner.resources + (self.micro.info(),)

    def battery_nameplate(self) -> Any:
        return self.inner.battery_nameplate()

    @property
    def capabilities(self) -> Capabilities:
        return self.micro.capabilities(self.inner.capabilities)

    def controllable(self, resource_id: str) -> str | None:
        if resource_id == self.pv.resource_id:
            return self.micro.not_curtailable()
        return self.inner.controllable(resource_id)

    async def connect(self) -> None:
        await self.inner.connect()
        self._inner_has_pv = any(r.kind is ResourceKind.PV for r in self.inner.resources)
        if self.micro.snapshot is None:  # its rating for the Hello, which goes out once connected
            await self.micro.poll()

    async def close(self) -> None:
        await self.inner.close()
        await self.micro.close()

    async def poll(self) -> HouseSnapshot:
        snap = await self.inner.poll()
        pv = await self.micro.poll()  # no faster than it allows
        t = snap.telemetry
        self._inner_pv = t.pv_power_w
        held, wish = self.micro.take_held() if t.grid_power_w.usable else (False, None)  # no write on a stale meter
        if held:
            try:
                await self.set_pv_limit(wish)
            except DeviceError as exc:  # the agent's next decision writes it again
                log.warning("%s: held PV limit not sent: %s", self.pv.resource_id, exc)
        pv_w = combine(t.pv_power_w, pv.power_w) if self._inner_has_pv else pv.power_w
        load = combine(t.load_power_w, pv.power_w, -1.0)  # the inverter's balance counted this PV as negative load
        telemetry: SiteTelemetry = replace(t, pv_power_w=pv_w, load_power_w=load,
                                           resources=t.resources + (pv.telemetry(),))
        flex = replace(snap.flexibility, curtailments=snap.flexibility.curtailments + self.micro.curtailments())
        return replace(snap, telemetry=telemetry, flexibility=flex, refused=snap.refused + pv.refused)

    async def set_battery_power(self, power_w: float) -> bool:
        return await self.inner.set_battery_power(power_w)

    async def release(self) -> object:
        out = await self.inner.release()
        await self.micro.lift()
        return out

    async def set_pv_limit(self, limit_w: float | None) -> None:
        """The house's PV limit (W of production, None: none), split as the module doc says."""
        if self.micro.hold(limit_w):  # the device is still applying the last one
            return
        if not self.pv.limitable:
            other = self.micro.production_w(self.pv.rated_w)
            await self.inner.set_pv_limit(None if limit_w is None else max(0.0, limit_w - other))
            return
        other = production_w(self._inner_pv, None) if self._inner_has_pv else 0.0
        await self.micro.send(None if limit_w is None else limit_w - other)


__all__ = ["HouseWithLanPv", "combine"]
