"""The default fleet scenario: built from the shipped real data, plausible, deterministic."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pytest

from simulator.fleet import default_scenario as ds
from simulator.fleet.default_scenario import DEFAULT_DAYS, default_scenario


@pytest.fixture(scope="module")
def scenario():
    return default_scenario()


def _uncoordinated_feeder_net_w(s) -> np.ndarray:
    """(F, T) feeder net power (import > 0) if no battery acts: load - PV, site export caps applied."""
    caps = np.array([h.export_cap_w for h in s.houses])
    site = np.maximum(s.load_w - s.pv_w, -caps[:, None])
    fi = s.feeder_index()
    return np.stack([site[fi == f].sum(axis=0) for f in range(len(s.feeder_ids))])


def test_validates_and_has_the_documented_shape(scenario):
    s = scenario
    s.validate()
    assert s.n == 50
    assert s.slot_s == 900
    assert s.start == datetime(2020, 5, 18, tzinfo=UTC)
    assert s.start.weekday() == 0  # a Monday in late spring
    assert s.t % 96 == 0 and s.t // 96 >= 28
    assert DEFAULT_DAYS == 7
    assert [h.house_id for h in s.houses][:3] == ["h001", "h002", "h003"]
    assert len(s.feeder_ids) == 3
    assert sorted(np.bincount(s.feeder_index()).tolist()) == [16, 17, 17]
    assert 47 <= s.latitude <= 55 and 6 <= s.longitude <= 15  # Germany
    assert set(s.sources) >= {"load", "pv", "prices", "tariff", "feeders"}
    assert all(v for v in s.sources.values())
    assert s.description


def test_houses_are_plausible(scenario):
    hs = scenario.houses
    kwp = np.array([h.pv_kwp for h in hs])
    assert 2 <= (kwp == 0).sum() <= 6
    assert ((kwp == 0) | ((kwp >= 4) & (kwp <= 12))).all()
    no_batt = [h for h in hs if not h.has_battery]
    assert 5 <= len(no_batt) <= 10  # ~15 %
    for h in hs:
        if h.has_battery:
            assert 5 <= h.battery_kwh <= 15 and 2.5 <= h.battery_kw <= 5
            assert h.pv_kwp > 0
        if h.pv_kwp > 0:
            assert 0.55 * h.pv_kwp * 1000 <= h.export_cap_w <= 0.75 * h.pv_kwp * 1000
        else:
            assert h.export_cap_w == float("inf")
        assert h.import_limit_w == pytest.approx(17250)
        assert h.initial_soc_pct == 50


def test_load_is_household_sized(scenario):
    s = scenario
    days = s.t * s.slot_h / 24
    kwh = s.load_w.sum(axis=1) * s.slot_h / 1000.0
    annualised = kwh * 365 / days
    # summer and early autumn: below the 2.5-6 MWh/yr annual figures, but household-sized
    assert 2000 <= annualised.mean() <= 8000
    assert (annualised >= 1000).all() and (annualised <= 8000).all()
    assert (s.load_w.max(axis=1) > 1000).all() and np.median(s.load_w.max(axis=1)) > 2500  # 15-min peaks
    assert (s.load_w.max(axis=1) < 17250).all()  # within the main fuse
    # houses are not all the same shape
    c = np.corrcoef(s.load_w[:, : 7 * 96])
    assert np.median(c[np.triu_indices_from(c, 1)]) < 0.8


def test_pv_yield_is_german(scenario):
    s = scenario
    _, _, _, per_kwp = ds._profiles()
    yearly = per_kwp.sum(axis=1) * 0.25  # kWh/kWp over 2016
    assert 900 <= yearly.mean() <= 1200
    assert (yearly > 700).all() and (yearly < 1300).all()
    assert per_kwp.max() <= 1.0
    kwp = np.array([h.pv_kwp for h in s.houses])
    m = kwp > 0
    assert (s.pv_w[~m] == 0).all()
    days = s.t * s.slot_h / 24
    per_kwp_period = s.pv_w[m].sum(axis=1) * s.slot_h / 1000.0 / kwp[m]
    ratio = per_kwp_period / (yearly.mean() * days / 365)
    assert (ratio > 1.0).all() and (ratio < 2.2).all()  # May-September beats the annual average
    # no production at night (UTC 21-02 in summer), production around noon
    hours = (np.arange(s.t) % 96) / 4
    night = (hours >= 21) | (hours < 2)
    assert s.pv_w[:, night].max() == 0
    assert s.pv_w[m][:, (hours >= 10) & (hours < 12)].mean() > 0.3 * kwp[m].mean() * 1000


def test_prices_are_real_and_plausible(scenario):
    s = scenario
    first, hourly = ds.day_ahead_eur_per_mwh()
    assert first == s.start
    assert hourly.size * 4 == s.t
    # 2020 DE-LU day-ahead, summer: negative Sunday noons, evening peaks
    assert hourly.min() < -50 and hourly.max() > 150
    assert 20 <= hourly.mean() <= 50
    assert hourly[6 * 24 + 11] == pytest.approx(-74.97)  # 2020-05-24 11:00 UTC, a sunny Sunday
    imp, exp = s.import_price_per_kwh, s.export_price_per_kwh
    assert imp.min() >= 0.05 and imp.max() <= 0.60
    assert 0.15 <= imp.mean() <= 0.35
    np.testing.assert_allclose(imp, ds.import_price(np.repeat(hourly, 4)))
    assert np.allclose(exp, 0.0803)
    assert (imp > exp).mean() > 0.95


def test_feeder_limits_bind_for_the_uncoordinated_fleet(scenario):
    s = scenario
    net = _uncoordinated_feeder_net_w(s)
    week = 7 * 96
    exp_lim, imp_lim = s.feeder_export_limit_w, s.feeder_import_limit_w
    kwp_f = np.bincount(s.feeder_index(), weights=[h.pv_kwp for h in s.houses])
    np.testing.assert_allclose(exp_lim[:, 0], 0.40 * kwp_f * 1000)
    over_export = (-net[:, :week] > exp_lim[:, :week]).reshape(len(s.feeder_ids), 7, 96)
    # every feeder: export above the limit around noon on most days of the first week
    assert (over_export.any(axis=2).sum(axis=1) >= 5).all()
    hours_over = np.nonzero(over_export.any(axis=(0, 1)))[0] / 4
    assert hours_over.min() >= 7 and hours_over.max() <= 15  # UTC, around solar noon
    # import: evening peaks exceed the limit now and then, not all the time
    over_import = net > imp_lim
    assert over_import.any()
    assert over_import.mean() < 0.02
    hours_imp = (np.nonzero(over_import)[1] % 96) / 4
    assert np.median(hours_imp) >= 15  # evening (UTC)


def test_deterministic_per_seed_and_sizes():
    a = default_scenario(seed=7)
    b = default_scenario(seed=7)
    c = default_scenario(seed=8)
    assert a.houses == b.houses
    np.testing.assert_array_equal(a.load_w, b.load_w)
    np.testing.assert_array_equal(a.pv_w, b.pv_w)
    np.testing.assert_array_equal(a.feeder_export_limit_w, b.feeder_export_limit_w)
    assert a.houses != c.houses
    small = default_scenario(n_houses=5)
    small.validate()
    assert small.n == 5 and len(small.feeder_ids) == 1
    big = default_scenario(n_houses=120)
    big.validate()
    assert len(big.feeder_ids) == 7
    head = a.head(DEFAULT_DAYS * 96)
    head.validate()
    assert head.t == 7 * 96


def test_builds_fast():
    t0 = time.perf_counter()
    default_scenario()
    assert time.perf_counter() - t0 < 3.0
