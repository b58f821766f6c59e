"""The evaluation set (``vpp-sim eval``): builders, coverage of the set, binding limits, the
command's table and JSON, and hostile inputs."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from simulator.cli import main
from simulator.fleet import evalset
from simulator.fleet.evalset import loads, weather


@pytest.fixture(scope="module")
def built():
    return {name: evalset.build(name) for name in evalset.names()}


def _uncoordinated_net_w(sc) -> np.ndarray:
    """(F, T) feeder net power (import > 0) with no battery acting, site export caps applied."""
    caps = np.array([h.export_cap_w for h in sc.houses])
    site = np.maximum(sc.load_w - sc.pv_w, -caps[:, None])
    net = np.zeros((len(sc.feeder_ids), sc.t))
    np.add.at(net, sc.feeder_index(), site)
    return net


def test_every_builder_builds_finite_and_deterministic(built):
    assert len(built) >= 6
    for name, (sc, meta) in built.items():
        sc.validate()
        assert sc.name == meta.name == name
        for a in (sc.load_w, sc.pv_w, sc.import_price_per_kwh, sc.export_price_per_kwh):
            assert np.isfinite(a).all()
        assert (sc.load_w >= 0).all() and (sc.pv_w >= 0).all()
        assert 15 <= sc.n <= 30
        assert sc.t == 9 * 96 and meta.warmup_slots == 2 * 96
        assert meta.role in (evalset.TUNING, evalset.HELD_OUT)
        assert set(sc.sources) >= {"load", "pv", "tariff", "feeders"}
        # local midnight in the fleet's zone
        from zoneinfo import ZoneInfo
        local = sc.start.astimezone(ZoneInfo(meta.timezone))
        assert (local.hour, local.minute) == (0, 0)
        if meta.tariff.kind == "day_ahead":
            assert meta.tariff.published is not None and meta.tariff.market_timezone
    sc2, _ = evalset.build("us_mixed_tou_winter")
    assert np.array_equal(sc2.load_w, built["us_mixed_tou_winter"][0].load_w)


def test_the_set_covers_climates_tariffs_seasons_fleets_and_roles(built):
    metas = [m for _, m in built.values()]
    assert len({m.climate for m in metas}) >= 3
    assert {m.tariff.kind for m in metas} >= {"time_of_use", "day_ahead", "flat"}
    assert {m.season for m in metas} >= {"summer", "winter"}
    assert any(m.fleet["without_pv"] for m in metas)
    assert any(m.fleet["without_battery"] for m in metas)
    assert any(m.fleet["with_ev"] for m in metas)
    assert sum(m.role == evalset.TUNING for m in metas) == 2
    binds = {m.binds for m in metas}
    assert ("import",) in binds and ("export",) in binds and ("import", "export") in binds and () in binds


def test_limits_bind_where_stated_and_only_there(built):
    for name, (sc, meta) in built.items():
        net = _uncoordinated_net_w(sc)[:, meta.warmup_slots:]
        over_i = (net > sc.feeder_import_limit_w[:, meta.warmup_slots:]).any()
        over_e = (-net > sc.feeder_export_limit_w[:, meta.warmup_slots:]).any()
        assert over_i == ("import" in meta.binds), name
        assert over_e == ("export" in meta.binds), name


def test_like_the_issue_fleet(built):
    sc, meta = built["us_hot_tou_summer"]
    assert sc.n == 15 and len(sc.feeder_ids) == 3 and meta.timezone == "America/New_York"
    assert all(h.battery_kwh == 6.4 and h.battery_kw == 5.0 for h in sc.houses)
    kwp = np.bincount(sc.feeder_index(), weights=[h.pv_kwp for h in sc.houses])
    assert np.allclose(sc.feeder_export_limit_w[:, 0], 0.3 * kwp * 1000)
    assert np.allclose(sc.feeder_import_limit_w[:, 0], 5 * 2000.0)
    # the TOU peak is 16:00-21:00 local on weekdays: 20:00-01:00 UTC in July (EDT)
    from zoneinfo import ZoneInfo
    zone = ZoneInfo(meta.timezone)
    for s in range(0, sc.t, 4):
        t = sc.slot_start(s).astimezone(zone)
        peak = t.weekday() < 5 and 16 <= t.hour < 21
        assert (sc.import_price_per_kwh[s] == 0.42) == peak


def test_weather_files_are_small_and_plausible():
    files = list(weather.DATA_DIR.glob("*.csv.gz"))
    assert {f.name for f in files} == {f"{c}.csv.gz" for c in weather.SITES}
    assert sum(f.stat().st_size for f in files) < 1_000_000
    for c in weather.SITES:
        pv, temp = weather.climate(c)
        assert 700 <= pv.sum() / 1000 <= 1700  # kWh per kWp and year
        assert -40 < temp.min() < temp.max() < 45


def test_weather_file_with_a_bad_value_names_file_line_field(tmp_path, monkeypatch):
    body = gzip.decompress((weather.DATA_DIR / "miami_fl.csv.gz").read_bytes()).decode().splitlines()
    body[10] = body[10].rsplit(",", 1)[0] + ",nan"
    (tmp_path / "miami_fl.csv.gz").write_bytes(gzip.compress(("\n".join(body) + "\n").encode()))
    monkeypatch.setattr(weather, "DATA_DIR", tmp_path)
    weather.climate.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"miami_fl.csv.gz, line 11, field 'temp_air_c'"):
            weather.climate("miami_fl")
        body[10] = body[10].split(",")[0] + ",1e300,20.0"
        (tmp_path / "miami_fl.csv.gz").write_bytes(gzip.compress(("\n".join(body) + "\n").encode()))
        weather.climate.cache_clear()
        with pytest.raises(ValueError, match=r"line 11, field 'pv_w_per_kwp'"):
            weather.climate("miami_fl")
    finally:
        weather.climate.cache_clear()


def test_degree_hour_loads_and_ev_sessions():
    temp = np.r_[np.full(96, 30.0), np.full(96, -5.0)]
    cool = loads.cooling_w(temp, np.array([0.1]))
    heat = loads.heat_pump_w(temp, np.array([0.2]))
    assert cool[0, 95] == pytest.approx(0.1 * 1000 * (30 - 21), rel=0.01)
    assert heat[0, :96].max() == 0 and heat[0, -1] > 1000
    from datetime import datetime
    ev = loads.ev_w(datetime(2021, 1, 18), 7 * 96, 3, np.random.default_rng(1), 7200.0)
    assert ev.max() <= 7200.0 and ev.sum() > 0
    assert ev[:, : 16 * 4].sum() == 0  # nobody charges before 16:00 on the first day


def test_unknown_scenario_is_a_clear_error(capsys, tmp_path):
    assert main(["eval", "--only", "us_hot_tou_summer,atlantis"]) == 2
    err = capsys.readouterr().err
    assert "unknown eval scenario 'atlantis'" in err and "us_hot_tou_summer" in err
    assert main(["eval", "--only", ","]) == 2
    assert main(["eval", "--houses", "0"]) == 2
    assert main(["eval", "--workers", "0"]) == 2
    assert main(["scenario", "export", "--name", "atlantis", str(tmp_path / "x")]) == 2
    assert "unknown eval scenario" in capsys.readouterr().err


def test_export_as_folder_reads_back(tmp_path):
    from simulator.fleet.scenario import load_scenario

    assert main(["scenario", "export", "--name", "cold_tou_winter", "--days", "1", str(tmp_path / "c")]) == 0
    sc = load_scenario(tmp_path / "c")
    ref, _ = evalset.build("cold_tou_winter")
    assert sc.n == ref.n and sc.t == 96
    assert np.allclose(sc.load_w, ref.load_w[:, :96], atol=0.1)


def test_tiny_run_table_and_json(tmp_path, capsys):
    out = tmp_path / "e.json"
    rc = main(["eval", "--only", "us_hot_tou_summer", "--houses", "2", "--days", "1", "--workers", "1",
               "--json", str(out)])
    assert rc == 0
    cap = capsys.readouterr()
    table = cap.out
    assert "us_hot_tou_summer" in table and "held out" in table and "fleet share" in table
    assert "over rule" in table and "local rule" in table
    assert "HiGHS" not in table and table.lstrip().startswith("scenario")
    assert "us_hot_tou_summer: battery_idle" in cap.err and "(limits lifted)" in cap.err
    recs = json.loads(out.read_text())
    got = {(r["strategy"], r["limits"]) for r in recs}
    assert got == {(s, "as given") for s in ("battery_idle", "self_consumption", "tou", "fleet",
                                              "perfect_foresight")} | {("fleet", "lifted"),
                                                                       ("perfect_foresight", "lifted")}
    fleet = next(r for r in recs if r["strategy"] == "fleet" and r["limits"] == "as given")
    assert fleet["houses"] == 2 and fleet["tariff"] == "time_of_use" and fleet["currency"] == "USD"
    assert set(fleet["rules"]) == {"over_limit", "not_behind_local"}
    assert isinstance(fleet["honour_limits_cost"], float)
    assert all(np.isfinite(r["cost"]) for r in recs)


def test_eval_export_writes_folders(tmp_path, capsys):
    assert main(["eval", "--only", "de_flat_summer", "--export", str(tmp_path)]) == 0
    assert (tmp_path / "de_flat_summer" / "scenario.toml").is_file()
    assert len(list((tmp_path / "de_flat_summer" / "series").glob("*.csv"))) == 30


def test_an_exported_scenario_reads_back_with_its_time_zone_tariff_and_warm_up(tmp_path):
    import tomllib

    from simulator.fleet.evalset import build
    from simulator.fleet.scenario import load_run

    assert main(["scenario", "export", "--name", "us_hot_dayahead_summer", "--days", "3", str(tmp_path)]) == 0
    sc, warm = load_run(tmp_path)
    built, meta = build("us_hot_dayahead_summer")
    assert sc.timezone == built.timezone == "America/New_York" and warm == 2 * 96 and sc.t == 3 * 96
    assert sc.price_knowledge == built.price_knowledge
    assert sc.price_knowledge.kind == "day_ahead" and sc.price_knowledge.market_timezone == "Europe/Berlin"
    assert np.array_equal(sc.import_price_per_kwh, built.import_price_per_kwh[: 3 * 96])
    ev = tomllib.loads((tmp_path / "eval.toml").read_text())["eval"]
    assert ev["binds"] == ["import", "export"] and ev["role"] == "held out" and ev["tariff"] == "day_ahead"
    assert main(["scenario", "export", "--name", "us_hot_tou_summer", "--days", "3", str(tmp_path / "tou")]) == 0
    assert load_run(tmp_path / "tou")[0].price_knowledge.kind == "in_advance"


def test_days_beyond_the_scenario_is_an_error(capsys):
    assert main(["eval", "--only", "cold_tou_winter", "--days", "8"]) == 2
    assert "cold_tou_winter has 7 counted days" in capsys.readouterr().err
