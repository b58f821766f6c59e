"""Resource Manager of a SunSpec house: a hybrid inverter (PV + battery) with a grid meter, or the
same roles on separate devices (battery inverter, PV inverter, grid meter, EV charger meter).

One coordinator owns the devices' I/O and publishes immutable snapshots
(telemetry and S2-shaped flexibility); the control loop only reads them and
asks for setpoints.  Translation only: no policy lives here.

Points used (SunSpec model ids): 120 nameplate, 124 storage (SoC and the
battery control window), 203 meter (grid W), 802 battery (W), 160 MPPT
(PV DC W), 103 inverter (AC W, fallback for PV).  A DER (700-series) device
without 124 works too: 702 nameplate, 713 SoC, 701 AC W, battery commanded
through 704 WSet (injection positive).  PV curtailment: 704 WMaxLimPct if
the device has it (as evcc tries it first), else 123.

Separate devices (``parts``): each role reads its models from its own
device, the devices are read concurrently, and a device that fails makes
only its own measurements stale: the meter and battery of a house keep
working while its PV inverter is offline.  The grid meter may be any of
the SunSpec meter models (201-204 integer, 211-214 float); an EV charger is
its meter (measurement only; its power is part of the house load).  A
house without a PV device has no PV (PV reads 0 W).

Sign convention of the snapshot: consumption positive (battery charging > 0,
grid import > 0, PV production < 0).

Readings are judged against the house (``edge_agent.resources.plausibility``:
fuse, nameplate, SoC 0..100 %, the energy balance), nameplates against any
home; what is refused rides on the snapshot (``HouseSnapshot.refused``) for
the agent to log and count.  What the devices can and cannot do
(``edge_agent.resources.capabilities``) decides what is offered: a battery
whose power is not measured is NOT_CONTROLLABLE, never commanded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from edge_agent.config import DeviceConfig
from edge_agent.drivers.errors import DeviceRejected, DeviceUnavailable, ModelNotFound
from edge_agent.drivers.sunspec import SunSpecDevice
from edge_agent.drivers.sunspec_points import ModelValues
from edge_agent.resources.capabilities import (
    BATTERY_CONTROL,
    PV_CURTAILMENT,
    Capabilities,
    sunspec_capabilities,
)
from edge_agent.resources.frozen import FreezeDetector, FreezeVerdict, mark_stale, sunspec_progress
from edge_agent.resources.plausibility import (
    HOME_MAX_CAPACITY_WH,
    SOC_RANGE,
    BalanceWatch,
    HouseBounds,
    Refused,
    implausible_reading,
    load_from_balance,
    rating,
)
from edge_agent.resources.readback import ControlReadback, compare
from edge_agent.resources.retry import DeviceRetry
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

Role = Literal["battery", "pv", "meter", "ev_charger"]
# SunSpec meters, in order of preference: W is total real power in all of them
METER_MODELS = (203, 213, 201, 211, 202, 212, 204, 214)
# AC power of a (PV) inverter, production positive
INVERTER_MODELS = (103, 113, 101, 111, 102, 112, 701)


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
    # readings and nameplate values refused since the last snapshot (edge_agent.resources.plausibility):
    # the agent logs and counts them (edge_agent.refusals)
    refused: tuple[Refused, ...] = ()
    control: ControlReadback = ControlReadback()
    """The control points the agent wrote, read back this poll (edge_agent.resources.readback)."""
    frozen: str = ""
    """Why measurements are marked stale as frozen (edge_agent.resources.frozen); "" if none is."""


def _num(values: ModelValues | None, name: str) -> float | None:
    v = values.get(name) if values is not None else None
    return float(v) if isinstance(v, (int, float)) else None


class HybridInverterRM:
    """Battery (FRBC), PV (PEBC), meter and optional EV charger of one house, over SunSpec.

    ``device``: a hybrid inverter that plays every role (default: built from
    ``config``).  ``parts``: role -> device for a house of separate devices
    (one device may play several roles); ``meter_import_positive`` and
    ``battery_discharge_positive`` override the config's signs per role.
    """

    battery_id = "battery"
    pv_id = "pv"
    meter_id = "grid_meter"
    ev_id = "ev_charger"

    def __init__(self, config: DeviceConfig, clock: Clock, reserve_soc_pct: float = 10.0, revert_s: int = 60,
                 device: SunSpecDevice | None = None, *, parts: Mapping[Role, SunSpecDevice] | None = None,
                 meter_import_positive: Mapping[Role, bool] | None = None,
                 battery_discharge_positive: bool | None = None, max_import_w: float | None = None) -> None:
        self._cfg = config
        self._clock = clock
        self._reserve = reserve_soc_pct
        self._revert_s = revert_s
        if parts is None:
            dev = device or SunSpecDevice(config.host, config.port, 1 if config.unit_id is None else config.unit_id,
                                          timeout_s=config.timeout_s)
            parts = {"battery": dev, "pv": dev, "meter": dev}
        if "battery" not in parts or "meter" not in parts:
            raise ValueError(f"parts need a battery and a meter, got {sorted(parts)}")
        self._parts: dict[Role, SunSpecDevice] = dict(parts)
        self._dev = self._parts["battery"]  # the battery's driver (the whole device for a hybrid)
        self._import_positive = {r: (meter_import_positive or {}).get(r, config.meter_import_positive)
                                 for r in ("meter", "ev_charger")}
        self._discharge_positive = (config.battery_discharge_positive if battery_discharge_positive is None
                                    else battery_discharge_positive)
        initial = min(config.poll_interval_s, config.reconnect_max_s)
        self._retry = {id(d): DeviceRetry(initial, config.reconnect_max_s) for d in self._devices()}
        self._found: dict[Role, frozenset[int]] = {}
        self._models: set[int] = set()  # the battery device's models
        self._meter_model: dict[Role, int] = {}
        self.pv_rating_w: float | None = None  # the base of WMaxLimPct
        self.nameplate: Nameplate | None = None
        self._last: dict[str, Measurement] = {}
        self.capabilities = Capabilities()  # what the devices can and cannot do (known at connect)
        self.bounds = HouseBounds(max_import_w=max_import_w)  # readings beyond these are implausible
        self._refused: list[Refused] = []  # for the next snapshot
        self._balance = BalanceWatch()
        # control points written and not since contradicted: (device, model) -> point -> value
        self._owned: dict[tuple[int, int], dict[str, float]] = {}
        self._write_gen = 0  # changes around every write: a poll that overlapped one does not compare
        self._writing = 0  # writes in progress (a sequence of several requests may be half done)
        self._freeze = {id(d): FreezeDetector() for d in self._devices()}

    @property
    def split(self) -> bool:
        """True if the roles are on more than one device."""
        return len({id(d) for d in self._parts.values()}) > 1

    def _devices(self) -> list[SunSpecDevice]:
        return list({id(d): d for d in self._parts.values()}.values())

    def _where(self, role: Role) -> str:
        dev = self._parts[role]
        return f"the {role.replace('_', ' ')} device {dev.name}" if self.split else f"device {dev.name}"

    async def connect(self) -> None:
        """Connect to every device, discover their models and read the nameplate.  Raises
        DeviceConfigurationError if a device cannot serve its role, DeviceUnavailable if one cannot
        be reached."""
        found: dict[int, frozenset[int]] = {}
        for dev in self._devices():
            await dev.connect()
            found[id(dev)] = frozenset(m.model_id for m in await dev.discover())
        self._found = {role: found[id(dev)] for role, dev in self._parts.items()}
        self._models = set(self._found["battery"])
        for role in ("meter", "ev_charger"):
            if role in self._parts:
                meter = next((m for m in METER_MODELS if m in self._found[role]), None)
                if meter is None:
                    raise DeviceConfigurationError(
                        f"{self._where(role)} offers SunSpec models {sorted(self._found[role])}: a meter model "
                        "(203; or 201-204, 211-214) is needed" if self.split else
                        f"device at {self._cfg.host}:{self._cfg.port} offers SunSpec models "
                        f"{sorted(self._found[role])}: 203 meter and battery control (124 storage or 704 DER "
                        "controls) are needed")
                self._meter_model[role] = meter
        if not self._models & {124, 704}:
            raise DeviceConfigurationError(
                f"{self._where('battery')} offers SunSpec models {sorted(self._models)}: battery control "
                "(124 storage or 704 DER controls) is needed")
        if 124 not in self._models and not self._models & {713, 802}:
            raise DeviceConfigurationError("no state of charge: without model 124 the device needs 713 or 802")
        if "pv" in self._parts and self.split and self._parts["pv"] is not self._dev:
            pv_models = self._found["pv"]
            if not pv_models & {160, *INVERTER_MODELS}:
                raise DeviceConfigurationError(
                    f"{self._where('pv')} offers SunSpec models {sorted(pv_models)}: PV power needs an inverter "
                    "model (101-103, 111-113, 701) or 160 MPPT")
        self.capabilities = sunspec_capabilities(self._found, hybrid=self._parts.get("pv") is self._dev)
        n = await self._dev.read_model(120) if 120 in self._models else None
        if 124 in self._models:
            raw_wchamax = _num(await self._dev.read_model(124), "WChaMax")
            wchamax = self._rating("model 124 WChaMax", raw_wchamax)
            if raw_wchamax and not wchamax:  # a bad register: setpoints cannot be scaled, the battery not driven
                self.capabilities = self.capabilities.without(
                    BATTERY_CONTROL, f"model 124 WChaMax reads {raw_wchamax:g} W, not a home battery")
            elif not wchamax:
                raise DeviceConfigurationError("model 124 WChaMax is not implemented: cannot scale battery setpoints")
        if n is not None:
            rated, capacity = self._rating("model 120 WRtg", _num(n, "WRtg")), \
                self._rating("model 120 WHRtg", _num(n, "WHRtg"), HOME_MAX_CAPACITY_WH, "Wh")
            max_charge = self._rating("model 120 MaxChaRte", _num(n, "MaxChaRte"))
            max_discharge = self._rating("model 120 MaxDisChaRte", _num(n, "MaxDisChaRte"))
        else:  # a DER device: 702 capacity, 713 (or 802) energy rating
            c = await self._dev.read_model(702) if 702 in self._models else None
            e = await self._read(713) if 713 in self._models else await self._read(802)
            rated, capacity = self._rating("model 702 WMaxRtg", _num(c, "WMaxRtg")), \
                self._rating("WHRtg", _num(e, "WHRtg"), HOME_MAX_CAPACITY_WH, "Wh")
            max_charge = self._rating("model 702 WChaRteMaxRtg", _num(c, "WChaRteMaxRtg"))
            max_discharge = self._rating("model 702 WDisChaRteMaxRtg", _num(c, "WDisChaRteMaxRtg"))
        if 124 in self._models and not wchamax:
            wchamax = max_charge or max_discharge or 1.0  # never used: the battery is not controllable
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
        self.pv_rating_w = await self._pv_rating() if "pv" in self._parts else None
        if "pv" in self._parts and self._parts["pv"] is self._dev and rated is None:
            self.pv_rating_w = None  # the charge rating is no PV rating: WMaxLimPct cannot be scaled
        if "pv" in self._parts and not self.pv_rating_w and PV_CURTAILMENT in self.capabilities.can:
            self.capabilities = self.capabilities.without(
                PV_CURTAILMENT, "no plausible PV inverter rating (120 WRtg, 702 WMaxRtg) to scale WMaxLimPct")
        nb = self.nameplate
        self.bounds = HouseBounds(max_import_w=self.bounds.max_import_w,
                                  battery_max_w=max(nb.max_charge_w, nb.max_discharge_w),
                                  pv_rating_w=self.pv_rating_w, has_pv="pv" in self._parts)

    def _rating(self, what: str, value: float | None, limit: float | None = None, unit: str = "W") -> float | None:
        """A nameplate value if plausible for a home; refused (reported, None) if not."""
        v, refused = rating(what, value, unit=unit) if limit is None else rating(what, value, limit, unit)
        if refused is not None:
            self._refused.append(refused)
            log.warning("%s: %s", self._dev.name, refused.detail)  # at start: before any snapshot reports it
        return v

    def controllable(self, resource_id: str) -> str | None:
        """Why ``resource_id`` cannot take setpoints (None: it can).  A plan for it must be rejected."""
        if resource_id == self.battery_id:
            return self.capabilities.battery_reason
        if resource_id == self.pv_id and "pv" in self._parts:
            return self.capabilities.pv_reason
        if resource_id in (self.meter_id, self.ev_id) and resource_id in {r.resource_id for r in self.resources}:
            return f"{resource_id} is measured only"
        return f"no resource {resource_id!r} in this house"

    async def _pv_rating(self) -> float | None:
        """The PV inverter's rating (120 WRtg, else 702 WMaxRtg): the base of its WMaxLimPct."""
        if self._parts["pv"] is self._dev:
            assert self.nameplate is not None
            return self.nameplate.rated_power_w
        dev, models = self._parts["pv"], self._found["pv"]
        for model_id, name in ((120, "WRtg"), (702, "WMaxRtg")):
            if model_id in models:
                v = self._rating(f"model {model_id} {name}", _num(await dev.read_model(model_id), name))
                if v:
                    return v
        return None

    async def close(self) -> None:
        for dev in self._devices():
            await dev.close()

    @property
    def resources(self) -> tuple[ResourceInfo, ...]:
        n = self.nameplate
        # what cannot be delivered is not offered (edge_agent.resources.capabilities)
        frbc = ControlType.FRBC if self.capabilities.battery_reason is None else ControlType.NOT_CONTROLLABLE
        out = [ResourceInfo(self.battery_id, ResourceKind.BATTERY, frbc,
                            max(n.max_charge_w, n.max_discharge_w) if n else 0.0, n.capacity_wh if n else 0.0)]
        if "pv" in self._parts:
            pebc = ControlType.PEBC if self.capabilities.pv_reason is None else ControlType.NOT_CONTROLLABLE
            out.append(ResourceInfo(self.pv_id, ResourceKind.PV, pebc, self.pv_rating_w or 0.0, 0.0))
        out.append(ResourceInfo(self.meter_id, ResourceKind.GRID_METER, ControlType.NOT_CONTROLLABLE, 0.0, 0.0))
        if "ev_charger" in self._parts:
            out.append(ResourceInfo(self.ev_id, ResourceKind.EV_CHARGER, ControlType.NOT_CONTROLLABLE, 0.0, 0.0))
        return tuple(out)

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
        """One model of the battery device (None if absent or the read failed)."""
        if model_id not in self._models:
            return None
        try:
            return await self._dev.read_model(model_id)
        except (DeviceUnavailable, DeviceRejected) as exc:
            log.warning("reading model %s failed: %s", model_id, exc)
            return None

    def _wanted(self) -> dict[Role, tuple[int, ...]]:
        """The models each role reads per poll."""
        bat = self._found["battery"]
        battery = tuple(m for m in (124, 802) if m in bat) + ((713,) if 124 not in bat and 713 in bat else ())
        want: dict[Role, tuple[int, ...]] = {"meter": (self._meter_model["meter"],), "battery": battery}
        if "pv" in self._parts:
            pv = self._found["pv"]
            inverter = next((m for m in INVERTER_MODELS if m in pv), None)
            # DC power of the MPPTs, else AC power (a hybrid's includes the battery's)
            want["pv"] = tuple(m for m in (160, inverter) if m is not None and m in pv)
        if "ev_charger" in self._parts:
            want["ev_charger"] = (self._meter_model["ev_charger"],)
        return want

    async def _read_device(self, dev: SunSpecDevice, models: list[int]) -> dict[int, ModelValues]:
        """Read ``models`` of one device in turn.  A device that stops answering is not asked again
        this poll (its other reads would wait out the same timeout), nor until its retry delay has
        passed (``edge_agent.resources.retry``)."""
        out: dict[int, ModelValues] = {}
        retry, now = self._retry[id(dev)], self._clock.now()
        if not retry.due(now):
            return out
        for model_id in models:
            try:
                out[model_id] = await dev.read_model(model_id)
            except DeviceRejected as exc:
                log.warning("%s: reading model %s refused: %s", dev.name, model_id, exc)
            except DeviceUnavailable as exc:
                delay = retry.failed(now)
                log.warning("%s: reading model %s failed (%d in a row; next attempt in %.1f s): %s",
                            dev.name, model_id, retry.failures, delay, exc)
                return out
        retry.succeeded()
        return out

    async def poll(self) -> HouseSnapshot:
        """Read every device once (concurrently).  A failed read yields STALE (recent) or MISSING
        measurements of that device only, never zeros."""
        assert self.nameplate is not None, "connect() first"
        now = self._clock.now()
        want = self._wanted()
        per_dev: dict[int, list[int]] = {}
        for role, models in want.items():
            lst = per_dev.setdefault(id(self._parts[role]), [])
            lst.extend(m for m in models if m not in lst)
        for dev_id, model_id in self._owned:  # read back what the agent wrote
            lst = per_dev.setdefault(dev_id, [])
            if model_id not in lst:
                lst.append(model_id)
        devs = {id(d): d for d in self._devices()}
        write_gen = self._write_gen
        results = await asyncio.gather(*(self._read_device(devs[k], models) for k, models in per_dev.items()))
        got = dict(zip(per_dev, results, strict=True))
        readback = self._read_back(got) if self._write_gen == write_gen and not self._writing else ControlReadback()

        def values(role: Role, model_id: int) -> ModelValues | None:
            return got[id(self._parts[role])].get(model_id)

        grid = _num(values("meter", self._meter_model["meter"]), "W")
        if grid is not None and not self._import_positive["meter"]:
            grid = -grid
        storage, battery = values("battery", 124), values("battery", 802)
        soc = _num(storage, "ChaState") if 124 in self._models else \
            _first(_num(values("battery", 713), "SoC"), _num(battery, "SoC"))
        bat = _num(battery, "W")
        if bat is not None and self._discharge_positive:
            bat = -bat  # the device says discharging > 0; ours is charging > 0
        pv: float | None = 0.0  # no PV device: no PV
        if "pv" in self._parts:
            pv = _pv_from_mppt(values("pv", 160))
            inverter = next((m for m in want["pv"] if m != 160), None)
            ac = _num(values("pv", inverter), "W") if pv is None and inverter is not None else None
            if ac is not None and self._parts["pv"] is self._dev:  # hybrid: AC out = PV + discharge
                pv = -ac - bat if bat is not None else None
            elif ac is not None:
                pv = -ac
        self._refused += _unreadable(got, want, self._parts, self._meter_model)
        g = self._checked("grid", grid, now, self.bounds.grid_range())
        p = self._checked("pv", pv, now, self.bounds.pv_range())
        b = self._checked("battery", bat, now, self.bounds.battery_range())
        s = self._checked("soc", soc, now, SOC_RANGE, "%")
        frozen = self._frozen(got, bat, now)
        if frozen:  # the registers stopped updating: not the house any more
            g, p, b, s = (mark_stale(m) if role in frozen else m
                          for role, m in (("meter", g), ("pv", p), ("battery", b), ("battery", s)))
        load = self._load(g, p, b, now, values)
        if self._balance.update(load.validity is Validity.IMPLAUSIBLE) and g.usable and b.usable:
            # not a moment between two reads: one of them is wrong, and which cannot be told
            g, p, b = (Measurement(m.value, Validity.IMPLAUSIBLE, now) if m.usable else m for m in (g, p, b))
        resources = [ResourceTelemetry(self.battery_id, b, s)]
        if "pv" in self._parts:
            resources.append(ResourceTelemetry(self.pv_id, p))
        resources.append(ResourceTelemetry(self.meter_id, g))
        if "ev_charger" in self._parts:
            ev = _num(values("ev_charger", self._meter_model["ev_charger"]), "W")
            if ev is not None and not self._import_positive["ev_charger"]:
                ev = -ev
            ev_m = self._checked("ev", ev, now, self.bounds.ev_range())
            resources.append(ResourceTelemetry(self.ev_id, mark_stale(ev_m) if "ev_charger" in frozen else ev_m))
        telemetry = SiteTelemetry(now, g, p, b, s, load, tuple(resources))
        n = self.nameplate
        flex = Flexibility(
            valid_from=now,
            storages=(StorageFlexibility(
                resource_id=self.battery_id, soc_pct=s.value if s.usable and s.value is not None else 0.0,
                soc_min_pct=0.0, soc_max_pct=100.0, reserve_soc_pct=self._reserve,
                capacity_wh=n.capacity_wh or 1.0, max_charge_power_w=n.max_charge_w,
                max_discharge_power_w=n.max_discharge_w),)
            if s.usable and self.capabilities.battery_reason is None else (),
            curtailments=(CurtailmentFlexibility(self.pv_id, p.value if p.usable and p.value is not None else 0.0,
                                                 -(self.pv_rating_w or 0.0)),)
            if "pv" in self._parts and self.capabilities.pv_reason is None else (),
        )
        refused, self._refused = tuple(self._refused), []
        return HouseSnapshot(telemetry, flex, n.max_charge_w, n.max_discharge_w, refused,
                             control=readback,
                             frozen="; ".join(dict.fromkeys(v.detail for v in frozen.values())))

    def _checked(self, name: str, value: float | None, now: datetime, bounds: tuple[float, float],
                 unit: str = "W") -> Measurement:
        """``_measure`` within the house's bounds; an implausible reading is reported (refused)."""
        m = self._measure(name, value, now, *bounds)
        if (refused := implausible_reading(m, name, value, bounds, unit)) is not None:
            self._refused.append(refused)
        return m

    def _load(self, g: Measurement, p: Measurement, b: Measurement, now: datetime,
              values: Callable[[Role, int], ModelValues | None]) -> Measurement:
        """Household load from the balance (grid = load + PV + battery); IMPLAUSIBLE (reported) if
        the readings leave it negative.  A hybrid without PV and battery apart (no 802, no 160)
        still gives it: its AC power is their sum."""
        if g.usable and p.usable and b.usable:
            assert g.value is not None and p.value is not None and b.value is not None
            load, refused = load_from_balance(g.value, p.value, b.value)
        elif g.usable and g.value is not None and self._parts.get("pv") is self._dev:
            inverter = next((m for m in self._wanted().get("pv", ()) if m != 160), None)
            ac = _num(values("pv", inverter), "W") if inverter is not None else None
            if ac is None:
                return Measurement.missing()
            load, refused = load_from_balance(g.value, -ac, 0.0)
        else:
            return Measurement.missing()
        if refused is not None:
            self._refused.append(refused)
            return Measurement(load, Validity.IMPLAUSIBLE, now)
        return Measurement(load, Validity.VALID, now)

    def _read_back(self, got: Mapping[int, Mapping[int, ModelValues]]) -> ControlReadback:
        """Compare the owned control points with this poll's reads.  A point read back different is
        dropped from the write guard's memory (the device does not hold it: the next write goes out)."""
        if not self._owned:
            return ControlReadback()
        devs = {id(d): d for d in self._devices()}
        mismatches: list[str] = []
        for (dev_id, model_id), owned in self._owned.items():
            read = got.get(dev_id, {}).get(model_id)
            if read is None:
                return ControlReadback()  # not all read: nothing to conclude
            names, described = compare(model_id, owned, read)
            if names:
                devs[dev_id].invalidate_written(model_id, names)
                mismatches += [f"{devs[dev_id].name} {d}" if self.split else d for d in described]
        return ControlReadback(True, tuple(mismatches))

    def _frozen(self, got: Mapping[int, Mapping[int, ModelValues]], battery_w: float | None,
                now: datetime) -> dict[Role, FreezeVerdict]:
        """The roles whose device's counters, SoC or timestamps stopped while they must advance."""
        capacity = self.nameplate.capacity_wh if self.nameplate else 0.0
        out: dict[Role, FreezeVerdict] = {}
        for dev in self._devices():
            verdict = self._freeze[id(dev)].update(
                now, sunspec_progress(f"{dev.name} " if self.split else "", got.get(id(dev), {}), battery_w,
                                      capacity))
            if verdict:
                out.update({role: verdict for role, d in self._parts.items() if d is dev})
        return out

    async def _write_owned(self, dev: SunSpecDevice, model_id: int, points: dict[str, float | int],
                           owned: tuple[str, ...]) -> bool:
        """Write ``points``; remember the ``owned`` ones as what the device should hold (read back on
        every poll).  A deferred or failed write leaves them unknown (not compared)."""
        key = (id(dev), model_id)
        self._write_gen += 1
        self._writing += 1
        done = False
        try:
            done = await dev.write_points(model_id, points)
            return done
        finally:
            self._write_gen += 1
            self._writing -= 1
            held = self._owned.setdefault(key, {})
            for name in owned:
                if done:
                    held[name] = float(points[name])
                else:
                    held.pop(name, None)
            if not held:
                del self._owned[key]

    # -- control -------------------------------------------------------------
    async def set_battery_power(self, power_w: float) -> bool:
        """Hold the battery at ``power_w`` (charging > 0) through model 124's
        window: StorCtl_Mod=3 with InWRte = P and OutWRte = -P (as % of WChaMax),
        so the device's charge limit and discharge limit meet at P.  The device
        reverts to its own mode if this is not refreshed within ``revert_s``.
        False if the driver's write guard deferred part of it (call again)."""
        assert self.nameplate is not None, "connect() first"
        if self.capabilities.battery_reason is not None:
            raise ModelNotFound(self.capabilities.battery_reason, device=self._dev.name)
        if 124 not in self._models:
            return await self._set_wset(power_w)
        base = self.nameplate.wchamax_w
        pct = max(-100.0, min(100.0, power_w / base * 100.0))
        return await self._write_owned(self._dev, 124, {
            "InWRte": pct, "OutWRte": -pct, "InOutWRte_RvrtTms": self._revert_s,
            "ChaGriSet": 1 if power_w > 0 else 0, "StorCtl_Mod": 3,
        }, ("StorCtl_Mod", "InWRte", "OutWRte"))

    async def _set_wset(self, power_w: float) -> bool:
        """Model 704: WSet in W, injection positive (so -power_w), clamped to the nameplate, with its
        revert timer written first and the enable last (a value is in place before it takes effect)."""
        assert self.nameplate is not None
        n = self.nameplate
        inject_w = -max(-n.max_discharge_w, min(n.max_charge_w, power_w))
        return await self._write_owned(self._dev, 704, {"WSetRvrtTms": self._revert_s, "WSetMod": 1,
                                                        "WSet": inject_w, "WSetEna": 1}, ("WSetEna", "WSet"))

    async def release(self) -> None:
        """Give the battery back to the device's own (self-consumption) mode."""
        self._owned.clear()  # not ours any more: nothing to read back
        if self.capabilities.battery_reason is not None:
            return  # never commanded: nothing to give back
        if 124 in self._models:
            await self._dev.write_points(124, {"StorCtl_Mod": 0})
        else:
            await self._dev.write_points(704, {"WSetEna": 0})

    async def set_pv_limit(self, limit_w: float | None) -> None:
        """Cap PV production at ``limit_w`` W (a magnitude >= 0; None = no limit) via model 704, else 123,
        of the PV device.

        Writes WMaxLimPct = limit / rating x 100 (clamped to 0..100 %) with
        its revert time (704 WMaxLimPctRvrtTms, 123 WMaxLimPct_RvrtTms) =
        ``revert_s`` and the enable (704 WMaxLimPctEna, 123 WMaxLim_Ena) = 1,
        so the device lifts the limit by itself if the agent stops refreshing
        it; None writes the enable = 0.  Raises ModelNotFound (not supported,
        do not retry) if there is no PV device, it has neither model or no
        rating, ValueError for a negative limit.
        """
        assert self.nameplate is not None, "connect() first"
        if "pv" not in self._parts:
            raise ModelNotFound("no PV device configured: PV curtailment not supported", device=self._dev.name)
        dev, models = self._parts["pv"], self._found["pv"]
        if not self._retry[id(dev)].due(self._clock.now()):
            raise DeviceUnavailable("not answering; waiting for its next retry", device=dev.name)
        if not models & {123, 704}:
            raise ModelNotFound("no SunSpec model 704 or 123: PV curtailment not supported", device=dev.name)
        if not self.pv_rating_w:
            raise ModelNotFound("no PV inverter rating (120 WRtg, 702 WMaxRtg): cannot scale WMaxLimPct",
                                device=dev.name)
        der = 704 in models  # 704's WMaxLimPct is a % of 702 WMax(Rtg), the rated power read at connect
        if limit_w is None:
            if der:
                await self._write_owned(dev, 704, {"WMaxLimPctEna": 0}, ("WMaxLimPctEna",))
            else:
                await self._write_owned(dev, 123, {"WMaxLim_Ena": 0}, ("WMaxLim_Ena",))
            return
        if not limit_w >= 0:
            raise ValueError(f"limit_w must be >= 0 W or None, got {limit_w}")
        pct = max(0.0, min(100.0, limit_w / self.pv_rating_w * 100.0))
        if der:
            await self._write_owned(dev, 704, {"WMaxLimPct": pct, "WMaxLimPctRvrtTms": self._revert_s,
                                               "WMaxLimPctEna": 1}, ("WMaxLimPct", "WMaxLimPctEna"))
        else:
            await self._write_owned(dev, 123, {"WMaxLimPct": pct, "WMaxLimPct_RvrtTms": self._revert_s,
                                               "WMaxLim_Ena": 1}, ("WMaxLimPct", "WMaxLim_Ena"))


