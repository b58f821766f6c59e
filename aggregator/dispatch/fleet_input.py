"""From the fleet's stored state to a ``FleetProblem`` (pure preparation, numpy only).

Each house brings its limits (Hello, tightened by temporary overrides), its
battery (FRBC flexibility) and its own load and PV forecasts.  Forecasts are
re-indexed onto the problem's slots; where a house sent none, load is a flat
``default_load_w`` and PV zero (the optimiser then simply plans less PV).
Houses on no configured feeder share unlimited pseudo-feeders of at most
``UNASSIGNED_BLOCK_HOUSES`` houses (``unassigned:<k>``, in house-id order).  Nothing
couples them, so any grouping gives the same optimum; groups of about a feeder's
size keep the cost linear in the number of houses without paying the per-LP
overhead once per house (5,000 single-house LPs took ~47 s in one solver process,
100 groups of 50 take a few seconds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from aggregator.dispatch.futures import Future, futures_fields
from aggregator.dispatch.problem import FleetProblem
from vpp_common.messages import (
    PowerForecast,
    ShiftableRunFlexibility,
    SiteLimits,
    StorageFlexibility,
)


@dataclass(frozen=True, slots=True)
class HouseInput:
    house_id: str
    limits: SiteLimits
    storage: StorageFlexibility
    load_forecast: PowerForecast | None = None  # W >= 0
    pv_forecast: PowerForecast | None = None  # W <= 0
    pv_rated_w: float = 0.0  # magnitude; fairness share base
    feeder_id: str | None = None
    pv_clear_sky_forecast: PowerForecast | None = None  # W <= 0: what the panels give under a clear sky
    shiftable_runs: tuple[ShiftableRunFlexibility, ...] = ()  # S2 PPBC runs (aggregator.dispatch.runs)
    # with several storages (its battery first, then S2 FRBC RMs'): ``storage`` is their merge and
    # the plan's setpoint is split among these (aggregator.dispatch.storages); else empty
    storage_parts: tuple[StorageFlexibility, ...] = ()


@dataclass(frozen=True, slots=True)
class FeederLimits:
    """Net limits of a feeder in W (positive magnitudes; inf = none) and its transformer."""

    import_limit_w: float = float("inf")
    export_limit_w: float = float("inf")
    transformer_id: str = "default"


def _on_slots(fc: PowerForecast | None, start: datetime, slot_s: int, t: int, default: float) -> np.ndarray:
    """Forecast values for the problem's ``t`` slots from ``start``; gaps get ``default``
    (before the forecast) or its last value (after it)."""
    out = np.full(t, default, dtype=float)
    if fc is None or not fc.values_w or fc.slot_s != slot_s:
        return out
    values = np.asarray(fc.values_w, dtype=float)
    offset = int(round((start - fc.start).total_seconds() / slot_s))
    idx = np.arange(t) + offset
    inside = (idx >= 0) & (idx < len(values))
    out[inside] = values[idx[inside]]
    out[idx >= len(values)] = values[-1]
    return out


UNASSIGNED_BLOCK_HOUSES = 50
DEFAULT_LOAD_W = 400.0


def forecast_arrays(houses: Sequence[HouseInput], start: datetime, slot_s: int, t: int,
                    default_load_w: float = DEFAULT_LOAD_W) -> tuple[np.ndarray, np.ndarray]:
    """(N, T) the houses' load (W >= 0) and PV (W <= 0) forecasts on the problem's slots."""
    n = len(houses)
    load = np.array([np.maximum(_on_slots(h.load_forecast, start, slot_s, t, default_load_w), 0.0)
                     for h in houses]).reshape(n, t)
    pv = np.array([np.minimum(_on_slots(h.pv_forecast, start, slot_s, t, 0.0), 0.0) for h in houses]).reshape(n, t)
    return load, pv


def prepare_problem(houses: Sequence[HouseInput], *, start: datetime, slot_s: int, horizon_slots: int,
                    import_price_per_kwh: np.ndarray, export_price_per_kwh: np.ndarray,
                    feeders: Mapping[str, FeederLimits] | None = None,
                    default_load_w: float = DEFAULT_LOAD_W, futures: Sequence[Future] = (),
                    tied_slots: int = 0) -> FleetProblem:
    """``futures``: the futures the LP weighs instead of the forecasts alone (``aggregator.dispatch.futures``;
    ``Future(1, 0)`` is the forecast itself), departing from the forecasts after ``tied_slots`` (the
    slots until the next re-plan).  A house without a clear-sky PV forecast keeps its PV forecast
    in every future."""
    feeders = dict(feeders or {})
    t = horizon_slots
    n = len(houses)
    feeder_ids: list[str] = []
    feeder_index: dict[str, int] = {}
    feeder_of = np.empty(n, dtype=int)
    unassigned = sorted((h.house_id, i) for i, h in enumerate(houses) if h.feeder_id not in feeders)
    group = {i: f"unassigned:{k // UNASSIGNED_BLOCK_HOUSES}" for k, (_, i) in enumerate(unassigned)}
    for i, h in enumerate(houses):
        fid = h.feeder_id if h.feeder_id in feeders else group[i]
        if fid not in feeder_index:
            feeder_index[fid] = len(feeder_ids)
            feeder_ids.append(fid)
        feeder_of[i] = feeder_index[fid]
    transformer_ids: list[str] = []
    transformer_index: dict[str, int] = {}
    transformer_of = np.empty(len(feeder_ids), dtype=int)
    f_imp = np.full((len(feeder_ids), t), np.inf)
    f_exp = np.full((len(feeder_ids), t), np.inf)
    for j, fid in enumerate(feeder_ids):
        lim = feeders.get(fid, FeederLimits(transformer_id=f"tx:{fid}"))
        f_imp[j], f_exp[j] = lim.import_limit_w, lim.export_limit_w
        if lim.transformer_id not in transformer_index:
            transformer_index[lim.transformer_id] = len(transformer_ids)
            transformer_ids.append(lim.transformer_id)
        transformer_of[j] = transformer_index[lim.transformer_id]
    x = len(transformer_ids)

    def col(get) -> np.ndarray:  # type: ignore[no-untyped-def]
        return np.array([get(h) for h in houses], dtype=float)

    load, pv = forecast_arrays(houses, start, slot_s, t, default_load_w)
    clear = pv if not futures else np.array(
        [pv[i] if h.pv_clear_sky_forecast is None else
         np.minimum(_on_slots(h.pv_clear_sky_forecast, start, slot_s, t, 0.0), 0.0)
         for i, h in enumerate(houses)]).reshape(n, t)
    return FleetProblem(
        house_ids=tuple(h.house_id for h in houses),
        battery_ids=tuple(h.storage.resource_id for h in houses),
        start=start, slot_s=slot_s,
        pv_rated_w=col(lambda h: h.pv_rated_w),
        capacity_wh=col(lambda h: h.storage.capacity_wh),
        soc_pct=col(lambda h: min(max(h.storage.soc_pct, h.storage.soc_min_pct), h.storage.soc_max_pct)),
        soc_min_pct=col(lambda h: h.storage.soc_min_pct),
        soc_max_pct=col(lambda h: h.storage.soc_max_pct),
        reserve_soc_pct=col(lambda h: max(h.storage.reserve_soc_pct, h.storage.soc_min_pct)),
        max_charge_w=col(lambda h: h.storage.max_charge_power_w),
        max_discharge_w=col(lambda h: h.storage.max_discharge_power_w),
        charge_efficiency=col(lambda h: h.storage.charge_efficiency),
        discharge_efficiency=col(lambda h: h.storage.discharge_efficiency),
        max_import_w=np.repeat(col(lambda h: h.limits.max_import_w)[:, None], t, axis=1),
        max_export_w=np.repeat(col(lambda h: h.limits.max_export_w)[:, None], t, axis=1),
        feeder_of=feeder_of, feeder_ids=tuple(feeder_ids),
        transformer_of=transformer_of, transformer_ids=tuple(transformer_ids),
        feeder_import_limit_w=f_imp, feeder_export_limit_w=f_exp,
        transformer_import_limit_w=np.full((x, t), np.inf), transformer_export_limit_w=np.full((x, t), np.inf),
        import_price_per_kwh=np.asarray(import_price_per_kwh, dtype=float),
        export_price_per_kwh=np.asarray(export_price_per_kwh, dtype=float),
        **futures_fields(load, pv, clear, tuple(futures), tied_slots),  # type: ignore[arg-type]
    )
