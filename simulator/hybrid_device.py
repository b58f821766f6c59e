"""A SunSpec hybrid inverter (PV + home battery + grid meter) served over Modbus TCP.

The register image (:mod:`simulator.sunspec_image`) is laid out from the
model definitions pysunspec2 ships; the values come from
:class:`simulator.physics.HousePhysics`, stepped with the injected clock
*lazily*: every request first advances the physics to ``clock.now()`` and
refreshes the measured registers, so no background task runs and a
:class:`~vpp_common.clock.ManualClock` fully controls time.

Models and the signs they carry (SunSpec's, not docs/architecture.md's, because this is
the device side of the wire):

* 1 common: Mn, Md, Opt, Vr, SN, DA (optionally with L = 65, as some vendors ship it).
* 103 three-phase inverter: ``W`` AC power *production positive*, ``WH``
  lifetime AC energy produced, ``DCW``, ``St``.
* 120 nameplate: DERTyp 82 (PV + storage), WRtg, WHRtg, MaxChaRte, MaxDisChaRte.
* 123 immediate controls: PV curtailment, ``WMaxLim_Ena`` = 1 caps PV
  production at ``WMaxLimPct`` % of WRtg; with ``WMaxLimPct_RvrtTms`` > 0
  the enable falls back to 0 when no model-123 write arrives for that many
  clock seconds.  WMaxLimPct, its revert time and enable are writable.
* 124 storage controls: WChaMax, StorCtl_Mod, MinRsvPct, ChaState (SoC %),
  ChaSt, OutWRte, InWRte, InOutWRte_RvrtTms, ChaGriSet (writable, see below).
* 160 MPPT with ``mppt_modules`` modules: per-module ``DCW`` production positive.
* 203 meter: ``W`` import positive by default (``meter_sign`` flips it).
* 802 battery: ``SoC`` and ``W``.  The definition pysunspec2 ships gives no
  sign for 802 ``W`` ("Total power flowing to/from the battery bank", int16,
  a DC measurement); the simulator reports it *discharge positive* (the
  generator convention of the SunSpec DER models, and how evcc's
  sunspec-battery-control template reads ``802:W`` unchanged as battery
  power).  ``battery_802_sign="charge_positive"`` flips it.
* DER models (``model_order=DER_MODELS`` or any mix, see SimulatorConfig):
  701 AC measurements (``W`` injection positive, as 103), 702 capacity
  (``WMaxRtg`` = the inverter rating, charge/discharge ratings), 713 storage
  capacity (``SoC``, ``WHAvail``), 704 DER controls.  704 ``WSet`` (W,
  injection positive, ``WSetMod`` = 1; or ``WSetPct`` of WMaxRtg with
  ``WSetMod`` = 0) with ``WSetEna`` = 1 holds the *battery* at -WSet
  (simplification: the setpoint is applied to the storage part of the
  hybrid, as a storage-only DER would) and wins over model 124; 704
  ``WMaxLimPctEna`` = 1 caps PV at ``WMaxLimPct`` % of WMaxRtg (with 123 as
  well: the lower cap).  ``WSetRvrtTms`` / ``WMaxLimPctRvrtTms`` > 0 disable
  the control when no write to its points arrives for that many clock
  seconds.

Writes are accepted only on the storage control points of model 124, the
curtailment points of 123, the WSet and WMaxLimPct points of 704 and on
802 ``SoCRsvMin``/``CtrlHb``; anything else is refused with
ILLEGAL_ADDRESS, an out-of-range value with ILLEGAL_VALUE, and the refused
write changes nothing.  The command window follows
:func:`simulator.physics.window_from_storage_controls` (evcc / Fronius
reading of model 124); ChaGriSet = 0 limits charging to the PV surplus.
Revert timer: with ``InOutWRte_RvrtTms`` > 0, StorCtl_Mod falls back to 0
(self-consumption) when no model-124 write arrives for that many *clock*
seconds; the physics switches at the exact deadline.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.server.base import ModbusBaseServer
from pymodbus.simulator import DataType, SimData, SimDevice

from simulator.physics import (
    SELF_CONSUMPTION,
    BatteryCommand,
    HousePhysics,
    PhysicsConfig,
    PhysicsSnapshot,
    window_from_storage_controls,
)
from simulator.sunspec_image import (
    DEFAULT_BASE_ADDRESS,
    ModelSpec,
    PointLocation,
    SunSpecImage,
    Value,
    decode_raw,
    raw_range,
    scale,
)
from vpp_common.clock import Clock, utc

log = logging.getLogger(__name__)

MeterSign = Literal["import_positive", "export_positive"]
Battery802Sign = Literal["discharge_positive", "charge_positive"]

# Function codes served: read holding (3), read input (4, same block as many
# devices do), write single (6), write multiple (16).  Others are refused.
_READ_FCS = frozenset({3, 4})
_WRITE_FCS = frozenset({6, 16})

_CHA_ST_OFF, _CHA_ST_EMPTY, _CHA_ST_DISCHARGING, _CHA_ST_CHARGING, _CHA_ST_FULL, _CHA_ST_HOLDING = 1, 2, 3, 4, 5, 6
_ST_SLEEPING, _ST_MPPT, _ST_STANDBY = 2, 4, 8
_DER_TYPE_PV_STORAGE = 82
_BATTERY_TYPE_LITHIUM_ION = 4
_BATTERY_STATE_CONNECTED = 3
_MODELS_AFTER_COMMON = (103, 120, 123, 124, 160, 203, 802)
DER_MODELS = (701, 702, 713, 704, 203, 160, 802)
"""A SunSpec DER (IEEE 1547) image: 701 AC measurements, 702 capacity, 713 storage capacity, 704 DER
controls instead of 103/120/123/124.  The battery is then commanded through 704 WSet, PV curtailed
through 704 WMaxLimPct."""
SUPPORTED_MODELS = frozenset(_MODELS_AFTER_COMMON + DER_MODELS)
_WSET_MOD_W_MAX_PCT, _WSET_MOD_WATTS = 0, 1


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulated device is: the house physics plus device identity and register choices.

    ``energy_counter_start_wh`` is added to every energy counter because a
    SunSpec accumulator reading 0 means "not implemented"; a device with some
    history never shows that.  ``power_sf`` forces the scale factor of all
    power points (None: the smallest SF >= 0 that fits the configured maxima
    into int16).
    """

    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    manufacturer: str = "VPP-Sim"
    model_name: str = "Hybrid"
    options: str = "sim"
    version: str = "1.0.0"
    serial_number: str = "SIM-0001"
    inverter_rating_w: float = 10_000.0
    mppt_modules: int = 2
    meter_sign: MeterSign = "import_positive"
    battery_802_sign: Battery802Sign = "discharge_positive"
    model1_length: int | None = None
    model_order: tuple[int, ...] | None = None
    """The models after model 1, in this order (real devices differ, and a client must walk the chain
    rather than assume offsets): any of 103, 120, 123, 124, 160, 203, 802, 701, 702, 704, 713, each at
    most once, with the meter 203, battery control (124 or 704) and a SoC (124, 713 or 802).  None =
    103, 120, 123, 124, 160, 203, 802; :data:`DER_MODELS` = the DER (700-series) device."""
    grid_charging_allowed: bool = True
    energy_counter_start_wh: float = 100_000.0
    power_sf: int | None = None
    grid_voltage_v: float = 230.0
    battery_voltage_v: float = 400.0
    pv_string_voltage_v: float = 380.0

    def __post_init__(self) -> None:
        if self.mppt_modules < 1:
            raise ValueError(f"SimulatorConfig.mppt_modules: need >= 1, got {self.mppt_modules}")
        if self.meter_sign not in ("import_positive", "export_positive"):
            raise ValueError(f"SimulatorConfig.meter_sign: unknown {self.meter_sign!r}")
        if self.battery_802_sign not in ("discharge_positive", "charge_positive"):
            raise ValueError(f"SimulatorConfig.battery_802_sign: unknown {self.battery_802_sign!r}")
        if self.model_order is not None:
            order = set(self.model_order)
            if len(order) != len(self.model_order) or not order <= SUPPORTED_MODELS or 203 not in order \
                    or not order & {124, 704} or not order & {124, 713, 802}:
                raise ValueError(f"SimulatorConfig.model_order: need distinct models of {sorted(SUPPORTED_MODELS)} "
                                 f"with 203, 124 or 704, and 124, 713 or 802; got {self.model_order}")
        if self.inverter_rating_w <= 0:
            raise ValueError(f"SimulatorConfig.inverter_rating_w: need > 0, got {self.inverter_rating_w}")
        if self.energy_counter_start_wh < 1:
            raise ValueError("SimulatorConfig.energy_counter_start_wh: need >= 1 (acc 0 = not implemented)")


