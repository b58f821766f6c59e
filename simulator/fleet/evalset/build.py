"""One builder for every scenario of the evaluation set: a ``Spec`` in, a ``Scenario`` and its
``EvalMeta`` out.  Deterministic for the spec (its seed); no I/O besides the shipped files."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from simulator.fleet.default_scenario import LATITUDE, LONGITUDE, SLOT_S, _profiles
from simulator.fleet.evalset import loads, tariffs, weather
from simulator.fleet.model import House, PriceKnowledge, Scenario

GERMANY = "germany"  # SimBench PV (no temperature: no heating or cooling load)


@dataclass(frozen=True)
class Spec:
    name: str
    role: str  # "tuning" (parameters may be chosen on it) | "held out"
    climate: str  # a weather.SITES key or GERMANY
    season: str  # "summer" | "winter"
    timezone: str  # IANA zone of the fleet
    start_local: date  # the first day, from local midnight
    tariff: str  # "time_of_use" | "day_ahead" | "flat"
    n_houses: int
    houses_per_feeder: int
    seed: int
    binds: tuple[str, ...]  # the feeder limits the uncoordinated fleet exceeds: "import", "export"
    description: str
    days: int = 9
    warmup_days: int = 2
    pv_kwp: tuple[float, float] = (5.0, 10.0)
    share_no_pv: float = 0.0
    share_no_battery: float = 0.0  # drawn among the houses with PV first: houses without PV never have one
    battery: tuple[float, float] | None = (6.4, 5.0)  # kWh, kW for every battery; None: 5-15 kWh at kWh/3
    n_ev: int = 0
    ev_charger_w: float = 7200.0
    annual_base_kwh: tuple[float, float] = (3000.0, 6000.0)
    share_hvac: float = 0.0  # houses with air conditioning (summer) or a heat pump (winter)
    hvac_kw_per_k: tuple[float, float] = (0.0, 0.0)  # cooling: electric kW/K; heating: thermal kW/K
    site_import_w: float = 48_000.0  # main fuse (US 200 A at 240 V)
    site_export_fraction: float | None = None  # of the house's kWp; None: no cap
    feeder_export_fraction: float | None = 0.30  # of the feeder's kWp; None: no limit
    feeder_import_w_per_house: float | None = 2000.0  # None: no limit


@dataclass(frozen=True)
class EvalMeta:
    """What FORMAT18's scenario.toml will carry, and what the report says about the scenario."""

    name: str
    role: str
    climate: str
    season: str
    timezone: str
    tariff: tariffs.TariffMeta
    binds: tuple[str, ...]
    warmup_slots: int
    fleet: dict[str, int]  # houses, without_pv, without_battery, with_ev, with_hvac


def _pv(spec: Spec, start: datetime, n: int) -> np.ndarray:
    """(P, n) PV W per kWp: one profile for a TMY climate, SimBench's eight for Germany."""
    if spec.climate == GERMANY:
        _, _, _, pv = _profiles()
        first = int((start - datetime(start.year, 1, 1, tzinfo=UTC)).total_seconds()) // SLOT_S
        return pv[:, (first + np.arange(n)) % pv.shape[1]] * 1000.0
    return weather.weather(spec.climate, start, SLOT_S, n)[0][None, :]


def _hvac(spec: Spec, start: datetime, n: int, coeff: np.ndarray) -> np.ndarray:
    if spec.climate == GERMANY or not coeff.any():
        return np.zeros((coeff.size, n))
    temp = weather.weather(spec.climate, start, SLOT_S, n)[1]
    return loads.cooling_w(temp, coeff) if spec.season == "summer" else loads.heat_pump_w(temp, coeff)


def _prices(spec: Spec, start: datetime, n: int) -> tuple[np.ndarray, np.ndarray, tariffs.TariffMeta]:
    if spec.tariff == "time_of_use":
        return tariffs.time_of_use(start, SLOT_S, n, spec.timezone)
    if spec.tariff == "flat":
        return tariffs.flat(n)
    if spec.tariff == "day_ahead":
        return tariffs.day_ahead(start, SLOT_S, n)
    raise ValueError(f"{spec.name}: unknown tariff kind {spec.tariff!r}")


