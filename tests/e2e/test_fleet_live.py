"""Live mode (real processes on loopback) against the fast mode on one small scenario.

20 houses on 2 feeders, 3 h from 10:00 UTC on a June day, PV large enough that feeder A's
export limit (25 kW) binds all along (the fast mode curtails ~29 kWh to keep it).  Cost and
energy over the feeder limits must agree within 5 %, with absolute floors of 0.5 EUR and
3.0 kWh.  The fast mode decides once per slot on the slot's exact values, so it keeps the
feeder at its limit (0 kWh over); live, the aggregator shares each feeder every 30 s from
telemetry and the agents poll every 5 s and decide every 10 s (simulated), so a step in PV or
load reaches the feeder until the next poll and decision.  That lag grows with CPU contention
(the live run nearly saturates 2 cores), hence the floors.  Measured at 200x: 0.37 kWh over
and costs within 0.15 EUR over these 3 h, in 85 s (it was 6 h from 08:00 until 2026-12-08:
0.06 kWh and 0.06 EUR in 2.3 minutes, the longest test of the suite, which nothing runs
beside).  The history of the gap and what closed it is in docs/fleet-strategy.md ("Live
against fast mode").
"""

from __future__ import annotations

import asyncio
import io
import math
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from simulator.fleet.engine import simulate
from simulator.fleet.kpis import kpis
from simulator.fleet.live import LiveStats, run_live
from simulator.fleet.model import House, Scenario

SPEED = 200.0
TOL_REL = 0.05
FLOOR_EUR = 0.5
FLOOR_KWH = 3.0  # control lag under CPU contention: see the module doc


def small_scenario(n: int = 20, hours: float = 6.0, start: datetime | None = None, seed: int = 7) -> Scenario:
    """Synthetic but plausible: clear-sky-like PV with passing clouds, household load with
    noise and an evening rise, day-ahead-like prices (cheap midday, dear evening)."""
    rng = np.random.default_rng(seed)
    start = start or datetime(2026, 6, 21, 8, 0, tzinfo=UTC)
    slot_s = 900
    t = int(hours * 3600 // slot_s)
    hod = np.array([(start + timedelta(seconds=slot_s * (s + 0.5))).hour
                    + (start + timedelta(seconds=slot_s * (s + 0.5))).minute / 60 for s in range(t)])
    sun = np.clip(np.sin(np.pi * (hod - 4.5) / (20.5 - 4.5)), 0, None) ** 1.6  # NL midsummer, UTC
    cover = np.zeros(t)  # cloud cover drifts (AR(1) per slot), it does not jump at random every slot
    for s in range(1, t):
        cover[s] = 0.8 * cover[s - 1] + rng.normal(0.0, 0.12)
    clouds = 1 - 0.4 * np.clip(cover + 0.15, 0, 1)
    houses = []
    load = np.zeros((n, t))
    pv = np.zeros((n, t))
    for i in range(n):
        feeder = "A" if i < n // 2 else "B"
        kwp = float(rng.choice([6.0, 8.0, 10.0])) if feeder == "A" else float(rng.choice([4.0, 5.0, 6.0]))
        kwh = float(rng.choice([5.0, 10.0, 13.5]))
        houses.append(House(f"h{i:02d}", kwp, kwh, min(5.0, kwh / 2), 4600.0 if i % 3 else 3000.0, 17000.0, feeder,
                            initial_soc_pct=float(rng.uniform(20, 60))))
        pv[i] = kwp * 1000 * 0.82 * sun * clouds * rng.uniform(0.9, 1.0)
        base = rng.uniform(250, 450)
        evening = 1200 * np.exp(-0.5 * ((hod - 18.5) / 1.2) ** 2)
        load[i] = np.clip(base + evening * rng.uniform(0.6, 1.2) + rng.gamma(1.5, 150, t), 50, None)
    imp = 0.28 + 0.10 * np.exp(-0.5 * ((hod - 18.5) / 1.5) ** 2) - 0.10 * np.exp(-0.5 * ((hod - 13) / 2.0) ** 2)
    exp = 0.07 + 0.05 * np.exp(-0.5 * ((hod - 18.5) / 1.5) ** 2) - 0.06 * np.exp(-0.5 * ((hod - 13) / 2.0) ** 2)
    sc = Scenario(
        name="live-small", start=start, slot_s=slot_s, houses=tuple(houses), load_w=load, pv_w=pv,
        import_price_per_kwh=np.round(imp, 4), export_price_per_kwh=np.round(exp, 4), feeder_ids=("A", "B"),
        feeder_import_limit_w=np.full((2, t), np.inf),
        feeder_export_limit_w=np.vstack([np.full(t, 25_000.0), np.full(t, np.inf)]),
        latitude=52.1, longitude=5.1, description="synthetic, for the live-mode test")
    sc.validate()
    return sc


def close(a: float, b: float, floor: float) -> bool:
    return abs(a - b) <= max(TOL_REL * max(abs(a), abs(b)), floor)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.serial  # under pytest-xdist nothing runs beside it: the gap grows with CPU contention
@pytest.mark.timeout(300)
def test_live_matches_fast_mode() -> None:
    sc = small_scenario(hours=3.0, start=datetime(2026, 6, 21, 10, 0, tzinfo=UTC))
    fast = kpis(sc, *(getattr(simulate(sc, "fleet"), k) for k in ("grid_w", "battery_w", "soc_pct", "pv_used_w")))
    out = io.StringIO()
    stats = LiveStats()
    t0 = time.monotonic()
    trace = asyncio.run(run_live(sc, speed=SPEED, out=out, stats=stats))
    wall = time.monotonic() - t0
    live = kpis(sc, trace.grid_w, trace.battery_w, trace.soc_pct, trace.pv_used_w)
    print(out.getvalue())
    for k in ("cost", "energy_over_limits_kwh", "self_consumption_ratio", "peak_feeder_load_w", "pv_curtailed_kwh",
              "grid_import_kwh", "grid_export_kwh", "export_cap_violations"):
        print(f"{k:<26} fast {fast[k]!s:>10}  live {live[k]!s:>10}")
    # what decides the gap: did everything connect before the clock started, and how many
    # simulated minutes did the plans take to solve (real seconds x SPEED)
    lag = (f"all connected after {stats.startup_real_s:.1f} s (clock starts at {stats.warmup_real_s:.0f} s); "
           f"{stats.solves} solves, {stats.solve_s:.1f} s = {stats.solve_s * SPEED / 60:.0f} simulated min; wall {wall:.0f} s")
    print(lag)
    assert wall < 180, f"live run took {wall:.0f} s"
    assert stats.connected == sc.n
    assert np.isfinite(trace.grid_w).all() and not math.isnan(live["cost"])
    assert close(fast["cost"], live["cost"], FLOOR_EUR), (fast["cost"], live["cost"], lag)
    assert close(fast["energy_over_limits_kwh"], live["energy_over_limits_kwh"], FLOOR_KWH), \
        (fast["energy_over_limits_kwh"], live["energy_over_limits_kwh"], lag)