@dataclass(frozen=True)
class Faults:
    """Misbehaviour to inject, replaced as a whole at runtime (``sim.faults = Faults(...)``).

    * ``timeout``: requests get no answer while set (the client times out).
    * ``exception_code``: every request is answered with this Modbus exception.
    * ``implausible``: reads show impossible measurements (SoC 250 %, meter
      and inverter power at the int16 limits).
    * ``slow_s``: every answer is delayed by this many *real* seconds (a slow
      network or gateway, not simulated time).
    * ``disconnect``: the device drops every open TCP connection and refuses
      new ones while set (a rebooting gateway, a pulled cable); when cleared
      it listens again on the same port, so a client must reconnect.
    * ``frozen``: the measurement registers stop updating (the values of the
      last refresh are served again, energy counters, timestamps and
      heartbeats stand still) while the physics carries on; writes still act.
    * ``reboot_every_s``: the device reboots every this many clock seconds
      (first after one period): its control registers fall back to their
      defaults (see :meth:`FaultInjection.reboot`), unreachable for
      ``reboot_down_s`` *real* seconds first.  One reboot now: ``sim.reboot()``.
    * ``revert_every_s``: every this many clock seconds the device's revert
      timers expire as if the refresh never came (:meth:`FaultInjection.expire_revert`).
    * ``other_master_every_s``: another Modbus master writes its own control
      values every this many clock seconds (:meth:`FaultInjection.other_master_write`).
    * ``scale_factors``: scale factor registers changed at run time, e.g.
      ``(("W_SF", 1),)``: every model's point of that name takes the value and
      the points it scales are re-encoded (same engineering value, new raw;
      saturated if it no longer fits); cleared: back to the device's own.
      Values outside SunSpec's -10..10 (e.g. -20) are allowed: the agent must refuse them.

    The periodic kinds and scale factors are implemented by the SunSpec
    simulators; a simulator without them raises NotImplementedError.
    """

    timeout: bool = False
    exception_code: ExcCodes | int | None = None
    implausible: bool = False
    slow_s: float = 0.0
    disconnect: bool = False
    frozen: bool = False
    reboot_every_s: float | None = None
    reboot_down_s: float = 0.0
    revert_every_s: float | None = None
    other_master_every_s: float | None = None
    scale_factors: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        # checked here, once, for every simulator that takes Faults
        if self.slow_s < 0 or math.isnan(self.slow_s):
            raise ValueError(f"Faults.slow_s must be >= 0, got {self.slow_s}")
        if not self.reboot_down_s >= 0:
            raise ValueError(f"Faults.reboot_down_s must be >= 0, got {self.reboot_down_s}")
        for name in ("reboot_every_s", "revert_every_s", "other_master_every_s"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValueError(f"Faults.{name} must be > 0 seconds or None, got {v}")
        for name, sf in self.scale_factors:
            # SunSpec allows -10..10; a device may still show anything an int16 holds (and an agent
            # must refuse it), so any value but the not-implemented marker can be injected
            if not name.endswith("_SF") or not isinstance(sf, int) or not -0x7FFF <= sf <= 0x7FFF:
                raise ValueError(f"Faults.scale_factors: need (NAME_SF, an int16), got ({name!r}, {sf!r})")
        if self.exception_code is not None:
            ExcCodes(int(self.exception_code))  # ValueError for codes Modbus does not have


class DroppableServer:
    """A pymodbus TCP server that a ``disconnect`` fault takes down and brings back on the same port.

    :meth:`drop` closes the listener and every open connection at once (the
    clients see the connection drop, new connects are refused);
    :meth:`restore` listens again in a background task that :meth:`stop`
    awaits, so nothing outlives the simulator.  ``make`` builds a fresh
    server for an address: a closed pymodbus server cannot listen again.
    """

    def __init__(self, make: Callable[[tuple[str, int]], ModbusTcpServer], host: str, port: int) -> None:
        self._make = make
        self.host = host
        self.port = port
        self.down = False
        self._server: ModbusTcpServer | None = None
        self._relisten: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._server = await self._listen()

    async def _listen(self) -> ModbusTcpServer:
        server = self._make((self.host, self.port))
        await server.serve_forever(background=True)
        sockets = getattr(server.transport, "sockets", None)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])  # port 0 -> the bound one, kept for restore()
        return server

    def drop(self) -> None:
        """Close the listener and all connections now (idempotent)."""
        if self.down:
            return
        self.down = True
        server, self._server = self._server, None
        if server is not None:
            _close_server(server)

    def restore(self) -> None:
        """Listen again on the same port (in the background; idempotent)."""
        if not self.down:
            return
        self.down = False

        async def relisten() -> None:
            self._server = await self._listen()

        self._relisten = asyncio.get_running_loop().create_task(relisten(), name=f"sim-relisten-{self.port}")

    async def wait_listening(self) -> None:
        """Return once a :meth:`restore` has bound the port again (at once if it never went down)."""
        if self._relisten is not None:
            await asyncio.shield(self._relisten)

    async def stop(self) -> None:
        task, self._relisten = self._relisten, None
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)  # short: one bind; then close what it opened
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]  # untyped in pymodbus
            _close_server(server)


