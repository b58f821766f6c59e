"""Plain, immutable message types shared by agent and aggregator.

These mirror ``vpp.v1`` but carry no protobuf: each side converts at its
boundary (``edge_agent/uplink``, ``aggregator/service``) and works with these.

Sign convention (everywhere): power is positive when the house or device
*consumes* at its point of connection.  Battery charging > 0, grid import > 0,
PV production < 0, household load > 0.  Export caps and limits are given as
positive magnitudes (``max_export_w = 4600`` allows grid power down to -4600 W).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime, timedelta
from enum import Enum
from operator import attrgetter


class Validity(str, Enum):
    """How far a measurement can be trusted.  Stale is not zero."""

    VALID = "valid"
    STALE = "stale"  # last good value, older than its validity window
    MISSING = "missing"  # never read, not implemented, or read failed
    IMPLAUSIBLE = "implausible"  # read, but outside physical bounds


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measured quantity; ``value`` is None unless something was read."""

    value: float | None
    validity: Validity
    measured_at: datetime | None = None

    @staticmethod
    def missing() -> Measurement:
        return Measurement(None, Validity.MISSING, None)

    @property
    def usable(self) -> bool:
        return self.validity is Validity.VALID and self.value is not None


@dataclass(frozen=True, slots=True)
class ResourceTelemetry:
    """One device's measurements: power in W (consumption > 0), SoC in % for storage."""

    resource_id: str
    power_w: Measurement
    soc_pct: Measurement = field(default_factory=Measurement.missing)


@dataclass(frozen=True, slots=True)
class SiteTelemetry:
    """A house at one instant.  Powers in W (consumption positive), SoC in %."""

    measured_at: datetime
    grid_power_w: Measurement  # import > 0, export < 0
    pv_power_w: Measurement  # production < 0
    battery_power_w: Measurement  # charging > 0
    battery_soc_pct: Measurement  # 0..100
    load_power_w: Measurement  # household consumption >= 0
    resources: tuple[ResourceTelemetry, ...] = ()  # per device, where the agent has them


class ResourceKind(str, Enum):
    BATTERY = "battery"
    PV = "pv"
    GRID_METER = "grid_meter"
    EV_CHARGER = "ev_charger"


class ControlType(str, Enum):
    """S2 control types (EN 50491-12-2)."""

    NOT_CONTROLLABLE = "not_controllable"
    FRBC = "frbc"  # fill-rate based: storage
    PEBC = "pebc"  # power envelope: curtailment
    PPBC = "ppbc"
    OMBC = "ombc"
    DDBC = "ddbc"


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """A device the agent controls or measures, with its nameplate."""

    resource_id: str
    kind: ResourceKind
    control_type: ControlType
    rated_power_w: float = 0.0  # largest |power| the device can take or give
    capacity_wh: float = 0.0  # storage capacity; 0 for non-storage


@dataclass(frozen=True, slots=True)
class SiteLimits:
    """Connection limits of a house, as positive magnitudes in W."""

    max_import_w: float
    max_export_w: float


@dataclass(frozen=True, slots=True)
class Hello:
    agent_version: str
    limits: SiteLimits
    resources: tuple[ResourceInfo, ...]
    last_plan_id: str = ""
    last_plan_version: int = 0
    claimed_house_id: str = ""  # what the agent believes; never trusted (identity is the certificate)


@dataclass(frozen=True, slots=True)
class StorageFlexibility:
    """S2 FRBC description of a battery: fill level is SoC in %.

    Operation modes are charge [0, max_charge_power_w], idle (0) and
    discharge [-max_discharge_power_w, 0], in W with charging positive.
    """

    resource_id: str
    soc_pct: float
    soc_min_pct: float
    soc_max_pct: float
    reserve_soc_pct: float
    capacity_wh: float
    max_charge_power_w: float  # positive magnitude
    max_discharge_power_w: float  # positive magnitude
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95


