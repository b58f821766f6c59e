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
    feeder_envelopes,
    make_before_break,
)
from aggregator.store.base import StateStore
from vpp_common.messages import ResourceKind, SiteLimits

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

    @property
    def over_limit_w(self) -> float:
        """How far the measured load is beyond a limit, W (0 within limits)."""
        return max(0.0, self.power_w - self.import_limit_w, -self.power_w - self.export_limit_w)


@dataclass(frozen=True, slots=True)
class Feeder:
    feeder_id: str
    houses: tuple[str, ...]
    import_limit_w: float  # inf = none
    export_limit_w: float


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
    """``compute_envelopes`` plus each feeder's measured load (every feeder, limited or not).
    ``previous``: the envelopes in force; a house held to one cannot want to export more than it
    allows (a reading above it is a transient: a step of the sun or a limit not yet in force),
    so its wanted export is taken no higher than its envelope."""
    out: dict[str, FeederEnvelope] = {}
    loads: dict[str, FeederLoad] = {}
    until = now + timedelta(seconds=5 * interval_s)
    for f in feeders:
        limited = bool(np.isfinite(f.import_limit_w) or np.isfinite(f.export_limit_w))
        base, ch, dis, rated, imp_cap, exp_cap, wanted = [], [], [], [], [], [], []
        measured_w, fresh_n = 0.0, 0
        for h in f.houses:
            rec = await store.get_house(h)
            tele = await store.get_telemetry(h)
            flex = await store.get_flexibility(h)
            cap_imp = rec.hello.limits.max_import_w if rec else float("inf")
            cap_exp = rec.hello.limits.max_export_w if rec else float("inf")
            fresh = (tele is not None and tele.grid_power_w.usable and tele.battery_power_w.usable
                     and (now - tele.measured_at).total_seconds() <= stale_after_s)
            st = flex.storages[0] if flex is not None and flex.storages else None
            rated.append(sum(r.rated_power_w for r in rec.hello.resources if r.kind is ResourceKind.PV) if rec else 0.0)
            imp_cap.append(cap_imp)
            exp_cap.append(cap_exp)
            if not fresh or tele is None:
                # unknown: assume it exports its whole cap (worst case) and can absorb nothing
                base.append(-min(cap_exp, 1e6))
                wanted.append(-min(cap_exp, 1e6))
                ch.append(0.0)
                dis.append(0.0)
                continue
            assert tele.grid_power_w.value is not None and tele.battery_power_w.value is not None
            measured_w += tele.grid_power_w.value
            fresh_n += 1
            held = previous.get(h) if previous is not None else None
            want = tele.grid_power_w.value  # what it does now, within its last envelope
            if held is not None and now < held.valid_until:
                want = max(want, -held.limits.max_export_w)
            wanted.append(want)
            base.append(tele.grid_power_w.value - tele.battery_power_w.value)
            soc = tele.battery_soc_pct.value if tele.battery_soc_pct.usable else None
            if st is None or soc is None or st.capacity_wh <= 0:
                ch.append(0.0)
                dis.append(0.0)
                continue
            room_w = max(0.0, (st.soc_max_pct - soc) / 100 * st.capacity_wh / (st.charge_efficiency * slot_h))
            have_w = (max(0.0, (soc - st.soc_min_pct) / 100 * st.capacity_wh * st.discharge_efficiency / slot_h)
                      if soc > st.reserve_soc_pct else 0.0)
            ch.append(min(st.max_charge_power_w, room_w))
            dis.append(min(st.max_discharge_power_w, have_w))
        loads[f.feeder_id] = FeederLoad(measured_w, fresh_n, len(f.houses), f.import_limit_w, f.export_limit_w)
        if not limited:
            continue
        e, i = feeder_envelopes(HousesNow(np.array(base), np.array(ch), np.array(dis), np.array(rated),
                                          np.array(imp_cap), np.array(exp_cap, dtype=float)),
                                f.export_limit_w, f.import_limit_w,
                                grid_wanted_w=np.array(wanted))
        e, i = np.minimum(e, exp_cap), np.minimum(i, imp_cap)
        if previous is not None:
            # a house may run at its envelope in force until it takes the new one up
            in_force = [x if (x := previous.get(h)) is not None and now < x.valid_until else None for h in f.houses]
            held_e = np.array([x.limits.max_export_w if x is not None else np.nan for x in in_force])
            held_i = np.array([x.limits.max_import_w if x is not None else np.nan for x in in_force])
            e = make_before_break(e, held_e, f.export_limit_w * SHARE_OF_LIMIT)
            i = make_before_break(i, held_i, f.import_limit_w * SHARE_OF_LIMIT)
        for k, h in enumerate(f.houses):
            out[h] = FeederEnvelope(SiteLimits(float(i[k]), float(e[k])), until)
    return out, loads


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
