"""Shiftable runs (appliances) in the fleet simulation: the scenario's description, the runs'
power as load, placed against started when armed (issue 22 item 5)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import main
from simulator.fleet.appliance_input import (
    DEFAULT_APPLIANCES,
    ApplianceSpec,
    expand,
    parse_appliances,
    with_appliances,
)
from simulator.fleet.appliance_report import DeadlineMissed, comparison, run_with_and_without
from simulator.fleet.appliance_runs import RunDriver, RunLog, run_power_w, runs_when_armed
from simulator.fleet.engine import simulate
from simulator.fleet.model import ApplianceRun
from simulator.fleet.scenario import ScenarioError, load_run, write_scenario
from simulator.fleet.strategies import STRATEGIES, known_prices_until
from tests.fleet_fixtures import small_scenario
from vpp_common.messages import ProfileStep, RunState

# armed in the cheap night (0.20 before 06:00 UTC), due by 17:00: the sunny middle of the day is
# cheaper still (PV surplus at the 0.08 feed-in price)
NIGHT_WASHER = ApplianceSpec(id="washer", energy_wh=2000, duration_min=120, armed_from=time(2), armed_to=time(3),
                             ready_by=time(17))


def test_default_set_is_60_percent_of_houses_once_a_day_armed_7_to_10_on_the_slot_grid() -> None:
    sc = small_scenario(n=10, days=3)
    runs = expand(DEFAULT_APPLIANCES, sc)
    assert len({r.house_id for r in runs}) == 6 and len(runs) == 18
    for r in runs:
        assert time(7) <= r.armed.time() <= time(10) and r.ready_by.time() == time(17)  # the scenario is UTC
        assert (r.armed - sc.start).total_seconds() % sc.slot_s == 0
        assert r.energy_wh == pytest.approx(1100) and r.duration_s == 7200
    assert expand(DEFAULT_APPLIANCES, sc) == runs  # seeded: the same every time
    assert len({r.armed.time() for r in runs}) > 1


def test_local_times_follow_the_scenarios_zone() -> None:
    sc = replace(small_scenario(n=2, days=2), timezone="Europe/Berlin")
    runs = expand((ApplianceSpec(id="w", energy_wh=1000, duration_min=60, houses=["h01"]),), sc)
    assert [r.ready_by.hour for r in runs] == [15, 15]  # 17:00 CEST
    assert all(r.house_id == "h01" for r in runs)


@pytest.mark.parametrize("table", [
    {"id": "w", "energy_wh": float("nan"), "duration_min": 120},
    {"id": "w", "energy_wh": float("inf"), "duration_min": 120},
    {"id": "w", "energy_wh": 1e300, "duration_min": 120},
    {"id": "w", "energy_wh": -1, "duration_min": 120},
    {"id": "w", "energy_wh": "much", "duration_min": 120},
    {"id": "w", "energy_wh": 1000},
    {"id": "w", "energy_wh": 1000, "duration_min": 120, "profile": [[60, 500]]},
    {"id": "w", "profile": [[60, float("nan")]]},
    {"id": "w", "profile": [[0, 500]]},
    {"id": "w", "profile": [[60, 1e9]]},
    {"id": "w", "energy_wh": 1000, "duration_min": 120, "armed_to": "16:00"},
    {"id": "w", "energy_wh": 1000, "duration_min": 120, "armed_from": "11:00", "armed_to": "10:00"},
    {"id": "w", "energy_wh": 1000, "duration_min": 120, "share": 1.5},
    {"id": "w", "energy_wh": 1000, "duration_min": 120, "share": 0.5, "houses": ["h00"]},
    {"id": "w", "energy_wh": 1000, "duration_min": 120, "colour": "white"},
    {"id": "no spaces", "energy_wh": 1000, "duration_min": 120},
])
def test_bad_descriptions_are_refused(table: dict) -> None:
    with pytest.raises(ValueError, match=r"appliances\[0\]"):
        parse_appliances([table])


def test_bad_shapes_and_unknown_houses_are_refused() -> None:
    with pytest.raises(ValueError, match="array of tables"):
        parse_appliances({"id": "w"})
    with pytest.raises(ValueError, match="unique"):
        parse_appliances([{"id": "w", "energy_wh": 1, "duration_min": 1}] * 2)
    with pytest.raises(ValueError, match="no house 'x'"):
        with_appliances(small_scenario(n=2), (ApplianceSpec(id="w", energy_wh=1, duration_min=1, houses=["x"]),))
    sc = small_scenario(n=2, days=1)
    good = ApplianceRun("h00", "w", sc.start, sc.start + timedelta(hours=3), (ProfileStep(3600, 500),))
    for bad in (replace(good, house_id="x"), replace(good, ready_by=sc.start + timedelta(minutes=30)),
                replace(good, profile=(ProfileStep(3600, math.nan),)), replace(good, profile=()),
                replace(good, armed=datetime(2025, 6, 2))):
        with pytest.raises(ValueError, match="appliance run"):
            replace(sc, appliance_runs=(bad,)).validate()
    with pytest.raises(ValueError, match="twice"):
        replace(sc, appliance_runs=(good, good)).validate()


def test_window_and_select_keep_their_runs() -> None:
    sc = with_appliances(small_scenario(n=4, days=3), (NIGHT_WASHER,))
    assert len(sc.window(96, 192).appliance_runs) == 4
    assert {r.house_id for r in sc.select(["h01"]).appliance_runs} == {"h01"}


def test_runs_when_armed_add_their_power_to_the_load() -> None:
    sc = with_appliances(small_scenario(n=2, days=1), (ApplianceSpec(id="w", energy_wh=1100, duration_min=120),))
    fixed = runs_when_armed(sc)
    assert fixed.appliance_runs == ()
    added = (fixed.load_w - sc.load_w).sum(axis=1) * sc.slot_h
    assert added == pytest.approx([1100, 1100])
    r = sc.appliance_runs[0]
    p = run_power_w(sc, r, r.armed)
    assert p.max() == pytest.approx(550) and (p > 0).sum() == 8


def test_shiftable_reports_waiting_then_running_then_nothing() -> None:
    sc = with_appliances(small_scenario(n=1, days=1), (ApplianceSpec(id="w", energy_wh=1000, duration_min=60,
                                                                     armed_from=time(8), armed_to=time(8)),))
    drv = RunDriver(sc, "armed", lambda now: known_prices_until(sc, now))
    zero = np.zeros(1)
    assert drv.shiftable(31) == [()]  # 07:45: not armed yet
    assert drv.shiftable(32)[0][0].state is RunState.WAITING
    drv.step(32, zero, zero, lambda i, r: None, None)
    assert drv.shiftable(33)[0][0].state is RunState.RUNNING
    assert drv.shiftable(36) == [()]  # done at 09:00
    assert drv.log().summary()["deadlines_missed"] == 0


def test_a_run_never_started_or_finished_late_is_a_missed_deadline() -> None:
    sc = small_scenario(n=1, days=1)
    r = ApplianceRun("h00", "w", sc.start, sc.start + timedelta(hours=3), (ProfileStep(3600, 500),))
    assert RunLog({}, [(0, r)], sc.end).summary()["deadlines_missed"] == 1
    late = {(0, r.run_id): sc.start + timedelta(hours=2, minutes=15)}
    assert RunLog(late, [(0, r)], sc.end).summary()["deadlines_missed"] == 1
    ok = {(0, r.run_id): sc.start + timedelta(hours=2)}
    assert RunLog(ok, [(0, r)], sc.end).summary() == {"runs": 1, "moved": 1, "mean_shift_h": 2.0,
                                                       "deadlines_missed": 0}


def test_a_run_with_no_room_to_wait_starts_when_armed_and_makes_its_deadline() -> None:
    tight = ApplianceSpec(id="w", energy_wh=2000, duration_min=120, armed_from=time(15), armed_to=time(15),
                          ready_by=time(17))
    sc = with_appliances(small_scenario(n=2, days=2), (tight,))
    for name in ("self_consumption", "fleet"):
        tr = simulate(sc, name)
        assert tr.runs is not None and tr.runs["deadlines_missed"] == 0 and tr.runs["moved"] == 0


def test_without_runs_the_engine_is_as_before() -> None:
    sc = small_scenario(n=3, days=1)
    tr = simulate(sc, "self_consumption")
    assert tr.load_w is None and tr.runs is None
    assert runs_when_armed(sc).load_w.tolist() == sc.load_w.tolist()


@pytest.fixture(scope="module")
def placed_and_armed():
    sc = with_appliances(small_scenario(n=4, days=3), (NIGHT_WASHER,))
    armed, placed = run_with_and_without(sc, STRATEGIES, warmup_slots=96, workers=1, show_progress=False)
    return sc, armed, placed, comparison(armed, placed)


def test_placing_runs_moves_them_to_the_sunny_window_and_saves(placed_and_armed) -> None:
    sc, armed, placed, cmp = placed_and_armed
    s = cmp["strategies"]
    for name in ("self_consumption", "tou", "fleet", "perfect_foresight"):
        c = s[name]
        assert c["runs"] == 8 and c["moved"] == 8 and c["deadlines_missed"] == 0, (name, c)
        assert c["mean_shift_h"] > 2  # from 02:00-03:00 to the middle of the day
        assert c["cost_placed"] < c["cost_when_armed"] - 0.05, (name, c)
        assert c["over_limits_kwh_placed"] <= c["over_limits_kwh_when_armed"], (name, c)
    for name in ("no_battery", "battery_idle"):  # baselines start them when armed: the same figures
        assert s[name]["saving"] == 0 and s[name]["moved"] == 0
        assert armed.figures[name]["cost"] == placed.figures[name]["cost"]
    assert cmp["best_local"] in ("self_consumption", "tou")
    # the fleet's runs start where the aggregator placed them: once the PV covers them (not in the dark)
    tr = placed.traces["fleet"]
    assert tr.load_w is not None
    run_load = (tr.load_w - sc.load_w)[:, 96:]
    hours = (np.arange(run_load.shape[1]) % 96) / 4
    assert run_load.sum() * sc.slot_h == pytest.approx(8 * 2000)
    assert run_load[:, (hours < 4)].sum() == 0


def test_the_load_the_figures_count_includes_the_runs(placed_and_armed) -> None:
    sc, armed, placed, _ = placed_and_armed
    extra_kwh = 8 * 2.0
    for name in STRATEGIES:
        assert placed.figures[name]["load_kwh"] == pytest.approx(armed.figures[name]["load_kwh"], abs=0.1)
        base = float(sc.load_w[:, 96:].sum() * sc.slot_h / 1000)
        assert placed.figures[name]["load_kwh"] == pytest.approx(base + extra_kwh, abs=0.1)


def test_deadline_missed_is_an_error(placed_and_armed) -> None:
    _, armed, placed, _ = placed_and_armed
    broken = replace(placed, figures={k: dict(v) for k, v in placed.figures.items()})
    broken.figures["fleet"]["appliance_runs"] = {**broken.figures["fleet"]["appliance_runs"], "deadlines_missed": 1}
    with pytest.raises(DeadlineMissed, match="fleet"):
        comparison(armed, broken)


def test_scenario_folder_with_appliances_runs_the_comparison(tmp_path: Path) -> None:
    folder = write_scenario(small_scenario(n=2, days=3), tmp_path / "sc")
    toml = folder / "scenario.toml"
    toml.write_text(toml.read_text() + '\n[[appliances]]\nid = "washer"\nenergy_wh = 2000\nduration_min = 120\n'
                    'armed_from = 02:00:00\narmed_to = "03:00"\nready_by = 17:00:00\n')
    sc, warm = load_run(folder)
    assert len(sc.appliance_runs) == 6 and warm == 192  # every house, every day
    out = tmp_path / "f.json"
    assert main(["run", "--scenario", str(folder), "--no-progress", "--workers", "1", "--strategies",
                 "battery_idle,self_consumption,fleet", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["appliances"]["strategies"]) == {"battery_idle", "self_consumption", "fleet"}
    assert doc["appliances"]["strategies"]["fleet"]["deadlines_missed"] == 0
    assert "fleet" in doc["appliances"]["when_armed"]
    assert main(["run", "--scenario", str(folder), "--mode", "live", "--no-progress"]) == 2


def test_scenario_folder_with_a_bad_appliance_names_the_file_and_field(tmp_path: Path) -> None:
    folder = write_scenario(small_scenario(n=2, days=1), tmp_path / "sc", warmup_days=0)
    toml = folder / "scenario.toml"
    toml.write_text(toml.read_text() + '\n[[appliances]]\nid = "washer"\nenergy_wh = nan\nduration_min = 120\n')
    with pytest.raises(ScenarioError, match=r"scenario.toml.*appliances\[0\]\.energy_wh"):
        load_run(folder)


def test_expanded_runs_lie_within_the_scenario() -> None:
    sc = small_scenario(n=2, days=1, start=datetime(2025, 6, 2, 12, tzinfo=UTC))
    assert expand((NIGHT_WASHER,), sc) == ()  # the first day's window began before, the next one's is after
