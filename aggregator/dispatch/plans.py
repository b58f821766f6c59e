"""Fleet solution -> per-house DispatchPlan with targets, envelopes and reasons for people.

Sign convention: battery power = charge - discharge (charging > 0); grid power =
import - export (import > 0).  Envelopes are in W in the same convention.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

import numpy as np

from aggregator.dispatch.block_solve import BlockSolution
from aggregator.dispatch.problem import FleetProblem
from vpp_common.messages import DispatchPlan, Envelope, FallbackMode, PlanSlot, Setpoint

TOL_W = 1.0  # a limit "binds" when the exchange is within this of it


@dataclass(frozen=True)
class Relaxation:
    """A limit that could not be met: where, when, and by how much (W above the limit)."""

    # "feeder_import", "feeder_export", "transformer_import", "transformer_export", "house_import",
    # "house_export", "fleet_export_event", "fleet_import_event"
    kind: str
    where: str  # feeder, transformer or house id; the event id for fleet events
    slot_start: datetime
    excess_w: float


def relaxations(p: FleetProblem, blocks: list[BlockSolution], tol_w: float = TOL_W) -> list[Relaxation]:
    """Every (limit, slot) whose penalised slack is above ``tol_w``."""
    out: list[Relaxation] = []

    def emit(kind: str, ids: tuple[str, ...], arr: np.ndarray) -> None:
        for i, t in zip(*np.nonzero(arr > tol_w), strict=True):
            out.append(Relaxation(kind, ids[i], p.start + timedelta(seconds=int(t) * p.slot_s), float(arr[i, t])))

    hid = lambda b: tuple(p.house_ids[i] for i in b.houses)  # noqa: E731
    for b in blocks:
        emit("feeder_import", b.feeder_ids, b.feeder_over_import_w)
        emit("feeder_export", b.feeder_ids, b.feeder_over_export_w)
        emit("transformer_import", b.transformer_ids, b.transformer_over_import_w)
        emit("transformer_export", b.transformer_ids, b.transformer_over_export_w)
        emit("house_import", hid(b), b.over_import_w)
        emit("house_export", hid(b), b.over_export_w)
    return out


# The reasons most cells get: fixed words, coded without a Python loop over the cells
_SIMPLE = ("self-consumption", "charge: cheap import", "charge: store PV surplus", "discharge: peak price",
           "discharge: cover load instead of import")


def _reasons(p: FleetProblem, b: BlockSolution, sub: FleetProblem) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Per house and slot, the limit or price that drove the plan, in words: (codes (N, T)
    into the table of words, the table, and where a shared limit binds or a cap was relaxed).

    Most cells are plain self-consumption or a charge/discharge for price or PV; they are
    coded with array operations.  Only cells where a limit binds, a cap is relaxed, a
    price is negative or PV is curtailed are worded one by one (their words carry numbers).
    """
    t = p.t
    grid = b.import_w - b.export_w + b.over_import_w - b.over_export_w
    net_f = np.zeros((len(sub.feeder_ids), t))
    np.add.at(net_f, sub.feeder_of, grid)
    exp_bind = (net_f <= -sub.feeder_export_limit_w + TOL_W + b.feeder_over_export_w) & np.isfinite(sub.feeder_export_limit_w)
    imp_bind = (net_f >= sub.feeder_import_limit_w - TOL_W - b.feeder_over_import_w) & np.isfinite(sub.feeder_import_limit_w)
    pi, pe = p.import_price_per_kwh, p.export_price_per_kwh
    lo, hi = np.quantile(pi, 0.25), np.quantile(pi, 0.75)
    bat = b.charge_w - b.discharge_w
    exp_h, imp_h = exp_bind[sub.feeder_of], imp_bind[sub.feeder_of]
    over = (b.over_export_w > TOL_W) | (b.over_import_w > TOL_W)
    curtailed = b.curtail_w > TOL_W
    # the battery's own words, the last part of every reason
    codes = np.select(
        [bat > TOL_W, bat < -TOL_W],
        [np.where((pi <= lo) & (b.import_w > TOL_W), 1, 2), np.where(pi >= hi, 3, 4)],
        0,
    ).astype(np.int32)
    special = exp_h | imp_h | over | curtailed | (pi < 0) | (pe < 0)
    table = list(_SIMPLE)
    index = {w: i for i, w in enumerate(table)}
    ks, ss = np.nonzero(special)
    if len(ks):
        exp_lim, imp_lim = sub.feeder_export_limit_w, sub.feeder_import_limit_w
        rated = np.maximum(sub.pv_rated_w, 1.0)
        for k, s, f, c_ks, eb, ib, ov, pil, pel, code in zip(
            ks.tolist(), ss.tolist(), sub.feeder_of[ks].tolist(), b.curtail_w[ks, ss].tolist(),
            exp_h[ks, ss].tolist(), imp_h[ks, ss].tolist(), over[ks, ss].tolist(), pi[ss].tolist(),
            pe[ss].tolist(), codes[ks, ss].tolist(), strict=True,
        ):
            parts = []
            fid = sub.feeder_ids[f]
            if eb:
                parts.append(f"feeder {fid} export limit {exp_lim[f, s] / 1000:.1f} kW binds")
                if c_ks > TOL_W:
                    parts.append(
                        f"PV curtailed {c_ks / 1000:.2f} kW ({c_ks / rated[k]:.0%} of PV size; no house on the"
                        f" feeder above {b.fairness_level[f, s]:.0%})"
                    )
            if ib:
                parts.append(f"feeder {fid} import limit {imp_lim[f, s] / 1000:.1f} kW binds")
            if ov:
                parts.append("house cap relaxed (could not be met)")
            if pil < 0:
                parts.append(f"negative import price ({pil:.2f}/kWh)")
            if pel < 0:
                parts.append(f"negative export price ({pel:.2f}/kWh)")
            if c_ks > TOL_W and not eb and pel >= 0:
                parts.append("PV curtailed: house export cap")
            if code:
                parts.append(table[code])
            why = "; ".join(parts) or table[0]
            if why not in index:
                index[why] = len(table)
                table.append(why)
            codes[k, s] = index[why]
    return codes, table, exp_h | imp_h | over


