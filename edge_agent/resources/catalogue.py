"""Resource Manager for a vendor-catalogue hybrid (battery + PV + meter), same API as HybridInverterRM.

It reads every point of the catalogue entry in one pass (contiguous blocks),
maps the points' roles to the house's measurements (docs/architecture.md signs: power
positive when consuming) and commands the battery through the entry's
control sequences.  A failed read turns measurements STALE (within
``stale_after_s``) and then MISSING, an out-of-range value IMPLAUSIBLE:
never 0 W.  Writes go through an optional :class:`WriteGuard`.
"""

from __future__ import annotations

import logging

from edge_agent.drivers.catalogue_device import CatalogueDevice
from edge_agent.drivers.errors import DeviceRejected, DeviceUnavailable, ModelNotFound
from edge_agent.resources.capabilities import Capabilities, catalogue_capabilities
from edge_agent.resources.frozen import FreezeDetector, mark_stale, soc_progress
from edge_agent.resources.house import (
    DeviceConfigurationError,
    HouseSettings,
    HouseSnapshot,
    Nameplate,
)
from edge_agent.resources.measure import Measurer
from edge_agent.resources.nameplate import BatteryNameplate
from edge_agent.resources.plausibility import (
    SOC_RANGE,
    BalanceWatch,
    HouseBounds,
    load_from_balance,
    rating,
)
from edge_agent.resources.readback import ControlReadback, compare
from edge_agent.resources.retry import DeviceRetry
from vpp_common.clock import Clock
from vpp_common.messages import (
    ControlType,
    Flexibility,
    Measurement,
    ResourceInfo,
    ResourceKind,
    ResourceTelemetry,
    SiteTelemetry,
    StorageFlexibility,
    Validity,
)

log = logging.getLogger(__name__)


