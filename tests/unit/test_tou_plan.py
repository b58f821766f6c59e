"""The simple time-of-use plan and tariffs (pure)."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import numpy as np
import pytest

from aggregator.dispatch.tariff import DEFAULT_TARIFF, TouPeriod, TouTariff
from aggregator.dispatch.tou import TouPlanInput, make_plan
from vpp_common.clock import UTC
from vpp_common.messages import StorageFlexibility
from vpp_common.timeslots import align_down

STORAGE = StorageFlexibility("battery", 20, 0, 100, 10, 10_000, 5_000, 4_000, charge_efficiency=1.0)


def test_default_tariff_prices_by_time_of_day() -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    imp, exp = DEFAULT_TARIFF.prices(day, 3600, 24)
    assert imp[2] == 0.20 and imp[12] == 0.30 and imp[18] == 0.45 and imp[22] == 0.30
    assert np.all(exp == 0.07)


def test_tariff_must_cover_the_day_exactly_once() -> None:
    with pytest.raises(ValueError, match="must be once"):
        TouTariff((TouPeriod(time(0), time(12), 0.1, 0.0),))


def test_plan_charges_when_cheap_and_covers_load_at_peak() -> None:
    start = datetime(2026, 3, 2, tzinfo=UTC)
    imp, _ = DEFAULT_TARIFF.prices(start, 900, 96)
    plan = make_plan("p", 1, start, TouPlanInput(start, 900, imp, STORAGE, max_import_w=3_000), lease_s=86_400)
    assert len(plan.slots) == 96 and plan.valid_until == start + timedelta(days=1)
    night, noon, peak = plan.slots[23].setpoints[0], plan.slots[48].setpoints[0], plan.slots[72].setpoints[0]
    assert night.target_power_w == 3_000 and night.envelope.min_w == night.envelope.max_w == 3_000  # import limit
    # from 50 % to the 50 % target nothing is needed; from 20 %: 3 kWh / 0.95 at 3 kW in the latest cheap slots
    low = make_plan("p", 1, start, TouPlanInput(start, 900, imp, StorageFlexibility(
        "battery", 20, 0, 100, 10, 10_000, 5_000, 4_000), max_import_w=3_000), lease_s=86_400)
    charged_wh = sum(s.setpoints[0].target_power_w * 0.25 for s in low.slots if "charge" in s.reason
                     and s.setpoints[0].target_power_w > 0)
    assert charged_wh == pytest.approx(3_000 / 0.95)
    charging = [i for i, s in enumerate(low.slots) if s.setpoints[0].target_power_w > 0]
    assert charging == list(range(24 - len(charging), 24))  # the latest cheap slots (00:00-06:00 is cheap)
    assert noon.envelope.min_w == 0 and noon.envelope.max_w == 3_000
    assert peak.envelope.min_w == -4_000 and peak.envelope.max_w == 0
    assert "peak" in plan.slots[72].reason


def test_lease_is_shorter_than_horizon_and_aligned() -> None:
    now = datetime(2026, 3, 2, 10, 7, 30, tzinfo=UTC)
    start = align_down(now, 900)
    assert start == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    imp, _ = DEFAULT_TARIFF.prices(start, 900, 96)
    plan = make_plan("p", 1, now, TouPlanInput(start, 900, imp, STORAGE, 10_000), lease_s=3600)
    assert plan.valid_until - plan.valid_from == timedelta(hours=1)
    assert plan.slot_at(now) is plan.slots[0]
    assert plan.slot_at(start + timedelta(hours=1)) is None


def test_aggregator_names_are_the_shared_ones() -> None:
    # the edge agent plans with vpp_common; the aggregator's old import paths stay valid
    import aggregator.dispatch.tariff as agg_tariff
    import aggregator.dispatch.tou as agg_tou
    import vpp_common.tariff as common_tariff
    import vpp_common.tou as common_tou

    assert agg_tou.make_plan is common_tou.make_plan and agg_tou.TouPlanInput is common_tou.TouPlanInput
    assert agg_tariff.TouTariff is common_tariff.TouTariff and agg_tariff.DEFAULT_TARIFF is common_tariff.DEFAULT_TARIFF
