"""Resource Manager of a SunSpec hybrid inverter (PV + battery) with a grid meter.

One coordinator owns the device's I/O and publishes immutable snapshots
(telemetry and S2-shaped flexibility); the control loop only reads them and
asks for setpoints.  Translation only: no policy lives here.

Points used (SunSpec model ids): 120 nameplate, 124 storage (SoC and the
battery control window), 203 meter (grid W), 802 battery (W), 160 MPPT
(PV DC W), 103 inverter (AC W, fallback for PV).  A DER (700-series) device
without 124 works too: 702 nameplate, 713 SoC, 701 AC W, battery commanded
through 704 WSet (injection positive).  PV curtailment: 704 WMaxLimPct if
the device has it (as evcc tries it first), else 123.

Sign convention of the snapshot: consumption positive (battery charging > 0,
grid import > 0, PV production < 0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from edge_agent.config import DeviceConfig
from edge_agent.drivers.errors import DeviceRejected, DeviceUnavailable, ModelNotFound
from edge_agent.drivers.sunspec import ModelValues, SunSpecDevice
from edge_agent.resources.s2 import BatteryNameplate
from vpp_common.clock import Clock
from vpp_common.messages import (
    ControlType,
    CurtailmentFlexibility,
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

# Anything outside these is a bad read, not a house: flag it, never use it.
PLAUSIBLE_POWER_W = 1_000_000.0


class DeviceConfigurationError(Exception):
    """The device lacks what this Resource Manager needs (operator must act)."""


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


def _num(values: ModelValues | None, name: str) -> float | None:
    v = values.get(name) if values is not None else None
    return float(v) if isinstance(v, (int, float)) else None


class HybridInverterRM:
    battery_id = "battery"
    pv_id = "pv"
    meter_id = "grid_meter"

    def __init__(self, config: DeviceConfig, clock: Clock, reserve_soc_pct: float = 10.0, revert_s: int = 60,
                 device: SunSpecDevice | None = None) -> None:
        self._cfg = config
        self._clock = clock
        self._reserve = reserve_soc_pct
        self._revert_s = revert_s
        self._dev = device or SunSpecDevice(config.host, config.port, 1 if config.unit_id is None else config.unit_id,
                                            timeout_s=config.timeout_s)
        self._models: set[int] = set()
        self.nameplate: Nameplate | None = None
        self._last: dict[str, Measurement] = {}

    async def connect(self) -> None:
        """Connect, discover the models and read the nameplate.  Raises
        DeviceConfigurationError if the device cannot serve as a hybrid."""
        await self._dev.connect()
        self._models = {m.model_id for m in await self._dev.discover()}
        if 203 not in self._models or not self._models & {124, 704}:
            raise DeviceConfigurationError(
                f"device at {self._cfg.host}:{self._cfg.port} offers SunSpec models {sorted(self._models)}: "
                "203 meter and battery control (124 storage or 704 DER controls) are needed")
        if 124 not in self._models and not self._models & {713, 802}:
            raise DeviceConfigurationError("no state of charge: without model 124 the device needs 713 or 802")
        n = await self._dev.read_model(120) if 120 in self._models else None
        if 124 in self._models:
            wchamax = _num(await self._dev.read_model(124), "WChaMax")
            if not wchamax:
                raise DeviceConfigurationError("model 124 WChaMax is not implemented: cannot scale battery setpoints")
        if n is not None:
            rated, capacity = _num(n, "WRtg"), _num(n, "WHRtg")
            max_charge, max_discharge = _num(n, "MaxChaRte"), _num(n, "MaxDisChaRte")
        else:  # a DER device: 702 capacity, 713 (or 802) energy rating
            c = await self._dev.read_model(702) if 702 in self._models else None
            e = await self._read(713) if 713 in self._models else await self._read(802)
            rated, capacity = _num(c, "WMaxRtg"), _num(e, "WHRtg")
            max_charge, max_discharge = _num(c, "WChaRteMaxRtg"), _num(c, "WDisChaRteMaxRtg")
        if 124 not in self._models:
            wchamax = max_charge
            if not (wchamax and max_discharge):
                raise DeviceConfigurationError("no battery charge/discharge rating (702 WChaRteMaxRtg, "
                                               "WDisChaRteMaxRtg): cannot bound WSet")
        assert wchamax
        self.nameplate = Nameplate(
            rated_power_w=rated or wchamax,
            capacity_wh=capacity or 0.0,
            max_charge_w=max_charge or wchamax,
            max_discharge_w=max_discharge or wchamax,
            wchamax_w=wchamax,
        )

    async def close(self) -> None:
        await self._dev.close()

    @property
    def resources(self) -> tuple[ResourceInfo, ...]:
        n = self.nameplate
        rated = n.rated_power_w if n else 0.0
        return (
            ResourceInfo(self.battery_id, ResourceKind.BATTERY, ControlType.FRBC,
                         max(n.max_charge_w, n.max_discharge_w) if n else 0.0, n.capacity_wh if n else 0.0),
            ResourceInfo(self.pv_id, ResourceKind.PV, ControlType.PEBC, rated, 0.0),
            ResourceInfo(self.meter_id, ResourceKind.GRID_METER, ControlType.NOT_CONTROLLABLE, 0.0, 0.0),
        )

    def battery_nameplate(self) -> BatteryNameplate:
        """The battery as S2 FRBC needs it (see edge_agent.resources.s2.battery_frbc_system_description)."""
        assert self.nameplate is not None, "connect() first"
        n = self.nameplate
        return BatteryNameplate(n.max_charge_w, n.max_discharge_w, n.capacity_wh or 1.0,
                                reserve_soc_pct=self._reserve)

    # -- reading -------------------------------------------------------------
    def _measure(self, name: str, value: float | None, now: datetime, lo: float, hi: float) -> Measurement:
        if value is None:
            last = self._last.get(name)
            if last is not None and last.measured_at is not None and \
                    (now - last.measured_at).total_seconds() <= self._cfg.stale_after_s:
                return Measurement(last.value, Validity.STALE, last.measured_at)
            return Measurement.missing()
        if not lo <= value <= hi:
            return Measurement(value, Validity.IMPLAUSIBLE, now)
        m = Measurement(value, Validity.VALID, now)
        self._last[name] = m
        return m

    async def _read(self, model_id: int) -> ModelValues | None:
        if model_id not in self._models:
            return None
        try:
            return await self._dev.read_model(model_id)
        except (DeviceUnavailable, DeviceRejected) as exc:
            log.warning("reading model %s failed: %s", model_id, exc)
            return None

    async def poll(self) -> HouseSnapshot:
        """Read the device once.  A failed read yields STALE (recent) or MISSING
        measurements, never zeros."""
        assert self.nameplate is not None, "connect() first"
        now = self._clock.now()
        meter, storage, battery, mppt = (await self._read(203), await self._read(124), await self._read(802),
                                         await self._read(160))
        # fallbacks of a DER (700-series) device, read only when the classic model is absent
        inverter = await self._read(103) if 103 in self._models else await self._read(701)
        capacity = await self._read(713) if 124 not in self._models else None
        grid = _num(meter, "W")
        if grid is not None and not self._cfg.meter_import_positive:
            grid = -grid
        soc = _num(storage, "ChaState") if 124 in self._models else _first(_num(capacity, "SoC"), _num(battery, "SoC"))
        bat = _num(battery, "W")
        if bat is not None and self._cfg.battery_discharge_positive:
            bat = -bat  # the device says discharging > 0; ours is charging > 0
        pv = _pv_from_mppt(mppt)
        if pv is None and _num(inverter, "W") is not None and bat is not None:
            pv = -(_num(inverter, "W") or 0.0) - bat  # AC out = PV + discharge
        g = self._measure("grid", grid, now, -PLAUSIBLE_POWER_W, PLAUSIBLE_POWER_W)
        p = self._measure("pv", pv, now, -PLAUSIBLE_POWER_W, 0.0 + 1.0)
        b = self._measure("battery", bat, now, -PLAUSIBLE_POWER_W, PLAUSIBLE_POWER_W)
        s = self._measure("soc", soc, now, 0.0, 100.0)
        if g.usable and p.usable and b.usable:
            assert g.value is not None and p.value is not None and b.value is not None
            load = Measurement(g.value - p.value - b.value, Validity.VALID, now)
        else:
            load = Measurement.missing()
        telemetry = SiteTelemetry(now, g, p, b, s, load, (
            ResourceTelemetry(self.battery_id, b, s),
            ResourceTelemetry(self.pv_id, p),
            ResourceTelemetry(self.meter_id, g),
        ))
        n = self.nameplate
        flex = Flexibility(
            valid_from=now,
            storages=(StorageFlexibility(
                resource_id=self.battery_id, soc_pct=s.value if s.usable and s.value is not None else 0.0,
                soc_min_pct=0.0, soc_max_pct=100.0, reserve_soc_pct=self._reserve,
                capacity_wh=n.capacity_wh or 1.0, max_charge_power_w=n.max_charge_w,
                max_discharge_power_w=n.max_discharge_w),) if s.usable else (),
            curtailments=(CurtailmentFlexibility(self.pv_id, p.value if p.usable and p.value is not None else 0.0,
                                                 -n.rated_power_w),),
        )
        return HouseSnapshot(telemetry, flex, n.max_charge_w, n.max_discharge_w)

    # -- control -------------------------------------------------------------
    async def set_battery_power(self, power_w: float) -> bool:
        """Hold the battery at ``power_w`` (charging > 0) through model 124's
        window: StorCtl_Mod=3 with InWRte = P and OutWRte = -P (as % of WChaMax),
        so the device's charge limit and discharge limit meet at P.  The device
        reverts to its own mode if this is not refreshed within ``revert_s``.
        False if the driver's write guard deferred part of it (call again)."""
        assert self.nameplate is not None, "connect() first"
        if 124 not in self._models:
            return await self._set_wset(power_w)
        base = self.nameplate.wchamax_w
        pct = max(-100.0, min(100.0, power_w / base * 100.0))
        return await self._dev.write_points(124, {
            "InWRte": pct, "OutWRte": -pct, "InOutWRte_RvrtTms": self._revert_s,
            "ChaGriSet": 1 if power_w > 0 else 0, "StorCtl_Mod": 3,
        })

    async def _set_wset(self, power_w: float) -> bool:
        """Model 704: WSet in W, injection positive (so -power_w), clamped to the nameplate, with its
        revert timer written first and the enable last (a value is in place before it takes effect)."""
        assert self.nameplate is not None
        n = self.nameplate
        inject_w = -max(-n.max_discharge_w, min(n.max_charge_w, power_w))
        return await self._dev.write_points(704, {"WSetRvrtTms": self._revert_s, "WSetMod": 1, "WSet": inject_w,
                                                  "WSetEna": 1})

    async def release(self) -> None:
        """Give the battery back to the device's own (self-consumption) mode."""
        if 124 in self._models:
            await self._dev.write_points(124, {"StorCtl_Mod": 0})
        else:
            await self._dev.write_points(704, {"WSetEna": 0})

    async def set_pv_limit(self, limit_w: float | None) -> None:
        """Cap PV production at ``limit_w`` W (a magnitude >= 0; None = no limit) via model 704, else 123.

        Writes WMaxLimPct = limit / rating x 100 (clamped to 0..100 %) with
        its revert time (704 WMaxLimPctRvrtTms, 123 WMaxLimPct_RvrtTms) =
        ``revert_s`` and the enable (704 WMaxLimPctEna, 123 WMaxLim_Ena) = 1,
        so the device lifts the limit by itself if the agent stops refreshing
        it; None writes the enable = 0.  Raises ModelNotFound (not supported,
        do not retry) if the device has neither model, ValueError for a
        negative limit.
        """
        assert self.nameplate is not None, "connect() first"
        if not self._models & {123, 704}:
            raise ModelNotFound("no SunSpec model 704 or 123: PV curtailment not supported", device=self._dev.name)
        der = 704 in self._models  # 704's WMaxLimPct is a % of 702 WMax(Rtg), the rated power read at connect
        if limit_w is None:
            if der:
                await self._dev.write_points(704, {"WMaxLimPctEna": 0})
            else:
                await self._dev.write_points(123, {"WMaxLim_Ena": 0})
            return
        if not limit_w >= 0:
            raise ValueError(f"limit_w must be >= 0 W or None, got {limit_w}")
        pct = max(0.0, min(100.0, limit_w / self.nameplate.rated_power_w * 100.0))
        if der:
            await self._dev.write_points(704, {"WMaxLimPct": pct, "WMaxLimPctRvrtTms": self._revert_s,
                                               "WMaxLimPctEna": 1})
        else:
            await self._dev.write_points(123, {"WMaxLimPct": pct, "WMaxLimPct_RvrtTms": self._revert_s,
                                               "WMaxLim_Ena": 1})


def _first(*values: float | None) -> float | None:
    """The first implemented value (a real 0 counts; None does not)."""
    return next((v for v in values if v is not None), None)


def _pv_from_mppt(values: ModelValues | None) -> float | None:
    """Total PV power from model 160 (DCW per module, production positive) -> production negative."""
    if values is None:
        return None
    total, seen = 0.0, False
    for mod in values.groups.get("module", ()):
        v = mod.get("DCW")
        if isinstance(v, (int, float)):
            total += float(v)
            seen = True
    return -total if seen else None
