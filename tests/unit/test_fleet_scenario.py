"""Scenario folders: round trip, resampling, and errors that name file, line and field."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from simulator.fleet.scenario import ScenarioError, load_scenario, write_scenario
from tests.fleet_fixtures import small_scenario


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    return write_scenario(small_scenario(n=3, days=1), tmp_path / "sc")


def test_round_trip(folder: Path) -> None:
    sc = small_scenario(n=3, days=1)
    got = load_scenario(folder)
    assert got.start == sc.start and got.t == sc.t and [h.house_id for h in got.houses] == ["h00", "h01", "h02"]
    assert np.allclose(got.load_w, sc.load_w, atol=0.06)
    assert np.allclose(got.pv_w, sc.pv_w, atol=0.06)
    assert np.allclose(got.import_price_per_kwh, sc.import_price_per_kwh, atol=1e-5)
    assert got.feeder_ids == ("f0", "f1")
    assert got.houses[0].export_cap_w == pytest.approx(sc.houses[0].export_cap_w)


def test_hourly_prices_and_days_and_per_kwp(folder: Path) -> None:
    (folder / "prices.csv").write_text(
        "timestamp,import_price_per_kwh,export_price_per_kwh\n"
        + "".join(f"2025-06-02T{h:02d}:00:00+00:00,{0.1 + h / 100:.2f},0.05\n" for h in range(24)))
    series = (folder / "series" / "h00.csv").read_text().splitlines()
    # h00 as PV per kWp (6 kWp): the loader multiplies by the house's size
    body = [line.split(",") for line in series[1:]]
    (folder / "series" / "h00.csv").write_text(
        "timestamp,load_w,pv_production_w_per_kwp\n"
        + "".join(f"{t},{lo},{float(pv) / 6:.4f}\n" for t, lo, pv in body))
    sc = load_scenario(folder, days=0.5)
    assert sc.t == 48
    assert sc.import_price_per_kwh[:4] == pytest.approx([0.10] * 4)  # an hour's price holds for its 4 slots
    assert sc.import_price_per_kwh[4] == pytest.approx(0.11)
    assert sc.pv_w[0, 40] == pytest.approx(small_scenario(n=3, days=1).pv_w[0, 40], abs=0.1)


def test_time_varying_feeder_limits(folder: Path) -> None:
    (folder / "feeders.csv").write_text(
        "timestamp,feeder,import_limit_w,export_limit_w\n"
        "2025-06-02T00:00:00Z,f0,30000,\n"
        "2025-06-02T00:00:00Z,f1,30000,9000\n"
        "2025-06-02T12:00:00Z,f1,30000,5000\n")
    sc = load_scenario(folder)
    assert math.isinf(sc.feeder_export_limit_w[0, 0])
    assert sc.feeder_export_limit_w[1, 47] == 9000 and sc.feeder_export_limit_w[1, 48] == 5000


def _edit_line(text: str, i: int, f) -> str:
    lines = text.splitlines()
    lines[i] = f(lines[i])
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("file", "edit", "expect"),
    [
        ("houses.csv", lambda s: s.replace("h01,8,10,4", "h01,8,-10,4"), "houses.csv, line 3, field 'battery_kwh'"),
        ("houses.csv", lambda s: s.replace(",f1,", ",f9,", 1), "feeder 'f9' is not in feeders.csv"),
        ("houses.csv", lambda s: s.replace("h02", "h01"), "duplicate house id 'h01'"),
        ("houses.csv", lambda s: s.replace("pv_kwp", "pv_kw"), "missing column(s) pv_kwp"),
        ("prices.csv", lambda s: s.replace(",0.3,", ",abc,", 1), "prices.csv, line"),
        ("prices.csv", lambda s: s.replace("2025-06-02T10:00:00Z", "2025-06-02 10:00"), "needs a UTC offset"),
        ("series/h02.csv", lambda s: _edit_line(s, 1, lambda row: row.replace(",", ",-", 1)),
         "h02.csv, line 2, field 'load_w': must be >= 0"),
        ("feeders.csv", lambda s: s.replace("12000", "0"), "feeders.csv, line 2, field 'export_limit_w'"),
        ("scenario.toml", lambda s: s.replace("slot_s = 900", "slot_s = 7"), "field 'slot_s'"),
    ],
)
def test_errors_name_file_line_field(folder: Path, file: str, edit, expect: str) -> None:
    p = folder / file
    p.write_text(edit(p.read_text()))
    with pytest.raises(ScenarioError) as err:
        load_scenario(folder)
    assert expect in str(err.value)


def test_missing_files_and_too_many_days(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not a folder"):
        load_scenario(tmp_path / "nope")
    (folder / "series" / "h01.csv").unlink()
    with pytest.raises(ScenarioError, match=r"h01.csv: file not found"):
        load_scenario(folder)
    other = write_scenario(small_scenario(n=2, days=1), tmp_path / "other")
    with pytest.raises(ScenarioError, match="only 1.00 of the 3 days"):
        load_scenario(other, days=3)
