"""Control read-back (edge_agent.resources.readback) and the write guard's safety re-write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from edge_agent.drivers.sunspec_points import ModelValues
from edge_agent.drivers.sunspec_roles import BATTERY_COMMANDS, PV_LIMIT_COMMANDS
from edge_agent.drivers.write_guard import WriteGuard
from edge_agent.resources.readback import ControlReadback, ControlWatch, compare

T0 = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
HOLDS = ControlReadback(True, ())
RESET = ControlReadback(True, ("124.StorCtl_Mod wrote 3 reads 0",))


def values(model_id: int, **points: float | None) -> ModelValues:
    return ModelValues(name=str(model_id), points=MappingProxyType(dict(points)), groups=MappingProxyType({}),
                       model_id=model_id)


def test_compare_within_the_resolution_holds() -> None:
    owned = {"StorCtl_Mod": 3.0, "InWRte": 33.333, "OutWRte": -33.333}
    storage = BATTERY_COMMANDS[0].tolerance()  # model 124's window
    assert compare(124, owned, values(124, StorCtl_Mod=3, InWRte=33.33, OutWRte=-33.33), storage) == ((), ())
    assert compare(124, owned, values(124, StorCtl_Mod=3, InWRte=34.0, OutWRte=-33.33), storage)[0] == ("InWRte",)


def test_compare_names_what_differs() -> None:
    owned = {"WMaxLimPct": 33.0, "WMaxLim_Ena": 1.0}
    names, described = compare(123, owned, values(123, WMaxLimPct=100.0, WMaxLim_Ena=0), PV_LIMIT_COMMANDS[1].tolerance())
    assert names == ("WMaxLimPct", "WMaxLim_Ena")
    assert described == ("123.WMaxLimPct wrote 33 reads 100", "123.WMaxLim_Ena wrote 1 reads 0")
    # a point that reads "not implemented" does not hold either
    assert compare(704, {"WSet": 500.0}, values(704, WSet=None), BATTERY_COMMANDS[1].tolerance())[0] == ("WSet",)
    assert compare(704, {"WSet": 500.0}, values(704, WSet=509.0), BATTERY_COMMANDS[1].tolerance()) == ((), ())


def test_a_reset_asks_for_one_reassert_and_then_holds() -> None:
    watch = ControlWatch(tries=3, stick_s=30)
    assert watch.observe(T0, HOLDS) == "ok"
    assert watch.observe(T0 + timedelta(seconds=1), RESET) == "reassert"
    for s in range(2, 100):
        assert watch.observe(T0 + timedelta(seconds=s), HOLDS) == "ok"
    assert watch.controlled and watch.failures == 0
    # a reboot a long time later is a new, first failure
    assert watch.observe(T0 + timedelta(seconds=200), RESET) == "reassert" and watch.failures == 1


def test_reasserts_that_do_not_stick_make_the_device_uncontrolled_until_it_holds_again() -> None:
    watch = ControlWatch(tries=3, stick_s=30)
    verdicts = [watch.observe(T0 + timedelta(seconds=s), RESET) for s in range(6)]
    assert verdicts == ["reassert", "reassert", "reassert", "lost", "uncontrolled", "uncontrolled"]
    assert not watch.controlled
    assert watch.observe(T0 + timedelta(seconds=10), HOLDS) == "uncontrolled"  # not for long enough yet
    assert watch.observe(T0 + timedelta(seconds=40), HOLDS) == "regained"
    assert watch.controlled


def test_nothing_compared_changes_nothing() -> None:
    watch = ControlWatch()
    assert watch.observe(T0, ControlReadback()) == "ok" and watch.failures == 0


def test_invalidate_lets_the_same_value_out_at_once_within_the_hourly_budget() -> None:
    now = [0.0]
    guard = WriteGuard(min_interval_s=30, max_writes_per_hour=3, refresh_s=30, now_s=lambda: now[0])
    guard.record("k", [3])
    now[0] = 1.0
    assert guard.decide("k", [3]) == "unchanged"
    assert guard.decide("k", [4]) == "deferred"
    guard.invalidate("k")
    assert guard.decide("k", [3]) == "write"  # the device lost it: a safety re-write
    guard.record("k", [3])
    guard.record("k", [3])
    guard.invalidate("k")
    assert guard.decide("k", [3]) == "deferred"  # 3 writes this hour: the budget still holds
    guard.invalidate("unknown")  # nothing recorded: nothing to do
