"""The appliance schedulers as pure functions (edge_agent/energy_manager/appliance*.py): runs in the
cheapest window before their deadline, at the last moment at worst, at the plan's start when it lies
in the window; PV surplus counted at the feed-in price; pauses within their maximum and minimum
on/off times; a power station on PV surplus or the cheapest hours; hostile numbers are unknown."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest

from edge_agent.energy_manager.appliance_charge import (
    ChargeAction,
    ChargeRules,
    ChargeState,
    charge_flexibility,
    decide_charge,
    observe_charge,
)
from edge_agent.energy_manager.appliance_pause import (
    PauseAction,
    PauseRules,
    PauseState,
    after_switch,
    decide_pause,
    observe_pause,
    pause_flexibility,
    paused_s,
)
from edge_agent.energy_manager.appliance_run import (
    RunRules,
    RunTrack,
    observe_run,
    run_flexibility,
    started,
)
from edge_agent.energy_manager.appliances import (
    House,
    Outlook,
    cheapest_start,
    decide_run,
    run_window,
)
from vpp_common.messages import ProfileStep, RunState

T0 = datetime(2026, 6, 22, 12, 0, tzinfo=UTC)
RUN = (ProfileStep(7200.0, 550.0),)  # 1.1 kWh over 2 h
END = T0 + timedelta(hours=5)  # ready by 17:00
NAN, INF = float("nan"), float("inf")


def outlook(hourly: list[float], export: float = 0.08, surplus: list[float] | None = None,
            surplus_now: float | None = None, start: datetime = T0) -> Outlook:
    """15-minute slots from ``start``, the import price per hour given."""
    imp = tuple(p for p in hourly for _ in range(4))
    sur = tuple(s for s in surplus for _ in range(4)) if surplus is not None else ()
    return Outlook(start, 900, imp, (export,) * len(imp), sur, surplus_now)


def house(now: datetime, o: Outlook, grid: float | None = 500.0, limit: float | None = 11_000.0) -> House:
    return House(now, grid, limit, o)


def first_start(o: Outlook, plan: datetime | None = None, tick_s: float = 10.0, grid: float | None = 500.0,
                limit: float | None = 11_000.0, end: datetime = END) -> tuple[datetime, str]:
    """Decide every ``tick_s`` from T0 until the run starts: when and why."""
    now = T0
    while now < end:
        d = decide_run(RUN, T0, end, house(now, o, grid, limit), plan, tick_s)
        if d.start:
            return now, d.reason
        now += timedelta(seconds=tick_s)
    raise AssertionError("never started")


# -- runs ---------------------------------------------------------------------------------------------
def test_a_run_starts_in_the_cheapest_window_that_ends_before_its_deadline() -> None:
    o = outlook([0.30, 0.30, 0.15, 0.15, 0.60, 0.05, 0.05])  # 17:00 on is cheapest, but too late
    d = decide_run(RUN, T0, END, house(T0, o), None, 10.0)
    assert not d.start and d.planned == T0 + timedelta(hours=2) and d.reason == "cheapest_window"
    start, reason = first_start(o)
    assert start == T0 + timedelta(hours=2) and reason == "cheapest_window"
    assert start + timedelta(hours=2) <= END


def test_with_prices_falling_to_the_deadline_it_starts_at_the_last_moment() -> None:
    o = outlook([0.50, 0.45, 0.40, 0.35, 0.30, 0.01, 0.01])
    start, reason = first_start(o, tick_s=10.0)
    latest_start = END - timedelta(hours=2)
    assert latest_start - timedelta(seconds=10) <= start <= latest_start and reason == "deadline"


def test_a_run_requested_too_late_starts_at_once_and_says_deadline() -> None:
    o = outlook([0.3] * 8)
    now = END - timedelta(hours=1)  # cannot make it any more: start now, whatever the prices
    d = decide_run(RUN, T0, END, house(now, o, grid=20_000.0), None, 10.0)
    assert d.start and d.reason == "deadline"


def test_pv_surplus_counts_at_the_feed_in_price() -> None:
    flat = [0.30] * 7
    o = outlook(flat, surplus=[0, 0, 0, 1000, 1000, 0, 0])  # 15:00-17:00 sunny: too late for its 2 h (ends 17:00 ok)
    assert cheapest_start(o, RUN, T0, END - timedelta(hours=2)) == T0 + timedelta(hours=3)
    o2 = outlook(flat, surplus=[0] * 7, surplus_now=600.0)  # sunny now
    d = decide_run(RUN, T0, END, house(T0, o2), None, 10.0)
    assert d.start and d.reason == "pv_surplus"


def test_the_plans_start_is_used_within_the_window_and_ignored_outside() -> None:
    o = outlook([0.30, 0.30, 0.15, 0.15, 0.60])
    plan = T0 + timedelta(hours=1, minutes=30)
    d = decide_run(RUN, T0, END, house(T0, o), plan, 10.0)
    assert not d.start and d.planned == plan and d.reason == "plan" and d.plan_ignored == ""
    assert first_start(o, plan=plan) == (plan, "plan")
    late = T0 + timedelta(hours=4)  # would end at 18:00, after its 17:00
    d = decide_run(RUN, T0, END, house(T0, o), late, 10.0)
    assert "outside the run's window" in d.plan_ignored and d.planned == T0 + timedelta(hours=2)
    early = T0 - timedelta(hours=1)
    assert "outside" in decide_run(RUN, T0, END, house(T0, o), early, 10.0).plan_ignored


def test_the_import_limit_holds_a_start_until_the_deadline() -> None:
    o = outlook([0.30] * 7)
    d = decide_run(RUN, T0, END, house(T0, o, grid=10_700.0, limit=11_000.0), None, 10.0)
    assert not d.start and d.reason == "import_limit"
    start, reason = first_start(o, grid=10_700.0, limit=11_000.0)
    assert reason == "deadline" and start <= END - timedelta(hours=2)


@pytest.mark.parametrize("bad", [NAN, INF, -INF, 1e300, -1e300])
def test_hostile_prices_are_never_cheap(bad: float) -> None:
    o = outlook([0.30, 0.30, bad, bad, 0.30, 0.30, 0.30])  # the hostile hours look like nothing: not chosen
    d = decide_run(RUN, T0, END, house(T0, o), None, 10.0)
    assert d.start and d.planned == T0  # all known prices alike: at once (the earliest of equals)
    o2 = outlook([0.40, 0.35, 0.30, bad, bad, 0.10, 0.10])  # taken as 0 or less, 15:00 would win
    assert cheapest_start(o2, RUN, T0, END - timedelta(hours=2)) == T0 + timedelta(hours=1)  # hostile = dearest
    o3 = outlook([0.30, 0.30, 0.20, 0.20, 0.30], export=bad, surplus=[bad] * 5, surplus_now=bad)
    d3 = decide_run(RUN, T0, END, house(T0, o3), None, 10.0)
    assert d3.planned == T0 + timedelta(hours=2) and d3.reason == "cheapest_window"


@pytest.mark.parametrize("bad", [NAN, INF, -INF, 1e300])
def test_hostile_readings_and_ticks_are_unknown(bad: float) -> None:
    o = outlook([0.30] * 7)
    d = decide_run(RUN, T0, END, house(T0, o, grid=bad, limit=bad), None, bad)
    assert d.start and d.reason == "cheapest_window"  # no limit pressure from a hostile reading
    assert decide_run(RUN, T0, END, house(END - timedelta(hours=2), o), None, bad).reason == "deadline"


def test_no_prices_at_all_every_window_alike() -> None:
    o = Outlook(T0, 900, (), (), (), None)
    assert decide_run(RUN, T0, END, house(T0, o), None, 10.0).start


def test_run_window_takes_the_next_deadline_it_can_meet() -> None:
    assert run_window(T0, time(17), UTC, RUN) == (T0, END)
    late = T0 + timedelta(hours=4)  # 16:00: 17:00 today cannot hold 2 h
    assert run_window(late, time(17), UTC, RUN) == (late, END + timedelta(days=1))
    assert run_window(END - timedelta(hours=2), time(17), UTC, RUN, margin_s=20.0)[1] == END + timedelta(days=1)


# -- a run's life --------------------------------------------------------------------------------------
RULES = RunRules(RUN, time(17), UTC, None, armed_above_w=2.0, running_above_w=50.0)


def test_armed_requested_held_started_done() -> None:
    track, event = observe_run(RULES, RunTrack(), True, 4.0, T0)
    assert track.phase == "requested" and "armed" in event and (track.earliest, track.latest_end) == (T0, END)
    f = run_flexibility("washer", RULES, track)
    assert f is not None and f.state is RunState.WAITING
    track = started(RULES, track, T0 + timedelta(hours=2))
    f = run_flexibility("washer", RULES, track)
    assert f is not None and f.state is RunState.RUNNING and f.start == T0 + timedelta(hours=2)
    track, event = observe_run(RULES, track, True, 550.0, T0 + timedelta(hours=3))
    assert track.phase == "running" and event == ""
    track, event = observe_run(RULES, track, True, 0.5, T0 + timedelta(hours=4))
    assert track.phase == "done" and "done after 120 min" in event
    track, _ = observe_run(RULES, track, True, 4.0, T0 + timedelta(hours=4, minutes=1))
    assert track.phase == "done"  # "end" standby without first reading low: no new request
    track, _ = observe_run(RULES, track, True, 0.5, T0 + timedelta(hours=5))
    track, _ = observe_run(RULES, track, True, 4.0, T0 + timedelta(hours=6))
    assert track.phase == "requested" and track.latest_end == END + timedelta(days=1)


def test_a_machine_someone_starts_is_running_and_a_hostile_power_is_unknown() -> None:
    track, event = observe_run(RULES, RunTrack(), True, 2000.0, T0)
    assert track.phase == "running" and "someone" in event
    for bad in (NAN, INF, -1.0, 1e300):
        assert observe_run(RULES, track, True, bad, T0 + timedelta(hours=1))[0].phase == "running"
        assert observe_run(RULES, RunTrack(), True, bad, T0)[0].phase == "idle"
    assert observe_run(RULES, track, False, None, T0 + timedelta(minutes=5))[0].phase == "done"


def test_available_from_requests_once_a_day() -> None:
    rules = RunRules(RUN, time(17), UTC, available_from=time(8))
    track, event = observe_run(rules, RunTrack(), False, 0.0, T0 - timedelta(hours=5))  # 07:00
    assert track.phase == "idle"
    track, event = observe_run(rules, track, False, 0.0, T0 - timedelta(hours=4))
    assert track.phase == "requested" and "08:00" in event
    track = started(rules, track, T0)
    track, _ = observe_run(rules, track, True, 0.5, T0 + timedelta(hours=2))
    assert track.phase == "done"
    assert observe_run(rules, track, True, 0.5, T0 + timedelta(hours=3))[0].phase == "done"  # not again today


# -- pausable ------------------------------------------------------------------------------------------
PAUSE = PauseRules(max_pause_s=1800, period_s=3600, min_on_s=600, min_off_s=300, power_w=90.0, spike_per_kwh=0.5)


def simulate_pauses(price: float, hours: float = 4.0, tick_s: float = 10.0) -> list[tuple[datetime, PauseAction]]:
    state, actions, now = PauseState(on=True), [], T0
    o = outlook([price] * 8)
    while now < T0 + timedelta(hours=hours):
        state = observe_pause(state, state.on, 90.0 if state.on else 0.0, now, PAUSE.period_s)
        a = decide_pause(PAUSE, state, house(now, o), price, None)
        if a is not None:
            actions.append((now, a))
            state = after_switch(state, a, now)
        now += timedelta(seconds=tick_s)
    return actions


def test_pauses_for_a_spike_never_beyond_the_maximum_and_the_minimum_times() -> None:
    actions = simulate_pauses(0.9)
    assert actions[0] == (T0, PauseAction(False, "price_spike"))
    assert any(a.reason == "max_pause" for _, a in actions)
    offs = [(t, a) for t, a in actions if not a.on]
    ons = [(t, a) for t, a in actions if a.on]
    spans = [(s[0], e[0]) for s, e in zip(offs, ons, strict=False)]
    for s, e in spans:
        assert timedelta(seconds=PAUSE.min_off_s) <= e - s <= timedelta(seconds=PAUSE.max_pause_s)
    for (_, e), (s2, _) in zip(spans, spans[1:], strict=False):
        assert s2 - e >= timedelta(seconds=PAUSE.min_on_s)
    t = T0
    while t < T0 + timedelta(hours=4):  # every rolling hour: off at most 30 min
        paused = sum(max(0.0, (min(e, t + timedelta(hours=1)) - max(s, t)).total_seconds()) for s, e in spans)
        assert paused <= PAUSE.max_pause_s + 10
        t += timedelta(minutes=5)


def test_no_spike_no_pause_and_a_hostile_price_is_no_spike() -> None:
    assert simulate_pauses(0.3) == []
    for bad in (NAN, INF, -INF, 1e300):
        assert simulate_pauses(bad, hours=0.5) == []


def test_the_import_limit_pauses_and_releases_when_it_fits() -> None:
    o = outlook([0.3] * 4)
    s = PauseState(on=True)
    assert decide_pause(PAUSE, s, house(T0, o, grid=11_200.0), 0.3, 90.0) == PauseAction(False, "import_limit")
    for bad in (NAN, INF, 1e300):
        assert decide_pause(PAUSE, s, house(T0, o, grid=bad), 0.3, 90.0) is None
    paused = after_switch(s, PauseAction(False, "import_limit"), T0)
    later = T0 + timedelta(seconds=400)
    assert decide_pause(PAUSE, paused, house(later, o, grid=10_950.0), 0.3, 0.0) is None  # +90 W would pass
    assert decide_pause(PAUSE, paused, house(later, o, grid=10_000.0), 0.3, 0.0) == PauseAction(True, "released")
    early = T0 + timedelta(seconds=100)  # before its minimum off time
    assert decide_pause(PAUSE, paused, house(early, o, grid=10_000.0), 0.3, 0.0) is None


def test_min_on_unknown_state_and_someone_elses_pause_are_left_alone() -> None:
    o = outlook([0.9] * 4)
    just_on = PauseState(on=True, changed_at=T0 - timedelta(seconds=60))
    assert decide_pause(PAUSE, just_on, house(T0, o), 0.9, 90.0) is None
    assert decide_pause(PAUSE, PauseState(on=None), house(T0, o), 0.9, 90.0) is None
    theirs = PauseState(on=False, changed_at=T0 - timedelta(hours=3))
    assert decide_pause(PAUSE, theirs, house(T0, o), 0.1, 0.0) is None
    spent = PauseState(on=True, pauses=((T0 - timedelta(minutes=40), T0 - timedelta(minutes=12)),))
    assert paused_s(spent, T0, 3600) == 28 * 60
    assert decide_pause(PAUSE, spent, house(T0, o), 0.9, 90.0) is None  # 2 min left < its 5 min minimum off


def test_pause_flexibility_is_ombc_with_the_maximum_pause() -> None:
    f = pause_flexibility("freezer", PAUSE, PauseState(on=True, changed_at=T0, on_power_w=85.0))
    assert f.active_mode_id == "on" and f.max_reduced_s == 1800 and f.min_mode_s == 600
    assert [m.power_w for m in f.modes] == [85.0, 0.0]
    assert pause_flexibility("freezer", PAUSE, PauseState()).active_mode_id == ""
    with pytest.raises(ValueError):
        PauseRules(max_pause_s=NAN, period_s=3600, min_on_s=0, min_off_s=0, power_w=1)
    with pytest.raises(ValueError):
        PauseRules(max_pause_s=4000, period_s=3600, min_on_s=0, min_off_s=0, power_w=1)


# -- the power station ----------------------------------------------------------------------------------
CHARGE = ChargeRules(need_wh=900.0, charge_w=300.0, ready_by=time(18), tz=UTC, full_below_w=10.0, min_switch_s=300.0)


def test_station_charges_on_pv_surplus_even_when_nothing_is_needed() -> None:
    s = observe_charge(CHARGE, ChargeState(), False, 0.0, T0)
    assert s.day_end == T0 + timedelta(hours=6)
    o = outlook([0.3] * 8, surplus_now=200.0)
    assert decide_charge(CHARGE, s, house(T0, o, grid=-200.0)) == ChargeAction(True, "pv_surplus")
    full = replace(s, full=False, charged_wh=CHARGE.need_wh)  # nothing needed: still takes what is free
    assert decide_charge(CHARGE, full, house(T0, o, grid=-200.0)) == ChargeAction(True, "pv_surplus")
    on = replace(s, on=True, changed_at=T0 - timedelta(hours=1))  # charging: 300 W of the 500 W import are its own
    assert decide_charge(CHARGE, on, house(T0, outlook([0.3] * 8), grid=100.0)) is None  # 200 W spare: stays on
    a = decide_charge(CHARGE, on, house(T0, outlook([0.3, 0.1, 0.1, 0.1, 0.1]), grid=500.0))
    assert a == ChargeAction(False, "waiting")  # importing: no surplus, and cheaper hours to come
    for bad in (NAN, INF, 1e300):
        assert decide_charge(CHARGE, s, house(T0, o, grid=bad)) != ChargeAction(True, "pv_surplus")


def test_station_charges_in_the_cheapest_hours_and_at_the_deadline() -> None:
    o = outlook([0.30, 0.10, 0.10, 0.10, 0.40, 0.40, 0.40])
    s = observe_charge(CHARGE, ChargeState(), False, 0.0, T0)
    assert decide_charge(CHARGE, s, house(T0, o)) is None  # 3 h of charging: 13:00-16:00 is cheapest
    later = T0 + timedelta(hours=1)
    s = observe_charge(CHARGE, s, False, 0.0, later)
    a = decide_charge(CHARGE, s, house(later, o))
    assert a is not None and a.on and a.reason == "cheapest_hours"
    dear = outlook([0.40] * 4 + [0.10] * 4)  # cheap only after its 18:00
    late = T0 + timedelta(hours=3)
    s2 = observe_charge(CHARGE, ChargeState(), False, 0.0, late)
    a2 = decide_charge(CHARGE, s2, house(late, dear, grid=11_500.0))
    assert a2 is not None and a2.on and a2.reason == "deadline"  # 3 h left for 3 h of charging: even over the limit


def test_station_counts_energy_sees_full_and_ignores_hostile_power() -> None:
    s = observe_charge(CHARGE, ChargeState(), True, 300.0, T0)
    for bad in (NAN, INF, -5.0, 1e300):
        s = observe_charge(CHARGE, s, True, bad, T0 + timedelta(minutes=1))
        assert s.charged_wh == 0.0 and not math.isnan(s.charged_wh)
    s = observe_charge(CHARGE, s, True, 300.0, T0 + timedelta(minutes=2))
    s = observe_charge(CHARGE, s, True, 300.0, T0 + timedelta(minutes=8))
    assert s.charged_wh == pytest.approx(30.0)
    f = charge_flexibility("station", CHARGE, s, T0 + timedelta(minutes=8))
    assert f is not None and f.state is RunState.RUNNING and f.profile[0].duration_s == 174 * 60
    s = observe_charge(CHARGE, s, True, 1.0, T0 + timedelta(minutes=9))
    s = observe_charge(CHARGE, s, True, 1.0, T0 + timedelta(minutes=12))
    assert s.full
    a = decide_charge(CHARGE, s, house(T0 + timedelta(minutes=20), outlook([0.1] * 8)))
    assert a is not None and not a.on and a.reason == "full"
    f = charge_flexibility("station", CHARGE, s, T0 + timedelta(minutes=20))
    assert f is not None and f.state is RunState.DONE
    nxt = observe_charge(CHARGE, s, False, 0.0, T0 + timedelta(hours=6, seconds=1))  # a new day
    assert not nxt.full and nxt.charged_wh == 0.0 and nxt.day_end == T0 + timedelta(days=1, hours=6)


def test_station_keeps_its_minimum_switch_time_and_the_import_limit() -> None:
    o = outlook([0.1] * 8)
    s = observe_charge(CHARGE, ChargeState(on=False, changed_at=T0 - timedelta(seconds=60)), False, 0.0, T0)
    assert decide_charge(CHARGE, s, house(T0, o)) is None  # off for a minute only
    s = observe_charge(CHARGE, ChargeState(), False, 0.0, T0)
    a = decide_charge(CHARGE, s, house(T0, o, grid=10_900.0))
    assert a is None  # off already; the limit would not let it start
    on = observe_charge(CHARGE, ChargeState(on=True), True, 300.0, T0)
    a = decide_charge(CHARGE, on, house(T0, o, grid=11_200.0))
    assert a is not None and not a.on and a.reason == "import_limit"
    assert decide_charge(CHARGE, ChargeState(), house(T0, o)) is None  # unknown: left alone
