"""Fleet dispatch problem as numpy arrays (pure: no I/O, no solver).

Sign convention (docs/architecture.md): power is positive when consumed at the point of
connection.  Load >= 0, PV production <= 0 (``pv_power_w``), battery charging
> 0, grid import > 0.  Caps and limits are positive magnitudes in W; ``inf``
means "no limit".  Arrays are per house x slot (N, T) unless stated.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from vpp_common.timeslots import SlotGrid


@dataclass(frozen=True)
class DispatchOptions:
    """Solver knobs.  Costs in currency per kWh unless stated."""

    throughput_cost_per_kwh: float = 0.005  # battery wear on charge + discharge; also discourages c&d together
    curtail_cost_per_kwh: float = 1e-4  # tiny: curtail only when it pays or a limit needs it
    penalty_per_kwh: float = 10.0  # price of exceeding a limit (relaxation); >> any energy price
    fairness_weight: float = 1e-3  # currency per slot per unit of the feeder's largest curtailment share
    time_limit_s: float = 30.0  # per block LP
    workers: int = 1  # 1 = in-process; >1 = ProcessPoolExecutor
    fix_modes_max_passes: int = 5  # re-solves that forbid simultaneous charge/discharge
    simultaneous_tol_w: float = 1.0  # min(charge, discharge) above this counts as simultaneous
    # Currency per kWh held per hour.  Plans are made on forecasts: among plans of equal cost, the
    # one that fills the battery as late as it can keeps room for PV above the forecast (the
    # feeder limit binds on the sunny days that a mean forecast underestimates).  Small enough
    # never to outweigh a price difference: 0.001 x 10 h = 0.01 per kWh.  Battery energy sold
    # to the grid does not get the early-discharge part of it (sell late: lp_build ``xb``).
    holding_cost_per_kwh_h: float = 0.001
    # Battery energy kept for a night heavier than forecast: where forecast PV does not cover
    # the load, the LP also serves (margin - 1) x the load forecast from the battery alone (a
    # reserve: no grid flow, not executed; lp_build's ``rsv``).  A forecast error costs
    # unevenly: a battery that runs empty buys at the import price, one that kept too much
    # sells it later at the export price or keeps it for tomorrow.  A house's night load is
    # off by ~25 % on a typical day (7-day mean, SimBench households), so a plan on the mean
    # sells what the night then needs.  1.0 = plan on the forecast as it is.  Measured on
    # vpp-sim's default scenario (fleet strategy, share of the perfect-foresight saving):
    # 1.0 -> 69.7 %, 1.25 -> 76.0 %, 1.5 -> 77.3 %, 2.0 -> 71.4 % (more kept is more
    # curtailed at noon when the night was as forecast).  Only where the plan has one future:
    # a problem with several (FleetProblem.scenario_load_w) hedges with its heavier ones instead.
    night_load_margin: float = 1.5
    # LP solver of the blocks: "highs" (highspy) or "glop" (OR-Tools model_builder).  Both
    # are exact.  Cold, HiGHS was ~10 % faster per 50-house feeder here (5.1 s vs 5.6 s
    # for 20 feeders); only HiGHS takes a starting basis, which makes a re-plan ~5x and a
    # fresh fleet ~2x cheaper (highs_block, solver_pool; benchmarks/dispatch.py).
    solver: str = "highs"


@dataclass(frozen=True)
class FleetProblem(SlotGrid):
    """One dispatch problem: N houses, T slots, feeder tree houses -> feeders -> transformers."""

    house_ids: tuple[str, ...]
    battery_ids: tuple[str, ...]  # resource id of each house's battery (setpoints use it)
    start: datetime  # first slot start, UTC
    slot_s: int
    load_w: np.ndarray  # (N, T) household load forecast, W >= 0
    pv_power_w: np.ndarray  # (N, T) PV forecast, W <= 0 (production negative)
    pv_rated_w: np.ndarray  # (N,) PV size, positive magnitude (fairness share base)
    capacity_wh: np.ndarray  # (N,)
    soc_pct: np.ndarray  # (N,) now
    soc_min_pct: np.ndarray  # (N,)
    soc_max_pct: np.ndarray  # (N,)
    reserve_soc_pct: np.ndarray  # (N,) floor over the horizon (>= soc_min)
    max_charge_w: np.ndarray  # (N,) positive magnitude
    max_discharge_w: np.ndarray  # (N,) positive magnitude
    charge_efficiency: np.ndarray  # (N,)
    discharge_efficiency: np.ndarray  # (N,)
    max_import_w: np.ndarray  # (N, T) per-house import cap
    max_export_w: np.ndarray  # (N, T) per-house export cap
    feeder_of: np.ndarray  # (N,) int index into feeder_ids
    feeder_ids: tuple[str, ...]
    transformer_of: np.ndarray  # (F,) int index into transformer_ids
    transformer_ids: tuple[str, ...]
    feeder_import_limit_w: np.ndarray  # (F, T) net import limit, inf = none
    feeder_export_limit_w: np.ndarray  # (F, T) net export limit (magnitude)
    transformer_import_limit_w: np.ndarray  # (X, T)
    transformer_export_limit_w: np.ndarray  # (X, T)
    import_price_per_kwh: np.ndarray  # (T,) may be negative
    export_price_per_kwh: np.ndarray  # (T,) paid for export; may be negative
    terminal_value_per_kwh: float = 0.10  # value of energy left in the battery at the horizon end
    ev_max_w: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) or empty = no EVs
    ev_need_wh: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) energy by deadline
    ev_deadline_slot: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # (N,) exclusive
    # Other futures, as likely as the one in ``load_w``/``pv_power_w``: (K-1, N, T) each (same
    # signs).  With any, the LP minimises the mean cost over the K futures; the batteries' charge
    # and discharge in the first ``nonanticipative_slots`` slots (what is done before the next
    # re-plan) are one decision for all of them, the rest may differ per future (recourse).
    # The plans follow the first future (``load_w``/``pv_power_w``).  Empty: one future.
    scenario_load_w: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    scenario_pv_power_w: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    nonanticipative_slots: int = 0

    @property
    def n(self) -> int:
        return len(self.house_ids)

    def validate(self) -> None:
        """Raise ValueError naming the field that has the wrong shape or sign."""
        n, t = self.n, self.t
        for name in ("load_w", "pv_power_w", "max_import_w", "max_export_w"):
            if getattr(self, name).shape != (n, t):
                raise ValueError(f"{name} must have shape ({n}, {t})")
        if np.any(self.pv_power_w > 1e-9):
            raise ValueError("pv_power_w must be <= 0 (production negative)")
        if np.any(self.load_w < -1e-9):
            raise ValueError("load_w must be >= 0")
        f = len(self.feeder_ids)
        if self.feeder_import_limit_w.shape != (f, t) or self.feeder_export_limit_w.shape != (f, t):
            raise ValueError(f"feeder limits must have shape ({f}, {t})")
        k = self.scenario_load_w.shape[0]
        if k and (self.scenario_load_w.shape != (k, n, t) or self.scenario_pv_power_w.shape != (k, n, t)):
            raise ValueError(f"scenario_load_w and scenario_pv_power_w must have shape (K, {n}, {t})")
        if k and (np.any(self.scenario_pv_power_w > 1e-9) or np.any(self.scenario_load_w < -1e-9)):
            raise ValueError("scenarios: load must be >= 0 and PV <= 0")

    @property
    def scenarios(self) -> int:
        """Futures the LP weighs: 1 (``load_w``/``pv_power_w``) + the others."""
        return 1 + self.scenario_load_w.shape[0]

    def expanded(self) -> FleetProblem:
        """The scenario LP's problem: every house, feeder and transformer once per future
        (future-major: house ``k * N + i`` is house ``i`` in future ``k``), without scenarios."""
        k = self.scenarios
        if k == 1:
            return self
        f, x = len(self.feeder_ids), len(self.transformer_ids)

        def tile(a: np.ndarray) -> np.ndarray:
            return np.concatenate([a] * k) if a.size else a

        return replace(
            self,
            house_ids=tuple(f"{h}#{j}" if j else h for j in range(k) for h in self.house_ids),
            battery_ids=self.battery_ids * k,
            load_w=np.concatenate([self.load_w, *self.scenario_load_w]),
            pv_power_w=np.concatenate([self.pv_power_w, *self.scenario_pv_power_w]),
            pv_rated_w=tile(self.pv_rated_w), capacity_wh=tile(self.capacity_wh), soc_pct=tile(self.soc_pct),
            soc_min_pct=tile(self.soc_min_pct), soc_max_pct=tile(self.soc_max_pct),
            reserve_soc_pct=tile(self.reserve_soc_pct), max_charge_w=tile(self.max_charge_w),
            max_discharge_w=tile(self.max_discharge_w), charge_efficiency=tile(self.charge_efficiency),
            discharge_efficiency=tile(self.discharge_efficiency), max_import_w=tile(self.max_import_w),
            max_export_w=tile(self.max_export_w),
            feeder_of=np.concatenate([self.feeder_of + j * f for j in range(k)]),
            feeder_ids=tuple(f"{fid}#{j}" if j else fid for j in range(k) for fid in self.feeder_ids),
            transformer_of=np.concatenate([self.transformer_of + j * x for j in range(k)]),
            transformer_ids=tuple(f"{t}#{j}" if j else t for j in range(k) for t in self.transformer_ids),
            feeder_import_limit_w=tile(self.feeder_import_limit_w),
            feeder_export_limit_w=tile(self.feeder_export_limit_w),
            transformer_import_limit_w=tile(self.transformer_import_limit_w),
            transformer_export_limit_w=tile(self.transformer_export_limit_w),
            ev_max_w=tile(self.ev_max_w), ev_need_wh=tile(self.ev_need_wh),
            ev_deadline_slot=tile(self.ev_deadline_slot),
            scenario_load_w=np.zeros((0, 0, 0)), scenario_pv_power_w=np.zeros((0, 0, 0)),
        )

    def subset(self, houses: np.ndarray) -> FleetProblem:
        """The sub-problem of ``houses`` (sorted indices) with only the feeders/transformers they use."""
        houses = np.asarray(houses, dtype=int)
        feeders = np.unique(self.feeder_of[houses])
        f_map = np.full(len(self.feeder_ids), -1)
        f_map[feeders] = np.arange(len(feeders))
        xs = np.unique(self.transformer_of[feeders])
        x_map = np.full(len(self.transformer_ids), -1)
        x_map[xs] = np.arange(len(xs))
        has_ev = self.ev_max_w.size > 0
        return replace(
            self,
            house_ids=tuple(self.house_ids[i] for i in houses),
            battery_ids=tuple(self.battery_ids[i] for i in houses),
            load_w=self.load_w[houses],
            pv_power_w=self.pv_power_w[houses],
            pv_rated_w=self.pv_rated_w[houses],
            capacity_wh=self.capacity_wh[houses],
            soc_pct=self.soc_pct[houses],
            soc_min_pct=self.soc_min_pct[houses],
            soc_max_pct=self.soc_max_pct[houses],
            reserve_soc_pct=self.reserve_soc_pct[houses],
            max_charge_w=self.max_charge_w[houses],
            max_discharge_w=self.max_discharge_w[houses],
            charge_efficiency=self.charge_efficiency[houses],
            discharge_efficiency=self.discharge_efficiency[houses],
            max_import_w=self.max_import_w[houses],
            max_export_w=self.max_export_w[houses],
            feeder_of=f_map[self.feeder_of[houses]],
            feeder_ids=tuple(self.feeder_ids[i] for i in feeders),
            transformer_of=x_map[self.transformer_of[feeders]],
            transformer_ids=tuple(self.transformer_ids[i] for i in xs),
            feeder_import_limit_w=self.feeder_import_limit_w[feeders],
            feeder_export_limit_w=self.feeder_export_limit_w[feeders],
            transformer_import_limit_w=self.transformer_import_limit_w[xs],
            transformer_export_limit_w=self.transformer_export_limit_w[xs],
            ev_max_w=self.ev_max_w[houses] if has_ev else self.ev_max_w,
            ev_need_wh=self.ev_need_wh[houses] if has_ev else self.ev_need_wh,
            ev_deadline_slot=self.ev_deadline_slot[houses] if has_ev else self.ev_deadline_slot,
            scenario_load_w=self.scenario_load_w[:, houses] if self.scenario_load_w.size else self.scenario_load_w,
            scenario_pv_power_w=(self.scenario_pv_power_w[:, houses] if self.scenario_pv_power_w.size
                                 else self.scenario_pv_power_w),
        )

    def blocks(self) -> list[np.ndarray]:
        """Independent house groups: one per transformer with a finite limit, else one per feeder.

        Without rows that span blocks the LP is block-diagonal, so solving blocks
        separately gives exactly the monolithic optimum.
        """
        x_limited = np.isfinite(self.transformer_import_limit_w).any(axis=1) | np.isfinite(
            self.transformer_export_limit_w
        ).any(axis=1)
        # block key: transformer index if limited, else (num_transformers + feeder index)
        key = np.where(
            x_limited[self.transformer_of[self.feeder_of]],
            self.transformer_of[self.feeder_of],
            len(self.transformer_ids) + self.feeder_of,
        )
        order = np.argsort(key, kind="stable")
        _, first = np.unique(key[order], return_index=True)
        return [np.sort(b) for b in np.split(order, first[1:])]
