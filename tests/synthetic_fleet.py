"""Random but plausible fleets for tests and benchmarks (pure numpy, seeded)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from aggregator.dispatch.problem import FleetProblem


def tou_prices(t: int, slot_s: int = 900) -> tuple[np.ndarray, np.ndarray]:
    """Three-tier time-of-use import price and a flat export price, per kWh."""
    hour = (np.arange(t) * slot_s / 3600.0) % 24
    imp = np.where((hour >= 17) & (hour < 21), 0.40, np.where((hour < 6) | (hour >= 23), 0.15, 0.28))
    return imp, np.full(t, 0.07)


def _sun(t: int, slot_s: int) -> np.ndarray:
    """Share of the panels' rating a clear sky gives per slot, from midnight (06:00..18:00)."""
    hour = (np.arange(t) * slot_s / 3600.0) % 24
    return np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)


def clear_sky_pv_w(p: FleetProblem) -> np.ndarray:
    """(N, T) PV under a clear sky of a ``random_fleet`` fleet (W <= 0): its forecast without clouds."""
    return -(p.pv_rated_w[:, None] * _sun(p.t, p.slot_s)[None, :])


def random_fleet(
    n: int,
    *,
    t: int = 96,
    slot_s: int = 900,
    houses_per_feeder: int = 50,
    feeders_per_transformer: int = 4,
    seed: int = 0,
    feeder_export_limit_w_per_house: float = np.inf,
    feeder_import_limit_w_per_house: float = np.inf,
    transformer_limits: bool = False,
    ev_share: float = 0.0,
    start: datetime | None = None,
) -> FleetProblem:
    """A fleet of ``n`` houses; feeder limits scale with the feeder's house count."""
    rng = np.random.default_rng(seed)
    hour = (np.arange(t) * slot_s / 3600.0) % 24
    sun = _sun(t, slot_s)
    pv_rated = rng.choice([0.0, 3000.0, 5000.0, 8000.0], size=n, p=[0.1, 0.3, 0.4, 0.2])
    cloud = rng.uniform(0.6, 1.0, size=(n, 1))
    pv = -(pv_rated[:, None] * sun[None, :] * cloud)
    base = rng.uniform(200, 500, size=(n, 1))
    evening = np.exp(-(((hour - 19) / 2.0) ** 2))
    load = base + rng.uniform(500, 1500, size=(n, 1)) * evening[None, :] + rng.uniform(0, 150, size=(n, t))
    cap = rng.choice([0.0, 5000.0, 10000.0, 13500.0], size=n, p=[0.1, 0.3, 0.4, 0.2])
    p_bat = np.where(cap > 0, np.minimum(5000.0, cap / 2), 0.0)
    n_f = max(1, int(np.ceil(n / houses_per_feeder)))
    feeder_of = np.arange(n) // houses_per_feeder
    per_f = np.bincount(feeder_of, minlength=n_f).astype(float)
    n_x = max(1, int(np.ceil(n_f / feeders_per_transformer)))
    transformer_of = np.arange(n_f) // feeders_per_transformer
    per_x = np.bincount(transformer_of, weights=per_f, minlength=n_x)
    x_lim = 0.7 * feeder_export_limit_w_per_house if transformer_limits else np.inf
    imp_p, exp_p = tou_prices(t, slot_s)
    has_ev = rng.random(n) < ev_share
    return FleetProblem(
        house_ids=tuple(f"h{i:05d}" for i in range(n)),
        battery_ids=tuple(f"h{i:05d}-bat" for i in range(n)),
        start=start or datetime(2026, 6, 1, tzinfo=UTC),
        slot_s=slot_s,
        load_w=load,
        pv_power_w=pv,
        pv_rated_w=pv_rated,
        capacity_wh=cap,
        soc_pct=rng.uniform(20, 80, size=n),
        soc_min_pct=np.full(n, 5.0),
        soc_max_pct=np.full(n, 95.0),
        reserve_soc_pct=np.full(n, 10.0),
        max_charge_w=p_bat,
        max_discharge_w=p_bat,
        charge_efficiency=np.full(n, 0.95),
        discharge_efficiency=np.full(n, 0.95),
        max_import_w=np.full((n, t), 15000.0),
        max_export_w=np.full((n, t), 5000.0),
        feeder_of=feeder_of,
        feeder_ids=tuple(f"f{j:04d}" for j in range(n_f)),
        transformer_of=transformer_of,
        transformer_ids=tuple(f"x{k:03d}" for k in range(n_x)),
        feeder_import_limit_w=np.repeat((per_f * feeder_import_limit_w_per_house)[:, None], t, axis=1),
        feeder_export_limit_w=np.repeat((per_f * feeder_export_limit_w_per_house)[:, None], t, axis=1),
        transformer_import_limit_w=np.full((n_x, t), np.inf),
        transformer_export_limit_w=np.repeat((per_x * x_lim)[:, None], t, axis=1),
        import_price_per_kwh=imp_p,
        export_price_per_kwh=exp_p,
        ev_max_w=np.where(has_ev, 7400.0, 0.0),
        ev_need_wh=np.where(has_ev, rng.uniform(5000, 20000, size=n), 0.0),
        ev_deadline_slot=np.where(has_ev, int(t * 0.3), 0),
    )
