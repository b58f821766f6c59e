"""Time-of-use tariffs as price series (pure): moved to :mod:`vpp_common.tariff`, which the
edge agent shares for its local time-of-use mode; re-exported here for existing importers."""

from __future__ import annotations

from vpp_common.tariff import DEFAULT_TARIFF, PriceSeries, PriceSource, TouPeriod, TouTariff

__all__ = ["DEFAULT_TARIFF", "PriceSeries", "PriceSource", "TouPeriod", "TouTariff"]
