"""Events for Home Assistant automations fire on transitions only (automation.py)."""

from __future__ import annotations

import numpy as np

from edge_agent.home_assistant.automation import Conditions, cheap_now, events


def kinds(before: Conditions | None, now: Conditions) -> list[str]:
    return [str(p["event_type"]) for _, p in events(before, now)]


def test_nothing_fires_for_what_already_held_at_the_start() -> None:
    now = Conditions(price_per_kwh=-0.01, cheap=True, binding=frozenset({"export_cap"}), unreachable=True,
                     plan_refusals=3, last_refusal="plan: stale")
    assert events(None, now) == []
    assert events(now, now) == []


def test_price_events_on_entering_the_cheap_quarter_and_going_negative() -> None:
    dear, cheap, negative = Conditions(0.30), Conditions(0.10, cheap=True), Conditions(-0.02, cheap=True)
    assert kinds(dear, cheap) == ["cheap_window_started"]
    assert kinds(cheap, negative) == ["negative_price_started"]
    assert kinds(dear, negative) == ["cheap_window_started", "negative_price_started"]
    assert kinds(negative, Conditions(-0.05, cheap=True)) == []  # still negative: no new window
    assert kinds(Conditions(), Conditions(None)) == []  # no tariff, no price events
    (key, payload), = events(dear, cheap)
    assert key == "price_event" and payload["price_per_kwh"] == 0.10


def test_limit_aggregator_and_plan_events() -> None:
    base = Conditions()
    assert kinds(base, Conditions(binding=frozenset({"export_cap"}))) == ["export_limit_binding"]
    assert kinds(base, Conditions(binding=frozenset({"import_limit"}))) == ["import_limit_binding"]
    assert kinds(Conditions(binding=frozenset({"export_cap"})), Conditions(binding=frozenset({"export_cap"}))) == []
    assert kinds(base, Conditions(unreachable=True)) == ["aggregator_unreachable"]
    assert kinds(Conditions(unreachable=True), base) == ["aggregator_reachable"]
    (key, payload), = events(Conditions(plan_refusals=1), Conditions(plan_refusals=3, last_refusal="plan: nan"))
    assert key == "plan_event" and payload == {"event_type": "plan_refused", "reason": "plan: nan", "count": 2}


def test_cheap_is_the_cheapest_quarter_of_the_horizon_and_ignores_non_finite_prices() -> None:
    day = np.array([0.3] * 48 + [0.1] * 24 + [0.2] * 24)
    assert cheap_now(day) == (0.3, False)
    assert cheap_now(day[48:]) == (0.1, True)
    assert cheap_now(np.array([0.1, np.nan, 0.3, 0.4])) == (0.1, True)
    assert cheap_now(np.array([np.nan, 0.1])) == (None, False)
    assert cheap_now(np.array([])) == (None, False)


def test_cheap_with_infinite_huge_and_negative_prices() -> None:
    assert cheap_now(np.array([np.inf, 0.1])) == (None, False)
    assert cheap_now(np.array([-np.inf, 0.1])) == (None, False)
    assert cheap_now(np.array([0.2, np.inf, -np.inf, np.nan, 0.1, 0.3, 0.4])) == (0.2, False)  # finite ones only
    assert cheap_now(np.array([1e300, 0.1, 0.2, 0.3])) == (1e300, False)
    assert cheap_now(np.array([0.1, 1e300, 1e300, 1e300])) == (0.1, True)
    assert cheap_now(np.array([-0.5, 0.1, 0.2, 0.3])) == (-0.5, True)
    before, now = Conditions(0.1), Conditions(-1e300, cheap=True)
    assert kinds(before, now) == ["cheap_window_started", "negative_price_started"]

