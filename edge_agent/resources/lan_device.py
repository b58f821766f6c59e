"""A smart plug, meter or micro-inverter of the house (edge_agent.drivers.lan_device) as measurements
with validity.

Each poll turns the driver's reading into :class:`~vpp_common.messages.Measurement` s the same way
as the house's Modbus devices (edge_agent.resources.measure): within the catalogue entry's
plausible range VALID, outside IMPLAUSIBLE (refused, reported), a failed read or a refused
value (NaN, wrong JSON type, missing field) the last valid value as STALE for
``stale_after_s``, then MISSING: never 0 W.  Switching reads the state back: a plug that
reports another state than the one asked for is a failed switch (:class:`SwitchNotApplied`).  A
micro-inverter (role ``pv``, production < 0) with a ``[limit]`` takes an active-power limit and reads
it back; a read-back that lags within the entry's ``apply_s`` is pending (edge_agent.resources.pv_limit),
after it the limit is sent again, up to :data:`LIMIT_RESENDS` times.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from datetime import datetime

from edge_agent.drivers.errors import DeviceError
from edge_agent.drivers.lan_catalogue import POWER_ROLE, HouseRole
from edge_agent.drivers.lan_device import LanDevice, LanReading
from edge_agent.resources.measure import Measurer
from edge_agent.resources.plausibility import HOME_MAX_POWER_W, Refused
from edge_agent.resources.pv_limit import LimitState, LimitTracker
from vpp_common.log_limit import LogLimiter
from vpp_common.messages import Measurement, ResourceTelemetry

log = logging.getLogger(__name__)
_limit = LogLimiter(60.0)
LIMIT_RESENDS = 3


class SwitchNotApplied(DeviceError):
    """The plug answered the switch command but reads back another state."""


@dataclass(frozen=True, slots=True)
class LanSnapshot:
    """One poll of one device: power in W (grid meter: import > 0; load: consumption > 0), energy
    counters in Wh, the switch state (1.0 on, 0.0 off; MISSING for devices without a switch)."""

    resource_id: str
    role: HouseRole
    power_w: Measurement
    energy_in_wh: Measurement
    energy_out_wh: Measurement
    switch_on: Measurement
    refused: tuple[Refused, ...] = ()
    error: str | None = None
    pv_limit_w: Measurement = Measurement.missing()
    """A micro-inverter's active-power limit in force, read back (W, production bound >= 0)."""
    limit: LimitState = "none"
    """Whether it holds the limit last sent."""

    def telemetry(self) -> ResourceTelemetry:
        return ResourceTelemetry(self.resource_id, self.power_w)


