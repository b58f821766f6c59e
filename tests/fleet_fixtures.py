"""A small, deterministic fleet scenario for tests (clear-sky PV, a two-hump load, a TOU-like price)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from simulator.fleet.model import House, Scenario


def small_scenario(n: int = 6, days: float = 2, *, export_limit_w: float = 12000.0, import_limit_w: float = 40000.0,
                   start: datetime = datetime(2025, 6, 2, tzinfo=UTC), cloudy_day: int | None = None) -> Scenario:
    import pandas as pd
    from pvlib.location import Location

    slot = 900
    t = int(days * 96)
    mid = pd.date_range(start + timedelta(seconds=slot / 2), periods=t, freq=f"{slot}s")
    ghi = Location(52.5, 13.4).get_clearsky(mid, model="ineichen")["ghi"].to_numpy()
    hour = (np.arange(t) % 96) / 4
    sky = np.ones(t)
    if cloudy_day is not None:
        sky[cloudy_day * 96:(cloudy_day + 1) * 96] = 0.35
    houses, load, pv = [], [], []
    for i in range(n):
        kwp = 6.0 + i % 3 * 2
        bat = 0.0 if i % 5 == 4 else 10.0
        houses.append(House(f"h{i:02d}", kwp, bat, 4.0 if bat else 0.0, 0.7 * kwp * 1000, 17250.0, f"f{i % 2}"))
        pv.append(ghi * sky * kwp * 0.85)
        load.append(250 + 900 * np.exp(-((hour - 19) / 2) ** 2) + 500 * np.exp(-((hour - 7.5) / 1.5) ** 2) + 30 * i)
    imp = np.where((hour >= 17) & (hour < 21), 0.45, np.where(hour < 6, 0.20, 0.30))
    exp = np.full(t, 0.08)
    return Scenario("small", start, slot, tuple(houses), np.array(load), np.array(pv), imp, exp, ("f0", "f1"),
                    np.full((2, t), import_limit_w), np.full((2, t), export_limit_w), 52.5, 13.4,
                    sources={"load": "test shape", "pv": "clear sky"})
