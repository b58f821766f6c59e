"""The aggregator's boundary checks refuse every kind of bad number: NaN (which passes every
comparison), +-inf and 1e300 (which pass a check written as ``x > limit``), negatives where a
magnitude is asked, and values just outside the range; values inside pass unchanged."""

from __future__ import annotations

import math

import pytest

from aggregator.service import bounds
from aggregator.service.bounds import InvalidMessage

BAD_ALWAYS = (math.nan, math.inf, -math.inf, 1e300, -1e300)


@pytest.mark.parametrize("value", [*BAD_ALWAYS, bounds.MAX_POWER_W * 1.001, -bounds.MAX_POWER_W * 1.001])
def test_power_refuses(value: float) -> None:
    with pytest.raises(InvalidMessage, match="f.w"):
        bounds.power(value, "f.w")


@pytest.mark.parametrize("value", [*BAD_ALWAYS, -1.0, -1e-9])
def test_unsigned_power_refuses_negatives(value: float) -> None:
    with pytest.raises(InvalidMessage):
        bounds.power(value, "f", signed=False)


@pytest.mark.parametrize("value", [*BAD_ALWAYS, -0.1, 100.1, 300.0])
def test_pct_refuses(value: float) -> None:
    with pytest.raises(InvalidMessage):
        bounds.pct(value, "soc_pct")


@pytest.mark.parametrize("value", [*BAD_ALWAYS, -0.5, 1.01])
def test_efficiency_refuses(value: float) -> None:
    with pytest.raises(InvalidMessage):
        bounds.efficiency(value, "eff")


def test_values_in_range_pass_unchanged() -> None:
    assert bounds.power(-4_600.0, "f") == -4_600.0 and bounds.power(0.0, "f", signed=False) == 0.0
    assert bounds.pct(0.0, "f") == 0.0 and bounds.pct(100.0, "f") == 100.0
    assert bounds.efficiency(0.95, "f") == 0.95 and bounds.efficiency(0.0, "f") == 1.0  # 0: not set
    with pytest.raises(InvalidMessage, match=r"\(0, 1\]"):
        bounds.finite(0.0, "f", 0.0, 1.0, lo_open=True)