class FaultInjection:
    """The injected faults of one served device (mixed into every simulator).

    ``faults`` is replaced as a whole; a ``disconnect`` takes ``_server`` down or
    brings it back at once.  ``_apply_faults`` runs at the start of each request:
    it delays it (``slow_s``), holds it unanswered while ``timeout`` is set (until
    the fault clears or the device stops), or returns the exception to answer with.
    """

    _server: DroppableServer | None

    def _init_faults(self) -> None:
        self._faults = Faults()
        self._faults_changed = asyncio.Event()
        self._fault_schedule: dict[str, datetime] = {}

    async def _serve(self, devices: SimDevice | list[SimDevice], host: str, port: int) -> int:
        """Listen for ``devices`` on ``host:port`` (0: a free port) behind a droppable server, down
        at once if a ``disconnect`` fault is already set; the bound port."""
        server = DroppableServer(lambda address: ModbusTcpServer(devices, address=address), host, port)
        await server.start()
        self._server = server
        if self._faults.disconnect:
            server.drop()
        return server.port

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        previous, self._faults = self._faults, faults
        apply_disconnect(self._server, faults)
        self._fault_schedule = {}  # periodic kinds start over from the next request
        if faults.scale_factors != previous.scale_factors:
            self._apply_scale_factors(faults.scale_factors)
        self._signal_faults_changed()

    # -- device events (one-off; periodic through Faults.*_every_s) -----------------
    def reboot(self, down_s: float = 0.0) -> None:
        """Reboot now: control registers back to their defaults (no external control, no PV limit),
        device-side timers cleared; unreachable for ``down_s`` real seconds first."""
        raise NotImplementedError(f"{type(self).__name__} does not simulate a reboot")

    def expire_revert(self) -> None:
        """The revert timers expire now, as if the refresh never came: the device takes control back."""
        raise NotImplementedError(f"{type(self).__name__} does not simulate revert-timer expiry")

    def other_master_write(self) -> None:
        """Another Modbus master writes its own control values now."""
        raise NotImplementedError(f"{type(self).__name__} does not simulate another master")

    def _apply_scale_factors(self, scale_factors: tuple[tuple[str, int], ...]) -> None:
        if scale_factors:
            raise NotImplementedError(f"{type(self).__name__} has no scale factors")

    def _down_for(self, down_s: float) -> None:
        """Unreachable for ``down_s`` real seconds (a reboot), then listening again."""
        server = self._server
        if server is None or down_s <= 0 or server.down:
            return
        server.drop()

        def back() -> None:
            if self._server is server and not self._faults.disconnect:
                server.restore()

        asyncio.get_running_loop().call_later(down_s, back)

    def _run_periodic_faults(self, now: datetime) -> None:
        """Fire the periodic fault events due by ``now`` (clock time), first one period after they were set."""
        f = self._faults
        for kind, every, fire in (("reboot", f.reboot_every_s, lambda: self.reboot(f.reboot_down_s)),
                                  ("revert", f.revert_every_s, self.expire_revert),
                                  ("other_master", f.other_master_every_s, self.other_master_write)):
            if every is None:
                continue
            due = self._fault_schedule.setdefault(kind, now + timedelta(seconds=every))
            if now >= due:
                fire()
                while due <= now:
                    due += timedelta(seconds=every)
                self._fault_schedule[kind] = due

    def _signal_faults_changed(self) -> None:
        self._faults_changed.set()
        self._faults_changed = asyncio.Event()

    async def _apply_faults(self) -> ExcCodes | None:
        faults = self._faults
        if faults.slow_s > 0:
            await asyncio.sleep(faults.slow_s)
        while self._faults.timeout and self._server is not None:
            # Hold the request unanswered until the fault is cleared or the
            # simulator stops (stop() signals the change or cancels this task).
            await self._faults_changed.wait()
        code = self._faults.exception_code
        return ExcCodes(int(code)) if code is not None else None


def apply_disconnect(server: DroppableServer | None, faults: Faults) -> None:
    """Take the server down or bring it back as ``faults.disconnect`` says (nothing before start)."""
    if server is not None:
        if faults.disconnect:
            server.drop()
        else:
            server.restore()


def _close_server(server: ModbusTcpServer) -> None:
    server.close()  # listener and every open connection (no-op if already closed)
    if ModbusBaseServer.active_server is server:
        # pymodbus keeps the last server in a class attribute; do not pin ours.
        ModbusBaseServer.active_server = None


@dataclass(frozen=True)
class RegisterWrite:
    """A write the device accepted: raw registers from ``address`` on.

    ``monotonic_s`` is ``time.monotonic()`` when it was accepted (for latency
    measurements), ``at`` the simulator clock's time.
    """

    address: int
    values: tuple[int, ...]
    monotonic_s: float
    at: datetime

    def covers(self, address: int) -> bool:
        """True if this write set the register at ``address``."""
        return self.address <= address < self.address + len(self.values)

    def value_at(self, address: int) -> int:
        """The raw value written to ``address`` (KeyError if not covered)."""
        if not self.covers(address):
            raise KeyError(address)
        return self.values[address - self.address]


WritePredicate = Callable[[RegisterWrite], bool]

# Writable points and their validation: (min, max) in engineering units or
# None for "any implemented value".  Everything else is read-only.
_WRITABLE: dict[tuple[int, str], tuple[float, float] | None] = {
    (124, "WChaMax"): None,  # checked against the nameplate below
    (124, "WChaGra"): None,
    (124, "WDisChaGra"): None,
    (124, "StorCtl_Mod"): (0, 3),
    (124, "MinRsvPct"): (0.0, 100.0),
    (124, "OutWRte"): (-100.0, 100.0),
    (124, "InWRte"): (-100.0, 100.0),
    (124, "InOutWRte_WinTms"): None,
    (124, "InOutWRte_RvrtTms"): None,
    (124, "InOutWRte_RmpTms"): None,
    (124, "ChaGriSet"): (0, 1),
    (123, "WMaxLimPct"): (0.0, 100.0),
    (123, "WMaxLimPct_RvrtTms"): None,
    (123, "WMaxLim_Ena"): (0, 1),
    (802, "SoCRsvMin"): (0.0, 100.0),
    (802, "CtrlHb"): None,
    (704, "WMaxLimPctEna"): (0, 1),
    (704, "WMaxLimPct"): (0.0, 100.0),
    (704, "WMaxLimPctRvrtTms"): None,
    (704, "WSetEna"): (0, 1),
    (704, "WSetMod"): (0, 1),
    (704, "WSet"): None,  # checked against the battery limits below
    (704, "WSetPct"): (-100.0, 100.0),
    (704, "WSetRvrtTms"): None,
}
_WSET_POINTS = frozenset({"WSetEna", "WSetMod", "WSet", "WSetPct", "WSetRvrtTms"})
_WMAXLIM_704_POINTS = frozenset({"WMaxLimPctEna", "WMaxLimPct", "WMaxLimPctRvrtTms"})


def _fit_sf(max_abs: float, max_raw: int) -> int:
    """Smallest SF >= 0 with max_abs / 10^SF <= max_raw."""
    sf = 0
    while max_abs / 10**sf > max_raw:
        sf += 1
    return sf


