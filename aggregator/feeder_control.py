"""Live feeder envelopes: the leader shares each limited feeder among its houses between plans.

Every ``interval_s`` of clock time the leader reads each house's latest telemetry and
flexibility, computes per-house grid limits with ``aggregator.dispatch.realtime``
(batteries with room absorb first, then curtailment by PV size), and sends every house
on a limited feeder its share as a short-lived temporary limit flagged as a feeder
envelope (``GridSignal.limits_are_feeder_envelope``).  The agent keeps to it with its
safety clamp and PV curtailment; it replaces the plan slots' grid envelopes, which were
computed from forecasts.  An envelope expires after ``5 x interval_s``: an agent that
stops hearing from the aggregator falls back to its plan's envelopes.

Envelopes change make-before-break (``realtime.make_before_break``): houses take a new
one up a few seconds apart, so a raise goes out only as far as the cuts still to be taken
up leave room; the rest follows a round later.

A house without telemetry yet, or with stale telemetry, counts as exporting its whole
export cap (the worst case), so the others' shares stay safe.

A house's switchable loads (S2 OMBC) that run above their lowest mode count as import it can
shed, beside its battery's discharge: the agent switches them off when its import limit in force
(the envelope among it) binds (edge_agent/energy_manager/load_switching.py).

Each round also measures every feeder's load (the sum of its houses' fresh grid power)
for the operator's metrics, whether envelopes are sent or not.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from aggregator.dispatch.realtime import (
    SHARE_OF_LIMIT,
    HousesNow,
    battery_room_w,
    feeder_envelopes,
    import_floor_w,
    make_before_break,
)
from aggregator.store.base import HouseRecord, StateStore
from vpp_common.messages import (
    Flexibility,
    ResourceKind,
    SiteLimits,
    SiteTelemetry,
    SwitchableLoadFlexibility,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeederEnvelope:
    limits: SiteLimits
    valid_until: datetime


@dataclass(frozen=True, slots=True)
class FeederLoad:
    """A feeder as measured in one round (from its houses' latest fresh telemetry)."""

    power_w: float  # net grid power of the houses with fresh telemetry, W (import > 0, export < 0)
    fresh_houses: int  # houses whose telemetry counted
    houses: int  # houses on the feeder
    import_limit_w: float  # inf = none
    export_limit_w: float  # inf = none
    # the import the fresh houses cannot avoid now (every battery discharging as far as it can,
    # beyond its own house's load to the neighbours within the house's export cap; no charging;
    # load is not curtailed), W >= 0: the least import the live control can reach
    unavoidable_import_w: float = 0.0

    @property
    def over_limit_w(self) -> float:
        """How far the measured load is beyond a limit, W (0 within limits)."""
        return max(0.0, self.power_w - self.import_limit_w, -self.power_w - self.export_limit_w)

    @property
    def least_over_limit_w(self) -> float:
        """The least excess possible now, W: import the houses cannot avoid beyond the import
        limit (export can always be curtailed): ``over_limit_w`` above it is the control's."""
        return max(0.0, self.unavoidable_import_w - self.import_limit_w)


@dataclass(frozen=True, slots=True)
class Feeder:
    feeder_id: str
    houses: tuple[str, ...]
    import_limit_w: float  # inf = none
    export_limit_w: float


@dataclass(frozen=True, slots=True)
class HouseReading:
    """What the store holds about a house at a round (None: nothing yet)."""

    record: HouseRecord | None
    telemetry: SiteTelemetry | None
    flexibility: Flexibility | None


async def read_houses(store: StateStore, feeders: Sequence[Feeder]) -> dict[str, HouseReading]:
    """A round's reads: every house on ``feeders``."""
    return {h: HouseReading(await store.get_house(h), await store.get_telemetry(h), await store.get_flexibility(h))
            for f in feeders for h in f.houses}


async def compute_envelopes(store: StateStore, feeders: Sequence[Feeder], now: datetime, interval_s: float,
                            stale_after_s: float, slot_h: float = 1 / 60) -> dict[str, FeederEnvelope]:
    """One round: envelopes for every house on a limited feeder (pure apart from store reads).

    ``slot_h``: how far ahead a battery's room is counted (its energy room over this time
    bounds the power it can absorb): about the control interval.
    """
    envelopes, _ = await feeder_round(store, feeders, now, interval_s, stale_after_s, slot_h)
    return envelopes


async def feeder_round(store: StateStore, feeders: Sequence[Feeder], now: datetime, interval_s: float,
                       stale_after_s: float, slot_h: float = 1 / 60,
                       previous: Mapping[str, FeederEnvelope] | None = None,
                       ) -> tuple[dict[str, FeederEnvelope], dict[str, FeederLoad]]:
    """``compute_envelopes`` plus each feeder's measured load (every feeder, limited or not):
    the store read, then :func:`round_envelopes`."""
    readings = await read_houses(store, feeders)
    return round_envelopes(feeders, readings, now, interval_s, stale_after_s, slot_h, previous)


def round_envelopes(feeders: Sequence[Feeder], readings: Mapping[str, HouseReading], now: datetime,
                    interval_s: float, stale_after_s: float, slot_h: float,
                    previous: Mapping[str, FeederEnvelope] | None = None,
                    ) -> tuple[dict[str, FeederEnvelope], dict[str, FeederLoad]]:
    """A round's envelopes and loads from the houses' readings (pure).  ``previous``: the
    envelopes in force; a house held to one cannot want to export more than it allows (a
    reading above it is a transient: a step of the sun or a limit not yet in force), so its
    wanted export is taken no higher than its envelope, and a new envelope is taken up
    make-before-break."""
    out: dict[str, FeederEnvelope] = {}
    loads: dict[str, FeederLoad] = {}
    until = now + timedelta(seconds=5 * interval_s)
    for f in feeders:
        in_force = [x if previous is not None and (x := previous.get(h)) is not None and now < x.valid_until
                    else None for h in f.houses]
        now_ = _FeederNow.read([readings[h] for h in f.houses], in_force, now, stale_after_s, slot_h)
        loads[f.feeder_id] = FeederLoad(now_.measured_w, now_.fresh, len(f.houses), f.import_limit_w,
                                        f.export_limit_w, now_.unavoidable_import_w)
        if not (np.isfinite(f.import_limit_w) or np.isfinite(f.export_limit_w)):
            continue
        e, i = feeder_envelopes(now_.houses, f.export_limit_w, f.import_limit_w, grid_wanted_w=now_.wanted_w)
        e, i = np.minimum(e, now_.export_cap_w), np.minimum(i, now_.houses.import_cap_w)
        if previous is not None:  # a house may run at its envelope in force until it takes the new one up
            held_e = np.array([x.limits.max_export_w if x is not None else np.nan for x in in_force])
            held_i = np.array([x.limits.max_import_w if x is not None else np.nan for x in in_force])
            e = make_before_break(e, held_e, f.export_limit_w * SHARE_OF_LIMIT)
            i = make_before_break(i, held_i, f.import_limit_w * SHARE_OF_LIMIT)
        i = np.maximum(i, -e)  # "export at least" (a bound below 0) never past the export envelope
        for k, h in enumerate(f.houses):
            out[h] = FeederEnvelope(SiteLimits(float(i[k]), float(e[k])), until)
    return out, loads


@dataclass(frozen=True, slots=True)
class _FeederNow:
    """A feeder's houses as its round sees them."""

    houses: HousesNow
    wanted_w: np.ndarray  # each house's exchange as it runs now, within its envelope in force
    export_cap_w: np.ndarray  # the houses' own caps (inf: none)
    measured_w: float  # the net grid power of the houses with fresh telemetry
    fresh: int
    unavoidable_import_w: float  # of the houses with fresh telemetry (FeederLoad)

    @staticmethod
    def read(readings: Sequence[HouseReading], in_force: Sequence[FeederEnvelope | None], now: datetime,
             stale_after_s: float, slot_h: float) -> _FeederNow:
        n = len(readings)
        cols = {k: np.zeros(n) for k in ("base", "wanted", "rated", "imp_cap", "exp_cap", "soc", "cap", "p_ch",
                                         "p_dis", "eff_ch", "eff_dis", "soc_min", "soc_max", "reserve", "shed")}
        cols["eff_ch"][:] = cols["eff_dis"][:] = 1.0
        measured_w, fresh = 0.0, 0
        is_fresh = np.zeros(n, dtype=bool)
        for k, (r, held) in enumerate(zip(readings, in_force, strict=True)):
            rec = r.record
            cols["imp_cap"][k] = rec.hello.limits.max_import_w if rec else float("inf")
            cols["exp_cap"][k] = cap_exp = rec.hello.limits.max_export_w if rec else float("inf")
            cols["rated"][k] = sum(x.rated_power_w for x in rec.hello.resources if x.kind is ResourceKind.PV) if rec \
                else 0.0
            grid_w, battery_w, soc = _fresh(r.telemetry, now, stale_after_s, rec is None or any(
                x.kind is ResourceKind.BATTERY for x in rec.hello.resources))
            if grid_w is None:
                # unknown: assume it exports its whole cap (worst case) and can absorb nothing
                cols["base"][k] = cols["wanted"][k] = -min(cap_exp, 1e6)
                continue
            measured_w += grid_w
            fresh += 1
            is_fresh[k] = True
            cols["wanted"][k] = grid_w if held is None else max(grid_w, -held.limits.max_export_w)
            cols["base"][k] = grid_w - battery_w
            cols["shed"][k] = sheddable_w(r.flexibility.switchable_loads) if r.flexibility is not None else 0.0
            st = r.flexibility.storages[0] if r.flexibility is not None and r.flexibility.storages else None
            if st is not None and soc is not None:  # else no capacity: no room either way
                for name, v in (("soc", soc), ("cap", st.capacity_wh), ("p_ch", st.max_charge_power_w),
                                ("p_dis", st.max_discharge_power_w), ("eff_ch", st.charge_efficiency),
                                ("eff_dis", st.discharge_efficiency), ("soc_min", st.soc_min_pct),
                                ("soc_max", st.soc_max_pct), ("reserve", st.reserve_soc_pct)):
                    cols[name][k] = v
        ch, dis = battery_room_w(cols["soc"], cols["cap"], cols["p_ch"], cols["p_dis"], slot_h=slot_h,
                                 charge_efficiency=cols["eff_ch"], discharge_efficiency=cols["eff_dis"],
                                 soc_min_pct=cols["soc_min"], soc_max_pct=cols["soc_max"],
                                 reserve_soc_pct=cols["reserve"])
        # down to the storage's soc_min: the agent's feeder floor, below its reserve
        _, to_floor = battery_room_w(cols["soc"], cols["cap"], cols["p_ch"], cols["p_dis"], slot_h=slot_h,
                                     charge_efficiency=cols["eff_ch"], discharge_efficiency=cols["eff_dis"],
                                     soc_min_pct=cols["soc_min"], soc_max_pct=cols["soc_max"],
                                     reserve_soc_pct=cols["soc_min"])
        dis = dis + cols["shed"]  # import the house can give up now: its battery's and its switchable loads'
        houses = HousesNow(cols["base"], ch, dis, cols["rated"], cols["imp_cap"], cols["exp_cap"],
                           floor_room_w=np.maximum(to_floor + cols["shed"], dis))
        # batteries beyond their own house's load may export to the neighbours (import_floor_w)
        unavoidable = max(float(import_floor_w(houses)[is_fresh].sum()), 0.0)
        return _FeederNow(houses, cols["wanted"], cols["exp_cap"], measured_w, fresh, unavoidable)


def sheddable_w(loads: Sequence[SwitchableLoadFlexibility]) -> float:
    """Power the house's switchable loads can give up now, W >= 0: each one's active mode above
    its lowest (an unknown mode: none; a mode below the lowest cannot be: they were checked where
    they entered, service.load_convert)."""
    out = 0.0
    for load in loads:
        active = next((m.power_w for m in load.modes if m.mode_id == load.active_mode_id), None)
        if active is not None:
            out += max(active - min(m.power_w for m in load.modes), 0.0)
    return out


def _fresh(tele: SiteTelemetry | None, now: datetime, stale_after_s: float, has_battery: bool = True,
           ) -> tuple[float | None, float, float | None]:
    """Grid and battery power (None, 0: no fresh reading of both; a house without a battery, e.g. one
    of LAN devices only, reads no battery power: 0 W, its grid alone) and SoC (None: unknown)."""
    if (tele is None or not (tele.grid_power_w.usable and (tele.battery_power_w.usable or not has_battery))
            or (now - tele.measured_at).total_seconds() > stale_after_s):
        return None, 0.0, None
    assert tele.grid_power_w.value is not None
    battery_w = tele.battery_power_w.value if tele.battery_power_w.usable else None
    soc = tele.battery_soc_pct.value if tele.battery_soc_pct.usable else None
    return tele.grid_power_w.value, battery_w if battery_w is not None else 0.0, soc


class FeederController:
    """Runs ``compute_envelopes`` every ``interval_s`` while this replica leads; ``deliver`` sends
    a house its current signal (the planner's), which picks the envelope up from ``current``."""

    def __init__(self, store: StateStore, feeders: Sequence[Feeder], *, interval_s: float, stale_after_s: float,
                 deliver: Callable[[str], Awaitable[None]], send_envelopes: bool = True) -> None:
        self._store = store
        self._feeders = tuple(feeders)
        self.interval_s = interval_s
        self._stale_after_s = stale_after_s
        self._deliver = deliver
        self._send_envelopes = send_envelopes
        self.current: Mapping[str, FeederEnvelope] = {}
        self.loads: Mapping[str, FeederLoad] = {}
        self.rounds = 0

    def envelope(self, house_id: str, now: datetime) -> FeederEnvelope | None:
        env = self.current.get(house_id)
        return env if env is not None and now < env.valid_until else None

    @property
    def feeders(self) -> tuple[Feeder, ...]:
        return self._feeders

    async def step(self, now: datetime) -> None:
        envelopes, self.loads = await feeder_round(self._store, self._feeders, now, self.interval_s,
                                                   self._stale_after_s, slot_h=max(self.interval_s, 60.0) / 3600,
                                                   previous=self.current)
        self.rounds += 1
        if not self._send_envelopes:
            return
        self.current = envelopes
        for house in self.current:
            await self._deliver(house)
