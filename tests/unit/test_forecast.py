"""Edge forecasts from the house's own history."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from edge_agent.energy_manager.forecast import ForecastErrors, HistoryForecaster, Site
from vpp_common.clock import UTC

DAY0 = datetime(2026, 6, 18, tzinfo=UTC)


def load_profile(t: datetime) -> float:
    h = t.hour + t.minute / 60
    return 300 + 1000 * np.exp(-((h - 19) ** 2) / 2)


def feed(f: HistoryForecaster, days: int, pv=lambda t: 0.0) -> datetime:  # type: ignore[no-untyped-def]
    t = DAY0
    while t < DAY0 + timedelta(days=days):
        f.add(t, load_profile(t), pv(t))
        t += timedelta(minutes=5)
    return t


def test_similar_day_learns_the_daily_shape() -> None:
    f = HistoryForecaster(slot_s=900, days=3)
    now = feed(f, 3)
    fc = f.forecast(now, 96)
    evening = int(19 * 4)
    assert fc.load_w[evening] == pytest.approx(load_profile(now + timedelta(hours=19)), rel=0.05)
    assert fc.load_w[3 * 4] == pytest.approx(300, rel=0.1)  # 03:00, far from the last value's influence
    assert (fc.pv_w == 0).all()


def test_pv_scaled_clear_sky_with_a_site() -> None:
    site = Site(52.5, 13.4, pv_peak_w=4000)  # the panels do better than their prior says
    f = HistoryForecaster(slot_s=900, days=2, site=site)
    cs_scale = 5.0  # the panels make 5 W per W/m2 of clear-sky GHI on these days
    starts = [DAY0 + timedelta(minutes=5 * i) for i in range(2 * 288)]
    ghi = f.clear_sky_w_m2(starts)
    for t, g in zip(starts, ghi, strict=True):
        f.add(t, 300.0, cs_scale * g)
    now = DAY0 + timedelta(days=2)
    fc = f.forecast(now, 96)
    noon = 12 * 4
    expected = cs_scale * f.clear_sky_w_m2([fc.start + timedelta(minutes=15 * noon)])[0]
    assert fc.pv_w[noon] == pytest.approx(expected, rel=0.05)
    assert fc.pv_w[0] == 0  # midnight
    # clear days seen: the clear-sky PV is the forecast; half as much sun next: it stays
    assert fc.pv_clear_sky_w is not None and fc.pv_clear_sky_w[noon] == pytest.approx(expected, rel=0.05)
    for t, g in zip(starts, ghi, strict=True):
        f.add(t + timedelta(days=2), 300.0, cs_scale * g / 2)
    dull = f.forecast(now + timedelta(days=2), 96)
    assert dull.pv_w[noon] < 0.75 * expected  # two dull days of the three it keeps
    assert dull.pv_clear_sky_w is not None and dull.pv_clear_sky_w[noon] == pytest.approx(expected, rel=0.05)
    assert (dull.pv_clear_sky_w >= dull.pv_w).all()


def test_cloudy_days_do_not_make_the_clear_sky_dull() -> None:
    # two days at 40 % of what the prior says a clear sky gives: the forecast follows them, but
    # the clear-sky PV stays the prior's (no clear day was seen to learn the panels' response
    # from; the clear-sky future must still make room for a sunny noon)
    site = Site(52.5, 13.4, pv_peak_w=6800)
    f = HistoryForecaster(slot_s=900, days=2, site=site)
    starts = [DAY0 + timedelta(minutes=5 * i) for i in range(2 * 288)]
    ghi = f.clear_sky_w_m2(starts)
    for t, g in zip(starts, ghi, strict=True):
        f.add(t, 300.0, 0.4 * 6.8 * g)
    fc = f.forecast(DAY0 + timedelta(days=2), 96)
    noon = 12 * 4
    prior = 6.8 * f.clear_sky_w_m2([fc.start + timedelta(minutes=15 * noon)])[0]
    assert fc.pv_w[noon] == pytest.approx(0.4 * prior, rel=0.05)
    assert fc.pv_clear_sky_w is not None and fc.pv_clear_sky_w[noon] == pytest.approx(prior, rel=0.05)


@pytest.mark.parametrize("peak", [-5.0, 0.0, 1e300])  # NaN/inf: refused by edge_agent.config
def test_a_bad_nameplate_prior_gives_no_bad_clear_sky(peak: float) -> None:
    site = Site(52.5, 13.4, pv_peak_w=6800)
    f = HistoryForecaster(slot_s=900, days=2, site=site)
    starts = [DAY0 + timedelta(minutes=5 * i) for i in range(2 * 288)]
    for t, g in zip(starts, f.clear_sky_w_m2(starts), strict=True):
        f.add(t, 300.0, 2.0 * g)
    f.site = Site(52.5, 13.4, pv_peak_w=peak)
    fc = f.forecast(DAY0 + timedelta(days=2), 96)
    assert fc.pv_clear_sky_w is not None
    assert (fc.pv_clear_sky_w >= fc.pv_w).all()
    if peak < 1e299:
        assert np.isfinite(fc.pv_clear_sky_w).all()


def test_errors_are_scored_once_slots_have_happened() -> None:
    f = HistoryForecaster(slot_s=900, days=2)
    now = feed(f, 2)
    errors = ForecastErrors()
    errors.record(f.forecast(now, 96))
    t = now
    while t < now + timedelta(hours=1, minutes=1):
        f.add(t, load_profile(t) + 100, 0.0)  # reality is 100 W above the usual day
        t += timedelta(minutes=5)
    errors.settle(f, t)
    mae_load, mae_pv = errors.mae_w
    assert mae_load is not None and 0 < mae_load < 400 and mae_pv == 0
    assert not errors.issued


def test_bad_slot_length_is_refused() -> None:
    with pytest.raises(ValueError, match="slot_s"):
        HistoryForecaster(slot_s=7)


def test_curtailed_slots_count_as_at_least_clear() -> None:
    # two clear days; the inverter is held at 3 kW around noon (export cap).  Learnt as the
    # sky, the cap would come back as a cloudy forecast; flagged, the forecast is the clear sky
    site = Site(52.5, 13.4, pv_peak_w=6800)
    starts = [DAY0 + timedelta(minutes=5 * i) for i in range(2 * 288)]
    ghi = HistoryForecaster(slot_s=900, days=2, site=site).clear_sky_w_m2(starts)
    forecasts = {}
    for flag in (False, True):
        f = HistoryForecaster(slot_s=900, days=2, site=site)
        for t, g in zip(starts, ghi, strict=True):
            f.add(t, 300.0, min(5.0 * g, 3000.0), pv_limited=flag and 5.0 * g > 3000.0)
        forecasts[flag] = f.forecast(DAY0 + timedelta(days=2), 96)
    noon = 12 * 4
    clear = 5.0 * HistoryForecaster(slot_s=900, days=2, site=site).clear_sky_w_m2(
        [forecasts[True].start + timedelta(minutes=15 * noon)])[0]
    assert clear > 3500
    assert forecasts[True].pv_w[noon] >= 3000.0  # at least what the inverter was allowed
    assert forecasts[True].pv_w.sum() > 1.05 * forecasts[False].pv_w.sum()


def test_the_last_hours_level_leads_the_next_hours_and_fades_into_the_similar_day() -> None:
    """One spiky slot says little about the next hours (a kettle, an oven); the last hour's mean
    level says more.  It fades into the similar-day mean over a few hours."""
    f = HistoryForecaster(slot_s=900, days=3)
    t = feed(f, 3 - 1 / 24)  # up to 23:00 of the third day
    # its last hour ran at 700 W in the mean, its last slot at 1900 W
    for w in (300.0, 300.0, 300.0, 1900.0):
        f.add(t, w, 0.0)
        t += timedelta(minutes=15)
    now = t  # midnight: the similar day says ~300 W for the small hours
    fc = f.forecast(now, 96)
    # next slot: 0.6 x the hour's 700 W + 0.4 x ~300 W, not the spike's 1900 W
    assert fc.load_w[0] == pytest.approx(0.6 * 700 + 0.4 * 300, rel=0.05)
    assert fc.load_w[4] < fc.load_w[0]  # fading ...
    assert fc.load_w[12 * 4] == pytest.approx(300, rel=0.05)  # ... into the similar day by noon-ish