def _unreadable(got: Mapping[int, Mapping[int, ModelValues]], want: Mapping[Role, tuple[int, ...]],
                parts: Mapping[Role, SunSpecDevice], meter_model: Mapping[Role, int]) -> list[Refused]:
    """The points a role needs that a model read fine but holds as not implemented (SunSpec's
    markers: 0x8000, 0xFFFF, NaN) or with a scale factor outside -10..10: their measurement is
    missing, and the device is reported, never taken for 0 W."""
    needed: dict[int, tuple[str, ...]] = {124: ("ChaState",), 713: ("SoC",), 802: ("W",),
                                          **{m: ("W",) for m in meter_model.values()}}
    out: list[Refused] = []
    seen: set[tuple[int, int]] = set()
    for role, models in want.items():
        dev = parts[role]
        for model_id in models:
            v = got[id(dev)].get(model_id)
            if v is None or (id(dev), model_id) in seen:
                continue  # not read (the read failure is logged where it happens), or seen for another role
            seen.add((id(dev), model_id))
            names = needed.get(model_id, ("W",) if model_id in INVERTER_MODELS else ())
            bad = [b for b in v.bad_scale if b.split(" ")[0] in names]  # "W (W_SF=-20)"
            if bad:
                out.append(Refused("device", "scale_factor", f"{dev.name} model {model_id}: "
                                   f"{', '.join(bad)}: scale factor outside -10..10, read as missing"))
            gone = [n for n in names if v.get(n) is None and not any(b.split(" ")[0] == n for b in bad)]
            if gone:
                out.append(Refused("device", "not_implemented", f"{dev.name} model {model_id}: "
                                   f"{', '.join(gone)} not implemented (SunSpec marker), read as missing"))
    return out


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