class LanDeviceRM:
    """One configured LAN device in its house role; ``poll`` never raises for the device's faults."""

    def __init__(self, resource_id: str, role: HouseRole, device: LanDevice, stale_after_s: float) -> None:
        entry = device.entry
        if role not in entry.device.roles:
            raise ValueError(f"{entry.device.id} cannot be a {role} (it can be: {', '.join(entry.device.roles)})")
        self.resource_id = resource_id
        self.role = role
        self.device = device
        self._power_role = POWER_ROLE[role]
        self._measurer = Measurer(stale_after_s)
        self._bounds = {r: self._role_bounds(r) for r in ("grid_power_w", "load_power_w", "pv_power_w",
                                                        "energy_in_wh", "energy_out_wh", "switch_on")}
        lim = entry.limit
        self._tracker = LimitTracker(lim.apply_s, lim.tolerance_w, lim.settle_s) if lim is not None else None
        self._resends = 0
        self.rated_w: float | None = None
        """The inverter's rating as it reports it (pv_rated_w), or the entry's limit ceiling."""

    def _role_bounds(self, role: str) -> tuple[float, float]:
        """The plausible range of a role: the sum of its points' ranges (home-wide bounds where unset)."""
        points = [p for p in self.device.entry.points.values() if p.role == role]
        if role == "switch_on":
            return 0.0, 1.0
        default = HOME_MAX_POWER_W if role.endswith("_w") else 1e12
        lo = sum(-default if p.min is None else p.min for p in points)
        hi = sum(default if p.max is None else p.max for p in points)
        return lo, hi

    @property
    def switchable(self) -> bool:
        return self.device.switchable and self.role == "load"

    @property
    def limitable(self) -> bool:
        """A PV that takes an active-power limit (can be curtailed)."""
        return self._tracker is not None and self.role == "pv"

    async def poll(self, now: datetime) -> LanSnapshot:
        """Read the device once; its failures become STALE / MISSING measurements (and ``error``)."""
        error: str | None = None
        bounds = self._bounds
        try:
            reading = await self.device.read()
            values = reading.by_role(self.device.entry)
            bad = self._outside_own_range(reading)  # refused as IMPLAUSIBLE against the point's own range
            values.update({role: v for role, (v, _) in bad.items()})
            bounds = {**bounds, **{role: b for role, (_, b) in bad.items()}}
        except DeviceError as exc:
            error = str(exc)
            left_out = _limit.admit((self.resource_id, type(exc).__name__))
            if left_out is not None:
                log.warning("%s: read failed, its data is stale: %s%s", self.resource_id, exc,
                            f" ({left_out} like it left out)" if left_out else "")
            values = {}
        m = self._measurer
        snap = LanSnapshot(
            self.resource_id, self.role,
            power_w=m.checked(self._power_role, values.get(self._power_role), now, bounds[self._power_role]),
            energy_in_wh=m.checked("energy_in_wh", values.get("energy_in_wh"), now, bounds["energy_in_wh"],
                                   "Wh"),
            energy_out_wh=m.checked("energy_out_wh", values.get("energy_out_wh"), now,
                                    bounds["energy_out_wh"], "Wh"),
            switch_on=m.checked("switch_on", values.get("switch_on"), now, (0.0, 1.0), ""))
        if self.limitable:
            snap = await self._limit_readback(snap, values, now)
        snap = replace(snap, refused=m.take_refused(), error=error)
        for r in snap.refused:
            if _limit.admit((self.resource_id, r.reason)) is not None:
                log.warning("%s: refused: %s", self.resource_id, r.detail)
        return snap

    def _outside_own_range(self, reading: LanReading) -> dict[str, tuple[float, tuple[float, float]]]:
        """Role -> (value, range) of a summed point outside its own range (a P1 import power of -1 kW:
        its sum with the export point would pass the role's range)."""
        out: dict[str, tuple[float, tuple[float, float]]] = {}
        for name, p in self.device.entry.points.items():
            v = reading.values.get(name)
            lo, hi = -math.inf if p.min is None else p.min, math.inf if p.max is None else p.max
            if p.role is not None and v is not None and not lo <= v <= hi:
                out[p.role] = (v, (lo, hi))
        return out

    async def _limit_readback(self, snap: LanSnapshot, values: dict[str, float | None],
                              now: datetime) -> LanSnapshot:
        """The limit in force (W, or % x rating) and whether it holds; a failed one is sent again."""
        assert self._tracker is not None and self.device.entry.limit is not None
        rated = values.get("pv_rated_w")
        lo, hi = self._role_bounds("pv_rated_w")
        if rated is not None and 0 < rated <= HOME_MAX_POWER_W and lo <= rated <= hi:
            self.rated_w = rated
        else:
            rated = None  # out of the entry's range: neither the rating nor a base for a % limit
        limit_w = values.get("pv_limit_w")
        pct = values.get("pv_limit_pct")
        if limit_w is None and pct is not None and rated is not None:
            limit_w = pct / 100.0 * rated
        ceiling = self.rated_w or self.device.entry.limit.max_w
        measured = self._measurer.checked("pv_limit_w", limit_w, now, (0.0, max(ceiling, 1.0) * 1.05))
        state = self._tracker.observe(measured.value if measured.usable else None, values.get("limit_state"), now)
        if state == "failed" and self._resends < LIMIT_RESENDS and self._tracker.asked_w is not None:
            self._resends += 1
            log.warning("%s: limit %.0f W not in force (reads %s), sending it again (%d/%d)", self.resource_id,
                        self._tracker.asked_w, measured.value, self._resends, LIMIT_RESENDS)
            try:
                await self.device.set_limit(self._tracker.asked_w)
                self._tracker.ask(self._tracker.asked_w, now)
                state = "pending"
            except DeviceError as exc:
                log.warning("%s: limit not sent again: %s", self.resource_id, exc)
        elif state == "failed" and _limit.admit((self.resource_id, "limit_failed")) is not None:
            log.warning("%s: the PV limit %.0f W is not in force after %d resends", self.resource_id,
                        self._tracker.asked_w or 0.0, LIMIT_RESENDS)
        return replace(snap, pv_limit_w=measured, limit=state)

    async def set_pv_limit(self, limit_w: float | None, now: datetime) -> float:
        """Limit production to ``limit_w`` W (None: lift it, i.e. the rating); the value sent (clamped
        into what the device takes).  ValueError if this PV takes no limit; driver errors."""
        if not self.limitable or self._tracker is None or self.device.entry.limit is None:
            raise ValueError(f"{self.resource_id}: this PV takes no power limit")
        ceiling = min(self.rated_w or self.device.entry.limit.max_w, self.device.entry.limit.max_w)
        sent = await self.device.set_limit(ceiling if limit_w is None else limit_w)
        self._tracker.ask(float(sent), now)
        self._resends = 0
        return float(sent)

    async def set_switch(self, on: bool) -> None:
        """Switch the load on or off and check the read-back.  ValueError if it is not a switchable
        load; SwitchNotApplied if the device reads another state; driver errors otherwise."""
        if not self.switchable:
            raise ValueError(f"{self.resource_id}: not a switchable load")
        state = await self.device.switch(on)
        if state != on:
            raise SwitchNotApplied(f"asked {'on' if on else 'off'}, reads {'on' if state else 'off'}",
                                   device=self.resource_id)

    async def close(self) -> None:
        await self.device.close()


__all__ = ["LanDeviceRM", "LanReading", "LanSnapshot", "SwitchNotApplied"]
