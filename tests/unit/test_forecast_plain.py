"""The pure-Python forecaster (a house without a site: its agent runs without numpy) gives the
numpy forecaster's floats bit for bit, on random histories: gaps, several zones across their
clock changes, every slot length, hostile readings (NaN, inf, negative, huge)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from edge_agent.energy_manager.forecast import HistoryForecaster
from edge_agent.energy_manager.forecast_plain import PlainForecaster
from edge_agent.energy_manager.history import pairwise_sum

ZONES = (None, "UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")
# around the clock changes of 2026 (Europe 29 Mar / 25 Oct, US 8 Mar / 1 Nov, Lord Howe 5 Apr / 4 Oct)
STARTS = (datetime(2026, 3, 25, tzinfo=UTC), datetime(2026, 10, 21, tzinfo=UTC),
          datetime(2026, 3, 4, tzinfo=UTC), datetime(2026, 10, 28, tzinfo=UTC),
          datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 6, 10, 13, 7, tzinfo=UTC))
HOSTILE = (float("nan"), float("inf"), -float("inf"), -250.0, 1e300, 0.0, -0.0, 5e-324)


def _reading(rng: random.Random) -> float:
    if rng.random() < 0.01:
        return rng.choice(HOSTILE)
    return rng.choice((rng.uniform(0, 8000), rng.uniform(0, 500), round(rng.uniform(0, 3000), 1)))


def _bits(values: object) -> bytes:
    return np.asarray(values, dtype=float).tobytes()


@pytest.mark.parametrize("seed", range(40))
def test_plain_forecaster_gives_the_numpy_forecasters_floats(seed: int) -> None:
    rng = random.Random(seed)
    slot_s = rng.choice((60, 300, 900, 900, 900, 1800, 3600))
    days = rng.choice((1, 2, 3, 7, 7, 9))
    zone = rng.choice(ZONES)
    numpy_fc = HistoryForecaster(slot_s, days=days, timezone=zone)
    plain_fc = PlainForecaster(slot_s, days=days, timezone=zone)
    t = rng.choice(STARTS) + timedelta(seconds=rng.randrange(86400))
    horizon = rng.choice((1, 4, 96, 96, 200))
    # observations several seconds apart, some slots missing, some whole hours missing
    for _ in range(rng.randrange(0, 40 * 86400 // slot_s // max(1, days // 3))):
        t += timedelta(seconds=rng.choice((7, 10, slot_s / 3, slot_s, slot_s, 3 * slot_s, 3600)))
        load, pv, limited = _reading(rng), _reading(rng), rng.random() < 0.05
        numpy_fc.add(t, load, pv, limited)
        plain_fc.add(t, load, pv, limited)
        if rng.random() < 0.02:
            now = t + timedelta(seconds=rng.choice((0, 1, slot_s, 86400)))
            a, b = numpy_fc.forecast(now, horizon), plain_fc.forecast(now, horizon)
            assert (a.start, a.slot_s) == (b.start, b.slot_s)
            assert _bits(a.load_w) == _bits(b.load_w), (seed, now)
            assert _bits(a.pv_w) == _bits(b.pv_w), (seed, now)
            assert a.pv_clear_sky_w is None and b.pv_clear_sky_w is None
    a, b = numpy_fc.forecast(t, 96), plain_fc.forecast(t, 96)
    assert _bits(a.load_w) == _bits(b.load_w) and _bits(a.pv_w) == _bits(b.pv_w)


@pytest.mark.parametrize("n", [*range(0, 20), 64, 127, 128, 129, 255, 256, 1000])
def test_pairwise_sum_is_numpys(n: int) -> None:
    rng = random.Random(n)
    for _ in range(50):
        values = [rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-8, 8) for _ in range(n)]
        assert pairwise_sum(values) == float(np.add.reduce(np.array(values, dtype=float)))
        rows = np.array([values, values[::-1]], dtype=float)
        assert [pairwise_sum(values), pairwise_sum(values[::-1])] == rows.sum(axis=1).tolist()