def build(spec: Spec) -> tuple[Scenario, EvalMeta]:
    local0 = pd.Timestamp(datetime(spec.start_local.year, spec.start_local.month, spec.start_local.day,
                                   tzinfo=ZoneInfo(spec.timezone)))
    start = local0.tz_convert("UTC").to_pydatetime()
    n, t = spec.n_houses, spec.days * 86400 // SLOT_S
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(n)
    n_no_pv = int(round(spec.share_no_pv * n))
    n_no_batt = max(n_no_pv, int(round(spec.share_no_battery * n)))
    has_pv, has_batt = np.ones(n, bool), np.ones(n, bool)
    has_pv[order[:n_no_pv]] = False
    has_batt[order[:n_no_batt]] = False
    kwp = np.where(has_pv, np.round(rng.uniform(*spec.pv_kwp, n), 1), 0.0)
    if spec.battery is not None:
        b_kwh, b_kw = np.full(n, spec.battery[0]), np.full(n, spec.battery[1])
    else:
        b_kwh = np.round(rng.uniform(5.0, 15.0, n), 1)
        b_kw = np.clip(np.round(b_kwh / 3.0 * 2.0) / 2.0, 2.5, 5.0)
    b_kwh, b_kw = np.where(has_batt, b_kwh, 0.0), np.where(has_batt, b_kw, 0.0)

    load_names = _profiles()[0]
    profile = (np.arange(n) + rng.integers(0, len(load_names))) % len(load_names)
    annual = np.round(rng.uniform(*spec.annual_base_kwh, n), -1)
    load = loads.base_load(local0, t, profile, annual, rng.integers(-2, 3, n))
    hvac_on = rng.permutation(n) < int(round(spec.share_hvac * n))
    load += _hvac(spec, start, t, np.where(hvac_on, rng.uniform(*spec.hvac_kw_per_k, n), 0.0))
    ev_of = rng.permutation(n)[: spec.n_ev]
    if spec.n_ev:
        load[ev_of] += loads.ev_w(local0.to_pydatetime(), t, spec.n_ev, rng, spec.ev_charger_w)
    pv_shapes = _pv(spec, start, t)
    pv = pv_shapes[rng.integers(0, pv_shapes.shape[0], n)] * kwp[:, None]

    n_feeders = max(1, -(-n // spec.houses_per_feeder))
    feeder_of = np.arange(n) // spec.houses_per_feeder
    feeder_ids = tuple(f"feeder-{i + 1}" for i in range(n_feeders))
    houses = tuple(
        House(f"h{i + 1:03d}", float(kwp[i]), float(b_kwh[i]), float(b_kw[i]),
              round(float(spec.site_export_fraction * kwp[i] * 1000), 1)
              if spec.site_export_fraction is not None and kwp[i] > 0 else float("inf"),
              spec.site_import_w, feeder_ids[feeder_of[i]])
        for i in range(n))
    f_kwp = np.bincount(feeder_of, weights=kwp, minlength=n_feeders)
    f_n = np.bincount(feeder_of, minlength=n_feeders).astype(float)
    exp_lim = (np.where(f_kwp > 0, spec.feeder_export_fraction * f_kwp * 1000, np.inf)
               if spec.feeder_export_fraction is not None else np.full(n_feeders, np.inf))
    imp_lim = (spec.feeder_import_w_per_house * f_n if spec.feeder_import_w_per_house is not None
               else np.full(n_feeders, np.inf))
    imp, exp, tmeta = _prices(spec, start, t)
    lat, lon = (LATITUDE, LONGITUDE) if spec.climate == GERMANY else weather.SITES[spec.climate][1:]
    sc = Scenario(
        name=spec.name, start=start, slot_s=SLOT_S, houses=houses, load_w=load, pv_w=pv,
        import_price_per_kwh=imp, export_price_per_kwh=exp, feeder_ids=feeder_ids,
        feeder_import_limit_w=np.repeat(imp_lim[:, None], t, axis=1),
        feeder_export_limit_w=np.repeat(exp_lim[:, None], t, axis=1),
        latitude=float(lat), longitude=float(lon), currency=tmeta.currency,
        description=f"{spec.description} ({spec.role}; local time {spec.timezone})",
        sources=_sources(spec, tmeta), timezone=spec.timezone, price_knowledge=_knowledge(tmeta),
    )
    sc.validate()
    meta = EvalMeta(spec.name, spec.role, spec.climate, spec.season, spec.timezone, tmeta, spec.binds,
                    spec.warmup_days * 86400 // SLOT_S,
                    {"houses": n, "without_pv": int((~has_pv).sum()), "without_battery": int((~has_batt).sum()),
                     "with_ev": spec.n_ev, "with_hvac": int(hvac_on.sum())})
    return sc, meta


def _knowledge(tmeta: tariffs.TariffMeta) -> PriceKnowledge:
    """Day-ahead prices are public at their publication time in the market's zone; a time-of-use
    or flat tariff is known in advance."""
    if tmeta.kind == "day_ahead":
        assert tmeta.published is not None and tmeta.market_timezone is not None
        return PriceKnowledge("day_ahead", tmeta.published, tmeta.market_timezone)
    return PriceKnowledge("in_advance")


def _sources(spec: Spec, tmeta: tariffs.TariffMeta) -> dict[str, str]:
    pv = ("SimBench 1.6.3 RESProfile PV1..PV8 2016 (ODbL-1.0), calibrated as the default scenario"
          if spec.climate == GERMANY else
          f"PVWatts model on the NREL TMY of {spec.climate} (pvlib data; scripts/build_eval_data.py)")
    load = "SimBench 1.6.3 household profiles H0-* 2016 (ODbL-1.0) on the local clock"
    if spec.share_hvac:
        load += "; " + ("air conditioning" if spec.season == "summer" else "heat pumps") + \
            " from the TMY air temperature (degree-hour model, docs/evaluation.md)"
    if spec.n_ev:
        load += f"; {spec.n_ev} EVs charging uncontrolled in the evening (not flexible)"
    feeders = (f"export limit {spec.feeder_export_fraction:.0%} of feeder kWp"
               if spec.feeder_export_fraction is not None else "no export limit")
    feeders += (f", import limit {spec.feeder_import_w_per_house / 1000:g} kW per house"
                if spec.feeder_import_w_per_house is not None else ", no import limit")
    return {"load": load, "pv": pv, "tariff": tmeta.source, "feeders": feeders}