@dataclass(frozen=True, slots=True)
class CurtailmentFlexibility:
    """S2 PEBC description of a PV inverter: how far production may be limited.

    ``present_power_w`` is the current production (<= 0).  The allowed
    envelope's lower bound ranges from ``min_lower_limit_w`` (full production,
    most negative) to 0 (fully curtailed).
    """

    resource_id: str
    present_power_w: float
    min_lower_limit_w: float  # most negative power the inverter can produce, e.g. -6000


@dataclass(frozen=True, slots=True)
class LoadMode:
    """One S2 OMBC operation mode: its id and mean power in W (consumption positive)."""

    mode_id: str
    power_w: float


@dataclass(frozen=True, slots=True)
class SwitchableLoadFlexibility:
    """S2 OMBC description of a load with discrete modes (a plug-switched freezer: "on", "off").

    ``active_mode_id`` is "" and ``active_since`` None when unknown (stale read-back), never
    guessed.  ``min_mode_s``: shortest stay in a mode before the next switch; ``max_reduced_s``:
    longest stay in a mode below the highest power (a pause; 0 = no limit).
    """

    resource_id: str
    modes: tuple[LoadMode, ...]
    active_mode_id: str = ""
    active_since: datetime | None = None
    min_mode_s: float = 0.0
    max_reduced_s: float = 0.0


class RunState(str, Enum):
    WAITING = "waiting"  # no start chosen yet
    SCHEDULED = "scheduled"  # a start is chosen; not begun
    RUNNING = "running"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class ProfileStep:
    """One step of a power profile: its length in s (> 0) and mean power in W (consumption > 0)."""

    duration_s: float
    power_w: float


@dataclass(frozen=True, slots=True)
class ShiftableRunFlexibility:
    """S2 PPBC description of one run of a fixed power profile whose start may move between
    ``earliest_start`` and ``latest_end`` minus the profile's length (a washing machine's
    programme).  ``start`` is the chosen (SCHEDULED) or actual (RUNNING, DONE) start."""

    resource_id: str
    profile: tuple[ProfileStep, ...]
    earliest_start: datetime
    latest_end: datetime
    state: RunState = RunState.WAITING
    start: datetime | None = None

    @property
    def duration_s(self) -> float:
        return sum(p.duration_s for p in self.profile)

    @property
    def energy_wh(self) -> float:
        return sum(p.duration_s * p.power_w for p in self.profile) / 3600.0


@dataclass(frozen=True, slots=True)
class PowerForecast:
    """Expected mean power per slot from ``start``, W, in the sign convention of its use."""

    start: datetime
    slot_s: int
    values_w: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Flexibility:
    valid_from: datetime
    storages: tuple[StorageFlexibility, ...] = ()
    curtailments: tuple[CurtailmentFlexibility, ...] = ()
    load_forecast: PowerForecast | None = None  # household load, W >= 0
    pv_forecast: PowerForecast | None = None  # PV, W <= 0 (production negative)
    pv_clear_sky_forecast: PowerForecast | None = None  # PV under a clear sky, W <= 0 (at most pv_forecast)
    switchable_loads: tuple[SwitchableLoadFlexibility, ...] = ()  # S2 OMBC loads
    shiftable_runs: tuple[ShiftableRunFlexibility, ...] = ()  # S2 PPBC runs


@dataclass(frozen=True, slots=True)
class Envelope:
    """Bounds on a power in W (consumption positive); min <= max, neither NaN (an infinite
    bound is no bound)."""

    min_w: float
    max_w: float

    def __post_init__(self) -> None:
        # one comparison, also false for NaN (``nan > x`` is false too: it passed before)
        if not self.min_w <= self.max_w:
            raise ValueError(f"envelope min {self.min_w} W > max {self.max_w} W"
                             if self.min_w > self.max_w else f"envelope ({self.min_w}, {self.max_w}) W is not a number")

    def clamp(self, power_w: float) -> float:
        return min(self.max_w, max(self.min_w, power_w))


