"""The load switching policy (edge_agent/energy_manager/load_switching.py) on its own: minimum on and
off times, maximum off, the import limit and price spike triggers, hostile inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.energy_manager.load_switching import (
    Action,
    LoadRules,
    LoadState,
    Pressure,
    SwitchedLoad,
    decide,
    observe,
    switched,
)

T0 = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
RULES = LoadRules(min_on_s=300, min_off_s=600, max_off_s=1800, expected_power_w=1000)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def load(rid: str = "boiler", on: bool | None = True, changed_s: float | None = None, shed_s: float | None = None,
         power_w: float | None = 1000.0, rules: LoadRules = RULES) -> SwitchedLoad:
    return SwitchedLoad(rid, rules, LoadState(on, None if changed_s is None else at(changed_s),
                                              None if shed_s is None else at(shed_s)), power_w)


CALM = Pressure(grid_w=2000, max_import_w=5000)


def test_import_over_the_limit_sheds_enough_loads_in_order() -> None:
    loads = [load("a", power_w=800), load("b", power_w=800), load("c", power_w=800)]
    got = decide(loads, Pressure(grid_w=6500, max_import_w=5000), at(0))
    assert got == (Action("a", False, "import_limit"), Action("b", False, "import_limit"))
    assert decide(loads, Pressure(grid_w=5000, max_import_w=5000), at(0)) == ()  # at the limit: nothing


def test_an_import_limit_below_0_sheds_what_the_battery_cannot_export() -> None:
    # a feeder envelope's "export at least 1 kW" (issue 18) and the house still imports 500 W
    loads = [load("a", power_w=800), load("b", power_w=800), load("c", power_w=800)]
    got = decide(loads, Pressure(grid_w=500, max_import_w=-1000), at(0))
    assert got == (Action("a", False, "import_limit"), Action("b", False, "import_limit"))
    assert decide(loads, Pressure(grid_w=-1000, max_import_w=-1000), at(0)) == ()


def test_min_on_time_holds_a_load_that_just_went_on() -> None:
    ld = load(changed_s=0)
    p = Pressure(grid_w=7000, max_import_w=5000)
    assert decide([ld], p, at(299)) == ()
    assert decide([ld], p, at(300)) == (Action("boiler", False, "import_limit"),)


def test_min_off_then_release_when_the_load_fits_under_the_limit() -> None:
    ld = load(on=False, changed_s=0, shed_s=0)
    assert decide([ld], CALM, at(599)) == ()
    assert decide([ld], CALM, at(600)) == (Action("boiler", True, "released"),)
    # no room for its 1000 W under 5000 - 200 W margin
    assert decide([ld], Pressure(grid_w=3900, max_import_w=5000), at(600)) == ()


def test_max_off_brings_the_load_back_whatever_the_cause() -> None:
    ld = load(on=False, changed_s=0, shed_s=0)
    hot = Pressure(grid_w=9000, max_import_w=5000, price_per_kwh=2.0, price_spike_per_kwh=0.5)
    assert decide([ld], hot, at(1799)) == ()
    assert decide([ld], hot, at(1800)) == (Action("boiler", True, "max_off"),)


def test_price_spike_sheds_every_load_past_its_min_on_and_keeps_them_off() -> None:
    loads = [load("a"), load("b", changed_s=100)]
    p = Pressure(grid_w=1000, max_import_w=5000, price_per_kwh=0.9, price_spike_per_kwh=0.5)
    assert decide(loads, p, at(200)) == (Action("a", False, "price_spike"),)
    off = [load("a", on=False, changed_s=0, shed_s=0)]
    assert decide(off, p, at(1000)) == ()  # past min_off, but the spike holds
    assert decide(off, Pressure(grid_w=1000, max_import_w=5000, price_per_kwh=0.3, price_spike_per_kwh=0.5),
                  at(1000)) == (Action("a", True, "released"),)


def test_a_load_switched_off_by_someone_else_or_unknown_is_left_alone() -> None:
    assert decide([load(on=False, changed_s=0)], CALM, at(5000)) == ()  # not shed by the policy
    assert decide([load(on=None)], Pressure(grid_w=9000, max_import_w=5000), at(0)) == ()


def test_release_one_at_a_time_last_shed_first() -> None:
    loads = [load("a", on=False, changed_s=0, shed_s=0), load("b", on=False, changed_s=10, shed_s=10)]
    assert decide(loads, Pressure(grid_w=0, max_import_w=5000), at(700)) == (Action("b", True, "released"),)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e300, "5000", None, True])
def test_hostile_readings_are_unknown_never_zero(bad: object) -> None:
    on = load()
    shed = load(on=False, changed_s=0, shed_s=0)
    # an unknown grid reading neither sheds nor releases (only max_off would)
    assert decide([on], Pressure(grid_w=bad, max_import_w=5000), at(0)) == ()  # type: ignore[arg-type]
    assert decide([shed], Pressure(grid_w=bad, max_import_w=5000), at(700)) == ()  # type: ignore[arg-type]
    assert decide([on], Pressure(grid_w=9000, max_import_w=bad), at(0)) == ()  # type: ignore[arg-type]
    spiky = Pressure(grid_w=0, max_import_w=5000, price_per_kwh=bad, price_spike_per_kwh=0.5)  # type: ignore[arg-type]
    assert decide([on], spiky, at(0)) == ()
    # a hostile measured power of the load: its expected power counts instead
    assert decide([load(power_w=bad)], Pressure(grid_w=5500, max_import_w=5000),  # type: ignore[arg-type]
                  at(0)) == (Action("boiler", False, "import_limit"),)


def test_a_clock_that_went_back_holds_the_state() -> None:
    assert decide([load(changed_s=100)], Pressure(grid_w=9000, max_import_w=5000), at(0)) == ()
    assert decide([load(on=False, changed_s=100, shed_s=100)], CALM, at(0)) == ()


@pytest.mark.parametrize("kw", [{"min_on_s": float("nan")}, {"max_off_s": -1}, {"min_off_s": float("inf")},
                                {"min_off_s": 100, "max_off_s": 50}, {"expected_power_w": -5}])
def test_bad_rules_are_refused(kw: dict) -> None:
    with pytest.raises(ValueError):
        LoadRules(**kw)


def test_observe_and_switched_track_the_times() -> None:
    s = observe(LoadState(), True, 900.0, at(0))
    assert s == LoadState(True, None, None, 900.0)  # on since before the agent knew
    s = switched(s, Action("x", False, "import_limit"), at(10))
    assert s == LoadState(False, at(10), at(10), 900.0)
    assert observe(s, None, None, at(20)) == s  # stale read-back: no change
    assert observe(s, False, float("nan"), at(30)) == s
    s2 = observe(s, True, 1200.0, at(40))  # someone switched it on: no longer shed by the policy
    assert s2 == LoadState(True, at(40), None, 1200.0)
