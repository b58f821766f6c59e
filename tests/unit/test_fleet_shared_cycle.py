"""The simulator's fast mode and the aggregator share the cycle code (issue 24): the same
snapshot of a fleet -- houses, batteries, forecasts, prices, feeders -- gives the same fleet
problem and the same plans whether the aggregator reads it from its store or the simulator
builds it from a scenario."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from aggregator.config import AggregatorConfig
from aggregator.dispatch.optimise import optimise
from aggregator.dispatch.problem import DispatchOptions
from aggregator.server import AggregatorServer
from simulator.fleet.strategies import (
    AUCTION_HOUR_UTC,
    BATTERY_ID,
    fleet_problem,
    known_prices_until,
    storage,
)
from tests.fleet_fixtures import small_scenario
from vpp_common.clock import ManualClock
from vpp_common.messages import (
    ControlType,
    Flexibility,
    Hello,
    PowerForecast,
    ProfileStep,
    ResourceInfo,
    ResourceKind,
    ShiftableRunFlexibility,
    SiteLimits,
)


@pytest.mark.parametrize("with_run", [False, True])
async def test_one_snapshot_gives_the_same_plans_in_the_aggregator_and_the_simulator(tmp_path: Path,
                                                                                    with_run: bool) -> None:
    sc = small_scenario(n=4, days=2)
    s0 = 40  # 10:00 UTC: today's prices known only
    now = sc.slot_start(s0)
    # a washing machine in the first house (S2 PPBC): placed by the shared cycle in both
    washer = ShiftableRunFlexibility("washer", (ProfileStep(1800.0, 2000.0), ProfileStep(5400.0, 66.7)), now,
                                     now + timedelta(hours=10))
    runs = [(washer,) if with_run and i == 0 else () for i in range(sc.n)]
    s1 = known_prices_until(sc, now)
    soc = np.array([35.0, 60.0, 80.0, 20.0])
    load, pv = sc.load_w[:, s0:s1], sc.pv_w[:, s0:s1]
    prices = tmp_path / "prices.csv"
    prices.write_text("timestamp,import_price_per_kwh,export_price_per_kwh\n" + "".join(
        f"{sc.slot_start(s).isoformat()},{float(sc.import_price_per_kwh[s])!r},{float(sc.export_price_per_kwh[s])!r}\n"
        for s in range(sc.t)))
    cfg = AggregatorConfig.model_validate({
        "listen": "127.0.0.1:0", "insecure": True, "metrics_port": None, "replica_id": "r1",
        "planning": {"slot_s": sc.slot_s, "horizon_slots": sc.t, "cycle_s": 3600.0, "prices_file": str(prices),
                     "prices_publish_hour_utc": AUCTION_HOUR_UTC, "horizon_within_known_prices": True,
                     "terminal_value_per_kwh": "mean_price"},
        "feeders": [{"id": f, "houses": [h.house_id for h in sc.houses if h.feeder == f],
                     "import_limit_w": float(sc.feeder_import_limit_w[k, 0]),
                     "export_limit_w": float(sc.feeder_export_limit_w[k, 0]), "transformer": f"tx:{f}"}
                    for k, f in enumerate(sc.feeder_ids)]})
    srv = AggregatorServer(cfg, clock=ManualClock(now))
    try:
        for i, h in enumerate(sc.houses):  # what the agents would have sent: Hello and flexibility
            hello = Hello("t", SiteLimits(h.import_limit_w, h.export_cap_w), (
                ResourceInfo(BATTERY_ID, ResourceKind.BATTERY, ControlType.FRBC, h.battery_kw * 1000,
                             h.battery_kwh * 1000),
                ResourceInfo("pv", ResourceKind.PV, ControlType.PEBC, h.pv_kwp * 1000, 0)))
            await srv.store.upsert_house(h.house_id, hello, now)
            await srv.store.put_flexibility(h.house_id, Flexibility(
                now, (storage(sc, i, float(soc[i])),), load_forecast=PowerForecast(now, sc.slot_s, tuple(load[i].tolist())),
                pv_forecast=PowerForecast(now, sc.slot_s, tuple((-pv[i]).tolist())), shiftable_runs=runs[i]))
        prepared = await srv.planner.problem_now(now)
    finally:
        await srv.store.close()
    assert prepared is not None
    aggregator = prepared[1]
    assert prepared[2].placed == int(with_run)
    simulator = fleet_problem(sc, s0, s1, soc, load, pv, terminal_value_per_kwh="mean_price",
                              futures=tuple(cfg.planning.futures), cycle_s=3600.0, shiftable_runs=runs)
    assert aggregator.t == simulator.t == s1 - s0
    assert aggregator.terminal_value_per_kwh == simulator.terminal_value_per_kwh
    for name in ("import_price_per_kwh", "export_price_per_kwh", "load_w", "pv_power_w", "feeder_import_limit_w",
                 "feeder_export_limit_w", "scenario_load_w"):
        assert np.array_equal(getattr(aggregator, name), getattr(simulator, name)), name
    options = DispatchOptions()
    a = optimise(aggregator, options, None, now=now)
    b = optimise(simulator, options, None, now=now)
    assert sorted(a.plans) == sorted(b.plans) == [h.house_id for h in sc.houses]
    assert any(abs(sp.target_power_w) > 100 for p in b.plans.values() for sl in p.slots for sp in sl.setpoints)
    for house_id in b.plans:
        pa, pb = a.plans[house_id], b.plans[house_id]
        assert pa.slots == pb.slots and pa.valid_until == pb.valid_until == now + timedelta(seconds=sc.slot_s * (s1 - s0))
