"""Time and markets in the scenario: time zone, tariffs as data, day logic in local time
(DST included), price units that change no decision (issue 18, item 4)."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pytest

from edge_agent.energy_manager.forecast import HistoryForecaster
from simulator.fleet.default_scenario import default_scenario
from simulator.fleet.engine import simulate
from simulator.fleet.model import PriceKnowledge
from simulator.fleet.scenario import ScenarioError, load_scenario, write_scenario
from simulator.fleet.strategies import StrategyOptions, known_prices_until
from tests.fleet_fixtures import small_scenario
from vpp_common.localtime import ZoneClock, day_ahead_known_until, local_day_start

BERLIN_SPRING = datetime(2026, 3, 29, 1, tzinfo=UTC)  # 02:00 CET -> 03:00 CEST
BERLIN_AUTUMN = datetime(2026, 10, 25, 1, tzinfo=UTC)  # 03:00 CEST -> 02:00 CET


def _folder(tmp_path: Path, *, start: datetime, days: float = 2, timezone: str | None = "Europe/Berlin",
            tariff: str | None = None, prices: bool = True, n: int = 2) -> Path:
    """A small scenario folder; ``tariff``: the [tariff] table's text (replaces the written one)."""
    folder = write_scenario(small_scenario(n=n, days=days, start=start), tmp_path / "sc")
    toml = (folder / "scenario.toml").read_text()
    toml = toml[:toml.index("[tariff]")] + (tariff or "")
    toml = toml.replace('timezone = "UTC"\n', f'timezone = "{timezone}"\n' if timezone else "")
    (folder / "scenario.toml").write_text(toml)
    if not prices:
        (folder / "prices.csv").unlink()
    return folder