class SunSpecHybridSimulator(FaultInjection):
    """A SunSpec hybrid inverter with battery and meter on one Modbus TCP unit.

    ``port=0`` binds a free port; after :meth:`start` the bound port is in
    :attr:`port`.  Use ``async with`` or call :meth:`stop` to release the
    socket and every task.
    """

    def __init__(self, config: SimulatorConfig | None, clock: Clock, host: str = "127.0.0.1",
                 port: int = 0, unit_id: int = 1, base_address: int = DEFAULT_BASE_ADDRESS,
                 start: datetime | None = None) -> None:
        """``start``: when the physics begins (default: ``clock.now()``); requests before it
        see the state at ``start`` and no time passes for the house until then."""
        self.config = config if config is not None else SimulatorConfig()
        self.clock = clock
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.base_address = base_address
        self.writes: list[RegisterWrite] = []
        self.reverts: list[datetime] = []
        """Clock times at which the revert timer set StorCtl_Mod back to 0."""
        self._init_faults()
        self._server: DroppableServer | None = None
        self._inflight: set[asyncio.Task[object]] = set()
        self._waiters: list[tuple[WritePredicate, asyncio.Future[RegisterWrite]]] = []
        self._start_at = utc(start) if start is not None else clock.now()
        self._last_control_write_at: datetime | None = None
        self._last_curtail_write_at: datetime | None = None
        self.curtail_reverts: list[datetime] = []
        """Clock times at which the model 123 revert timer set WMaxLim_Ena back to 0."""
        self.reboots: list[datetime] = []
        self.foreign_writes: list[datetime] = []
        """Clock times of the writes of another master (the ``other_master`` fault)."""
        self._own_sf: dict[tuple[int, str], Value] = {}
        self._sf_warned: tuple[tuple[str, int], ...] = ()
        self._last_wset_write_at: datetime | None = None
        self._last_der_curtail_write_at: datetime | None = None
        self._physics = HousePhysics(self.config.physics, self._start_at)
        self._models = frozenset(self.config.model_order or _MODELS_AFTER_COMMON)
        specs: dict[int, int | ModelSpec] = {m: m for m in SUPPORTED_MODELS}
        specs[160] = ModelSpec(160, repeat={"module": self.config.mppt_modules})
        self._image = SunSpecImage(
            [ModelSpec(1, length=self.config.model1_length),
             *(specs[m] for m in (self.config.model_order or _MODELS_AFTER_COMMON))],
            base_address=base_address,
        )
        self._power_sf = self.config.power_sf if self.config.power_sf is not None else self._auto_power_sf()
        self._init_static_points()
        self._init_der_points()
        self._physics.set_command(self._command_from_image(), self._start_at)
        self._refresh_measurements(self._physics.snapshot)

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve in the background (returns once listening)."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        device = SimDevice(
            id=self.unit_id,
            simdata=[SimData(self.base_address, values=self._image.registers, datatype=DataType.REGISTERS)],
            action=self._action,
        )
        self.port = await self._serve(device, self.host, self.port)
        log.info("SunSpec hybrid simulator on %s:%d unit %d base %d",
                 self.host, self.port, self.unit_id, self.base_address)

    async def stop(self) -> None:
        """Stop serving: close the listener and connections, end in-flight requests."""
        server, self._server = self._server, None
        if server is None:
            return
        self._signal_faults_changed()  # wake requests held by a timeout fault
        await server.stop()
        current = asyncio.current_task()
        pending = [t for t in self._inflight if t is not current and not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._inflight.clear()
        await asyncio.sleep(0)  # let the closed transports run their callbacks

    async def __aenter__(self) -> SunSpecHybridSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- inspection and control for tests ------------------------------------

    @property
    def image(self) -> SunSpecImage:
        """The live register image (read it; writes belong to Modbus clients)."""
        return self._image

    @property
    def physics(self) -> HousePhysics:
        return self._physics

    def address_of(self, model_id: int, name: str, index: int | None = None) -> int:
        """Absolute register address of a point (index: 0-based repeating group instance)."""
        return self._image.point(model_id, name, index).address

    def snapshot(self) -> PhysicsSnapshot:
        """Advance to ``clock.now()`` (as a request would) and return the physics state."""
        self._advance(self.clock.now())
        return self._physics.snapshot

    async def wait_listening(self) -> None:
        """After clearing a ``disconnect`` fault: return once the port accepts connections again."""
        if self._server is not None:
            await self._server.wait_listening()

    async def wait_for_write(self, predicate: WritePredicate, timeout_s: float,
                             *, since_index: int | None = None) -> RegisterWrite:
        """Wait for an accepted write matching ``predicate`` (no polling).

        Only writes accepted after the call count, unless ``since_index`` is
        given: then ``writes[since_index:]`` are checked first.  Raises
        TimeoutError after ``timeout_s`` real seconds.
        """
        if since_index is not None:
            for w in self.writes[since_index:]:
                if predicate(w):
                    return w
        fut: asyncio.Future[RegisterWrite] = asyncio.get_running_loop().create_future()
        entry = (predicate, fut)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                return await fut
        finally:
            self._waiters.remove(entry)

    # -- serving the house through other images (simulator.split_house) --------

    def advance(self, now: datetime) -> datetime:
        """Step the house to ``now`` (revert timers included) as a request would; the time stepped to."""
        return self._advance(now)

    def accept_write(self, address: int, values: list[int], now: datetime) -> ExcCodes | None:
        """Validate and apply a write to this image's ``address`` as if a client sent it (all or
        nothing); the Modbus exception for a refused write."""
        return self._accept_write(address, values, now)

    # -- the Modbus side -----------------------------------------------------

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        """pymodbus calls this before serving a request; ``registers`` is the served block."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            # pymodbus reads the registers back after a write (same function
            # code, no values) to build the response: that is not a new request.
            read_back = function_code in _WRITE_FCS and set_values is None
            if not read_back:
                refused = await self._apply_faults()
                if refused is not None:
                    return refused
            if function_code not in _READ_FCS | _WRITE_FCS:
                return ExcCodes.ILLEGAL_FUNCTION
            now = self._advance(self.clock.now())
            if function_code in _WRITE_FCS and set_values is not None:
                refused = self._accept_write(address, [int(v) for v in set_values], now)
                if refused is not None:
                    return refused
            # Serve the refreshed image: the block starts at the image base.
            image = self._image.registers
            offset = self._image.base_address - start_address
            registers[offset:offset + len(image)] = image
            return None
        finally:
            if task is not None:
                self._inflight.discard(task)

    def _accept_write(self, address: int, values: list[int], now: datetime) -> ExcCodes | None:
        """Validate a write against the writable points; apply it all or nothing."""
        end = address + len(values)
        touched: list[PointLocation] = []
        for a in range(address, end):
            loc = self._image.point_at(a)
            if loc is None or (loc.model_id, loc.name) not in _WRITABLE or loc.group is not None:
                return ExcCodes.ILLEGAL_ADDRESS
            if loc.address < address or loc.address + loc.size > end:
                return ExcCodes.ILLEGAL_ADDRESS  # a multi-register point written in part
            if not touched or touched[-1] is not loc:
                touched.append(loc)
        for loc in touched:
            regs = values[loc.address - address: loc.address - address + loc.size]
            if not self._valid_write(loc, regs):
                return ExcCodes.ILLEGAL_VALUE
        self._image.write(address, values)
        self._after_control_write({(loc.model_id, loc.name) for loc in touched}, now)
        write = RegisterWrite(address, tuple(values), time.monotonic(), now)
        self.writes.append(write)
        self._notify(write)
        return None

    def _after_control_write(self, names: set[tuple[int, str]], now: datetime) -> None:
        """What a write to control points does: keep the reserves alike, restart the revert timers of the
        models written, apply the new command and PV limit."""
        # One reserve, two registers: keep 124 MinRsvPct and 802 SoCRsvMin alike.
        if (802, "SoCRsvMin") in names and self._has(124):
            self._image.set(124, "MinRsvPct", self._image.get(802, "SoCRsvMin"))
        elif (124, "MinRsvPct") in names and self._has(802):
            self._image.set(802, "SoCRsvMin", self._image.get(124, "MinRsvPct"))
        if any(model_id == 124 for model_id, _ in names):
            self._last_control_write_at = now
        if any(model_id == 704 and name in _WSET_POINTS for model_id, name in names):
            self._last_wset_write_at = now
        if any(model_id == 123 for model_id, _ in names):
            self._last_curtail_write_at = now
        if any(model_id == 704 and name in _WMAXLIM_704_POINTS for model_id, name in names):
            self._last_der_curtail_write_at = now
        if any(model_id == 123 or (model_id == 704 and name in _WMAXLIM_704_POINTS) for model_id, name in names):
            self._physics.set_pv_limit(self._pv_limit_from_image(), now)
        self._physics.set_command(self._command_from_image(), now)
        self._refresh_measurements(self._physics.snapshot)

    def _valid_write(self, loc: PointLocation, regs: list[int]) -> bool:
        raw = decode_raw(loc.type, regs)
        if raw is None or not isinstance(raw, (int, float)):
            return False  # writing "not implemented" is not a command
        sf = self._image.scale_factor_of(loc) if loc.sf is not None else 0
        value = scale(raw, sf) if sf is not None else float(raw)
        if (loc.model_id, loc.name) == (124, "WChaMax"):
            return 0 < value <= self.config.physics.battery_max_charge_w
        if (loc.model_id, loc.name) == (704, "WSet"):  # injection (discharge) positive
            phy = self.config.physics
            return -phy.battery_max_charge_w <= value <= phy.battery_max_discharge_w
        bounds = _WRITABLE[(loc.model_id, loc.name)]
        return bounds is None or bounds[0] <= value <= bounds[1]

    def _notify(self, write: RegisterWrite) -> None:
        for predicate, fut in list(self._waiters):
            if fut.done():
                continue
            try:
                matched = predicate(write)
            except Exception as exc:
                fut.set_exception(exc)
                continue
            if matched:
                fut.set_result(write)

    # -- fault events (simulator.hybrid_device.Faults) -------------------------

    def _event_time(self) -> datetime:
        return max(utc(self.clock.now()), self._physics.snapshot.at)

    def reboot(self, down_s: float = 0.0) -> None:
        """Reboot now: 124 StorCtl_Mod = 0 with full rates and no revert time, 123 WMaxLim_Ena = 0
        (WMaxLimPct 100 %), 704 WSetEna = WMaxLimPctEna = 0 (WSet 0): the device runs its own
        self-consumption without a PV limit; timers cleared, nothing else (scale factors, reserve) changes."""
        self._down_for(down_s)
        now = self._event_time()
        img = self._image
        if self._has(124):
            img.set_raw(124, "StorCtl_Mod", 0)
            img.set(124, "InWRte", 100.0)
            img.set(124, "OutWRte", 100.0)
            img.set_raw(124, "InOutWRte_RvrtTms", 0)
            img.set_raw(124, "ChaGriSet", 1 if self.config.grid_charging_allowed else 0)
        if self._has(123):
            img.set(123, "WMaxLimPct", 100.0)
            img.set_raw(123, "WMaxLimPct_RvrtTms", 0)
            img.set_raw(123, "WMaxLim_Ena", 0)
        if self._has(704):
            for name in ("WMaxLimPctEna", "WSetEna"):
                img.set_raw(704, name, 0)
            img.set(704, "WMaxLimPct", 100.0)
            img.set(704, "WSet", 0)
            img.set_raw(704, "WMaxLimPctRvrtTms", 0)
            img.set_raw(704, "WSetRvrtTms", 0)
        self._last_control_write_at = self._last_curtail_write_at = None
        self._last_wset_write_at = self._last_der_curtail_write_at = None
        self._physics.set_pv_limit(self._pv_limit_from_image(), now)
        self._physics.set_command(self._command_from_image(), now)
        self._refresh_measurements(self._physics.snapshot)
        self.reboots.append(now)
        log.info("reboot: control registers back to their defaults")

    def expire_revert(self) -> None:
        """The revert timers expire now (as if the refresh never came): StorCtl_Mod = 0, the enables
        (123 WMaxLim_Ena, 704 WSetEna, WMaxLimPctEna) = 0; the other control values stay."""
        now = self._event_time()
        img = self._image
        if self._has(124):
            img.set_raw(124, "StorCtl_Mod", 0)
        if self._has(123):
            img.set_raw(123, "WMaxLim_Ena", 0)
        if self._has(704):
            img.set_raw(704, "WSetEna", 0)
            img.set_raw(704, "WMaxLimPctEna", 0)
        self._last_control_write_at = self._last_curtail_write_at = None
        self._last_wset_write_at = self._last_der_curtail_write_at = None
        self._physics.set_pv_limit(self._pv_limit_from_image(), now)
        self._physics.set_command(self._command_from_image(), now)
        self._refresh_measurements(self._physics.snapshot)
        self.reverts.append(now)
        self.curtail_reverts.append(now)
        log.info("revert fault: the device took control back")

    def other_master_write(self) -> None:
        """Another master writes now: the battery discharging at half its rating (124 StorCtl_Mod = 3,
        InWRte = -50 %, OutWRte = 50 %, no revert time; 704 WSet = half the discharge rating) and no PV
        limit (WMaxLimPct = 100 %, enabled).  Recorded in :attr:`foreign_writes`, not :attr:`writes`."""
        now = self._event_time()
        img = self._image
        names: set[tuple[int, str]] = set()
        points: list[tuple[int, str, float]] = []
        if self._has(124):
            points += [(124, "StorCtl_Mod", 3), (124, "InWRte", -50.0), (124, "OutWRte", 50.0),
                       (124, "InOutWRte_RvrtTms", 0)]
        if self._has(123):
            points += [(123, "WMaxLimPct", 100.0), (123, "WMaxLimPct_RvrtTms", 0), (123, "WMaxLim_Ena", 1)]
        if self._has(704):
            points += [(704, "WSetMod", _WSET_MOD_WATTS),
                       (704, "WSet", self.config.physics.battery_max_discharge_w / 2),
                       (704, "WSetRvrtTms", 0), (704, "WSetEna", 1), (704, "WMaxLimPct", 100.0),
                       (704, "WMaxLimPctRvrtTms", 0), (704, "WMaxLimPctEna", 1)]
        for model_id, name, value in points:
            loc = img.point(model_id, name)
            if loc.sf is None:
                img.set_raw(model_id, name, int(value))
            else:
                img.set(model_id, name, value)
            names.add((model_id, name))
        self._after_control_write(names, now)
        self.foreign_writes.append(now)
        log.info("another master wrote its control values")

    def _apply_scale_factors(self, scale_factors: tuple[tuple[str, int], ...]) -> None:
        """Set each named scale factor (every model that has it; cleared: the device's own) and re-encode
        the points it scales: same engineering value, new raw (saturated if it does not fit)."""
        wanted = dict(scale_factors)
        img = self._image
        for model_id in sorted(self._models):
            for sf_loc in img.points(model_id):
                if sf_loc.type != "sunssf" or sf_loc.group is not None:
                    continue
                name = sf_loc.name
                own = self._own_sf.setdefault((model_id, name), img.get_raw(model_id, name))
                target = wanted.get(name, own)
                if img.get_raw(model_id, name) == target:
                    continue
                scaled = [(loc, img.get(model_id, loc.name, loc.indices or None, group=loc.group))
                          for loc in img.points(model_id) if loc.sf == name]
                if isinstance(target, int):  # written raw: the image builder keeps to -10..10, a device may not
                    img.write(sf_loc.address, [target & 0xFFFF])
                else:
                    img.set_raw(model_id, name, target)
                for loc, value in scaled:
                    if isinstance(value, (int, float)):
                        self._set_saturated(loc, float(value))
                log.info("scale factor %d %s: %s -> %s", model_id, name, own, target)

    def _set_saturated(self, loc: PointLocation, value: float) -> None:
        try:
            self._image.set(loc.model_id, loc.name, value, loc.indices or None, group=loc.group)
        except ValueError:
            lo, hi = raw_range(loc.type)
            sf = self._image.scale_factor_of(loc) or 0
            raw = max(lo, min(hi, round(value / 10.0**sf)))
            self._image.set_raw(loc.model_id, loc.name, raw, loc.indices or None, group=loc.group)

    # -- physics <-> registers -----------------------------------------------

    def _advance(self, now: datetime) -> datetime:
        """Step the physics to ``now``, firing the revert timers at their exact deadlines."""
        now = max(now, self._physics.snapshot.at)  # a wall clock may step back; physics may not
        self._run_periodic_faults(now)
        self._revert_704(now)
        if self._last_control_write_at is not None:
            revert_s = self._image.get_raw(124, "InOutWRte_RvrtTms")
            mode = self._image.get_raw(124, "StorCtl_Mod")
            if isinstance(revert_s, int) and revert_s > 0 and mode:
                deadline = max(self._last_control_write_at + timedelta(seconds=revert_s),
                               self._physics.snapshot.at)
                if deadline <= now:
                    self._image.set_raw(124, "StorCtl_Mod", 0)
                    self._physics.set_command(self._command_from_image(), deadline)
                    self._last_control_write_at = None
                    self.reverts.append(deadline)
                    log.info("revert timer (%d s) expired: StorCtl_Mod -> 0", revert_s)
        if self._last_curtail_write_at is not None:
            revert_s = self._image.get_raw(123, "WMaxLimPct_RvrtTms")
            if isinstance(revert_s, int) and revert_s > 0 and self._image.get_raw(123, "WMaxLim_Ena") == 1:
                deadline = max(self._last_curtail_write_at + timedelta(seconds=revert_s), self._physics.snapshot.at)
                if deadline <= now:
                    self._image.set_raw(123, "WMaxLim_Ena", 0)
                    self._physics.set_pv_limit(None, deadline)
                    self._last_curtail_write_at = None
                    self.curtail_reverts.append(deadline)
                    log.info("revert timer (%d s) expired: WMaxLim_Ena -> 0", revert_s)
        self._physics.step(now)
        self._refresh_measurements(self._physics.snapshot)
        return now

    def _revert_704(self, now: datetime) -> None:
        """Model 704 revert timers: WSetEna / WMaxLimPctEna fall back to 0 (disabled) when no write to
        their points arrives within WSetRvrtTms / WMaxLimPctRvrtTms clock seconds (0 = never).
        (The *EnaRvrt/*Rvrt "value after revert" points are not modelled: the device reverts to its
        own control.)"""
        if not self._has(704):
            return
        for attr, timer, enable in (("_last_wset_write_at", "WSetRvrtTms", "WSetEna"),
                                    ("_last_der_curtail_write_at", "WMaxLimPctRvrtTms", "WMaxLimPctEna")):
            since = getattr(self, attr)
            revert_s = self._image.get_raw(704, timer)
            if since is None or not isinstance(revert_s, int) or revert_s <= 0 \
                    or self._image.get_raw(704, enable) != 1:
                continue
            deadline = max(since + timedelta(seconds=revert_s), self._physics.snapshot.at)
            if deadline <= now:
                self._image.set_raw(704, enable, 0)
                setattr(self, attr, None)
                if enable == "WSetEna":
                    self._physics.set_command(self._command_from_image(), deadline)
                    self.reverts.append(deadline)
                else:
                    self._physics.set_pv_limit(self._pv_limit_from_image(), deadline)
                    self.curtail_reverts.append(deadline)
                log.info("revert timer (%d s) expired: 704 %s -> 0", revert_s, enable)

    def _has(self, model_id: int) -> bool:
        return model_id in self._models

    def _pv_limit_from_image(self) -> float | None:
        """PV cap in W, or None: model 123 with WMaxLim_Ena = 1 caps PV at WMaxLimPct % of WRtg, model
        704 with WMaxLimPctEna = 1 at WMaxLimPct % of WMaxRtg (the inverter rating); both: the lower."""
        limits = []
        for model_id, enable in ((123, "WMaxLim_Ena"), (704, "WMaxLimPctEna")):
            if self._has(model_id) and self._image.get_raw(model_id, enable) == 1:
                pct = self._image.get(model_id, "WMaxLimPct")
                if isinstance(pct, (int, float)):
                    limits.append(float(pct) / 100.0 * self.config.inverter_rating_w)
        return min(limits) if limits else None

    def _command_from_image(self) -> BatteryCommand:
        """Model 704 WSet when enabled (it wins), else model 124's window, else self-consumption."""
        img = self._image
        reserve_raw = img.get(802, "SoCRsvMin") if self._has(802) else None
        reserve = float(reserve_raw) if isinstance(reserve_raw, (int, float)) else self.config.physics.min_soc_pct
        if self._has(704) and img.get_raw(704, "WSetEna") == 1:
            if img.get_raw(704, "WSetMod") == _WSET_MOD_WATTS:
                inject = img.get(704, "WSet")
            else:
                pct = img.get(704, "WSetPct")
                inject = float(pct) / 100.0 * self.config.inverter_rating_w if isinstance(pct, (int, float)) else None
            if isinstance(inject, (int, float)):
                p = -float(inject)  # 704: injection (discharge) positive; the physics: charging positive
                return BatteryCommand(lower_w=p, upper_w=p, grid_charging_allowed=True, reserve_pct=reserve)
        if not self._has(124):
            return replace(SELF_CONSUMPTION, reserve_pct=reserve)
        img = self._image
        mode = img.get_raw(124, "StorCtl_Mod")
        in_rate = img.get(124, "InWRte")
        out_rate = img.get(124, "OutWRte")
        w_cha_max = img.get(124, "WChaMax")
        rsv = img.get(124, "MinRsvPct")
        lower, upper = window_from_storage_controls(
            storctl_mod=mode if isinstance(mode, int) else 0,
            in_w_rte_pct=float(in_rate) if isinstance(in_rate, (int, float)) else None,
            out_w_rte_pct=float(out_rate) if isinstance(out_rate, (int, float)) else None,
            w_cha_max_w=float(w_cha_max) if isinstance(w_cha_max, (int, float))
            else self.config.physics.battery_max_charge_w,
            max_discharge_w=self.config.physics.battery_max_discharge_w,
        )
        return BatteryCommand(
            lower_w=lower,
            upper_w=upper,
            grid_charging_allowed=img.get_raw(124, "ChaGriSet") == 1,
            reserve_pct=float(rsv) if isinstance(rsv, (int, float)) else 0.0,
        )

    def _auto_power_sf(self) -> int:
        p = self.config.physics
        bound = max(
            p.pv_peak_w + p.battery_max_discharge_w,
            p.load_max_w + p.battery_max_charge_w,
            self.config.inverter_rating_w,
        )
        return _fit_sf(bound, 0x7FFF)

    def _init_static_points(self) -> None:
        """Identity, nameplate, scale factors and the initial control settings."""
        cfg = self.config
        phy = cfg.physics
        img = self._image
        psf = self._power_sf
        # Model 1
        img.set_raw(1, "Mn", cfg.manufacturer)
        img.set_raw(1, "Md", cfg.model_name)
        img.set_raw(1, "Opt", cfg.options or None)
        img.set_raw(1, "Vr", cfg.version)
        img.set_raw(1, "SN", cfg.serial_number)
        img.set_raw(1, "DA", self.unit_id)
        if self._has(103):
            # Model 103: scale factors, then fixed measurements.
            for name, sf in (("A_SF", -2), ("V_SF", -1), ("W_SF", psf), ("Hz_SF", -2), ("WH_SF", 0),
                             ("DCW_SF", psf), ("Tmp_SF", -1)):
                img.set_raw(103, name, sf)
            for name in ("PhVphA", "PhVphB", "PhVphC"):
                img.set(103, name, cfg.grid_voltage_v)
            for name in ("PPVphAB", "PPVphBC", "PPVphCA"):
                img.set(103, name, round(cfg.grid_voltage_v * math.sqrt(3), 1))
            img.set(103, "Hz", 50.0)
            img.set(103, "TmpCab", 35.0)
            img.set_raw(103, "Evt1", 0)
            img.set_raw(103, "Evt2", 0)
        if self._has(123):
            # Model 123: PV curtailment (WMaxLimPct in 0.1 %), not enabled.
            img.set_raw(123, "WMaxLimPct_SF", -1)
            img.set(123, "WMaxLimPct", 100.0)
            img.set_raw(123, "WMaxLimPct_RvrtTms", 0)
            img.set_raw(123, "WMaxLim_Ena", 0)
        if self._has(120):
            # Model 120: nameplate.
            rating = cfg.inverter_rating_w
            for name, sf in (("WRtg_SF", _fit_sf(rating, 0xFFFE)), ("VARtg_SF", _fit_sf(rating, 0xFFFE)),
                             ("VArRtg_SF", _fit_sf(rating, 0x7FFF)), ("ARtg_SF", -1), ("PFRtg_SF", -2),
                             ("WHRtg_SF", _fit_sf(phy.battery_capacity_wh, 0xFFFE)),
                             ("MaxChaRte_SF", _fit_sf(phy.battery_max_charge_w, 0xFFFE)),
                             ("MaxDisChaRte_SF", _fit_sf(phy.battery_max_discharge_w, 0xFFFE))):
                img.set_raw(120, name, sf)
            img.set_raw(120, "DERTyp", _DER_TYPE_PV_STORAGE)
            img.set(120, "WRtg", rating)
            img.set(120, "VARtg", rating)
            for name, sign in (("VArRtgQ1", 1), ("VArRtgQ2", 1), ("VArRtgQ3", -1), ("VArRtgQ4", -1)):
                img.set(120, name, sign * rating / 2)
            img.set(120, "ARtg", round(rating / 3 / cfg.grid_voltage_v, 1))
            for name, pf in (("PFRtgQ1", 0.8), ("PFRtgQ2", -0.8), ("PFRtgQ3", 0.8), ("PFRtgQ4", -0.8)):
                img.set(120, name, pf)
            img.set(120, "WHRtg", phy.battery_capacity_wh)
            img.set(120, "MaxChaRte", phy.battery_max_charge_w)
            img.set(120, "MaxDisChaRte", phy.battery_max_discharge_w)
        if self._has(124):
            # Model 124: scale factors and initial (self-consumption) controls.
            for name, sf in (("WChaMax_SF", _fit_sf(phy.battery_max_charge_w, 0xFFFE)), ("WChaDisChaGra_SF", 0),
                             ("MinRsvPct_SF", -1), ("ChaState_SF", -1), ("InBatV_SF", -1), ("InOutWRte_SF", -2)):
                img.set_raw(124, name, sf)
            img.set(124, "WChaMax", phy.battery_max_charge_w)
            img.set(124, "WChaGra", 100)
            img.set(124, "WDisChaGra", 100)
            img.set_raw(124, "StorCtl_Mod", 0)
            img.set(124, "MinRsvPct", phy.min_soc_pct)
            img.set(124, "InBatV", cfg.battery_voltage_v)
            img.set(124, "OutWRte", 100.0)
            img.set(124, "InWRte", 100.0)
            img.set_raw(124, "InOutWRte_WinTms", 0)
            img.set_raw(124, "InOutWRte_RvrtTms", 0)
            img.set_raw(124, "InOutWRte_RmpTms", 0)
            img.set_raw(124, "ChaGriSet", 1 if cfg.grid_charging_allowed else 0)
        if self._has(160):
            # Model 160: MPPT.
            for name, sf in (("DCA_SF", -2), ("DCV_SF", -1), ("DCW_SF", psf), ("DCWH_SF", 0)):
                img.set_raw(160, name, sf)
            img.set_raw(160, "Evt", 0)
            for i in range(cfg.mppt_modules):
                img.set_raw(160, "ID", i + 1, i)
                img.set_raw(160, "IDStr", f"PV{i + 1}", i)
                img.set_raw(160, "DCEvt", 0, i)
        if self._has(203):
            # Model 203: meter.
            for name, sf in (("A_SF", -2), ("V_SF", -1), ("Hz_SF", -2), ("W_SF", psf), ("TotWh_SF", 0)):
                img.set_raw(203, name, sf)
            for name in ("PhV", "PhVphA", "PhVphB", "PhVphC"):
                img.set(203, name, cfg.grid_voltage_v)
            for name in ("PPV", "PhVphAB", "PhVphBC", "PhVphCA"):
                img.set(203, name, round(cfg.grid_voltage_v * math.sqrt(3), 1))
            img.set(203, "Hz", 50.0)
            img.set_raw(203, "Evt", 0)
        if self._has(802):
            # Model 802: battery.
            for name, sf in (("AHRtg_SF", 0), ("WHRtg_SF", _fit_sf(phy.battery_capacity_wh, 0xFFFE)),
                             ("WChaDisChaMax_SF", _fit_sf(max(phy.battery_max_charge_w,
                                                              phy.battery_max_discharge_w), 0xFFFE)),
                             ("SoC_SF", -1), ("V_SF", -1), ("CellV_SF", -3), ("A_SF", -2), ("AMax_SF", -1),
                             ("W_SF", psf)):
                img.set_raw(802, name, sf)
            img.set(802, "AHRtg", round(phy.battery_capacity_wh / cfg.battery_voltage_v))
            img.set(802, "WHRtg", phy.battery_capacity_wh)
            img.set(802, "WChaRteMax", phy.battery_max_charge_w)
            img.set(802, "WDisChaRteMax", phy.battery_max_discharge_w)
            img.set(802, "SoCMax", phy.max_soc_pct)
            img.set(802, "SoCMin", phy.min_soc_pct)
            img.set(802, "SoCRsvMin", phy.min_soc_pct)
            img.set_raw(802, "LocRemCtl", 0)  # REMOTE: accepts external control
            img.set_raw(802, "CtrlHb", 0)
            img.set_raw(802, "AlmRst", 0)
            img.set_raw(802, "Typ", _BATTERY_TYPE_LITHIUM_ION)
            img.set_raw(802, "State", _BATTERY_STATE_CONNECTED)
            for name in ("Evt1", "Evt2", "EvtVnd1", "EvtVnd2"):
                img.set_raw(802, name, 0)
            img.set(802, "V", cfg.battery_voltage_v)
            img.set_raw(802, "SetOp", 1)  # CONNECT
            img.set_raw(802, "SetInvState", 3)  # INVERTER_STARTED

    def _init_der_points(self) -> None:
        """Models 701, 702, 704 and 713 (those in the image): scale factors, ratings, controls disabled."""
        cfg = self.config
        phy = cfg.physics
        img = self._image
        psf = self._power_sf
        if self._has(701):
            for name, sf in (("A_SF", -2), ("V_SF", -1), ("Hz_SF", -2), ("W_SF", psf), ("PF_SF", -2),
                             ("VA_SF", psf), ("Var_SF", psf), ("TotWh_SF", 0), ("TotVarh_SF", 0), ("Tmp_SF", -1)):
                img.set_raw(701, name, sf)
            img.set_raw(701, "ACType", 3)  # 3-phase
            img.set_raw(701, "InvSt", 0)
            img.set_raw(701, "ConnSt", 1)  # connected
            img.set_raw(701, "Alrm", 0)
            img.set(701, "LLV", round(cfg.grid_voltage_v * math.sqrt(3), 1))
            img.set(701, "LNV", cfg.grid_voltage_v)
            img.set(701, "Hz", 50.0)
            img.set(701, "TmpCab", 35.0)
            img.set(701, "TotWhAbs", cfg.energy_counter_start_wh)
            for phase in ("L1", "L2", "L3"):
                img.set(701, f"V{phase}", cfg.grid_voltage_v)
        if self._has(702):
            rating = cfg.inverter_rating_w
            biggest = max(rating, phy.battery_max_charge_w, phy.battery_max_discharge_w)
            for name, sf in (("W_SF", _fit_sf(biggest, 0xFFFE)), ("VA_SF", _fit_sf(rating, 0xFFFE)),
                             ("V_SF", -1), ("A_SF", -1), ("PF_SF", -2)):
                img.set_raw(702, name, sf)
            for name, value in (("WMaxRtg", rating), ("WMax", rating), ("VAMaxRtg", rating), ("VAMax", rating),
                                ("WChaRteMaxRtg", phy.battery_max_charge_w),
                                ("WChaRteMax", phy.battery_max_charge_w),
                                ("WDisChaRteMaxRtg", phy.battery_max_discharge_w),
                                ("WDisChaRteMax", phy.battery_max_discharge_w),
                                ("VNomRtg", cfg.grid_voltage_v), ("VNom", cfg.grid_voltage_v),
                                ("AMaxRtg", round(rating / 3 / cfg.grid_voltage_v, 1))):
                img.set(702, name, value)
        if self._has(713):
            img.set_raw(713, "WH_SF", _fit_sf(phy.battery_capacity_wh, 0xFFFE))
            img.set_raw(713, "Pct_SF", -1)
            img.set(713, "WHRtg", phy.battery_capacity_wh)
            img.set(713, "SoH", 100.0)
            img.set_raw(713, "Sta", 1)
        if self._has(704):
            # WSet in W (+ = injection, i.e. discharging); WMaxLimPct in 0.1 %; both disabled.
            for name, sf in (("WMaxLimPct_SF", -1), ("WSet_SF", 0), ("WSetPct_SF", -1), ("PF_SF", -2),
                             ("VarSet_SF", 0), ("VarSetPct_SF", -1)):
                img.set_raw(704, name, sf)
            for name in ("WMaxLimPctEna", "WSetEna", "WSetEnaRvrt", "WMaxLimPctEnaRvrt", "PFWInjEna",
                         "PFWAbsEna", "VarSetEna"):
                img.set_raw(704, name, 0)
            img.set(704, "WMaxLimPct", 100.0)
            img.set_raw(704, "WMaxLimPctRvrtTms", 0)
            img.set_raw(704, "WSetMod", _WSET_MOD_WATTS)
            img.set(704, "WSet", 0)
            img.set(704, "WSetPct", 0.0)
            img.set_raw(704, "WSetRvrtTms", 0)

    def _charge_status(self, s: PhysicsSnapshot) -> int:
        phy = self.config.physics
        if s.battery_power_w > 0:
            return _CHA_ST_CHARGING
        if s.battery_power_w < 0:
            return _CHA_ST_DISCHARGING
        if s.soc_pct >= phy.max_soc_pct:
            return _CHA_ST_FULL
        if s.soc_pct <= self._physics.soc_floor_pct:
            return _CHA_ST_EMPTY
        return _CHA_ST_HOLDING

    def _refresh_measurements(self, s: PhysicsSnapshot) -> None:
        """Write the snapshot into the measured points (device signs, see module doc)."""
        if self._faults.frozen:
            return  # the registers keep the last refresh's values; the physics carries on
        try:
            self._write_measurements(s)
        except ValueError as exc:  # only with a scale-factor fault whose SF cannot hold the value
            if self._faults.scale_factors != self._sf_warned:
                self._sf_warned = self._faults.scale_factors
                log.warning("measurements not all refreshed under scale factors %s: %s",
                            self._faults.scale_factors, exc)

    def _write_measurements(self, s: PhysicsSnapshot) -> None:
        cfg = self.config
        img = self._image
        start = cfg.energy_counter_start_wh
        seconds = max(0, int((s.at - self._start_at).total_seconds()))
        ac_w = s.inverter_ac_power_w
        cha_st = self._charge_status(s)
        if self._has(103):
            # 103 inverter: production positive.
            phase_a = abs(ac_w) / 3.0 / cfg.grid_voltage_v
            img.set(103, "W", ac_w)
            img.set(103, "DCW", ac_w)  # lossless inverter: DC in = AC out
            for name in ("AphA", "AphB", "AphC"):
                img.set(103, name, phase_a)
            img.set(103, "A", 3 * phase_a)
            img.set(103, "WH", (start + s.inverter_produced_wh) % 2**32)
            img.set_raw(103, "St", _ST_MPPT if s.pv_power_w < 0 else
                        _ST_STANDBY if s.battery_power_w != 0 else _ST_SLEEPING)
        if self._has(124):
            # 124 storage.
            img.set(124, "ChaState", s.soc_pct)
            img.set_raw(124, "ChaSt", cha_st)
        if self._has(160):
            # 160 MPPT: production positive, split evenly over the modules.
            n = cfg.mppt_modules
            module_w = -s.pv_power_w / n
            for i in range(n):
                img.set(160, "DCW", module_w, i)
                img.set(160, "DCV", cfg.pv_string_voltage_v if module_w > 0 else 0.0, i)
                img.set(160, "DCA", module_w / cfg.pv_string_voltage_v, i)
                img.set(160, "DCWH", ((start + s.pv_energy_wh) / n) % 2**32, i)
                img.set_raw(160, "Tms", seconds % 2**32, i)
                img.set_raw(160, "DCSt", _ST_MPPT if module_w > 0 else _ST_SLEEPING, i)
        if self._has(203):
            # 203 meter.
            meter_w = s.grid_power_w if cfg.meter_sign == "import_positive" else -s.grid_power_w
            img.set(203, "W", meter_w)
            for name in ("WphA", "WphB", "WphC"):
                img.set(203, name, meter_w / 3.0)
            phase_a = meter_w / 3.0 / cfg.grid_voltage_v
            for name in ("AphA", "AphB", "AphC"):
                img.set(203, name, phase_a)
            img.set(203, "A", 3 * phase_a)
            img.set(203, "TotWhImp", (start + s.grid_imported_wh) % 2**32)
            img.set(203, "TotWhExp", (start + s.grid_exported_wh) % 2**32)
        if self._has(802):
            # 802 battery.
            batt_w = -s.battery_power_w if cfg.battery_802_sign == "discharge_positive" else s.battery_power_w
            img.set(802, "SoC", s.soc_pct)
            img.set(802, "W", batt_w)
            img.set(802, "A", batt_w / cfg.battery_voltage_v)
            img.set_raw(802, "ChaSt", cha_st)
            img.set_raw(802, "Hb", seconds % 0x10000 if seconds % 0x10000 != 0xFFFF else 0)
        if self._has(701):
            # 701 DER AC measurements: W injection (production) positive, as 103.
            per_phase = ac_w / 3.0
            img.set(701, "W", ac_w)
            img.set(701, "VA", abs(ac_w))
            img.set(701, "A", abs(ac_w) / cfg.grid_voltage_v)
            for phase in ("L1", "L2", "L3"):
                img.set(701, f"W{phase}", per_phase)
                img.set(701, f"VA{phase}", abs(per_phase))
                img.set(701, f"A{phase}", abs(per_phase) / cfg.grid_voltage_v)
            img.set(701, "TotWhInj", start + s.inverter_produced_wh)
            img.set_raw(701, "St", 1 if ac_w != 0 else 0)  # 1 = ON
        if self._has(713):
            # 713 storage capacity: SoC and the energy available above the SoC floor.
            img.set(713, "SoC", s.soc_pct)
            img.set(713, "WHAvail", max(0.0, s.soc_pct - self._physics.soc_floor_pct) / 100.0
                    * cfg.physics.battery_capacity_wh)
        if self._faults.implausible:
            # Values no real device could report; the measured points are
            # rewritten from the physics on the next refresh.
            for model_id, name, raw in ((124, "ChaState", 2500), (802, "SoC", 2500), (713, "SoC", 2500),
                                        (203, "W", 0x7FFF), (103, "W", -0x7FFF), (701, "W", -0x7FFF)):
                if self._has(model_id):
                    img.set_raw(model_id, name, raw)


__all__ = [
    "Battery802Sign",
    "DroppableServer",
    "FaultInjection",
    "Faults",
    "MeterSign",
    "RegisterWrite",
    "SimulatorConfig",
    "SunSpecHybridSimulator",
    "WritePredicate",
]
