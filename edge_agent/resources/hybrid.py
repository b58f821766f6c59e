"""Resource Manager of a SunSpec house: a hybrid inverter (PV + battery) with a grid meter, or the
same roles on separate devices (battery inverter, PV inverter, grid meter, EV charger meter).

One coordinator owns the devices' I/O and publishes immutable snapshots
(telemetry and S2-shaped flexibility); the control loop only reads them and
asks for setpoints.  Translation only: no policy lives here.  Which models
and points stand for what (battery power and SoC, PV, the meter, the
124/704 battery commands and 704/123 PV limits, the nameplate) is data:
edge_agent.drivers.sunspec_roles, as a vendor catalogue entry is for
catalogue devices; edge_agent.resources.sunspec_readings turns the models
read into the house's values.

Separate devices (``parts``): each role reads its models from its own
device, the devices are read concurrently, and a device that fails makes
only its own measurements stale: the meter and battery of a house keep
working while its PV inverter is offline.  An EV charger is its meter
(measurement only; its power is part of the house load).  A house without
a PV device has no PV (PV reads 0 W).

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
from collections.abc import Mapping
from datetime import datetime

from edge_agent.drivers.errors import DeviceUnavailable, ModelNotFound
from edge_agent.drivers.sunspec import SunSpecDevice
from edge_agent.drivers.sunspec_roles import (
    PV_LIMIT_COMMANDS,
    RATED_W,
    Command,
    Role,
    offered_command,
)
from edge_agent.resources.capabilities import (
    BATTERY_CONTROL,
    PV_CURTAILMENT,
    Capabilities,
    sunspec_capabilities,
)
from edge_agent.resources.frozen import FreezeDetector, FreezeVerdict, mark_stale, sunspec_progress
from edge_agent.resources.house import (
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
    Refused,
    load_from_balance,
    rating,
)
from edge_agent.resources.readback import ControlReadback
from edge_agent.resources.retry import DeviceRetry
from edge_agent.resources.sunspec_io import Got, OwnedPoints, read_models
from edge_agent.resources.sunspec_readings import (
    HouseReadings,
    SunSpecSigns,
    check_roles,
    house_readings,
    nameplate_models,
    sunspec_nameplate,
    unreadable,
    wanted,
)
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


class HybridInverterRM:
    """Battery (FRBC), PV (PEBC), meter and optional EV charger of one house, over SunSpec.

    ``parts``: one hybrid inverter that plays every role, or role -> device for
    a house of separate devices (one device may play several roles).
    """

    battery_id = "battery"
    pv_id = "pv"
    meter_id = "grid_meter"
    ev_id = "ev_charger"

    def __init__(self, parts: SunSpecDevice | Mapping[Role, SunSpecDevice], clock: Clock,
                 settings: HouseSettings | None = None, signs: SunSpecSigns | None = None) -> None:
        if isinstance(parts, SunSpecDevice):
            parts = {"battery": parts, "pv": parts, "meter": parts}
        if "battery" not in parts or "meter" not in parts:
            raise ValueError(f"parts need a battery and a meter, got {sorted(parts)}")
        self._settings = settings = settings or HouseSettings()
        self._signs = signs or SunSpecSigns()
        self._clock = clock
        self._parts: dict[Role, SunSpecDevice] = dict(parts)
        self._dev = self._parts["battery"]  # the battery's driver (the whole device for a hybrid)
        initial = min(settings.poll_interval_s, settings.reconnect_max_s)
        self._retry = {id(d): DeviceRetry(initial, settings.reconnect_max_s) for d in self._devices()}
        self._found: dict[Role, frozenset[int]] = {}
        self._command: Command | None = None  # how the battery is commanded (known at connect)
        self.pv_rating_w: float | None = None  # the base of WMaxLimPct
        self.nameplate: Nameplate | None = None
        self._measurer = Measurer(settings.stale_after_s)  # readings -> measurements; what is refused
        self.capabilities = Capabilities()  # what the devices can and cannot do (known at connect)
        self.bounds = HouseBounds(max_import_w=settings.max_import_w)  # readings beyond these are implausible
        self._balance = BalanceWatch()
        self._owned = OwnedPoints()  # control points written and not since contradicted
        self._freeze = {id(d): FreezeDetector() for d in self._devices()}

    @property
    def split(self) -> bool:
        """True if the roles are on more than one device."""
        return len({id(d) for d in self._parts.values()}) > 1

    @property
    def _hybrid(self) -> bool:
        """PV and battery are one inverter: its AC power is their sum."""
        return self._parts.get("pv") is self._dev

    def _devices(self) -> list[SunSpecDevice]:
        return list({id(d): d for d in self._parts.values()}.values())

    async def connect(self) -> None:
        """Connect to every device, discover their models and read the nameplate.  Raises
        DeviceConfigurationError if a device cannot serve its role, DeviceUnavailable if one cannot
        be reached."""
        found: dict[int, frozenset[int]] = {}
        for dev in self._devices():
            await dev.connect()
            found[id(dev)] = frozenset(m.model_id for m in await dev.discover())
        self._found = {role: found[id(dev)] for role, dev in self._parts.items()}
        self._command = check_roles(self._found, {role: dev.name for role, dev in self._parts.items()},
                                    self._hybrid, f"{self._dev.host}:{self._dev.port}")
        self.capabilities = sunspec_capabilities(self._found, hybrid=self._hybrid)
        bat = self._found["battery"]
        read = sunspec_nameplate(bat, {m: await self._dev.read_model(m) for m in nameplate_models(bat)},
                                 self._command)
        for refused in read.refused:
            self._refuse(refused)
        if read.not_controllable is not None:
            self.capabilities = self.capabilities.without(BATTERY_CONTROL, read.not_controllable)
        self.nameplate = read.nameplate
        self.pv_rating_w = None
        if self._hybrid:
            self.pv_rating_w = read.rated_w  # not the charge rating: WMaxLimPct is a % of the inverter's rating
        elif "pv" in self._parts:
            self.pv_rating_w = await self._pv_rating()
        if "pv" in self._parts and not self.pv_rating_w and PV_CURTAILMENT in self.capabilities.can:
            self.capabilities = self.capabilities.without(
                PV_CURTAILMENT, "no plausible PV inverter rating (120 WRtg, 702 WMaxRtg) to scale WMaxLimPct")
        nb = self.nameplate
        self.bounds = HouseBounds(max_import_w=self.bounds.max_import_w,
                                  battery_max_w=max(nb.max_charge_w, nb.max_discharge_w),
                                  pv_rating_w=self.pv_rating_w, has_pv="pv" in self._parts)

    def _refuse(self, refused: Refused | None) -> None:
        if refused is not None:
            self._measurer.refused.append(refused)
            log.warning("%s: %s", self._dev.name, refused.detail)  # at start: before any snapshot reports it

    async def _pv_rating(self) -> float | None:
        """A separate PV inverter's rating (120 WRtg, else 702 WMaxRtg): the base of its WMaxLimPct."""
        dev, models = self._parts["pv"], self._found["pv"]
        for p in (c[0] for c in RATED_W.choices if c[0].model in models):
            v, refused = rating(p.label, p.value(await dev.read_model(p.model)))
            self._refuse(refused)
            if v:
                return v
        return None

    def controllable(self, resource_id: str) -> str | None:
        """Why ``resource_id`` cannot take setpoints (None: it can).  A plan for it must be rejected."""
        if resource_id == self.battery_id:
            return self.capabilities.battery_reason
        if resource_id == self.pv_id and "pv" in self._parts:
            return self.capabilities.pv_reason
        if resource_id in (self.meter_id, self.ev_id) and resource_id in {r.resource_id for r in self.resources}:
            return f"{resource_id} is measured only"
        return f"no resource {resource_id!r} in this house"

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
                                reserve_soc_pct=self._settings.reserve_soc_pct)

    # -- reading -------------------------------------------------------------
    async def _read_all(self) -> tuple[Got, ControlReadback]:
        """Every device's models this poll (concurrently), and the owned control points read back."""
        per_dev: dict[int, list[int]] = {}
        for role, models in wanted(self._found).items():
            lst = per_dev.setdefault(id(self._parts[role]), [])
            lst.extend(m for m in models if m not in lst)
        for dev_id, model_id in self._owned.models:  # read back what the agent wrote
            lst = per_dev.setdefault(dev_id, [])
            if model_id not in lst:
                lst.append(model_id)
        devs = {id(d): d for d in self._devices()}
        write_gen = self._owned.generation
        now = self._clock.now()
        results = await asyncio.gather(*(read_models(devs[k], models, self._retry[k], now)
                                         for k, models in per_dev.items()))
        got = dict(zip(per_dev, results, strict=True))
        if not self._owned.quiet_since(write_gen):
            return got, ControlReadback()
        return got, self._owned.read_back(got, self._devices(), self.split)

    async def poll(self) -> HouseSnapshot:
        """Read every device once (concurrently).  A failed read yields STALE (recent) or MISSING
        measurements of that device only, never zeros."""
        assert self.nameplate is not None, "connect() first"
        now = self._clock.now()
        got, readback = await self._read_all()
        by_role = {role: got.get(id(dev), {}) for role, dev in self._parts.items()}
        r = house_readings(self._found, by_role, self._signs, self._hybrid)
        self._measurer.refused += unreadable(self._found, by_role, {role: dev.name for role, dev in self._parts.items()})
        g = self._measurer.checked("grid", r.grid_w, now, self.bounds.grid_range())
        p = self._measurer.checked("pv", r.pv_w, now, self.bounds.pv_range())
        b = self._measurer.checked("battery", r.battery_w, now, self.bounds.battery_range())
        s = self._measurer.checked("soc", r.soc_pct, now, SOC_RANGE, "%")
        frozen = self._frozen(got, r.battery_w, now)
        if frozen:  # the registers stopped updating: not the house any more
            g, p, b, s = (mark_stale(m) if role in frozen else m
                          for role, m in (("meter", g), ("pv", p), ("battery", b), ("battery", s)))
        load = self._load(g, p, b, now, r)
        if self._balance.update(load.validity is Validity.IMPLAUSIBLE) and g.usable and b.usable:
            # not a moment between two reads: one of them is wrong, and which cannot be told
            g, p, b = (Measurement(m.value, Validity.IMPLAUSIBLE, now) if m.usable else m for m in (g, p, b))
        resources = [ResourceTelemetry(self.battery_id, b, s)]
        if "pv" in self._parts:
            resources.append(ResourceTelemetry(self.pv_id, p))
        resources.append(ResourceTelemetry(self.meter_id, g))
        if "ev_charger" in self._parts:
            ev = self._measurer.checked("ev", r.ev_w, now, self.bounds.ev_range())
            resources.append(ResourceTelemetry(self.ev_id, mark_stale(ev) if "ev_charger" in frozen else ev))
        refused = self._measurer.take_refused()
        n = self.nameplate
        return HouseSnapshot(SiteTelemetry(now, g, p, b, s, load, tuple(resources)), self._flexibility(now, p, s),
                             n.max_charge_w, n.max_discharge_w, refused, control=readback,
                             frozen="; ".join(dict.fromkeys(v.detail for v in frozen.values())))

    def _flexibility(self, now: datetime, p: Measurement, s: Measurement) -> Flexibility:
        """What is offered: the battery if its SoC is usable and it is controllable, PV if curtailable."""
        n = self.nameplate
        assert n is not None
        return Flexibility(
            valid_from=now,
            storages=(StorageFlexibility(
                resource_id=self.battery_id, soc_pct=s.value if s.usable and s.value is not None else 0.0,
                soc_min_pct=min(self._settings.feeder_floor_soc_pct, self._settings.reserve_soc_pct),
                soc_max_pct=100.0, reserve_soc_pct=self._settings.reserve_soc_pct,
                capacity_wh=n.capacity_wh or 1.0, max_charge_power_w=n.max_charge_w,
                max_discharge_power_w=n.max_discharge_w),)
            if s.usable and self.capabilities.battery_reason is None else (),
            curtailments=(CurtailmentFlexibility(self.pv_id, p.value if p.usable and p.value is not None else 0.0,
                                                 -(self.pv_rating_w or 0.0)),)
            if "pv" in self._parts and self.capabilities.pv_reason is None else (),
        )

    def _load(self, g: Measurement, p: Measurement, b: Measurement, now: datetime, r: HouseReadings) -> Measurement:
        """Household load from the balance (grid = load + PV + battery); IMPLAUSIBLE (reported) if
        the readings leave it negative.  A hybrid without PV and battery apart (no 802, no 160)
        still gives it: its AC power is their sum."""
        if g.usable and p.usable and b.usable:
            assert g.value is not None and p.value is not None and b.value is not None
            load, refused = load_from_balance(g.value, p.value, b.value)
        elif g.usable and g.value is not None and r.inverter_ac_w is not None:
            load, refused = load_from_balance(g.value, r.inverter_ac_w, 0.0)
        else:
            return Measurement.missing()
        if refused is not None:
            self._measurer.refused.append(refused)
            return Measurement(load, Validity.IMPLAUSIBLE, now)
        return Measurement(load, Validity.VALID, now)

    def _frozen(self, got: Got, battery_w: float | None, now: datetime) -> dict[Role, FreezeVerdict]:
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

    # -- control -------------------------------------------------------------
    async def set_battery_power(self, power_w: float) -> bool:
        """Hold the battery at ``power_w`` (charging > 0) through its command (sunspec_roles.BATTERY_COMMANDS):
        model 124's window, StorCtl_Mod=3 with InWRte = P and OutWRte = -P as % of WChaMax, so the
        device's charge limit and discharge limit meet at P; else 704 WSet in W, clamped to the
        nameplate.  The device reverts to its own mode if this is not refreshed within ``revert_s``.
        False if the driver's write guard deferred part of it (call again)."""
        assert self.nameplate is not None and self._command is not None, "connect() first"
        if self.capabilities.battery_reason is not None:
            raise ModelNotFound(self.capabilities.battery_reason, device=self._dev.name)
        n, command = self.nameplate, self._command
        if command.scale == "pct":
            setpoint = max(-100.0, min(100.0, power_w / n.wchamax_w * 100.0))
        else:
            setpoint = max(-n.max_discharge_w, min(n.max_charge_w, power_w))
        return await self._owned.write(self._dev, command, command.points(setpoint, self._settings.revert_s),
                                       command.owned)

    async def release(self) -> None:
        """Give the battery back to the device's own (self-consumption) mode."""
        self._owned.clear()  # not ours any more: nothing to read back
        if self.capabilities.battery_reason is not None or self._command is None:
            return  # never commanded: nothing to give back
        await self._dev.write_points(self._command.model, self._command.release_points())

    async def set_pv_limit(self, limit_w: float | None) -> None:
        """Cap PV production at ``limit_w`` W (a magnitude >= 0; None = no limit) via model 704, else 123,
        of the PV device (sunspec_roles.PV_LIMIT_COMMANDS).

        Writes WMaxLimPct = limit / rating x 100 (clamped to 0..100 %) with
        its revert time = ``revert_s`` and the enable = 1, so the device lifts
        the limit by itself if the agent stops refreshing it; None writes the
        enable = 0.  Raises ModelNotFound (not supported, do not retry) if
        there is no PV device, it has neither model or no rating, ValueError
        for a negative limit.
        """
        assert self.nameplate is not None, "connect() first"
        if "pv" not in self._parts:
            raise ModelNotFound("no PV device configured: PV curtailment not supported", device=self._dev.name)
        dev = self._parts["pv"]
        if not self._retry[id(dev)].due(self._clock.now()):
            raise DeviceUnavailable("not answering; waiting for its next retry", device=dev.name)
        command = offered_command(PV_LIMIT_COMMANDS, self._found["pv"])
        if command is None:
            raise ModelNotFound("no SunSpec model 704 or 123: PV curtailment not supported", device=dev.name)
        if not self.pv_rating_w:
            raise ModelNotFound("no PV inverter rating (120 WRtg, 702 WMaxRtg): cannot scale WMaxLimPct",
                                device=dev.name)
        if limit_w is None:
            off = command.release_points()
            await self._owned.write(dev, command, off, tuple(off))
            return
        if not limit_w >= 0:
            raise ValueError(f"limit_w must be >= 0 W or None, got {limit_w}")
        pct = max(0.0, min(100.0, limit_w / self.pv_rating_w * 100.0))
        await self._owned.write(dev, command, command.points(pct, self._settings.revert_s), command.owned)


__all__ = ["HybridInverterRM", "SunSpecSigns"]