def _export_binds_later(sub: FleetProblem, b: BlockSolution) -> np.ndarray:
    """(F, T): True where the feeder's export limit binds in a later slot of the plan."""
    grid = b.import_w - b.export_w + b.over_import_w - b.over_export_w
    net = np.zeros((len(sub.feeder_ids), grid.shape[1]))
    np.add.at(net, sub.feeder_of, grid)
    binds = (net <= -sub.feeder_export_limit_w + TOL_W + b.feeder_over_export_w) & np.isfinite(sub.feeder_export_limit_w)
    later = np.zeros_like(binds)
    later[:, :-1] = np.flip(np.logical_or.accumulate(np.flip(binds[:, 1:], axis=1), axis=1), axis=1)
    return later


def _feeder_budgets(sub: FleetProblem, grid_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per house and slot, the grid exchange bounds (W) that keep every feeder within its limits
    whatever the forecasts got wrong: the planned exchange plus a share of the feeder's
    headroom (export headroom by PV size, import headroom by import cap).  The bounds of a
    feeder's houses add up to its limit, so houses that keep to them keep the feeder in.
    ``-inf``/``inf`` where the feeder has no limit.
    """
    f = len(sub.feeder_ids)
    net = np.zeros((f, grid_w.shape[1]))
    np.add.at(net, sub.feeder_of, grid_w)
    head_e = np.maximum(net + sub.feeder_export_limit_w, 0.0)  # how much more the feeder may export
    head_i = np.maximum(sub.feeder_import_limit_w - net, 0.0)

    def shares(weight: np.ndarray) -> np.ndarray:
        total = np.zeros(f)
        np.add.at(total, sub.feeder_of, weight)
        return weight / total[sub.feeder_of]

    w_e = shares(np.maximum(sub.pv_rated_w, 1.0))[:, None]
    w_i = shares(np.maximum(np.nan_to_num(sub.max_import_w.mean(axis=1), posinf=1e5), 1.0))[:, None]
    return grid_w - w_e * head_e[sub.feeder_of], grid_w + w_i * head_i[sub.feeder_of]


@dataclass(frozen=True)
class PackedPlans:
    """The plans of one solved block as arrays, (houses, slots) each.

    A solver process sends these rather than DispatchPlan objects: a plan is ~400
    small objects, and pickling them across the process boundary cost more than the
    solve at thousands of houses.  :meth:`plan` makes one house's DispatchPlan.
    """

    house_ids: tuple[str, ...]
    battery_ids: tuple[str, ...]
    plan_ids: tuple[str, ...]
    start: datetime
    slot_s: int
    version: int
    created_at: datetime
    valid_for: timedelta
    target_w: np.ndarray  # battery target, charging > 0
    env_lo_w: np.ndarray  # battery envelope
    env_hi_w: np.ndarray
    grid_lo_w: np.ndarray  # grid exchange envelope, import > 0
    grid_hi_w: np.ndarray
    reason_codes: np.ndarray  # index into reasons
    reasons: tuple[str, ...]

    @cached_property
    def starts(self) -> tuple[datetime, ...]:
        """The slots' starts, the same for every plan of the block (made once per block)."""
        return tuple(self.start + timedelta(seconds=s * self.slot_s) for s in range(self.target_w.shape[1]))

    def plan(self, k: int) -> DispatchPlan:
        bid, reasons = self.battery_ids[k], self.reasons
        rows = zip(self.starts, self.target_w[k].tolist(), self.env_lo_w[k].tolist(), self.env_hi_w[k].tolist(),
                   self.grid_lo_w[k].tolist(), self.grid_hi_w[k].tolist(), self.reason_codes[k].tolist(),
                   strict=True)
        # equal envelopes and setpoints are one object (frozen): a plan's slots repeat them, and each
        # object made costs the service's event loop and its garbage collector (docs/performance.md)
        made: dict[tuple[float, ...], Envelope] = {}
        setpoints: dict[tuple[float, ...], tuple[Setpoint]] = {}
        sign = math.copysign  # 0.0 and -0.0 are equal keys: a key with a zero carries the signs

        def envelope(lo: float, hi: float) -> Envelope:
            key = (lo, hi) if lo and hi else (lo, hi, sign(1.0, lo), sign(1.0, hi))
            if (env := made.get(key)) is None:
                env = made[key] = Envelope(lo, hi)
            return env

        def setpoint(tgt: float, lo: float, hi: float) -> tuple[Setpoint]:
            key = (tgt, lo, hi) if tgt and lo and hi else (tgt, lo, hi, sign(1.0, tgt), sign(1.0, lo), sign(1.0, hi))
            if (sp := setpoints.get(key)) is None:
                sp = setpoints[key] = (Setpoint(bid, tgt, envelope(lo, hi)),)
            return sp

        slots = tuple(PlanSlot(st, setpoint(tgt, lo, hi), envelope(g_lo, g_hi), reasons[r])
                      for st, tgt, lo, hi, g_lo, g_hi, r in rows)
        return DispatchPlan(plan_id=self.plan_ids[k], version=self.version, created_at=self.created_at,
                            valid_from=self.start, valid_until=self.start + self.valid_for,
                            slot_duration_s=self.slot_s, slots=slots, fallback=FallbackMode.SELF_CONSUMPTION)


def pack_plans(
    p: FleetProblem,
    b: BlockSolution,
    *,
    created_at: datetime,
    version: int,
    valid_for: timedelta | None = None,
    extra_reasons: Mapping[int, Sequence[str]] | None = None,
) -> PackedPlans:
    """The plans of one solved block, as arrays (:meth:`PackedPlans.plan` makes one house's).

    Battery target = charge - discharge; envelope: see the comment below (the agent
    follows its real house balance within it).  Grid envelope: the house caps, tightened
    to the house's share of its feeder's limits (``_feeder_budgets``).
    ``extra_reasons``: house index -> per-slot text ("" for none) added to the slot's
    reason, e.g. that a fleet event changed the plan; a text that says "binds" fixes the
    battery envelope to the target, as a binding feeder limit does.
    """
    sub = p.subset(b.houses)
    codes, table, fixed = _reasons(p, b, sub)
    n, t = len(b.houses), p.t
    if extra_reasons:  # words of fleet events for the houses whose schedule they changed
        index = {w: i for i, w in enumerate(table)}
        for k, h in enumerate(b.houses.tolist()):
            extra = extra_reasons.get(h) or ()
            for s in (s for s, words in enumerate(extra) if words):
                why = table[codes[k, s]]
                why = extra[s] if why == "self-consumption" else f"{why}; {extra[s]}"
                if why not in index:
                    index[why] = len(table)
                    table.append(why)
                codes[k, s] = index[why]
                fixed[k, s] |= "binds" in why or "relaxed" in why
    tgt = np.clip(b.charge_w - b.discharge_w, -p.max_discharge_w[b.houses, None], p.max_charge_w[b.houses, None])
    grid = b.import_w - b.export_w + b.over_import_w - b.over_export_w
    g_lo_all, g_hi_all = _feeder_budgets(sub, grid)
    # the house's share of the feeder's budget, within its own caps, and never excluding the plan itself
    grid_lo = np.minimum(np.maximum(g_lo_all, -p.max_export_w[b.houses]), grid)
    grid_hi = np.maximum(np.minimum(g_hi_all, p.max_import_w[b.houses]), grid)
    room_later = _export_binds_later(sub, b)[sub.feeder_of]
    p_ch = np.broadcast_to(p.max_charge_w[b.houses, None], (n, t))
    p_dis = np.broadcast_to(-p.max_discharge_w[b.houses, None], (n, t))  # the lowest battery power
    # The agent follows its real house balance within the envelope, so forecast errors
    # land where they do least harm: fixed where a shared limit binds or the battery sells
    # to the grid; wide open where the plan is plain self-consumption; otherwise the plan's
    # intent is a bound (keep at least this much charge / charge at least this much from
    # the grid: [tgt, P_ch]; leave room, export the rest: [-P_dis, tgt]).  With the feeder's
    # export limit binding later today, the room planned for it is kept and more PV than
    # forecast now is exported while the feeder can take it.
    exact = fixed | ((tgt < -TOL_W) & (grid < -TOL_W))
    balanced = np.abs(grid) <= TOL_W
    keep_room = balanced & (tgt >= 0) & room_later
    cases = [exact, keep_room, balanced, grid > 0]
    env_lo = np.select(cases, [tgt, p_dis, p_dis, np.minimum(tgt, p_ch)], p_dis)
    env_hi = np.select(cases, [tgt, tgt, p_ch, p_ch], np.maximum(tgt, p_dis))
    return PackedPlans(
        house_ids=tuple(p.house_ids[h] for h in b.houses.tolist()),
        battery_ids=tuple(p.battery_ids[h] for h in b.houses.tolist()),
        plan_ids=tuple(str(uuid.uuid4()) for _ in range(n)),
        start=p.start, slot_s=p.slot_s, version=version, created_at=created_at,
        valid_for=valid_for or timedelta(seconds=p.slot_s * p.t),
        target_w=tgt, env_lo_w=env_lo, env_hi_w=env_hi,
        grid_lo_w=grid_lo, grid_hi_w=grid_hi, reason_codes=codes, reasons=tuple(table),
    )


class LazyPlans(Mapping[str, DispatchPlan]):
    """House id -> DispatchPlan, made from :class:`PackedPlans` at each lookup (not kept: the
    service looks each up once, and thousands of plans kept as objects until the cycle ends
    only make the garbage collector's full passes longer).

    Pickles as the packed arrays and the ready plans (fallbacks): cheap to send from a
    solver process.
    """

    def __init__(self, packs: Sequence[PackedPlans], ready: Mapping[str, DispatchPlan], order: Sequence[str],
                 dropped: frozenset[str] = frozenset()) -> None:
        self._packs = list(packs)
        self._ready = {h: p for h, p in ready.items() if h not in dropped}
        self._dropped = dropped  # houses of the packs without a plan (LazyPlans.without)
        self._where = {hid: (i, k) for i, pk in enumerate(self._packs) for k, hid in enumerate(pk.house_ids)
                       if hid not in dropped}
        self._order = [h for h in order if h in self._where or h in self._ready]

    def __reduce__(self) -> tuple[object, ...]:
        return (LazyPlans, (self._packs, self._ready, self._order, self._dropped))

    @property
    def packs(self) -> tuple[PackedPlans, ...]:
        return tuple(self._packs)  # the solved blocks' plans as arrays (houses ``without`` too)

    def bad_houses(self, bad_rows: Callable[[PackedPlans], list[int]]) -> list[str]:
        """Houses whose plan has a number the agent must refuse: ``bad_rows`` of each pack, and
        the ready plans with a non-finite setpoint or envelope."""
        out = [pk.house_ids[k] for pk in self._packs for k in bad_rows(pk) if pk.house_ids[k] not in self._dropped]
        return out + [h for h, plan in self._ready.items() if not plan_is_finite(plan)]

    def without(self, houses: Sequence[str]) -> LazyPlans:
        return LazyPlans(self._packs, self._ready, self._order, self._dropped | frozenset(houses))

    def __getitem__(self, house_id: str) -> DispatchPlan:
        plan = self._ready.get(house_id)
        if plan is None:
            i, k = self._where[house_id]  # KeyError for an unknown house, as a dict
            plan = self._packs[i].plan(k)
        return plan

    def __contains__(self, house_id: object) -> bool:
        return house_id in self._ready or house_id in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)


