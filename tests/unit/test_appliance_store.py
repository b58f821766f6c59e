"""The appliances' state kept across a restart (edge_agent/appliance_store.py): a round trip per kind,
and a hostile or broken file refused entry by entry (or set aside whole), never a crash."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent.appliance_store import dump, load, restore, save
from edge_agent.energy_manager.appliance_charge import ChargeState
from edge_agent.energy_manager.appliance_pause import PauseState
from edge_agent.energy_manager.appliance_run import RunTrack

T0 = datetime(2026, 6, 22, 12, 0, tzinfo=UTC)
PAUSE = PauseState(True, T0, T0 + timedelta(minutes=5), ((T0 - timedelta(minutes=40), T0 - timedelta(minutes=30)),),
                   85.0)
RUN = RunTrack("requested", T0, T0 + timedelta(hours=5), None, T0 + timedelta(hours=2), False, date(2026, 6, 22))
CHARGE = ChargeState(False, T0, T0 + timedelta(hours=6), 304.0, False)


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "appliances_h.json"
    save(path, {"freezer": dump(PAUSE), "washer": dump(RUN), "station": dump(CHARGE)})
    data = load(path)
    assert restore(data, "freezer", "pausable", T0) == PauseState(None, PAUSE.changed_at, PAUSE.paused_at,
                                                                  PAUSE.pauses, 85.0)  # on/off: the plug says
    assert restore(data, "washer", "run", T0) == RUN
    assert restore(data, "station", "battery", T0) == ChargeState(None, T0, CHARGE.day_end, 300.0, False)
    assert restore(data, "fridge", "pausable", T0) is None


HOSTILE: list[tuple[str, Any, str]] = [
    ("freezer", {**dump(PAUSE), "paused_at": "2026-06-22T12:00:00"}, "pausable"),  # no zone
    ("freezer", {**dump(PAUSE), "paused_at": "2099-01-01T00:00:00+00:00"}, "pausable"),  # far from now
    ("freezer", {**dump(PAUSE), "paused_at": 12}, "pausable"),
    ("freezer", {**dump(PAUSE), "pauses": [["2026-06-22T12:00:00+00:00", "2026-06-22T11:00:00+00:00"]]}, "pausable"),
    ("freezer", {**dump(PAUSE), "pauses": "all"}, "pausable"),
    ("freezer", {**dump(PAUSE), "on_power_w": float("nan")}, "pausable"),
    ("freezer", {**dump(PAUSE), "on_power_w": 1e300}, "pausable"),
    ("freezer", {**dump(PAUSE), "on_power_w": True}, "pausable"),
    ("freezer", dump(RUN), "pausable"),  # another kind's state
    ("washer", {**dump(RUN), "phase": "spinning"}, "run"),
    ("washer", {**dump(RUN), "latest_end": None}, "run"),
    ("washer", {**dump(RUN), "phase": "running"}, "run"),  # running without a start
    ("washer", {**dump(RUN), "requested_day": "2026-13-45"}, "run"),
    ("station", {**dump(CHARGE), "charged_wh": -5}, "battery"),
    ("station", {**dump(CHARGE), "charged_wh": float("inf")}, "battery"),
    ("station", "garbage", "battery"),
]


@pytest.mark.parametrize(("plug", "entry", "kind"), HOSTILE)
def test_a_hostile_entry_starts_afresh(plug: str, entry: Any, kind: str) -> None:
    assert restore({plug: entry}, plug, kind, T0) is None


@pytest.mark.parametrize("text", ["not json", "[1, 2]", "1" * 5000, "{\"a\": NaN, "])
def test_a_broken_file_is_set_aside(tmp_path: Path, text: str) -> None:
    path = tmp_path / "appliances_h.json"
    path.write_text(text)
    assert load(path) == {}
    assert not path.exists() and path.with_suffix(".corrupt").exists()


def test_nan_in_a_valid_json_object_is_refused_by_its_entry(tmp_path: Path) -> None:
    path = tmp_path / "appliances_h.json"
    path.write_text(json.dumps({"station": {**dump(CHARGE), "charged_wh": float("nan")}}))
    assert restore(load(path), "station", "battery", T0) is None
