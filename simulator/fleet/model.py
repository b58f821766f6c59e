"""The scenario as the simulator uses it: immutable arrays on one slot grid (no I/O).

Units and signs: powers in W.  In a scenario, load and PV are *magnitudes*
(``load_w`` >= 0 consumed, ``pv_w`` >= 0 produced) because that is how people
write them down; the physics and the optimiser apply the project's sign
convention (PV production < 0, battery charging > 0, grid import > 0).
Prices in currency per kWh (may be negative), converted from the scenario's unit where read.  Feeder limits are positive
magnitudes; ``inf`` means no limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Literal

import numpy as np

from vpp_common.localtime import zone
from vpp_common.messages import ProfileStep
from vpp_common.timeslots import SlotGrid

DEFAULT_EFFICIENCY = 0.95  # one way (charge and discharge each), typical LFP hybrid at part load
DEFAULT_SOC_MIN_PCT = 5.0
DEFAULT_RESERVE_SOC_PCT = 10.0
DEFAULT_INITIAL_SOC_PCT = 50.0


@dataclass(frozen=True, slots=True)
class PriceKnowledge:
    """When the fleet learns its prices.  ``day_ahead``: the next local day's prices become
    public at ``published``, wall clock of ``market_timezone`` (an IANA name), so a plan
    sees to the end of today or, after publication, of tomorrow (days of the market's zone).
    ``in_advance``: a fixed tariff, known for ever; plans still look to the end of tomorrow
    in the scenario's zone (``published``/``market_timezone`` unused)."""

    kind: Literal["day_ahead", "in_advance"] = "day_ahead"
    published: time = time(11)
    market_timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class House:
    house_id: str
    pv_kwp: float  # PV size, kWp (0 = none)
    battery_kwh: float  # usable capacity, kWh (0 = none)
    battery_kw: float  # charge and discharge limit, kW
    export_cap_w: float  # site export cap (positive magnitude), W; inf = none
    import_limit_w: float  # site import limit (main fuse), W
    feeder: str
    initial_soc_pct: float = DEFAULT_INITIAL_SOC_PCT
    efficiency: float = DEFAULT_EFFICIENCY  # one way

    @property
    def has_battery(self) -> bool:
        return self.battery_kwh > 0 and self.battery_kw > 0


@dataclass(frozen=True, slots=True)
class ApplianceRun:
    """One run of a house's shiftable appliance (a washing machine's programme): armed (requested,
    the earliest start) at ``armed``, to be finished by ``ready_by`` (UTC); its power profile."""

    house_id: str
    resource_id: str  # the appliance, e.g. "washer"
    armed: datetime
    ready_by: datetime
    profile: tuple[ProfileStep, ...]

    @property
    def run_id(self) -> str:
        """Unique per house: the appliance and its arming time (one run per resource in a plan)."""
        return f"{self.resource_id}@{self.armed:%Y-%m-%dT%H:%MZ}"

    @property
    def duration_s(self) -> float:
        return sum(p.duration_s for p in self.profile)

    @property
    def energy_wh(self) -> float:
        return sum(p.duration_s * p.power_w for p in self.profile) / 3600.0


@dataclass(frozen=True)
class Scenario(SlotGrid):
    name: str
    start: datetime  # first slot start, UTC
    slot_s: int
    houses: tuple[House, ...]
    load_w: np.ndarray  # (N, T) household load, W >= 0 (mean over the slot)
    pv_w: np.ndarray  # (N, T) PV production before any curtailment, W >= 0
    import_price_per_kwh: np.ndarray  # (T,)
    export_price_per_kwh: np.ndarray  # (T,) paid for export
    feeder_ids: tuple[str, ...]
    feeder_import_limit_w: np.ndarray  # (F, T) net import limit, inf = none
    feeder_export_limit_w: np.ndarray  # (F, T) net export limit (magnitude), inf = none
    latitude: float  # site of the fleet, for clear-sky PV forecasts
    longitude: float
    currency: str = "EUR"
    description: str = ""
    sources: dict[str, str] = field(default_factory=dict)  # what -> where it came from (for the report)
    timezone: str = "UTC"  # IANA zone of the fleet: its days (forecasters' time of day, report) are local
    price_knowledge: PriceKnowledge = field(default_factory=PriceKnowledge)
    # shiftable runs (simulator.fleet.appliance_runs); () = none: the scenario's figures as without them
    appliance_runs: tuple[ApplianceRun, ...] = ()

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.slot_s * self.t)

    def slot_start(self, i: int) -> datetime:
        return self.start + timedelta(seconds=self.slot_s * i)

    def feeder_index(self) -> np.ndarray:
        """(N,) index of each house's feeder in ``feeder_ids``."""
        pos = {f: i for i, f in enumerate(self.feeder_ids)}
        return np.array([pos[h.feeder] for h in self.houses], dtype=int)

    @property
    def n(self) -> int:
        return len(self.houses)

    def validate(self) -> None:
        """Raise ValueError naming the field with a wrong shape, sign or reference."""
        n, t, f = self.n, self.t, len(self.feeder_ids)
        if n == 0 or t == 0:
            raise ValueError("a scenario needs at least one house and one slot")
        for name in ("load_w", "pv_w"):
            a = getattr(self, name)
            if a.shape != (n, t):
                raise ValueError(f"{name} must have shape ({n}, {t}), got {a.shape}")
            if not np.isfinite(a).all() or (a < 0).any():
                raise ValueError(f"{name} must be finite and >= 0")
        for name in ("import_price_per_kwh", "export_price_per_kwh"):
            a = getattr(self, name)
            if a.shape != (t,) or not np.isfinite(a).all():
                raise ValueError(f"{name} must be {t} finite values")
        for name in ("feeder_import_limit_w", "feeder_export_limit_w"):
            a = getattr(self, name)
            if a.shape != (f, t) or (a <= 0).any() or np.isnan(a).any():
                raise ValueError(f"{name} must have shape ({f}, {t}) and be > 0 (inf = no limit)")
        known = set(self.feeder_ids)
        for h in self.houses:
            if h.feeder not in known:
                raise ValueError(f"house {h.house_id}: feeder {h.feeder!r} has no limits")
        if len({h.house_id for h in self.houses}) != n:
            raise ValueError("house ids must be unique")
        zone(self.timezone)  # ValueError naming an unknown zone
        zone(self.price_knowledge.market_timezone)
        if self.price_knowledge.kind not in ("day_ahead", "in_advance"):
            raise ValueError(f"price_knowledge.kind must be day_ahead or in_advance, got {self.price_knowledge.kind!r}")
        self._validate_runs()

    def _validate_runs(self) -> None:
        ids = {h.house_id for h in self.houses}
        seen: set[tuple[str, str]] = set()
        for r in self.appliance_runs:
            if r.house_id not in ids:
                raise ValueError(f"appliance run {r.run_id}: no house {r.house_id!r}")
            if (r.house_id, r.run_id) in seen:
                raise ValueError(f"appliance run {r.run_id} of house {r.house_id} twice")
            seen.add((r.house_id, r.run_id))
            if not r.profile or any(not (np.isfinite(p.duration_s) and np.isfinite(p.power_w) and p.duration_s > 0
                                         and 0 <= p.power_w <= 50_000) for p in r.profile):
                raise ValueError(f"appliance run {r.run_id}: profile steps need 0 < duration and 0 <= power <= 50 kW")
            if r.armed.tzinfo is None or r.ready_by.tzinfo is None:
                raise ValueError(f"appliance run {r.run_id}: times need a zone")
            if (r.ready_by - r.armed).total_seconds() < r.duration_s:
                raise ValueError(f"appliance run {r.run_id}: its window is shorter than its programme")

    def head(self, slots: int) -> Scenario:
        """The first ``slots`` slots (``--days``)."""
        return self.window(0, slots)

    def window(self, s0: int, s1: int) -> Scenario:
        """Slots ``s0``..``s1`` (exclusive) as a scenario of their own."""
        s0 = max(0, min(s0, self.t - 1))
        s1 = max(s0 + 1, min(s1, self.t))
        return replace(
            self,
            start=self.slot_start(s0),
            load_w=self.load_w[:, s0:s1],
            pv_w=self.pv_w[:, s0:s1],
            import_price_per_kwh=self.import_price_per_kwh[s0:s1],
            export_price_per_kwh=self.export_price_per_kwh[s0:s1],
            feeder_import_limit_w=self.feeder_import_limit_w[:, s0:s1],
            feeder_export_limit_w=self.feeder_export_limit_w[:, s0:s1],
            appliance_runs=tuple(r for r in self.appliance_runs
                                 if r.armed >= self.slot_start(s0) and r.ready_by <= self.slot_start(s1)),
        )

    def select(self, house_ids: list[str]) -> Scenario:
        """A smaller fleet with only these houses (and their feeders)."""
        idx = [i for i, h in enumerate(self.houses) if h.house_id in set(house_ids)]
        feeders = sorted({self.houses[i].feeder for i in idx}, key=self.feeder_ids.index)
        fidx = [self.feeder_ids.index(f) for f in feeders]
        return replace(
            self,
            houses=tuple(self.houses[i] for i in idx),
            load_w=self.load_w[idx],
            pv_w=self.pv_w[idx],
            feeder_ids=tuple(feeders),
            feeder_import_limit_w=self.feeder_import_limit_w[fidx],
            feeder_export_limit_w=self.feeder_export_limit_w[fidx],
            appliance_runs=tuple(r for r in self.appliance_runs if r.house_id in set(house_ids)),
        )


def select_scaled(sc: Scenario, house_ids: list[str]) -> Scenario:
    """``sc.select(house_ids)`` with each feeder's limits scaled to the part of it kept: import
    limits by the share of its houses kept, export limits by the share of its PV (kWp) kept, or
    of its houses where none of those kept has PV.  A feeder's limit is sized for all its houses; kept whole
    for a few, it would never bind (``vpp-sim scenario export --houses N``)."""
    part = sc.select(house_ids)
    imp, exp = part.feeder_import_limit_w.copy(), part.feeder_export_limit_w.copy()
    kept = set(house_ids)
    for k, fid in enumerate(part.feeder_ids):
        on = [h for h in sc.houses if h.feeder == fid]
        ours = [h for h in on if h.house_id in kept]
        by_houses = len(ours) / len(on)
        kwp_ours = sum(h.pv_kwp for h in ours)
        imp[k] *= by_houses
        exp[k] *= kwp_ours / sum(h.pv_kwp for h in on) if kwp_ours > 0 else by_houses
    return replace(part, feeder_import_limit_w=imp, feeder_export_limit_w=exp)