def plan_is_finite(plan: DispatchPlan) -> bool:
    """Every battery target and envelope finite; grid envelopes without NaN or a bound at the
    wrong infinity (an infinite bound on its own side is no bound), none inverted."""
    for slot in plan.slots:
        for sp in slot.setpoints:
            v = (sp.target_power_w, sp.envelope.min_w, sp.envelope.max_w)
            if not all(math.isfinite(x) for x in v) or v[1] > v[2]:
                return False
        g = slot.grid_envelope
        if g is not None and not (g.min_w < math.inf and g.max_w > -math.inf and g.min_w <= g.max_w):
            return False
    return True


def lease_end(horizon_end: datetime, made_at: datetime, lease_s: float) -> datetime:
    """When a plan made at ``made_at`` stops applying: ``lease_s`` after it was made (not after
    the start of its first slot: with lease_s < slot_s a plan made at 07:09:09 then expired at
    07:10:00, issue 20), never past the end of its slots (``horizon_end``)."""
    return min(horizon_end, made_at + timedelta(seconds=lease_s))


def shift_plan(plan: DispatchPlan, now: datetime, version: int) -> DispatchPlan | None:
    """The previous plan with its past slots dropped, or None when nothing of it is left."""
    slots = tuple(s for s in plan.slots if s.start + timedelta(seconds=plan.slot_duration_s) > now)
    if not slots or plan.valid_until <= now:
        return None
    return DispatchPlan(
        plan_id=str(uuid.uuid4()),
        version=version,
        created_at=now,
        valid_from=max(plan.valid_from, slots[0].start),
        valid_until=plan.valid_until,
        slot_duration_s=plan.slot_duration_s,
        slots=slots,
        fallback=plan.fallback,
        fallback_max_export_w=plan.fallback_max_export_w,
    )


def self_consumption_plan(p: FleetProblem, h: int, *, created_at: datetime, version: int, why: str) -> DispatchPlan:
    """Last resort when a block has no solution and no previous plan: battery free within its ratings."""
    env = Envelope(-float(p.max_discharge_w[h]), float(p.max_charge_w[h]))
    slots = tuple(
        PlanSlot(
            start=p.start + timedelta(seconds=s * p.slot_s),
            setpoints=(Setpoint(p.battery_ids[h], 0.0, env),),
            grid_envelope=Envelope(-float(p.max_export_w[h, s]), float(p.max_import_w[h, s])),
            reason=f"self-consumption fallback: {why}",
        )
        for s in range(p.t)
    )
    return DispatchPlan(
        plan_id=str(uuid.uuid4()),
        version=version,
        created_at=created_at,
        valid_from=p.start,
        valid_until=p.start + timedelta(seconds=p.slot_s * p.t),
        slot_duration_s=p.slot_s,
        slots=slots,
    )
