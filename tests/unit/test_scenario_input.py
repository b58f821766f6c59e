"""Scenario input that cannot be misread (issue 18, item 5): gaps, offsets, magnitudes, warm-up,
optional limit columns, export of a part of the fleet, the report's peaks, a quiet solver."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.cli import main
from simulator.fleet.kpis import kpis
from simulator.fleet.model import select_scaled
from simulator.fleet.report import table
from simulator.fleet.runner import RunResult
from simulator.fleet.scenario import ScenarioError, load_run, load_scenario, write_scenario
from tests.fleet_fixtures import small_scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    return write_scenario(small_scenario(n=3, days=1), tmp_path / "sc")


def _lines(p: Path) -> list[str]:
    return p.read_text().splitlines()


def _write(p: Path, lines: list[str]) -> None:
    p.write_text("\n".join(lines) + "\n")


def _toml(folder: Path, scenario_keys: str = "", tables: str = "") -> None:
    p = folder / "scenario.toml"
    text = p.read_text().replace("\n[scenario.sources]", f"{scenario_keys}\n\n[scenario.sources]")
    p.write_text(text + tables)


def _set_cell(p: Path, row: int, col: str, value: str) -> None:
    """Set a cell of a CSV file (row 0 = line 2)."""
    lines = _lines(p)
    head = lines[0].split(",")
    cells = lines[row + 1].split(",")
    cells[head.index(col)] = value
    lines[row + 1] = ",".join(cells)
    _write(p, lines)


def _error(folder: Path, **kw: float) -> str:
    with pytest.raises(ScenarioError) as err:
        load_scenario(folder, **kw)
    return str(err.value)


# --- 1. gaps ----------------------------------------------------------------------------------------------

def _cut(p: Path, first: int, last: int) -> None:
    """Remove rows first..last (0-based, inclusive)."""
    lines = _lines(p)
    _write(p, lines[: first + 1] + lines[last + 2:])


def test_a_gap_is_an_error_naming_the_row_after_it_and_its_length(folder: Path) -> None:
    _cut(folder / "series" / "h01.csv", 40, 59)  # 10:00-14:45 of 15-minute rows: 5 h
    assert _error(folder) == (
        f"{folder}/series/h01.csv, line 42, field 'timestamp': gap: 5 h missing before this row (from "
        "2025-06-02T10:00:00Z on; the file's step is 15 min); fill it, or choose a gap_fill policy in "
        "scenario.toml (docs/scenario-format.md)")


def test_a_gap_in_prices_is_an_error_too(folder: Path) -> None:
    _cut(folder / "prices.csv", 8, 15)  # 02:00-03:45
    assert _error(folder) == (
        f"{folder}/prices.csv, line 10, field 'timestamp': gap: 2 h missing before this row (from "
        "2025-06-02T02:00:00Z on; the file's step is 15 min); fill it, or choose a gap_fill policy in "
        "scenario.toml (docs/scenario-format.md)")


def test_a_step_of_twice_the_typical_step_is_no_gap(folder: Path) -> None:
    _cut(folder / "series" / "h01.csv", 40, 40)
    assert load_scenario(folder).t == 96


@pytest.mark.parametrize("policy", ["hold", "zero", "interpolate"])
def test_gap_fill_policies(folder: Path, policy: str) -> None:
    p = folder / "series" / "h01.csv"
    before, after = (float(_lines(p)[k + 1].split(",")[1]) for k in (39, 60))  # load at 09:45 and 15:00
    _cut(p, 40, 59)
    _toml(folder, f'\ngap_fill = "{policy}"')
    load = load_scenario(folder).load_w[1]
    if policy == "hold":
        assert load[40:60] == pytest.approx([before] * 20)
    elif policy == "zero":
        assert load[40:60] == pytest.approx([0.0] * 20)
    else:  # on the line from 09:45's value to 15:00's, 21 steps apart
        assert load[40:60] == pytest.approx([before + (after - before) * k / 21 for k in range(1, 21)])
    assert load[39] == pytest.approx(before) and load[60] == pytest.approx(after)


def test_a_gap_longer_than_max_gap_is_an_error_whatever_the_policy(folder: Path) -> None:
    _cut(folder / "series" / "h01.csv", 40, 59)
    _toml(folder, '\ngap_fill = "interpolate"\nmax_gap_h = 4')
    assert _error(folder) == (
        f"{folder}/series/h01.csv, line 42, field 'timestamp': gap: 5 h missing before this row (from "
        "2025-06-02T10:00:00Z on; the file's step is 15 min), more than max_gap_h = 4 h of scenario.toml")
    p = folder / "scenario.toml"
    p.write_text(p.read_text().replace('"interpolate"', '"guess"'))
    assert _error(folder).startswith(f"{folder}/scenario.toml, field 'gap_fill': Input should be 'error', 'hold'")


# --- 2. offsets --------------------------------------------------------------------------------------------

def test_feeder_limit_times_need_an_offset(folder: Path) -> None:
    (folder / "feeders.csv").write_text(
        "timestamp,feeder,import_limit_w,export_limit_w\n"
        "2025-06-02T00:00:00Z,f0,30000,\n"
        "2025-06-02T00:00:00+00:00,f1,30000,9000\n"
        "2025-06-02T12:00:00,f1,30000,5000\n")
    assert _error(folder) == (f"{folder}/feeders.csv, line 4, field 'timestamp': needs a UTC offset (e.g. "
                              "2025-06-01T00:00:00Z): '2025-06-02T12:00:00'")


@pytest.mark.parametrize("start", ["2025-06-02T00:00:00", '"2025-06-02T00:00:00"'])
def test_scenario_start_needs_an_offset(folder: Path, start: str) -> None:
    p = folder / "scenario.toml"
    p.write_text(p.read_text().replace("start = 2025-06-02T00:00:00Z", f"start = {start}"))
    assert _error(folder) == (f"{folder}/scenario.toml, field 'start': needs a UTC offset, e.g. "
                              "2025-06-01T00:00:00Z")


# --- 3. magnitudes and non-finite values ------------------------------------------------------------------

HINT = " (a real value? raise {} in [scenario.checks] of scenario.toml)"


@pytest.mark.parametrize(
    ("file", "row", "col", "value", "expect"),
    [
        ("series/h01.csv", 28, "load_w", "50000",
         "line 30, field 'load_w': 50000 W is more than 40000 W for one house (kW given as W?)"
         + HINT.format("max_load_w")),
        ("series/h00.csv", 48, "pv_production_w", "8000",
         "line 50, field 'pv_production_w': 8000 W is more than 1200 W per kWp of the house's 6 kWp (houses.csv) "
         "+ 100 W" + HINT.format("max_pv_w_per_kwp")),
        ("prices.csv", 5, "import_price_per_kwh", "300",
         "line 7, field 'import_price_per_kwh': 300 per kWh is more than 10 per kWh (a price in another unit "
         "than the one declared?)" + HINT.format("max_price_per_kwh")),
        ("prices.csv", 6, "export_price_per_kwh", "-45.5",
         "line 8, field 'export_price_per_kwh': -45.5 per kWh is below -1 per kWh (a price in another unit "
         "than the one declared?)" + HINT.format("min_price_per_kwh")),
        ("houses.csv", 1, "battery_kwh", "1000",
         "line 3, field 'battery_kwh': 1000 kWh is more than 250 kWh for one house" + HINT.format("max_battery_kwh")),
        ("houses.csv", 1, "battery_kw", "4000",
         "line 3, field 'battery_kw': 4000 kW is more than 100 kW for one house" + HINT.format("max_battery_kw")),
        ("houses.csv", 0, "pv_kwp", "600",
         "line 2, field 'pv_kwp': 600 kWp is more than 100 kWp for one house" + HINT.format("max_pv_kwp")),
        ("houses.csv", 2, "import_limit_w", "0",
         "line 4, field 'import_limit_w': 0 W is below 100 W: limits are in W, not kW (an empty cell means no "
         "limit)"),
        ("houses.csv", 2, "export_cap_w", "4.6",
         "line 4, field 'export_cap_w': 4.6 W is below 100 W: limits are in W, not kW (an empty cell means no "
         "limit)" + HINT.format("min_house_limit_w")),
        ("feeders.csv", 1, "import_limit_w", "40",
         "line 3, field 'import_limit_w': 40 W is below 1000 W for a feeder: limits are in W, not kW (an empty "
         "cell means no limit)" + HINT.format("min_feeder_limit_w")),
        ("feeders.csv", 0, "export_limit_w", "0", "line 2, field 'export_limit_w': must be > 0 (empty = no limit), "
         "got 0"),
        # non-finite and absurd numbers, in every file
        ("series/h02.csv", 3, "load_w", "nan", "line 5, field 'load_w': not a finite number: 'nan'"),
        ("series/h02.csv", 3, "pv_production_w", "inf", "line 5, field 'pv_production_w': not a finite number: 'inf'"),
        ("series/h02.csv", 3, "load_w", "1e300",
         "line 5, field 'load_w': 1e+300 W is more than 40000 W for one house (kW given as W?)"
         + HINT.format("max_load_w")),
        ("prices.csv", 3, "import_price_per_kwh", "NaN", "line 5, field 'import_price_per_kwh': not a finite "
         "number: 'NaN'"),
        ("prices.csv", 3, "import_price_per_kwh", "-inf", "line 5, field 'import_price_per_kwh': not a finite "
         "number: '-inf'"),
        ("houses.csv", 0, "pv_kwp", "nan", "line 2, field 'pv_kwp': Input should be a finite number"),
        ("houses.csv", 0, "battery_kwh", "1e300", "line 2, field 'battery_kwh': Input should be less than or "
         "equal to 10000"),
        ("houses.csv", 0, "import_limit_w", "1e300",
         "line 2, field 'import_limit_w': 1e+300 W is more than 1e+08 W (an empty cell means no limit)"),
        ("houses.csv", 0, "export_cap_w", "nan", "line 2, field 'export_cap_w': Input should be a finite number"),
        ("feeders.csv", 0, "import_limit_w", "1e300",
         "line 2, field 'import_limit_w': 1e+300 W is more than 1e+08 W (an empty cell means no limit)"),
        ("feeders.csv", 0, "import_limit_w", "nan", "line 2, field 'import_limit_w': not a finite number: 'nan'"),
    ],
)
def test_implausible_and_non_finite_values(folder: Path, file: str, row: int, col: str, value: str,
                                           expect: str) -> None:
    _set_cell(folder / file, row, col, value)
    assert _error(folder) == f"{folder}/{file}, {expect}"


def test_a_load_far_above_what_the_house_can_draw(folder: Path) -> None:
    _set_cell(folder / "houses.csv", 1, "import_limit_w", "2000")  # h01: 4 kW battery, 8 kWp
    _set_cell(folder / "series" / "h01.csv", 70, "load_w", "35000")
    assert _error(folder) == (
        f"{folder}/series/h01.csv, line 72, field 'load_w': 35000 W is more than 2 x what the house can draw "
        "(15600 W: import_limit_w + battery_kw + PV peak in houses.csv)" + HINT.format("max_load_vs_supply"))


def test_prices_are_checked_in_currency_per_kwh_after_a_unit() -> None:
    """The check of prices declared in another unit (helper for the tariff's `unit`)."""
    from simulator.fleet.scenario_checks import Plausibility, check_prices

    cols = {"import_price_per_kwh": np.array([85.0, 300.0, 12000.0])}
    with pytest.raises(ScenarioError) as err:
        check_prices("p.csv", cols, Plausibility(), to_per_kwh=1e-3, unit="EUR/MWh")
    assert str(err.value) == ("p.csv, line 4, field 'import_price_per_kwh': 12000 EUR/MWh = 12 per kWh is more than "
                              "10 per kWh (a price in another unit than the one declared?)"
                              + HINT.format("max_price_per_kwh"))


def test_pv_per_kwp_is_checked_per_kwp(folder: Path) -> None:
    p = folder / "series" / "h00.csv"
    lines = _lines(p)
    rows = [r.split(",") for r in lines[1:]]
    _write(p, ["timestamp,load_w,pv_production_w_per_kwp"] + [f"{t},{lo},{float(pv) / 6:.3f}" for t, lo, pv in rows])
    _set_cell(p, 50, "pv_production_w_per_kwp", "1500")
    assert _error(folder) == (
        f"{folder}/series/h00.csv, line 52, field 'pv_production_w_per_kwp': 1500 W/kWp is more than 1200 W per "
        "kWp" + HINT.format("max_pv_w_per_kwp"))


def test_thresholds_can_be_raised(folder: Path) -> None:
    _set_cell(folder / "series" / "h01.csv", 28, "load_w", "50000")
    _set_cell(folder / "houses.csv", 1, "battery_kwh", "400")
    _toml(folder, tables="\n[scenario.checks]\nmax_load_w = 60000\nmax_battery_kwh = 500\n")
    sc = load_scenario(folder)
    assert sc.houses[1].battery_kwh == 400 and sc.load_w[1].max() > 40000
    _toml(folder, tables="max_price = 3\n")
    assert _error(folder).startswith(f"{folder}/scenario.toml, field 'checks.max_price': Extra inputs")


@pytest.mark.parametrize(("key", "value"), [("latitude", "nan"), ("days", "inf"), ("warmup_days", "nan"),
                                            ("max_gap_h", "inf")])
def test_non_finite_numbers_in_scenario_toml(folder: Path, key: str, value: str) -> None:
    p = folder / "scenario.toml"
    text = p.read_text()
    text = "\n".join(x for x in text.splitlines() if not x.startswith(f"{key} ="))
    p.write_text(text.replace("\n[scenario.sources]", f"\n{key} = {value}\n[scenario.sources]") + "\n")
    assert _error(folder) == f"{folder}/scenario.toml, field '{key}': Input should be a finite number"


# --- 4, 5. warm-up, and days beyond the data ---------------------------------------------------------------

@pytest.fixture()
def three_days(tmp_path: Path) -> Path:
    return write_scenario(small_scenario(n=2, days=3), tmp_path / "three")


def test_warmup_days_from_scenario_toml_and_the_argument(three_days: Path) -> None:
    assert "warmup_days = 2" in (three_days / "scenario.toml").read_text()
    sc, warm = load_run(three_days)
    assert (sc.t, warm) == (288, 192)
    sc, warm = load_run(three_days, days=0.5, warmup_days=1)
    assert (sc.t, warm) == (144, 96)
    p = three_days / "scenario.toml"
    p.write_text(p.read_text().replace("warmup_days = 2", "warmup_days = 1"))
    assert load_run(three_days)[1] == 96
    p.write_text(p.read_text().replace("warmup_days = 1", ""))  # absent: 2 days
    assert load_run(three_days)[1] == 192
    assert load_scenario(three_days).t == 288  # the data from the start, no warm-up


def test_days_beyond_the_data_name_the_shortest_file(three_days: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _cut(three_days / "series" / "h01.csv", 280, 287)  # ends 2 h early
    expect = (f"{three_days}/series/h01.csv: ends 2025-06-04T22:00:00+00:00: only 2.92 of the 2 days of warm-up "
              "+ 1 days asked for")
    with pytest.raises(ScenarioError) as err:
        load_run(three_days, days=1)
    assert str(err.value) == expect
    assert main(["run", "--scenario", str(three_days), "--days", "1", "--no-progress"]) == 2
    assert capsys.readouterr().err == f"error: {expect}\n"
    with pytest.raises(ScenarioError) as err:
        load_run(three_days, warmup_days=3)
    assert str(err.value) == (f"{three_days}/series/h01.csv: ends 2025-06-04T22:00:00+00:00: only 2.92 days, all "
                              "taken by the 3 days of warm-up (warmup_days in scenario.toml, --warmup-days)")
    for bad in ("nan", "inf", "-1"):
        with pytest.raises(SystemExit):
            main(["run", "--scenario", str(three_days), "--warmup-days", bad])
        with pytest.raises(SystemExit):
            main(["run", "--scenario", str(three_days), "--days", bad])


# --- 6. optional limit columns ----------------------------------------------------------------------------

def test_house_limits_are_optional(folder: Path) -> None:
    p = folder / "houses.csv"
    _set_cell(p, 1, "export_cap_w", "")
    _set_cell(p, 2, "import_limit_w", "inf")
    sc = load_scenario(folder)
    assert math.isinf(sc.houses[1].export_cap_w) and math.isinf(sc.houses[2].import_limit_w)
    assert sc.houses[0].export_cap_w == pytest.approx(4200)
    df = pd.read_csv(p, dtype=str).drop(columns=["export_cap_w", "import_limit_w"])
    df.to_csv(p, index=False)
    sc = load_scenario(folder)
    assert all(math.isinf(h.export_cap_w) and math.isinf(h.import_limit_w) for h in sc.houses)


# --- 7. a part of the fleet keeps its part of the feeder limits ----------------------------------------------

def test_select_scaled_shares_feeder_limits() -> None:
    sc = small_scenario(n=3, days=1)  # f0: h00 (6 kWp), h02 (10 kWp); f1: h01 (8 kWp)
    part = select_scaled(sc, ["h00", "h01"])
    assert part.feeder_ids == ("f0", "f1")
    assert part.feeder_import_limit_w[:, 0] == pytest.approx([20000, 40000])  # 1 of 2 houses; 1 of 1
    assert part.feeder_export_limit_w[:, 0] == pytest.approx([4500, 12000])  # 6 of 16 kWp; all


def test_export_houses_scales_the_feeder_limits(tmp_path: Path) -> None:
    from simulator.fleet.default_scenario import default_scenario

    full = default_scenario()
    out = tmp_path / "three"
    assert main(["scenario", "export", str(out), "--houses", "3", "--days", "1"]) == 0
    on = [h for h in full.houses if h.feeder == "feeder-1"]
    assert [h.feeder for h in full.houses[:3]] == ["feeder-1"] * 3
    sc, warm = load_run(out)
    assert warm == 48  # half of the one day written
    assert sc.feeder_ids == ("feeder-1",)
    assert sc.feeder_import_limit_w[0, 0] == pytest.approx(full.feeder_import_limit_w[0, 0] * 3 / len(on), abs=1)
    kwp = sum(h.pv_kwp for h in full.houses[:3]) / sum(h.pv_kwp for h in on)
    assert sc.feeder_export_limit_w[0, 0] == pytest.approx(full.feeder_export_limit_w[0, 0] * kwp, abs=1)


# --- 8. the report's peaks say what they are ----------------------------------------------------------------

@pytest.mark.parametrize("limited", [True, False])
def test_peak_import_and_export_each_with_its_feeder(limited: bool) -> None:
    sc = small_scenario(n=2, days=1, **({} if limited else {"import_limit_w": math.inf, "export_limit_w": math.inf}))
    grid = np.zeros((2, sc.t))  # h00 on f0, h01 on f1; limits 40 kW import, 12 kW export
    grid[0, 10], grid[1, 20] = 30000, 36000  # f1 imports most, against its limit too
    grid[0, 50], grid[1, 60] = -11000, -6000  # f0 exports most
    zeros = np.zeros_like(grid)
    fig = kpis(sc, grid, zeros, np.full_like(grid, 50.0), sc.pv_w, first_slot=0)
    assert fig["peak_feeder_load_w"] == 36000
    if limited:
        assert fig["peak_import"] == {"feeder": "f1", "w": 36000, "limit_w": 40000, "pct_of_limit": 90.0,
                                      "at": "2025-06-02T05:00:00Z"}
        assert fig["peak_export"] == {"feeder": "f0", "w": 11000, "limit_w": 12000, "pct_of_limit": 91.7,
                                      "at": "2025-06-02T12:30:00Z"}
    else:
        assert fig["peak_import"]["limit_w"] is None and fig["peak_export"]["pct_of_limit"] is None
    text = table(RunResult(sc, 0, {}, {"fleet": fig}))
    head, _, row = text.splitlines()
    assert "peak import" in head and "peak export" in head and "peak feeder" not in head
    assert ("90 % f1" in row and "92 % f0" in row) if limited else ("36.0 kW f1" in row and "11.0 kW f0" in row)


# --- 9. stdout of a run holds the report only ---------------------------------------------------------------

def test_run_stdout_has_no_solver_banner(tmp_path: Path) -> None:
    folder = write_scenario(small_scenario(n=2, days=2), tmp_path / "two", warmup_days=1)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'proto'}"}
    cmd = [sys.executable, "-m", "simulator.cli", "run", "--scenario", str(folder), "--no-progress",
           "--workers", "1", "--strategies", "battery_idle,fleet"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.startswith("scenario 'small': 2 houses on 2 feeders")
    assert "HiGHS" not in out.stdout and "Copyright" not in out.stdout
    assert "fleet-optimised" in out.stdout




def test_demo_start_needs_an_offset(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--start", "2026-06-21T00:00"])
    assert ("argument --start: needs a UTC offset (e.g. 2026-06-21T00:00Z): '2026-06-21T00:00'"
            in capsys.readouterr().err)
