"""Live feeder envelopes: shares that add up to the limit, batteries first, curtailment by PV size."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from aggregator.dispatch.realtime import SHARE_OF_LIMIT, HousesNow, feeder_envelopes


async def _measured(store, now, **houses):  # type: ignore[no-untyped-def]
    """Telemetry per house: ``name=(grid_w, pv_w, soc_pct)`` (battery idle, load = grid - PV)."""
    from vpp_common.messages import Measurement, SiteTelemetry, Validity

    m = lambda v: Measurement(v, Validity.VALID, now)  # noqa: E731
    for h, (grid, pv, soc) in houses.items():
        await store.put_telemetry(h, SiteTelemetry(now, m(grid), m(pv), m(0.0), m(soc), m(grid - pv)), 3600)


def _h(base, ch, dis=None, rated=None):
    n = len(base)
    return HousesNow(np.array(base, float), np.array(ch, float), np.zeros(n) if dis is None else np.array(dis, float),
                     np.array(rated if rated is not None else [5000.0] * n, float), np.full(n, 17250.0))


def test_fits_shares_the_headroom_by_pv_size() -> None:
    # unavoidable exports (batteries charging flat out): 1000, 0, 0 W; limit 10 kW
    exp, imp = feeder_envelopes(_h([-4000, -2000, 500], [3000, 3000, 0], rated=[4000, 4000, 2000]), 10_000, np.inf)
    assert exp.sum() == pytest.approx(10_000 * SHARE_OF_LIMIT)
    assert exp[0] >= 1000 and exp[1] > 0
    assert exp[0] - 1000 == pytest.approx(2 * (exp[2] - 0), rel=1e-6)
    assert np.isinf(imp).all()


def test_over_the_limit_curtails_the_same_share_of_pv_size() -> None:
    # no battery room: 6, 3, 3 kW unavoidable, limit 6 kW
    exp, _ = feeder_envelopes(_h([-6000, -3000, -3000], [0, 0, 0], rated=[8000, 4000, 4000]), 6000, np.inf)
    assert exp.sum() == pytest.approx(6000 * SHARE_OF_LIMIT, rel=1e-6)
    cut = np.array([6000, 3000, 3000]) - exp
    assert cut / np.array([8000, 4000, 4000]) == pytest.approx(np.full(3, cut[0] / 8000), rel=1e-6)


def test_batteries_absorb_before_anyone_curtails() -> None:
    # house 0 has room for 4 kW: its unavoidable export is 1 kW; the feeder fits without curtailment
    exp, _ = feeder_envelopes(_h([-5000, -4000], [4000, 0]), 5200, np.inf)
    assert exp[1] >= 4000 and exp[0] >= 1000


def test_nobody_is_made_to_charge_while_the_feeder_has_room() -> None:
    # both want to export 4 kW (batteries idle by their plans); 10 kW fit: each keeps its 4 kW
    # plus a share of the rest, although house 0's PV share alone (1/5) would be below 4 kW
    h = _h([-4000, -4000], [3000, 3000], rated=[2000, 8000])
    exp, _ = feeder_envelopes(h, 10_000, np.inf, grid_wanted_w=np.array([-4000.0, -4000.0]))
    assert exp.sum() == pytest.approx(10_000 * SHARE_OF_LIMIT)
    assert (exp >= 4000).all()
    old, _ = feeder_envelopes(h, 10_000, np.inf)  # without the wanted exchange: held to PV shares
    assert old[0] < 4000


def test_batteries_give_way_in_proportion_to_their_room_when_wants_do_not_fit() -> None:
    # wants 5 + 5 kW against a 7 kW limit; rooms 3 kW and 1 kW -> unavoidable 2 and 4 kW
    h = _h([-5000, -5000], [3000, 1000])
    exp, _ = feeder_envelopes(h, 7000, np.inf, share=1.0, grid_wanted_w=np.array([-5000.0, -5000.0]))
    assert exp.sum() == pytest.approx(7000)
    cut = 5000 - exp
    assert cut[0] == pytest.approx(3 * cut[1])  # 3 kW of the cut by the larger battery
    assert (exp >= np.array([2000, 4000]) - 1e-6).all()


def test_headroom_goes_to_houses_below_their_own_cap() -> None:
    # house 0 wants 2 kW and may export 3 kW by its own cap; house 1 wants 2 kW and has no
    # cap.  10 kW fit: by PV size house 0 would get 5 kW, above its cap: the part it cannot
    # use goes to house 1, so the houses can together use the whole limit
    h = HousesNow(np.array([-2000.0, -2000.0]), np.zeros(2), np.zeros(2), np.array([5000.0, 5000.0]),
                  np.full(2, 17250.0), export_cap_w=np.array([3000.0, np.inf]))
    exp, _ = feeder_envelopes(h, 10_000, np.inf, share=1.0, grid_wanted_w=np.array([-2000.0, -2000.0]))
    assert exp[0] == pytest.approx(3000) and exp.sum() == pytest.approx(10_000)
    # without caps the PV-size shares stand (5 + 5 kW), house 0's 2 kW above its cap lost
    old, _ = feeder_envelopes(replace(h, export_cap_w=None), 10_000, np.inf, share=1.0,
                              grid_wanted_w=np.array([-2000.0, -2000.0]))
    assert old.tolist() == pytest.approx([5000, 5000])
    # everyone at its cap still below the limit: bounds are the caps
    capped = replace(h, export_cap_w=np.array([3000.0, 4000.0]))
    exp, _ = feeder_envelopes(capped, 10_000, np.inf, share=1.0, grid_wanted_w=np.array([-2000.0, -2000.0]))
    assert exp.tolist() == pytest.approx([3000, 4000])


def test_a_house_over_its_own_cap_is_not_counted_as_unavoidable_feeder_load() -> None:
    # PV surplus 8 kW, no battery, own cap 4 kW: it curtails to 4 kW whatever the feeder
    h = HousesNow(np.array([-8000.0, -3000.0]), np.zeros(2), np.zeros(2), np.array([10_000.0, 5000.0]),
                  np.full(2, 17250.0), export_cap_w=np.array([4000.0, np.inf]))
    exp, _ = feeder_envelopes(h, 7000, np.inf, share=1.0)
    assert exp.tolist() == pytest.approx([4000, 3000])  # 4 + 3 kW fit: nobody curtails for the feeder


def test_import_wants_that_fit_are_kept() -> None:
    h = _h([3000, 1000], [0, 0], dis=[2000, 0])
    _, imp = feeder_envelopes(h, np.inf, 5000, share=1.0, grid_wanted_w=np.array([3000.0, 1000.0]))
    assert imp.sum() == pytest.approx(5000) and (imp >= [3000, 1000]).all()


def test_import_side_holds_each_house_to_its_unavoidable_import_when_short() -> None:
    _, imp = feeder_envelopes(_h([3000, 4000], [0, 0], dis=[2000, 0]), np.inf, 3000)
    assert imp.tolist() == [1000.0, 4000.0]  # even all batteries flat out cannot meet 3 kW: reported, not hidden
    _, imp = feeder_envelopes(_h([3000, 1000], [0, 0], dis=[2000, 0]), np.inf, 10_000)
    assert imp.sum() == pytest.approx(10_000 * SHARE_OF_LIMIT)


async def test_compute_envelopes_from_the_store_treats_silent_houses_as_worst_case() -> None:
    from datetime import UTC, datetime, timedelta

    from aggregator.feeder_control import Feeder, compute_envelopes
    from aggregator.store.memory import MemoryStore
    from vpp_common.messages import (
        ControlType,
        Flexibility,
        Hello,
        ResourceInfo,
        ResourceKind,
        SiteLimits,
        StorageFlexibility,
    )

    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    store = MemoryStore()
    for h in ("a", "b", "c"):
        hello = Hello("test", SiteLimits(17250.0, 6000.0),
                      (ResourceInfo("pv", ResourceKind.PV, ControlType.PEBC, 6000.0),))
        await store.upsert_house(h, hello, now)
    # a: exports 5 kW with a full battery; b: exports 3 kW, battery empty with 3 kW room; c: silent
    await _measured(store, now, a=(-5000.0, -5500.0, 100.0), b=(-3000.0, -3500.0, 20.0))
    st = StorageFlexibility("battery", 20.0, 5.0, 100.0, 10.0, 10_000.0, 3000.0, 3000.0)
    await store.put_flexibility("b", Flexibility(now, (st,)))
    await store.put_flexibility("a", Flexibility(now, (StorageFlexibility("battery", 100.0, 5.0, 100.0, 10.0,
                                                                          10_000.0, 3000.0, 3000.0),)))
    env = await compute_envelopes(store, [Feeder("f", ("a", "b", "c"), float("inf"), 12_000.0)], now, 30.0, 600.0)
    # unavoidable: a 5000, b 0 (its battery takes the 3 kW), c 6000 (unknown: its whole cap) -> 11 kW
    total = sum(e.limits.max_export_w for e in env.values())
    assert 11_000 <= total <= 12_000 * SHARE_OF_LIMIT + 1e-6  # a share above a house's own cap is not handed out
    assert env["c"].limits.max_export_w <= 6000.0 and env["a"].limits.max_export_w >= 5000.0
    assert env["b"].limits.max_export_w < 3000.0  # b must charge rather than export
    assert all(e.valid_until == now + timedelta(seconds=150) for e in env.values())


async def test_feeder_round_measures_load_and_the_leader_publishes_it_without_house_labels() -> None:
    from datetime import UTC, datetime

    from prometheus_client import generate_latest

    from aggregator.feeder_control import Feeder, feeder_round
    from aggregator.metrics import AggregatorMetrics
    from aggregator.store.memory import MemoryStore

    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    store = MemoryStore()
    await _measured(store, now, a=(-5000.0, -5500.0, 100.0), b=(-3000.0, -3500.0, 20.0), d=(1200.0, 0.0, 20.0))
    feeders = [Feeder("f1", ("a", "b", "c"), float("inf"), 7000.0), Feeder("f2", ("d",), float("inf"), float("inf"))]
    env, loads = await feeder_round(store, feeders, now, 30.0, 600.0)
    assert set(env) == {"a", "b", "c"}  # the unlimited feeder gets no envelopes, only a measurement
    assert loads["f1"].power_w == -8000.0 and loads["f1"].fresh_houses == 2 and loads["f1"].houses == 3
    assert loads["f1"].over_limit_w == 1000.0
    assert loads["f2"].power_w == 1200.0 and loads["f2"].over_limit_w == 0.0

    metrics = AggregatorMetrics()
    metrics.set_feeder_loads(loads)
    text = generate_latest(metrics.registry).decode()
    assert 'vpp_aggregator_feeder_power_watts{feeder="f1"} -8000.0' in text
    assert 'vpp_aggregator_feeder_over_limit_watts{feeder="f1"} 1000.0' in text
    assert 'vpp_aggregator_feeder_limit_watts{direction="export",feeder="f1"} 7000.0' in text
    assert 'feeder="f2",direction' not in text and 'direction="import"' not in text  # no limit, no series
    assert 'vpp_aggregator_feeder_telemetry_fresh_ratio{feeder="f1"} 0.6666' in text
    assert "house=" not in text and "house_id" not in text
    metrics.set_feeder_loads({})  # a follower clears what it published as leader
    assert "vpp_aggregator_feeder_power_watts{" not in generate_latest(metrics.registry).decode()


async def test_a_house_held_to_an_envelope_wants_no_more_than_it() -> None:
    # a reads 5 kW of export although its envelope in force allows 2.5 kW (a step of the sun, a
    # PV limit not yet in force): taken at its word it would squeeze b, whose battery is full
    from datetime import UTC, datetime, timedelta

    from aggregator.feeder_control import Feeder, FeederEnvelope, feeder_round
    from aggregator.store.memory import MemoryStore
    from vpp_common.messages import Flexibility, SiteLimits, StorageFlexibility

    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    store = MemoryStore()
    await _measured(store, now, a=(-5000.0, -5500.0, 20.0), b=(-3000.0, -3500.0, 100.0))
    for h, soc in (("a", 20.0), ("b", 100.0)):
        await store.put_flexibility(h, Flexibility(now, (StorageFlexibility("battery", soc, 5.0, 100.0, 10.0,
                                                                            10_000.0, 3000.0, 3000.0),)))
    feeders = [Feeder("f", ("a", "b"), float("inf"), 6000.0)]
    held = {"a": FeederEnvelope(SiteLimits(17_250.0, 2500.0), now + timedelta(seconds=60))}
    env, _ = await feeder_round(store, feeders, now, 30.0, 600.0, previous=held)
    free, _ = await feeder_round(store, feeders, now, 30.0, 600.0)
    # held: a wants 2.5 kW, b its unavoidable 3 kW; 5.5 kW fit, the rest is shared
    assert env["b"].limits.max_export_w >= 3000.0
    assert env["a"].limits.max_export_w < 3000.0
    # taken at its word, a's 5 kW would not fit: its battery gives way, but from 5 kW down
    assert free["a"].limits.max_export_w > env["a"].limits.max_export_w


def test_make_before_break_raises_no_bound_before_the_cuts_are_in_force() -> None:
    from aggregator.dispatch.realtime import make_before_break

    held = np.array([4000.0, 4000.0, 2000.0])  # in force, 10 kW: the whole limit
    new = np.array([2000.0, 5000.0, 3000.0])  # a gives 2 kW to b and c
    sent = make_before_break(new, held, 10_000.0)
    # a may still run at 4 kW until it takes its cut up: b and c wait
    assert sent.tolist() == [2000.0, 4000.0, 2000.0]
    # a round later a's cut is in force: the raises go out
    assert make_before_break(new, sent, 10_000.0).tolist() == new.tolist()
    # with room under the limit, raises share it by the same fraction of their step
    part = make_before_break(new, np.array([4000.0, 4000.0, 1000.0]), 10_000.0)
    assert part[0] == 2000.0 and part[1] - 4000.0 == pytest.approx(0.5 * (part[2] - 1000.0))
    assert max(4000.0, part[0]) + part[1] + part[2] == pytest.approx(10_000.0)
    # nothing known to be in force, or no limit: as computed
    assert make_before_break(new, np.array([np.nan, 4000.0, 2000.0]), 10_000.0).tolist() == new.tolist()
    assert make_before_break(new, held, np.inf).tolist() == new.tolist()


async def test_feeder_round_sends_cuts_before_raises() -> None:
    from datetime import UTC, datetime, timedelta

    from aggregator.feeder_control import Feeder, FeederEnvelope, feeder_round
    from aggregator.store.memory import MemoryStore
    from vpp_common.messages import SiteLimits

    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    store = MemoryStore()
    # no batteries: a exports 1 kW, b would export 5 kW; limit 4 kW
    await _measured(store, now, a=(-1000.0, -1500.0, 50.0), b=(-3000.0, -5500.0, 50.0))
    feeders = [Feeder("f", ("a", "b"), float("inf"), 4000.0)]
    until = now + timedelta(seconds=60)
    held = {"a": FeederEnvelope(SiteLimits(17_250.0, 2000.0), until), "b": FeederEnvelope(SiteLimits(17_250.0, 2000.0), until)}
    free, _ = await feeder_round(store, feeders, now, 30.0, 600.0)
    env, _ = await feeder_round(store, feeders, now, 30.0, 600.0, previous=held)
    assert free["a"].limits.max_export_w < 2000.0 < free["b"].limits.max_export_w
    # a's cut goes out now, b's raise waits for it
    assert env["a"].limits.max_export_w == pytest.approx(free["a"].limits.max_export_w)
    assert env["b"].limits.max_export_w == pytest.approx(2000.0)


def test_battery_room_is_rated_power_within_the_energy_left_and_none_below_reserve() -> None:
    from aggregator.dispatch.realtime import battery_room_w

    # 10 kWh, 5 kW; over 1/60 h: 1 % of SoC is 6 kW of room; SoC 50 (both ways rated), 99.5, 10 (at
    # reserve), 11 (1 % above the 10 % minimum), no capacity
    soc = np.array([50.0, 99.5, 10.0, 11.0, 50.0])
    cap = np.array([10_000.0, 10_000.0, 10_000.0, 10_000.0, 0.0])
    ch, dis = battery_room_w(soc, cap, np.full(5, 5000.0), np.full(5, 5000.0), slot_h=1 / 60,
                             charge_efficiency=1.0, discharge_efficiency=1.0, soc_min_pct=10.0,
                             soc_max_pct=100.0, reserve_soc_pct=np.array([10.0, 10.0, 10.0, 10.5, 10.0]))
    assert ch.tolist() == pytest.approx([5000.0, 3000.0, 5000.0, 5000.0, 0.0])
    assert dis.tolist() == pytest.approx([5000.0, 5000.0, 0.0, 5000.0, 0.0])
    ch, dis = battery_room_w(np.array([101.0, 5.0]), np.full(2, 10_000.0), np.full(2, 5000.0), np.full(2, 5000.0),
                             slot_h=1.0, charge_efficiency=0.9, discharge_efficiency=0.9, soc_min_pct=10.0,
                             soc_max_pct=100.0, reserve_soc_pct=0.0)
    assert ch.tolist() == [0.0, 5000.0] and dis.tolist() == [5000.0, 0.0]  # never negative


def test_a_round_is_a_pure_function_of_the_houses_readings() -> None:
    from datetime import UTC, datetime

    from aggregator.feeder_control import Feeder, HouseReading, round_envelopes
    from vpp_common.messages import Measurement, SiteTelemetry, Validity

    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    m = lambda v: Measurement(v, Validity.VALID, now)  # noqa: E731
    readings = {"a": HouseReading(None, SiteTelemetry(now, m(-5000.0), m(5500.0), m(0.0), m(50.0), m(500.0)), None),
                "b": HouseReading(None, None, None)}  # nothing known: taken as exporting its whole cap
    env, loads = round_envelopes([Feeder("f", ("a", "b"), float("inf"), 6000.0)], readings, now, 30.0, 600.0, 1 / 60)
    assert loads["f"].power_w == -5000.0 and loads["f"].fresh_houses == 1
    assert set(env) == {"a", "b"}
    assert sum(e.limits.max_export_w for e in env.values()) <= 6000.0 + 1e-6


async def test_a_feeder_over_its_import_limit_reports_the_least_excess_beside_the_measured() -> None:
    # a and b import 4 kW each on a 5 kW feeder; neither has a battery (no flexibility stored):
    # the whole excess is unavoidable; c has no fresh telemetry and does not count
    from datetime import UTC, datetime

    from prometheus_client import generate_latest

    from aggregator.feeder_control import Feeder, feeder_round
    from aggregator.metrics import AggregatorMetrics
    from aggregator.store.memory import MemoryStore

    now = datetime(2026, 1, 10, 19, tzinfo=UTC)
    store = MemoryStore()
    await _measured(store, now, a=(4000.0, 0.0, 5.0), b=(4000.0, 0.0, 5.0))
    _, loads = await feeder_round(store, [Feeder("f1", ("a", "b", "c"), 5000.0, float("inf"))], now, 30.0, 600.0)
    assert loads["f1"].over_limit_w == 3000.0 and loads["f1"].least_over_limit_w == 3000.0
    metrics = AggregatorMetrics()
    metrics.set_feeder_loads(loads)
    assert 'vpp_aggregator_feeder_least_over_limit_watts{feeder="f1"} 3000.0' in generate_latest(
        metrics.registry).decode()
    # within the limit, or an export excess (curtailable): nothing is unavoidable
    _, loads = await feeder_round(store, [Feeder("f1", ("a", "b"), 9000.0, float("inf"))], now, 30.0, 600.0)
    assert loads["f1"].least_over_limit_w == 0.0


def test_switchable_loads_above_their_lowest_mode_count_as_import_a_house_can_shed() -> None:
    # a and b import 4 kW each on a 6 kW feeder, no batteries; a's heat pump runs at 1.5 kW (its
    # lowest mode 0), b's freezer's mode is unknown: a can shed 1.5 kW, b nothing
    from datetime import UTC, datetime

    from aggregator.feeder_control import Feeder, HouseReading, round_envelopes, sheddable_w
    from vpp_common.messages import (
        Flexibility,
        LoadMode,
        Measurement,
        SiteTelemetry,
        SwitchableLoadFlexibility,
        Validity,
    )

    now = datetime(2026, 1, 10, 19, tzinfo=UTC)
    m = lambda v: Measurement(v, Validity.VALID, now)  # noqa: E731
    tele = SiteTelemetry(now, m(4000.0), m(0.0), m(0.0), m(50.0), m(4000.0))
    modes = (LoadMode("off", 0.0), LoadMode("low", 500.0), LoadMode("on", 1500.0))
    pump = SwitchableLoadFlexibility("heat-pump", modes, "on")
    freezer = SwitchableLoadFlexibility("freezer", (LoadMode("on", 90.0), LoadMode("off", 0.0)), "")
    assert sheddable_w([pump, freezer]) == 1500.0 and sheddable_w([]) == 0.0
    assert sheddable_w([SwitchableLoadFlexibility("heat-pump", modes, "low")]) == 500.0
    readings = {"a": HouseReading(None, tele, Flexibility(now, switchable_loads=(pump,))),
                "b": HouseReading(None, tele, Flexibility(now, switchable_loads=(freezer,)))}
    env, loads = round_envelopes([Feeder("f", ("a", "b"), 6000.0, float("inf"))], readings, now, 30.0, 600.0, 1 / 60)
    assert loads["f"].unavoidable_import_w == 6500.0 and loads["f"].least_over_limit_w == 500.0
    # short of the limit: each house held to what it cannot avoid, a without its heat pump
    assert env["a"].limits.max_import_w == pytest.approx(2500.0) and env["b"].limits.max_import_w == 4000.0


def test_a_battery_beyond_its_own_load_exports_to_the_neighbours_when_the_feeder_is_short() -> None:
    # b charges an EV (8 kW, battery at its reserve), a's battery is nearly full and its house
    # takes 500 W: with every battery covering its own house the feeder (6 kW) is still over,
    # so a is asked to export (a bound below 0) within its export cap
    h = replace(_h([500, 8000, 1000], [0, 0, 0], dis=[4000, 0, 0]), export_cap_w=np.array([3000.0, 1e9, 1e9]))
    _, imp = feeder_envelopes(h, np.inf, 6000, share=1.0, grid_wanted_w=np.array([500.0, 8000.0, 1000.0]))
    assert imp[0] < 0 and imp.sum() == pytest.approx(6000)
    assert imp[0] >= -3000 and imp[1] <= 8000 and imp[2] == pytest.approx(1000)  # c has no battery: not asked
    # beside a feeder export limit (1 kW: a's share by PV size is a third), a's export envelope
    # is raised to what it is asked to export: the feeder stays an importer
    exp, imp2 = feeder_envelopes(h, 1000, 6000, share=1.0, grid_wanted_w=np.array([500.0, 8000.0, 1000.0]))
    assert imp2 == pytest.approx(imp) and exp[0] == pytest.approx(-imp[0]) and exp[0] > 1000
    assert exp[1:].sum() <= 1000 + 1e-6
    # where every battery covering its own house is enough, nobody is asked to export
    _, imp = feeder_envelopes(h, np.inf, 9200, share=1.0, grid_wanted_w=np.array([500.0, 8000.0, 1000.0]))
    assert (imp >= 0).all() and imp.sum() == pytest.approx(9200)


def test_the_least_import_counts_batteries_that_can_export() -> None:
    from aggregator.dispatch.realtime import import_floor_w

    h = replace(_h([500, 8000, -200], [0, 0, 0], dis=[4000, 0, 0]), export_cap_w=np.array([3000.0, 1e9, 1e9]))
    assert import_floor_w(h).tolist() == [-3000.0, 8000.0, 0.0]  # a: to its cap; c exports PV: not asked for more


def test_a_round_asks_a_full_battery_to_export_for_a_neighbours_car_and_reports_the_least_excess() -> None:
    from datetime import UTC, datetime

    from aggregator.feeder_control import Feeder, HouseReading, round_envelopes
    from vpp_common.messages import (
        Flexibility,
        Measurement,
        SiteTelemetry,
        StorageFlexibility,
        Validity,
    )

    now = datetime(2026, 1, 10, 20, tzinfo=UTC)
    m = lambda v: Measurement(v, Validity.VALID, now)  # noqa: E731
    car = SiteTelemetry(now, m(8000.0), m(0.0), m(0.0), m(10.0), m(8000.0))  # battery at its reserve
    full = SiteTelemetry(now, m(500.0), m(0.0), m(0.0), m(90.0), m(500.0))
    st = StorageFlexibility("battery", 90.0, 5.0, 100.0, 10.0, 10_000.0, 5000.0, 5000.0)
    low = StorageFlexibility("battery", 10.0, 5.0, 100.0, 10.0, 10_000.0, 5000.0, 5000.0)
    readings = {"a": HouseReading(None, car, Flexibility(now, (low,))),
                "b": HouseReading(None, full, Flexibility(now, (st,)))}
    env, loads = round_envelopes([Feeder("f", ("a", "b"), 6000.0, float("inf"))], readings, now, 30.0, 600.0, 1 / 60)
    # b's battery can give 5 kW: 500 W for its house, 4.5 kW to the feeder; a's, at its reserve, 5 kW
    # more down to its feeder floor (soc_min 5 %): nothing is unavoidable
    assert loads["f"].unavoidable_import_w == 0.0 and loads["f"].least_over_limit_w == 0.0
    a, b = env["a"].limits, env["b"].limits
    assert b.max_import_w < 0 and b.max_export_w >= -b.max_import_w
    assert a.max_import_w + b.max_import_w == pytest.approx(6000.0 * SHARE_OF_LIMIT)