class CatalogueHybridRM:
    """Battery (FRBC), PV (PEBC) and meter (measurement only) of one catalogue device.

    ``capacity_wh`` and ``rated_power_w`` come from configuration (vendor
    maps rarely publish them); charge/discharge limits from the entry's
    ``max_charge_w``/``max_discharge_w`` points when it has them, else from
    ``max_charge_w``/``max_discharge_w`` here.
    """

    battery_id = "battery"
    pv_id = "pv"
    meter_id = "grid_meter"

    def __init__(self, device: CatalogueDevice, clock: Clock, settings: HouseSettings | None = None, *,
                 capacity_wh: float = 10_000.0, rated_power_w: float = 10_000.0, max_charge_w: float = 5_000.0,
                 max_discharge_w: float = 5_000.0) -> None:
        entry = device.entry
        if entry.control is None:
            raise DeviceConfigurationError(f"catalogue entry {entry.device.id} has no battery control section")
        settings = settings or HouseSettings()
        self.entry = entry
        self._dev = device
        self._clock = clock
        self._defaults = (capacity_wh, rated_power_w, max_charge_w, max_discharge_w)
        self._reserve = settings.reserve_soc_pct
        self._floor = min(settings.feeder_floor_soc_pct, settings.reserve_soc_pct)
        self._measurer = Measurer(settings.stale_after_s)  # readings -> measurements; what is refused
        self._retry = DeviceRetry(min(settings.poll_interval_s, settings.reconnect_max_s), settings.reconnect_max_s)
        self.nameplate: Nameplate | None = None
        self.bounds = HouseBounds(max_import_w=settings.max_import_w)  # readings beyond these are implausible
        self._balance = BalanceWatch()
        self._owned: dict[str, float] = {}  # control points written and not since contradicted
        self._write_gen = 0  # changes around every write: a poll that overlapped one does not compare
        self._writing = 0  # writes in progress (a sequence of several requests may be half done)
        self._freeze = FreezeDetector()

    @property
    def capabilities(self) -> Capabilities:
        """From the entry's point roles; PV curtailment is in no catalogue entry yet."""
        return catalogue_capabilities(self.entry.device.id, (p.role for p in self.entry.points.values()),
                                      self.entry.control is not None)

    def controllable(self, resource_id: str) -> str | None:
        """Why ``resource_id`` cannot take setpoints (None: it can)."""
        if resource_id == self.battery_id:
            return self.capabilities.battery_reason
        if resource_id == self.pv_id:
            return self.capabilities.pv_reason
        if resource_id == self.meter_id:
            return f"{resource_id} is measured only"
        return f"no resource {resource_id!r} in this house"

    async def connect(self) -> None:
        """Connect and read once for the nameplate.  DeviceUnavailable if unreachable."""
        await self._dev.connect()
        m = self._dev.measurements(await self._dev.read_all())
        capacity, rated, charge, discharge = self._defaults
        read: dict[str, float | None] = {}
        for role in ("max_charge_w", "max_discharge_w"):  # read from the device: a home's, or refused
            read[role], refused = rating(f"{self.entry.device.id} {role}", m.get(role))
            if refused is not None:
                self._measurer.refused.append(refused)
                log.warning("%s: %s", self._dev.name, refused.detail)
        charge = read["max_charge_w"] or charge
        discharge = read["max_discharge_w"] or discharge
        self.nameplate = Nameplate(rated_power_w=rated, capacity_wh=capacity, max_charge_w=charge,
                                   max_discharge_w=discharge, wchamax_w=charge)
        self.bounds = HouseBounds(max_import_w=self.bounds.max_import_w, battery_max_w=max(charge, discharge),
                                  pv_rating_w=rated)

    async def close(self) -> None:
        await self._dev.close()

    @property
    def resources(self) -> tuple[ResourceInfo, ...]:
        n = self.nameplate
        return (
            ResourceInfo(self.battery_id, ResourceKind.BATTERY, ControlType.FRBC,
                         max(n.max_charge_w, n.max_discharge_w) if n else 0.0, n.capacity_wh if n else 0.0),
            # set_pv_limit is not supported: PV is measured, not offered as curtailable
            ResourceInfo(self.pv_id, ResourceKind.PV, ControlType.NOT_CONTROLLABLE, n.rated_power_w if n else 0.0, 0.0),
            ResourceInfo(self.meter_id, ResourceKind.GRID_METER, ControlType.NOT_CONTROLLABLE, 0.0, 0.0),
        )

    @property
    def pv_rating_w(self) -> float | None:
        """The hybrid's rating (configured): the PV peak the forecast assumes."""
        return self.nameplate.rated_power_w if self.nameplate else None

    def battery_nameplate(self) -> BatteryNameplate:
        """For the S2 FRBC description (edge_agent.resources.s2)."""
        assert self.nameplate is not None, "connect() first"
        n = self.nameplate
        return BatteryNameplate(n.max_charge_w, n.max_discharge_w, n.capacity_wh, reserve_soc_pct=self._reserve)

    async def poll(self) -> HouseSnapshot:
        """Read the device once; failures give STALE/MISSING measurements, never zeros."""
        assert self.nameplate is not None, "connect() first"
        now = self._clock.now()
        m: dict[str, float] = {}
        readback = ControlReadback()
        if self._retry.due(now):  # not answering: asked again only after its retry delay
            write_gen = self._write_gen
            try:
                readings = await self._dev.read_all()
                m = self._dev.measurements(readings)
                if write_gen == self._write_gen and not self._writing:
                    readback = self._read_back({n: r.value for n, r in readings.items()})
            except DeviceUnavailable as exc:
                delay = self._retry.failed(now)
                log.warning("%s: read failed (%d in a row; next attempt in %.1f s): %s", self._dev.name,
                            self._retry.failures, delay, exc)
            except DeviceRejected as exc:
                log.warning("%s: read refused: %s", self._dev.name, exc)
            else:
                self._retry.succeeded()
        g = self._measurer.checked("grid", m.get("grid_power_w"), now, self.bounds.grid_range())
        p = self._measurer.checked("pv", m.get("pv_power_w"), now, self.bounds.pv_range())
        b = self._measurer.checked("battery", m.get("battery_power_w"), now, self.bounds.battery_range())
        s = self._measurer.checked("soc", m.get("soc_pct"), now, SOC_RANGE, "%")
        # vendor maps have no energy counters: the SoC must move with the battery power
        frozen = self._freeze.update(now, [soc_progress("soc", m.get("soc_pct"), m.get("battery_power_w"),
                                                        self.nameplate.capacity_wh, self._soc_resolution())])
        if frozen:
            g, p, b, s = mark_stale(g), mark_stale(p), mark_stale(b), mark_stale(s)
        load = Measurement.missing()
        if g.usable and p.usable and b.usable:
            assert g.value is not None and p.value is not None and b.value is not None
            value, refused = load_from_balance(g.value, p.value, b.value)
            if refused is not None:
                self._measurer.refused.append(refused)
            load = Measurement(value, Validity.VALID if refused is None else Validity.IMPLAUSIBLE, now)
        if self._balance.update(load.validity is Validity.IMPLAUSIBLE):
            # not a moment between two reads: one of them is wrong, and which cannot be told
            g, p, b = (Measurement(x.value, Validity.IMPLAUSIBLE, now) for x in (g, p, b))
        telemetry = SiteTelemetry(now, g, p, b, s, load, (
            ResourceTelemetry(self.battery_id, b, s), ResourceTelemetry(self.pv_id, p),
            ResourceTelemetry(self.meter_id, g)))
        n = self.nameplate
        flex = Flexibility(
            valid_from=now,
            storages=(StorageFlexibility(
                resource_id=self.battery_id, soc_pct=s.value if s.value is not None else 0.0,
                soc_min_pct=self._floor, soc_max_pct=100.0, reserve_soc_pct=self._reserve,
                capacity_wh=n.capacity_wh, max_charge_power_w=n.max_charge_w,
                max_discharge_power_w=n.max_discharge_w),) if s.usable else (),
        )
        refused_now = self._measurer.take_refused()
        return HouseSnapshot(telemetry, flex, n.max_charge_w, n.max_discharge_w, refused_now,
                             control=readback, frozen=frozen.detail)

    def _soc_resolution(self) -> float:
        return min((abs(p.scale) for p in self.entry.points.values() if p.role == "soc_pct"), default=1.0)

    def _read_back(self, read: dict[str, float]) -> ControlReadback:
        """The control points written, compared with this read; one read back different is dropped from
        the write guard's memory (the device does not hold it: the next write goes out)."""
        if not self._owned:
            return ControlReadback()
        tolerance = {n: max(0.5, abs(self.entry.points[n].scale) * 0.51) for n in self._owned}
        names, described = compare(self.entry.device.id, self._owned, read, tolerance)
        guard = self._dev.write_guard
        if guard is not None:
            for name in names:
                guard.invalidate((self.entry.unit_of(name), self.entry.points[name].address))
        return ControlReadback(True, described)

    async def set_battery_power(self, power_w: float) -> bool:
        """Hold the battery at ``power_w`` W (charging > 0), clamped to the nameplate limits.
        False if the write guard deferred a step (call again)."""
        assert self.nameplate is not None, "connect() first"
        n = self.nameplate
        power_w = max(-n.max_discharge_w, min(n.max_charge_w, power_w))
        self._write_gen += 1
        self._writing += 1
        done = False
        try:
            done = await self._dev.command_battery(power_w)
            return done
        finally:
            self._write_gen += 1
            self._writing -= 1
            self._owned = self._command_points(power_w) if done else {}

    def _command_points(self, power_w: float) -> dict[str, float]:
        """The points the entry's control sequence for ``power_w`` leaves set (as the driver clamps them)."""
        control = self.entry.control
        assert control is not None
        steps = control.charge if power_w > 0 else control.discharge if power_w < 0 else control.idle
        out: dict[str, float] = {}
        for step in steps:
            v = step.value
            value = power_w if v == "power_w" else abs(power_w) if v == "abs_power_w" else float(v)
            p = self.entry.points[step.point]
            out[step.point] = min(p.max if p.max is not None else value, max(p.min if p.min is not None else value,
                                                                               value))
        return out

    async def release(self) -> None:
        """Give the battery back to the device's own mode."""
        self._owned = {}
        await self._dev.release()

    async def set_pv_limit(self, limit_w: float | None) -> None:
        """Not supported yet for catalogue devices (no curtailment section in the entries)."""
        raise ModelNotFound("PV curtailment is not in this catalogue entry", device=self._dev.name)


__all__ = ["CatalogueHybridRM"]
