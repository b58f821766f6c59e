"""`vpp-sim run` and `vpp-sim scenario export` end to end (fast mode, in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.cli import main

REQUIRED = ("cost", "self_consumption_ratio", "self_sufficiency", "peak_feeder_load_w", "energy_over_limits_kwh",
            "export_cap_violations", "equivalent_cycles")
STRATEGIES = ("no_battery", "battery_idle", "self_consumption", "tou", "fleet", "perfect_foresight")


def test_default_scenario_small_run_writes_json_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    rc = main(["run", "--houses", "8", "--days", "1", "--warmup-days", "1", "--no-progress", "--workers", "1",
               "--json", str(out), "--plots", str(tmp_path / "plots")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "fleet-optimised" in text and "perfect foresight" in text and "of best" in text
    data = json.loads(out.read_text())
    assert tuple(data) == STRATEGIES
    for name in STRATEGIES:
        assert all(k in data[name] for k in REQUIRED), name
        assert list(data[name])[: len(REQUIRED)] == list(REQUIRED)
    assert data["perfect_foresight"]["cost"] <= min(v["cost"] for v in data.values()) + 0.05
    for png in ("fleet_power.png", "soc.png", "cost.png"):
        assert (tmp_path / "plots" / png).stat().st_size > 10_000


def test_exported_scenario_runs_and_bad_input_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "fleet"
    assert main(["scenario", "export", str(d), "--days", "2", "--houses", "4"]) == 0
    assert (d / "houses.csv").read_text().count("\n") == 5
    assert main(["scenario", "export", str(d)]) == 2  # not empty: refused
    rc = main(["run", "--scenario", str(d), "--strategies", "battery_idle,self_consumption", "--no-progress"])
    assert rc == 0
    assert "self-consumption" in capsys.readouterr().out
    houses = d / "houses.csv"
    houses.write_text(houses.read_text().replace("h002,", "h002 bad,", 1))
    capsys.readouterr()
    assert main(["run", "--scenario", str(d), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "houses.csv, line 3, field 'id'" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategies", "magic"], "unknown strategy 'magic'"),
        (["--days", "500"], "asked for 2 warm-up + 500 days"),
        (["--houses", "0"], "--houses must be >= 1"),
        (["--scenario", "/nonexistent"], "not a folder"),
        (["--no-futures", "--night-load-margin", "0.5"], "--night-load-margin must be >= 1"),
        (["--night-load-margin", "1.5"], "add --no-futures"),
        (["--mode", "live", "--no-futures"], "fast-mode option"),
        (["--holding-cost", "nan"], "--holding-cost >= 0"),
        (["--mode", "live", "--holding-cost", "0.003"], "fast-mode options"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--no-progress", *args]) == 2
    assert message in capsys.readouterr().err


def test_fleet_dispatch_options_reach_the_fleet_strategy(tmp_path: Path) -> None:
    # no night reserve against a large one: with it the batteries end the run holding more
    figures = {}
    for margin in ("1.0", "3.0"):
        out = tmp_path / f"m{margin}.json"
        assert main(["run", "--houses", "6", "--days", "1", "--warmup-days", "1", "--no-progress", "--workers", "1",
                     "--strategies", "fleet,perfect_foresight", "--no-futures", "--night-load-margin", margin,
                     "--json", str(out)]) == 0
        figures[margin] = json.loads(out.read_text())
    kept = {m: f["fleet"]["stored_energy_change_kwh"] for m, f in figures.items()}
    assert kept["3.0"] > kept["1.0"] + 1.0, kept
    # perfect foresight knows the night: no margin there, whatever the flag
    assert figures["1.0"]["perfect_foresight"]["cost"] == figures["3.0"]["perfect_foresight"]["cost"]
