"""The files live mode writes for its processes load as the processes load them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from aggregator.config import AggregatorConfig
from edge_agent.config import AgentConfig
from simulator.fleet.live import LiveOptions, write_inputs
from tests.e2e.test_fleet_live import small_scenario
from vpp_common.config import load_config
from vpp_common.tariff import PriceSeries


def test_written_configs_load_and_carry_the_scenario(tmp_path: Path) -> None:
    sc = small_scenario(n=4, hours=2, start=datetime(2026, 6, 21, 8, 15, tzinfo=UTC))
    warnings: list[str] = []
    write_inputs(sc, tmp_path, LiveOptions(), 50051, 9464, warnings.append)
    assert not warnings
    agg = load_config(AggregatorConfig, tmp_path / "aggregator.toml")
    assert agg.insecure and agg.store_url == "memory://"
    p = agg.planning
    assert p.optimiser == "lp" and p.slot_s == 900 and p.cycle_s == 3600 and p.cycle_align
    assert p.cycle_offset_s == 15 * 60 + 60  # the scenario's own hours (08:15, 09:15, ...) + 60 s
    assert not p.replan_on_update and p.terminal_value_per_kwh == "mean_price" and p.horizon_within_known_prices
    assert {f.id: (f.import_limit_w, f.export_limit_w) for f in agg.feeders} == {"A": (None, 25_000.0),
                                                                                 "B": (None, None)}
    assert sorted(h for f in agg.feeders for h in f.houses) == [h.house_id for h in sc.houses]
    imp, exp = PriceSeries.load(p.prices_file, slot_s=900).prices(sc.start, 900, sc.t)
    np.testing.assert_allclose(imp, sc.import_price_per_kwh)
    np.testing.assert_allclose(exp, sc.export_price_per_kwh)
    for h in sc.houses:
        a = load_config(AgentConfig, tmp_path / f"agent-{h.house_id}.toml")
        assert a.house_id == h.house_id and a.aggregator == "127.0.0.1:50051"
        assert (a.site.max_import_w, a.site.max_export_w) == (h.import_limit_w, h.export_cap_w)
        assert (a.site.latitude, a.site.longitude) == (sc.latitude, sc.longitude)
        assert a.battery.reserve_soc_pct == 10.0
        assert (a.control.tick_s, a.device.poll_interval_s) == (10.0, 5.0)


def test_time_varying_feeder_limit_is_reported(tmp_path: Path) -> None:
    sc = small_scenario(n=4, hours=2)
    lim = sc.feeder_export_limit_w.copy()
    lim[0, 3:] = 20_000.0
    from dataclasses import replace

    warnings: list[str] = []
    write_inputs(replace(sc, feeder_export_limit_w=lim), tmp_path, LiveOptions(), 50051, 9464, warnings.append)
    assert len(warnings) == 1 and "minimum 20000" in warnings[0]
    agg = load_config(AggregatorConfig, tmp_path / "aggregator.toml")
    assert agg.feeders[0].export_limit_w == 20_000.0


def test_price_publication_and_time_zone_reach_the_processes(tmp_path: Path) -> None:
    """The aggregator learns the market's publication time in its zone, the agents their zone."""
    from dataclasses import replace
    from datetime import time

    import pytest

    from simulator.fleet.model import PriceKnowledge

    sc = replace(small_scenario(n=2, hours=2), timezone="America/New_York",
                 price_knowledge=PriceKnowledge("day_ahead", time(13), "Europe/Berlin"))
    write_inputs(sc, tmp_path, LiveOptions(), 50051, 9464, lambda m: None)
    p = load_config(AggregatorConfig, tmp_path / "aggregator.toml").planning
    assert p.price_publication() == (time(13), "Europe/Berlin") and p.prices_publish_hour_utc is None
    a = load_config(AgentConfig, tmp_path / f"agent-{sc.houses[0].house_id}.toml")
    assert a.site.timezone == "America/New_York"
    # the older key still works (UTC); with the new ones it is refused by name
    from aggregator.config import PlanningConfig

    cfg: dict[str, object] = {"prices_publish_hour_utc": 11}
    assert PlanningConfig.model_validate(cfg).price_publication() == (time(11), "UTC")
    cfg["prices_market_timezone"] = "Europe/Berlin"
    with pytest.raises(ValueError, match="prices_publish_hour_utc is the older spelling of prices_published"):
        PlanningConfig.model_validate(cfg)
    with pytest.raises(ValueError, match="unknown time zone 'Berlin'"):
        PlanningConfig.model_validate({"prices_market_timezone": "Berlin"})