def _slot(sc, at: datetime) -> int:
    return int((at - sc.start).total_seconds() // sc.slot_s)


# --- local time ----------------------------------------------------------------------------------------

def test_local_days_and_day_ahead_publication_across_dst() -> None:
    # a local day is 23 h in spring, 25 h in autumn
    assert local_day_start(BERLIN_SPRING, "Europe/Berlin", 1) - local_day_start(BERLIN_SPRING, "Europe/Berlin") \
        == timedelta(hours=23)
    assert local_day_start(BERLIN_AUTUMN, "Europe/Berlin", 1) - local_day_start(BERLIN_AUTUMN, "Europe/Berlin") \
        == timedelta(hours=25)
    # published 13:00 Berlin: 12:00 UTC in winter, 11:00 UTC in summer; the horizon ends at local midnight
    sat = datetime(2026, 3, 28, 11, 59, tzinfo=UTC)  # 12:59 CET
    assert day_ahead_known_until(sat, time(13), "Europe/Berlin") == datetime(2026, 3, 28, 23, tzinfo=UTC)
    assert day_ahead_known_until(sat + timedelta(minutes=1), time(13), "Europe/Berlin") \
        == datetime(2026, 3, 29, 22, tzinfo=UTC)  # Sunday ends at 24:00 CEST
    mon = datetime(2026, 3, 30, 11, tzinfo=UTC)  # 13:00 CEST
    assert day_ahead_known_until(mon - timedelta(seconds=1), time(13), "Europe/Berlin") \
        == datetime(2026, 3, 30, 22, tzinfo=UTC)
    assert day_ahead_known_until(mon, time(13), "Europe/Berlin") == datetime(2026, 3, 31, 22, tzinfo=UTC)


def test_wall_clock_times_that_do_not_exist_or_occur_twice() -> None:
    z = ZoneClock("Europe/Berlin")
    local = lambda d: (d - datetime(1970, 1, 1)).total_seconds()  # noqa: E731
    got = z.to_utc_s(np.array([local(datetime(2026, 3, 29, 2, 30)), local(datetime(2026, 3, 29, 3, 30)),
                               local(datetime(2026, 10, 25, 2, 30))]))
    assert np.isnan(got[0])  # skipped by the clocks
    assert got[1] == datetime(2026, 3, 29, 1, 30, tzinfo=UTC).timestamp()
    assert got[2] in (datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp(),
                      datetime(2026, 10, 25, 1, 30, tzinfo=UTC).timestamp())


# --- the forecaster's similar day ----------------------------------------------------------------------

@pytest.mark.parametrize("change", [BERLIN_SPRING, BERLIN_AUTUMN])
def test_similar_day_load_is_the_same_local_hour_across_dst(change: datetime) -> None:
    """Dinner at 18:00 on the house's clock: after the change the forecast finds it at 18:00
    local, not at the UTC hour it had before."""
    z = ZoneClock("Europe/Berlin")

    def load_at(t: datetime) -> float:
        hour = ((t.timestamp() + z.offsets_s(np.array([t.timestamp()]))[0]) % 86400) / 3600
        return 2000.0 if 18 <= hour < 19 else 200.0

    start = change - timedelta(days=6, hours=1)
    now = change + timedelta(days=1, hours=1) - timedelta(hours=change.hour)  # the day after, local morning
    fc_local = HistoryForecaster(900, days=7, timezone="Europe/Berlin")
    fc_utc = HistoryForecaster(900, days=7)
    t = start
    while t < now:
        for f in (fc_local, fc_utc):
            f.add(t, load_at(t), 0.0)
        t += timedelta(minutes=15)
    six_pm = now.replace(hour=0) + timedelta(hours=18) - timedelta(seconds=z.offsets_s(np.array([now.timestamp()]))[0])
    i = int((six_pm - now).total_seconds() // 900)
    assert six_pm.astimezone(z.tz).hour == 18
    local, utc = fc_local.forecast(now, 96).load_w, fc_utc.forecast(now, 96).load_w
    assert local[i] > 1900 and local[i + 3] > 1900  # the whole local hour, from every earlier day
    assert local[i - 1] < 300 and local[i + 4] < 300
    # the UTC forecaster looks an hour off on the days before the change
    assert utc[i] < 1000 or utc[i + 3] < 1000


def test_the_pv_response_stays_solar() -> None:
    """The clear-day response per slot is the sun's (UTC), whatever the zone: same PV forecast."""
    from edge_agent.energy_manager.forecast import Site

    site = Site(52.5, 13.4, 5000.0)
    a = HistoryForecaster(900, days=2, site=site, timezone="Europe/Berlin")
    b = HistoryForecaster(900, days=2, site=site)
    t0 = datetime(2026, 3, 27, tzinfo=UTC)
    ghi = b.clear_sky_w_m2([t0 + timedelta(minutes=15 * k) for k in range(288)])
    for k in range(288):
        for f in (a, b):
            f.add(t0 + timedelta(minutes=15 * k), 300.0, float(ghi[k]) * 4.0)
    now = t0 + timedelta(days=3)
    np.testing.assert_array_equal(a.forecast(now, 96).pv_w, b.forecast(now, 96).pv_w)


# --- tariffs as data ---------------------------------------------------------------------------------------

TOU = """[tariff]
kind = "time_of_use"
unit = "{unit}"
import_price = {off}
export_price = {feed}
[[tariff.period]]
name = "peak"
from = "16:00"
to = "21:00"
days = "{days}"
import_price = {peak}
"""


def _tou(unit: str = "EUR/kWh", scale: float = 1.0, days: str = "all") -> str:
    f = lambda v: repr(round(v * scale, 10))  # noqa: E731
    return TOU.format(unit=unit, off=f(0.25), feed=f(0.08), peak=f(0.45), days=days)


def test_tou_peak_at_16_local_on_both_sides_of_dst(tmp_path: Path) -> None:
    sc = load_scenario(_folder(tmp_path, start=datetime(2026, 3, 28, tzinfo=UTC), days=3, tariff=_tou(),
                               prices=False))
    assert sc.timezone == "Europe/Berlin" and sc.price_knowledge.kind == "in_advance"
    imp = sc.import_price_per_kwh
    for day, utc_hour in ((28, 15), (29, 14), (30, 14)):  # 16:00 CET = 15:00 UTC, 16:00 CEST = 14:00 UTC
        s = _slot(sc, datetime(2026, 3, day, utc_hour, tzinfo=UTC))
        assert imp[s - 1] == 0.25 and imp[s] == 0.45 and imp[s + 19] == 0.45 and imp[s + 20] == 0.25, day
    assert (sc.export_price_per_kwh == 0.08).all()
    assert (imp == 0.45).sum() == 3 * 20


def test_fleet_west_of_utc_with_a_local_evening_peak(tmp_path: Path) -> None:
    """New York, summer (UTC-4): the 16:00-21:00 weekday peak is 20:00-01:00 UTC; the tariff is
    known in advance, so a plan sees to the end of the next local day."""
    start = datetime(2025, 6, 2, 4, tzinfo=UTC)  # Monday 00:00 EDT
    folder = _folder(tmp_path, start=start, days=3, timezone="America/New_York", tariff=_tou(days="mon-fri"),
                     prices=False)
    sc = load_scenario(folder)
    imp = sc.import_price_per_kwh
    s = _slot(sc, datetime(2025, 6, 2, 20, tzinfo=UTC))
    assert imp[s - 1] == 0.25 and imp[s:s + 20].tolist() == [0.45] * 20 and imp[s + 20] == 0.25
    assert imp[_slot(sc, datetime(2025, 6, 3, 0, 45, tzinfo=UTC))] == 0.45  # 20:45 local, the next UTC day
    # 08:00 local on Monday: known to the end of Tuesday, local (04:00 UTC on Wednesday)
    assert known_prices_until(sc, datetime(2025, 6, 2, 12, tzinfo=UTC)) == _slot(sc, datetime(2025, 6, 4, 4,
                                                                                                tzinfo=UTC))
    # 23:30 local: still Monday there (03:30 UTC Tuesday)
    assert known_prices_until(sc, datetime(2025, 6, 3, 3, 30, tzinfo=UTC)) == _slot(sc, datetime(2025, 6, 4, 4,
                                                                                                   tzinfo=UTC))
    # the house's own tou plan keeps the battery full for the local peak and covers it from there
    tr = simulate(sc.select(["h00"]), "tou", StrategyOptions())
    peak = imp == 0.45
    assert np.clip(tr.grid_w[0, peak], 0, None).sum() < 0.05 * sc.load_w[0, peak].sum()
    starts = np.flatnonzero(peak & ~np.roll(peak, 1))
    assert (tr.soc_pct[0, starts - 1] > 85.0).all()


def test_flat_tariff_with_feed_in(tmp_path: Path) -> None:
    sc = load_scenario(_folder(tmp_path, start=datetime(2025, 6, 2, tzinfo=UTC), days=1, prices=False,
                               tariff='[tariff]\nkind = "flat"\nunit = "ct/kWh"\nimport_price = 31.5\n'
                                      'export_price = 8.03\n'))
    assert (sc.import_price_per_kwh == 0.315).all() and (sc.export_price_per_kwh == 0.0803).all()
    assert sc.price_knowledge == PriceKnowledge("in_advance", time(0), "Europe/Berlin")


def test_day_ahead_publication_in_the_market_zone(tmp_path: Path) -> None:
    """A fleet in New York on a market in Berlin: the next Berlin day is public at 13:00 Berlin
    (11:00 UTC in summer); without [tariff]: 13:00 in the fleet's own zone."""
    start = datetime(2025, 6, 2, tzinfo=UTC)
    sc = load_scenario(_folder(tmp_path, start=start, days=3, timezone="America/New_York",
                               tariff='[tariff]\nkind = "day_ahead"\npublished = "13:00"\n'
                                      'market_timezone = "Europe/Berlin"\n'))
    assert sc.price_knowledge == PriceKnowledge("day_ahead", time(13), "Europe/Berlin")
    assert known_prices_until(sc, datetime(2025, 6, 2, 10, 45, tzinfo=UTC)) == _slot(sc, datetime(2025, 6, 2, 22,
                                                                                                   tzinfo=UTC))
    assert known_prices_until(sc, datetime(2025, 6, 2, 11, tzinfo=UTC)) == _slot(sc, datetime(2025, 6, 3, 22,
                                                                                              tzinfo=UTC))
    plain = load_scenario(_folder(tmp_path / "b", start=start, days=3, timezone="America/New_York"))
    assert plain.price_knowledge == PriceKnowledge("day_ahead", time(13), "America/New_York")
    # 12:59 EDT: only today (to 04:00 UTC); 13:00 EDT (17:00 UTC): tomorrow too
    assert known_prices_until(plain, datetime(2025, 6, 2, 16, 59, tzinfo=UTC)) == _slot(sc, datetime(
        2025, 6, 3, 4, tzinfo=UTC))
    assert known_prices_until(plain, datetime(2025, 6, 2, 17, tzinfo=UTC)) == _slot(sc, datetime(
        2025, 6, 4, 4, tzinfo=UTC))


def test_no_timezone_is_utc_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sc = load_scenario(_folder(tmp_path, start=datetime(2025, 6, 2, tzinfo=UTC), days=1, timezone=None))
    assert sc.timezone == "UTC" and sc.price_knowledge == PriceKnowledge("day_ahead", time(13), "UTC")
    assert "no timezone in [scenario]" in caplog.text and "UTC days" in caplog.text


# --- price units ------------------------------------------------------------------------------------

def _with_unit(folder: Path, unit: str, scale: float) -> None:
    """prices.csv's numbers in ``unit`` (written as decimal text, as a user would)."""
    from decimal import Decimal

    lines = (folder / "prices.csv").read_text().splitlines()
    out = [lines[0]]
    for row in lines[1:]:
        t, a, b = row.split(",")
        out.append(f"{t},{Decimal(a) * Decimal(repr(scale))},{Decimal(b) * Decimal(repr(scale))}")
    (folder / "prices.csv").write_text("\n".join(out) + "\n")
    toml = (folder / "scenario.toml").read_text()
    (folder / "scenario.toml").write_text(toml.replace('unit = "EUR/kWh"', f'unit = "{unit}"'))


@pytest.mark.parametrize("kind", ["day_ahead", "time_of_use"])
def test_a_price_unit_changes_no_array_and_no_decision(tmp_path: Path, kind: str) -> None:
    got = {}
    for unit, scale in (("EUR/kWh", 1), ("EUR/MWh", 1000), ("ct/kWh", 100)):
        start = datetime(2025, 6, 2, tzinfo=UTC)
        if kind == "day_ahead":
            folder = _folder(tmp_path / unit.replace("/", "_"), start=start, days=2,
                             tariff='[tariff]\nkind = "day_ahead"\nunit = "EUR/kWh"\n')
            _with_unit(folder, unit, scale)
        else:
            folder = _folder(tmp_path / unit.replace("/", "_"), start=start, days=2, prices=False,
                             tariff=_tou(unit, scale))
        got[unit] = load_scenario(folder)
    ref = got["EUR/kWh"]
    for sc in got.values():
        np.testing.assert_array_equal(sc.import_price_per_kwh, ref.import_price_per_kwh)
        np.testing.assert_array_equal(sc.export_price_per_kwh, ref.export_price_per_kwh)
    if kind == "day_ahead":  # and the same decisions on a small run (the fleet LP, its penalties in EUR/kWh)
        opts = StrategyOptions(plan_from_slot=48)
        traces = [simulate(sc.select(["h00", "h01"]), "fleet", opts) for sc in got.values()]
        for tr in traces[1:]:
            np.testing.assert_array_equal(tr.battery_w, traces[0].battery_w)


# --- round trip ---------------------------------------------------------------------------------------

def test_export_then_load_gives_the_same_scenario(tmp_path: Path) -> None:
    sc = default_scenario(4).head(96)
    got = load_scenario(write_scenario(sc, tmp_path / "default"))
    for f in dataclasses.fields(sc):
        a, b = getattr(sc, f.name), getattr(got, f.name)
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, f.name
    assert got.timezone == "Europe/Berlin"
    assert got.price_knowledge == PriceKnowledge("day_ahead", time(13), "Europe/Berlin")


def test_export_of_prices_known_in_advance_is_a_series(tmp_path: Path) -> None:
    sc = load_scenario(_folder(tmp_path, start=datetime(2025, 6, 2, tzinfo=UTC), days=1, tariff=_tou(),
                               prices=False))
    again = load_scenario(write_scenario(sc, tmp_path / "again"))
    assert 'kind = "series"' in (tmp_path / "again" / "scenario.toml").read_text()
    assert again.price_knowledge == sc.price_knowledge
    np.testing.assert_array_equal(again.import_price_per_kwh, sc.import_price_per_kwh)


# --- hostile input ----------------------------------------------------------------------------------

BAD = [
    ("timezone", 'timezone = "Mars/Olympus"', None,
     "field 'timezone': unknown time zone 'Mars/Olympus' (give an IANA name such as \"Europe/Berlin\" or "
     "\"America/New_York\")"),
    ("timezone", 'timezone = "../../etc/passwd"', None, "field 'timezone': unknown time zone '../../etc/passwd'"),
    ("market zone", None, '[tariff]\nkind = "day_ahead"\nmarket_timezone = "CEST"\n',
     "field 'tariff.market_timezone': unknown time zone 'CEST'"),
    ("published", None, '[tariff]\nkind = "day_ahead"\npublished = "1pm"\n',
     "field 'tariff.published': not a time of day \"HH:MM\" (00:00..23:59): '1pm'"),
    ("published 24:00", None, '[tariff]\npublished = "24:00"\n',
     "field 'tariff.published': not a time of day \"HH:MM\" (00:00..23:59): '24:00'"),
    ("unit", None, '[tariff]\nunit = "EUR/Wh"\n',
     "field 'tariff.unit': unknown unit 'EUR/Wh': use \"EUR/kWh\", \"EUR/MWh\" or \"ct/kWh\" (cents of the "
     "scenario's currency)"),
    ("unit currency", None, '[tariff]\nunit = "USD/MWh"\n',
     "field 'tariff.unit': unit 'USD/MWh' is not in the scenario's currency 'EUR' ([scenario] currency)"),
    ("kind", None, '[tariff]\nkind = "dynamic"\n', "field 'tariff.kind': Input should be 'day_ahead', "),
    ("published for flat", None, '[tariff]\nkind = "flat"\nimport_price = 0.3\nexport_price = 0.08\n'
     'published = "13:00"\n', "field 'tariff.published': applies to kind day_ahead only, not 'flat'"),
    ("flat without export", None, '[tariff]\nkind = "flat"\nimport_price = 0.3\n',
     "field 'tariff.export_price': kind 'flat' needs export_price (in EUR/kWh)"),
    ("nan", None, '[tariff]\nkind = "flat"\nimport_price = nan\nexport_price = 0.08\n',
     "field 'tariff.import_price': Input should be a finite number"),
    ("inf", None, '[tariff]\nkind = "flat"\nimport_price = 0.3\nexport_price = -inf\n',
     "field 'tariff.export_price': Input should be a finite number"),
    ("huge", None, '[tariff]\nkind = "flat"\nimport_price = 1e300\nexport_price = 0.08\n',
     "field 'tariff.import_price': 1E+300 is 1e+300 per kWh: beyond 10000 (wrong unit?)"),
    ("wrap", None, _tou().replace('to = "21:00"', 'to = "02:00"'),
     "field 'tariff.period[0].to': 16:00-02:00 wraps midnight or is empty: a period runs from \"from\" to a "
     "later \"to\" (\"24:00\" = midnight); give two periods"),
    ("bad to", None, _tou().replace('to = "21:00"', 'to = "21:60"'),
     "field 'tariff.period[0].to': not a time of day \"HH:MM\" (00:00..24:00): '21:60'"),
    ("overlap", None, _tou() + '[[tariff.period]]\nfrom = "20:00"\nto = "24:00"\nimport_price = 0.3\n',
     "field 'tariff.period[1]': 20:00-24:00 overlaps tariff.period[0] ('peak') on the same days"),
    ("months", None, _tou().replace('days = "all"', 'months = [0, 7]'),
     "field 'tariff.period[0].months': months are distinct numbers 1..12, got [0, 7]"),
    ("no periods", None, _tou()[:_tou().index("[[tariff.period]]")],
     "field 'tariff.period': kind 'time_of_use' needs at least one [[tariff.period]]"),
    ("unknown key", None, '[tariff]\nkind = "day_ahead"\npublish_hour_utc = 11\n',
     "field 'tariff.publish_hour_utc': Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("what", "scenario_line", "tariff", "expect"), BAD, ids=[b[0] for b in BAD])
def test_bad_zone_time_unit_and_periods_name_file_and_field(tmp_path: Path, what: str, scenario_line: str | None,
                                                             tariff: str | None, expect: str) -> None:
    folder = _folder(tmp_path, start=datetime(2025, 6, 2, tzinfo=UTC), days=1, tariff=tariff)
    if scenario_line is not None:
        p = folder / "scenario.toml"
        p.write_text(p.read_text().replace('timezone = "Europe/Berlin"', scenario_line))
    with pytest.raises(ScenarioError) as err:
        load_scenario(folder)
    assert str(err.value).startswith(f"{folder / 'scenario.toml'}, field ")
    assert expect in str(err.value), str(err.value)


def test_prices_in_the_wrong_unit_or_not_numbers_name_the_line(tmp_path: Path) -> None:
    folder = _folder(tmp_path, start=datetime(2025, 6, 2, tzinfo=UTC), days=1,
                     tariff='[tariff]\nkind = "day_ahead"\nunit = "EUR/kWh"\n')
    p = folder / "prices.csv"
    rows = p.read_text().splitlines()
    p.write_text("\n".join([rows[0], rows[1].split(",")[0] + ",200000,0.08", *rows[2:]]) + "\n")  # EUR/MWh x 1000
    with pytest.raises(ScenarioError, match=re.escape("prices.csv, line 2, field 'import_price_per_kwh': 200000 is "
                                                      "200000 per kWh, beyond 10000 (wrong [tariff] unit?)")):
        load_scenario(folder)
    p.write_text(p.read_text().replace(",200000,", ",NaN,", 1))
    with pytest.raises(ScenarioError, match=re.escape("prices.csv, line 2, field 'import_price_per_kwh': not a "
                                                      "finite number: 'NaN'")):
        load_scenario(folder)


def test_a_period_boundary_inside_a_slot_prices_it_by_shares(tmp_path: Path) -> None:
    """Kolkata is UTC+5:30: with hourly slots, 16:00 local falls in the middle of a UTC hour."""
    folder = _folder(tmp_path, start=datetime(2025, 6, 2, tzinfo=UTC), days=1, timezone="Asia/Kolkata",
                     tariff=_tou(), prices=False)
    p = folder / "scenario.toml"
    p.write_text(p.read_text().replace("slot_s = 900", "slot_s = 3600"))
    imp = load_scenario(folder).import_price_per_kwh
    assert imp[9] == 0.25 and imp[10] == pytest.approx(0.35) and imp[11:15].tolist() == [0.45] * 4
    assert imp[15] == pytest.approx(0.35) and imp[16] == 0.25


def test_the_report_gives_the_local_start(tmp_path: Path) -> None:
    from simulator.fleet.report import header

    sc = default_scenario(2).head(96)
    assert "from 2020-05-18 02:00 Europe/Berlin (2020-05-18 00:00 UTC)" in header(sc, 0)


def test_weekday_and_month_restrictions_are_local(tmp_path: Path) -> None:
    """Friday 23:30 in New York is Saturday 03:30 UTC: days and months are the local calendar's."""
    tariff = _tou(days="mon-fri").replace('days = "mon-fri"', 'days = "mon-fri"\nmonths = [5]')
    tariff += '[[tariff.period]]\nfrom = "23:00"\nto = "24:00"\ndays = "sat-sun"\nimport_price = 0.1\n'
    sc = load_scenario(_folder(tmp_path, start=datetime(2025, 5, 30, 4, tzinfo=UTC), days=4,  # Fri 00:00 EDT
                               timezone="America/New_York", tariff=tariff, prices=False))
    imp = sc.import_price_per_kwh
    at = lambda d, h: imp[_slot(sc, datetime(2025, 5, d, h, tzinfo=UTC) if d <= 31  # noqa: E731
                                 else datetime(2025, 6, d - 31, h, tzinfo=UTC))]
    assert at(30, 20) == 0.45  # Friday 16:00 EDT, May
    assert at(31, 20) == 0.25  # Saturday: no peak
    assert at(32, 3) == 0.1 and at(31, 3) == 0.25  # Saturday 23:00 EDT is Sunday 03:00 UTC; Friday 23:00 is not
    assert at(33, 20) == 0.25  # Monday 2 June 16:00 EDT: the peak is for May only


def test_a_scenario_built_in_code_checks_its_zones() -> None:
    sc = small_scenario(n=2, days=1)
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Berlni'"):
        dataclasses.replace(sc, timezone="Europe/Berlni").validate()
    with pytest.raises(ValueError, match="unknown time zone 'CET-1'"):
        dataclasses.replace(sc, price_knowledge=PriceKnowledge("day_ahead", time(13), "CET-1")).validate()


# --- the product's own time-of-use tariffs (agent [tariff], aggregator [[tariff]]) -------------------

def test_agent_and_aggregator_tou_periods_in_local_time() -> None:
    from aggregator.config import AggregatorConfig
    from edge_agent.config import TariffConfig

    periods = [{"start": "00:00", "end": "16:00", "import_price_per_kwh": 0.25},
               {"start": "16:00", "end": "21:00", "import_price_per_kwh": 0.45},
               {"start": "21:00", "end": "00:00", "import_price_per_kwh": 0.25}]
    agent = TariffConfig.model_validate({"periods": periods, "timezone": "Europe/Berlin"}).price_source()
    agg = AggregatorConfig.model_validate({"insecure": True, "tariff_timezone": "Europe/Berlin", "tariff": [
        p | {"export_price_per_kwh": 0.08} for p in periods]}).tou_tariff()
    for tariff in (agent, agg):
        for day, utc_hour in ((28, 15), (30, 14)):  # 16:00 CET, then 16:00 CEST
            imp, _ = tariff.prices(datetime(2026, 3, day, utc_hour, tzinfo=UTC) - timedelta(minutes=15), 900, 2)
            assert imp.tolist() == [0.25, 0.45], day
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Paris '"):
        TariffConfig.model_validate({"periods": periods, "timezone": "Europe/Paris "})
