"""The feeder floor: a battery at or below its backup reserve discharges toward its feeder floor
only while the aggregator's live feeder envelope holds its house's import below the house's own
consumption, and only as far as that envelope needs (docs/fleet-strategy.md, "Import limits in
operation")."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from pydantic import ValidationError

from aggregator.dispatch.realtime import HousesNow, feeder_envelopes, import_floor_w
from edge_agent.config import AgentConfig, BatteryConfig, SiteConfig
from edge_agent.energy_manager.decide import BatteryLimits, battery_problem, decide
from edge_agent.house_devices import house_settings
from tests.unit.test_plan_input_safety import (
    MAX_CHARGE_W,
    MAX_DISCHARGE_W,
    MAX_EXPORT_W,
    MAX_IMPORT_W,
    MAX_SOC_PCT,
    RESERVE_PCT,
    T0,
    deliver_signal,
    envelope_msg,
    make_agent,
    snapshot,
)
from vpp_common.clock import ManualClock
from vpp_common.messages import SiteLimits

FLOOR = BatteryLimits(MAX_CHARGE_W, MAX_DISCHARGE_W, RESERVE_PCT, MAX_SOC_PCT, capacity_wh=10_000.0,
                      control_period_s=5.0, feeder_floor_soc_pct=5.0)


def _decide(soc: float, limits: SiteLimits, *, feeder: bool, battery: BatteryLimits = FLOOR,
            grid_w: float = 3000.0) -> float:
    snap = snapshot(T0, grid_w=grid_w, pv_w=0.0, soc_pct=soc)  # night: the house takes 3 kW
    return decide(T0, snap.telemetry, None, True, limits, battery, plan_grid_envelope=not feeder).battery_w


def test_below_the_reserve_only_what_the_feeder_envelope_needs() -> None:
    # at 8 % (reserve 10 %): the envelope holds the house to 1 kW of its 3 kW, so the battery gives 2 kW
    assert _decide(8.0, SiteLimits(1000.0, MAX_EXPORT_W), feeder=True) == pytest.approx(-2000.0)
    # the house's own import limit (no feeder envelope) does not spend the reserve
    assert _decide(8.0, SiteLimits(1000.0, MAX_EXPORT_W), feeder=False) == 0.0
    # a feeder envelope that does not bind below the house's load: nothing below the reserve
    assert _decide(8.0, SiteLimits(5000.0, MAX_EXPORT_W), feeder=True) == 0.0
    # at the floor: nothing more
    assert _decide(5.0, SiteLimits(1000.0, MAX_EXPORT_W), feeder=True) == 0.0
    # without a floor (None) or with the floor at the reserve: the reserve holds
    for b in (replace(FLOOR, feeder_floor_soc_pct=None), replace(FLOOR, feeder_floor_soc_pct=RESERVE_PCT)):
        assert _decide(8.0, SiteLimits(1000.0, MAX_EXPORT_W), feeder=True, battery=b) == 0.0
    # an "export at least" envelope (below 0: the aggregator asks only when the energy above the
    # neighbours' reserves is not enough) is followed from the reserve too
    assert _decide(8.0, SiteLimits(-1000.0, MAX_EXPORT_W), feeder=True) == pytest.approx(-4000.0)


def test_the_discharge_below_the_reserve_tapers_at_the_floor() -> None:
    # 5.2 %: 20 Wh above the floor; one 5 s control period may take at most 20 Wh x 0.95 -> 13.7 kW,
    # at 5.01 %: 1 Wh -> 684 W
    assert _decide(5.01, SiteLimits(1000.0, MAX_EXPORT_W), feeder=True) == pytest.approx(-684.0)


@pytest.mark.parametrize("floor", [math.nan, math.inf, -math.inf, -1.0, 1e300, 11.0])
def test_a_floor_that_is_not_one_refuses_the_battery(floor: float) -> None:
    b = replace(FLOOR, feeder_floor_soc_pct=floor)
    assert battery_problem(b) is not None and "feeder_floor_soc_pct" in str(battery_problem(b))
    snap = snapshot(T0, grid_w=3000.0, pv_w=0.0, soc_pct=8.0)
    d = decide(T0, snap.telemetry, None, True, SiteLimits(1000.0, MAX_EXPORT_W), b, plan_grid_envelope=False)
    assert d.battery_w == 0.0 and "invalid_input" in d.clamped_by


@pytest.mark.parametrize("floor", [math.nan, math.inf, -1.0, 101.0, 1e300])
def test_the_config_refuses_a_floor_that_is_not_a_percentage(floor: float) -> None:
    with pytest.raises(ValidationError, match="feeder_floor_soc_pct"):
        BatteryConfig(feeder_floor_soc_pct=floor)


def test_a_floor_above_the_reserve_is_the_reserve_and_is_reported_as_soc_min() -> None:
    cfg = AgentConfig(house_id="h", insecure=True, metrics_port=None, site=SiteConfig(max_import_w=MAX_IMPORT_W),
                      battery=BatteryConfig(reserve_soc_pct=4.0, feeder_floor_soc_pct=5.0))
    assert house_settings(cfg).feeder_floor_soc_pct == 4.0
    assert house_settings(AgentConfig(house_id="h", insecure=True, metrics_port=None)).feeder_floor_soc_pct == 5.0


async def test_the_agent_spends_its_reserve_for_a_feeder_envelope_and_only_then() -> None:
    clock = ManualClock(T0)
    a, device, _ = make_agent(clock)
    a.snapshot = snapshot(T0, grid_w=3000.0, pv_w=0.0, soc_pct=8.0)  # below the 10 % reserve
    await a.control_once()
    assert device.battery == [0.0]  # no envelope: the reserve holds
    deliver_signal(a, envelope_msg(1000.0, 3000.0))
    clock.advance(5.0)
    await a.control_once()
    assert device.battery[-1] == pytest.approx(-2000.0)


def _houses(soc_room: list[float], floor_room: list[float]) -> HousesNow:
    n = len(soc_room)
    return HousesNow(np.array([8000.0, 1000.0, 1000.0][:n]), np.zeros(n), np.array(soc_room), np.ones(n),
                     np.full(n, 1e5), np.full(n, 5000.0), floor_room_w=np.array(floor_room))


def test_the_envelopes_spend_reserves_only_when_energy_above_them_is_not_enough() -> None:
    # a charges a car (8 kW, battery at its reserve: 2 kW to its floor); b has 3 kW above its reserve
    h = _houses([0.0, 3000.0, 0.0], [2000.0, 3000.0, 1500.0])
    _, imp = feeder_envelopes(h, np.inf, 7000.0, share=1.0)
    assert imp.sum() == pytest.approx(7000.0) and imp[0] == pytest.approx(8000.0)  # a's reserve untouched
    assert imp[2] == pytest.approx(1000.0)
    # 5 kW: b's energy above its reserve is not enough (8 + 1 - 3 + 1 = 7 kW): the reserves give the rest
    _, imp = feeder_envelopes(h, np.inf, 5000.0, share=1.0)
    assert imp.sum() == pytest.approx(5000.0) and imp[0] < 8000.0 and imp[2] < 1000.0
    assert (imp >= import_floor_w(h) - 1e-6).all()
    # the least import counts the reserves; without a floor room, as before
    assert import_floor_w(h).tolist() == [6000.0, -2000.0, -500.0]
    assert import_floor_w(replace(h, floor_room_w=None)).tolist() == [8000.0, -2000.0, 1000.0]


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "-1", "1e300"])
def test_an_environment_floor_that_is_not_a_percentage_is_a_config_error(text: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from vpp_common.config import ConfigError, load_config

    monkeypatch.setenv("VPP_AGENT_BATTERY__FEEDER_FLOOR_SOC_PCT", text)
    with pytest.raises(ConfigError, match="battery.feeder_floor_soc_pct"):
        load_config(AgentConfig, None, house_id="h", insecure=True)