@dataclass(frozen=True, slots=True)
class Setpoint:
    """Target power of one resource in one slot, and the envelope it may move in."""

    resource_id: str
    target_power_w: float
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class PlanSlot:
    start: datetime
    setpoints: tuple[Setpoint, ...]
    grid_envelope: Envelope | None = None  # site grid power bounds, W
    reason: str = ""  # why, for people: "cheap import", "peak price", ...

    def setpoint(self, resource_id: str) -> Setpoint | None:
        for sp in self.setpoints:
            if sp.resource_id == resource_id:
                return sp
        return None


class FallbackMode(str, Enum):
    """What an agent does once its plan lease has expired."""

    SELF_CONSUMPTION = "self_consumption"
    IDLE = "idle"


@dataclass(frozen=True, slots=True)
class RunStart:
    """The aggregator's chosen start of a house's shiftable run (PPBC resource ``resource_id``)."""

    resource_id: str
    start: datetime


@dataclass(frozen=True, slots=True)
class DispatchPlan:
    """A lease: valid from ``valid_from`` until ``valid_until``, then the fallback.

    ``version`` is monotonic per house; an agent adopts a plan only if its
    version is newer than the one it follows.
    """

    plan_id: str
    version: int
    created_at: datetime
    valid_from: datetime
    valid_until: datetime
    slot_duration_s: int
    slots: tuple[PlanSlot, ...]
    fallback: FallbackMode = FallbackMode.SELF_CONSUMPTION
    fallback_max_export_w: float = 0.0  # export cap during fallback; 0 = site limit
    run_starts: tuple[RunStart, ...] = ()  # the aggregator's starts for the house's shiftable runs (PPBC)

    def is_valid_at(self, when: datetime) -> bool:
        return self.valid_from <= when < self.valid_until

    def slot_at(self, when: datetime) -> PlanSlot | None:
        """The slot covering ``when``, or None outside the lease."""
        if not self.is_valid_at(when):
            return None
        for slot in self.slots:
            if slot.start <= when < slot.start + timedelta(seconds=self.slot_duration_s):
                return slot
        return None


class PlanState(str, Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    ACTIVE = "active"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class PlanStatus:
    plan_id: str
    version: int
    state: PlanState
    at: datetime
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PriceSlot:
    start: datetime
    duration_s: int
    import_price_per_kwh: float  # currency per kWh bought
    export_price_per_kwh: float  # currency per kWh sold (may be negative)


@dataclass(frozen=True, slots=True)
class GridSignal:
    issued_at: datetime
    currency: str = "EUR"
    prices: tuple[PriceSlot, ...] = field(default_factory=tuple)
    limits: SiteLimits | None = None  # temporary site limits, if any
    limits_valid_until: datetime | None = None
    limits_are_feeder_envelope: bool = False  # live feeder share: replaces the plan slots' grid envelopes


@dataclass(frozen=True, slots=True)
class LimitOverride:
    """Temporary site limits an operator (or a grid operator's event) sets for a house."""

    limits: SiteLimits
    valid_until: datetime
    reason: str = ""


def _fast_pickling(cls: type) -> None:
    """Pickle a slotted dataclass by a tuple of its fields, read with one C attrgetter.

    The state functions ``dataclass(slots=True)`` generates call ``dataclasses.fields()``
    for every object; fleet plans are millions of small objects crossing the solver
    process boundary, and that call was most of the time (measured: loading 2,000 plans
    3.5x faster).  Only for process pools: stored plans are JSON, never pickles.
    """
    names = tuple(f.name for f in fields(cls))
    get = attrgetter(*names)
    one = len(names) == 1

    def __getstate__(self: object) -> tuple[object, ...]:
        return (get(self),) if one else get(self)  # type: ignore[no-any-return]

    def __setstate__(self: object, state: tuple[object, ...]) -> None:
        for name, value in zip(names, state, strict=True):
            object.__setattr__(self, name, value)

    cls.__getstate__ = __getstate__  # type: ignore[attr-defined,assignment]
    cls.__setstate__ = __setstate__  # type: ignore[attr-defined,assignment]


for _cls in list(globals().values()):
    if isinstance(_cls, type) and is_dataclass(_cls) and "__slots__" in _cls.__dict__ and _cls.__module__ == __name__:
        _fast_pickling(_cls)
del _cls
