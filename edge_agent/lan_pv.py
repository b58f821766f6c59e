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
from datetime import datetime
from typing import Any

from edge_agent.drivers.errors import (
    AuthFailed,
    DeviceError,
    DeviceRefused,
    DeviceUnavailable,
    ModelNotFound,
)
from edge_agent.resources.capabilities import PV_CURTAILMENT, Capabilities
from edge_agent.resources.house import HouseResourceManager, HouseSnapshot
from edge_agent.resources.lan_device import LanDeviceRM, LanSnapshot
from vpp_common.clock import Clock
from vpp_common.messages import (
    ControlType,
    CurtailmentFlexibility,
    Measurement,
    ResourceInfo,
    ResourceKind,
    SiteTelemetry,
    Validity,
)

log = logging.getLogger(__name__)
_HELD = object()


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
        self.pv_snapshot: LanSnapshot | None = None
        self._inner_has_pv = False
        self._wish: object = _HELD  # a limit asked while the last one was still applying
        self._inner_pv: Measurement | None = None  # the inverter's own PV, last poll
        self._polled_at: datetime | None = None

    def __getattr__(self, name: str) -> Any:  # the rest of the inner RM (tests, scan)
        if name == "inner":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

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
        kind = ControlType.PEBC if self.pv.limitable else ControlType.NOT_CONTROLLABLE
        lim = self.pv.device.entry.limit
        rated = self.pv.rated_w or (lim.max_w if lim is not None else 0.0)
        return self.inner.resources + (ResourceInfo(self.pv.resource_id, ResourceKind.PV, kind, rated, 0.0),)

    def battery_nameplate(self) -> Any:
        return self.inner.battery_nameplate()

    @property
    def capabilities(self) -> Capabilities:
        caps = self.inner.capabilities
        if self.pv.limitable:
            how = f"{self.pv.resource_id}: {self.pv.device.entry.device.id} active-power limit"
            return replace(caps, can={**caps.can, PV_CURTAILMENT: how},
                           cannot={k: v for k, v in caps.cannot.items() if k != PV_CURTAILMENT})
        return caps

    def controllable(self, resource_id: str) -> str | None:
        if resource_id == self.pv.resource_id:
            return None if self.pv.limitable else \
                f"PV not curtailable ({self.pv.device.entry.device.id}: its local API takes no power limit)"
        return self.inner.controllable(resource_id)

    async def connect(self) -> None:
        await self.inner.connect()
        self._inner_has_pv = any(r.kind is ResourceKind.PV for r in self.inner.resources)
        if self.pv_snapshot is None:  # its rating for the Hello, which goes out once connected
            self._polled_at = self.clock.now()
            self.pv_snapshot = await self.pv.poll(self._polled_at)

    async def close(self) -> None:
        await self.inner.close()
        await self.pv.close()

    async def poll(self) -> HouseSnapshot:
        snap = await self.inner.poll()
        now = self.clock.now()
        min_s = self.pv.device.entry.device.min_poll_interval_s
        if self.pv_snapshot is None or self._polled_at is None or (now - self._polled_at).total_seconds() >= min_s:
            self.pv_snapshot, self._polled_at = await self.pv.poll(now), now  # else: no faster than it allows
        pv = self.pv_snapshot
        t = snap.telemetry
        self._inner_pv = t.pv_power_w
        if self._wish is not _HELD and pv.limit != "pending":
            wish, self._wish = self._wish, _HELD
            try:
                await self.set_pv_limit(wish)  # type: ignore[arg-type]
            except DeviceError as exc:  # the agent's next decision writes it again
                log.warning("%s: held PV limit not sent: %s", self.pv.resource_id, exc)
        pv_w = combine(t.pv_power_w, pv.power_w) if self._inner_has_pv else pv.power_w
        load = combine(t.load_power_w, pv.power_w, -1.0)  # the inverter's balance counted this PV as negative load
        telemetry: SiteTelemetry = replace(t, pv_power_w=pv_w, load_power_w=load,
                                           resources=t.resources + (pv.telemetry(),))
        flex = snap.flexibility
        if self.pv.limitable:
            present = pv.power_w.value if pv.power_w.usable and pv.power_w.value is not None else 0.0
            rated = self.pv.rated_w or 0.0
            flex = replace(flex, curtailments=flex.curtailments + (
                CurtailmentFlexibility(self.pv.resource_id, present, -rated),))
        return replace(snap, telemetry=telemetry, flexibility=flex, refused=snap.refused + pv.refused)

    async def set_battery_power(self, power_w: float) -> bool:
        return await self.inner.set_battery_power(power_w)

    async def release(self) -> object:
        out = await self.inner.release()
        if self.pv.limitable:
            try:
                await self.pv.set_pv_limit(None, self.clock.now())
            except (DeviceUnavailable, DeviceRefused, AuthFailed) as exc:
                log.warning("%s: PV limit not lifted on release: %s", self.pv.resource_id, exc)
        return out

    async def set_pv_limit(self, limit_w: float | None) -> None:
        """The house's PV limit (W of production, None: none), split as the module doc says."""
        if self.pv_snapshot is not None and self.pv_snapshot.limit == "pending":
            self._wish = limit_w  # the device is still applying the last one
            return
        if not self.pv.limitable:
            other = _production(self.pv_snapshot.power_w if self.pv_snapshot else None, self.pv.rated_w)
            await self.inner.set_pv_limit(None if limit_w is None else max(0.0, limit_w - other))
            return
        other = _production(self._inner_pv, None) if self._inner_has_pv else 0.0
        try:
            await self.pv.set_pv_limit(None if limit_w is None else max(0.0, limit_w - other), self.clock.now())
        except AuthFailed as exc:  # configuration: the operator must fix the password
            raise ModelNotFound(f"PV limit refused for its credentials: {exc}", device=self.pv.resource_id) from exc
        except DeviceRefused as exc:
            raise DeviceUnavailable(f"PV limit refused: {exc}", device=self.pv.resource_id) from exc
        if self.pv_snapshot is not None:  # applying from now: hold further limits until it shows
            self.pv_snapshot = replace(self.pv_snapshot, limit="pending")


def _production(m: Measurement | None, fallback_w: float | None) -> float:
    """What a PV produces now (W >= 0): its reading, even stale; else ``fallback_w`` (its rating: the
    cautious guess for the limit of the other PV), else 0."""
    if m is not None and m.value is not None and m.validity in (Validity.VALID, Validity.STALE):
        return max(0.0, -m.value)
    return fallback_w or 0.0


__all__ = ["HouseWithLanPv", "combine"]
